// The remedies' data: its shape, its glibc boundary checked against real libcs of the corpus with
// objdump as the oracle (a `mov $0xffffffffff6004..,%rax` followed by `call *%rax` is a direct call),
// and the lines users read under a crash or slow verdict.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  AFFECTED_BASES, FIRST_GLIBC_WITHOUT_DIRECT_CALLS, FIXED_BASES, KERNEL_PARAMETER, VSYS_FIX, glibcCallsPageDirectly, remedyLines,
} from '../../src/model/remedies.js';
import { CORPUS, hasCommand, runVsys } from '../helpers.js';

test('data: every base and setting has a source or a reason; fixed bases are past the boundary, affected ones before it', () => {
  assert.equal(FIRST_GLIBC_WITHOUT_DIRECT_CALLS.version, '2.14');
  assert.equal(glibcCallsPageDirectly(FIRST_GLIBC_WITHOUT_DIRECT_CALLS.lastAffected), true);
  assert.equal(glibcCallsPageDirectly(FIRST_GLIBC_WITHOUT_DIRECT_CALLS.version), false);
  assert.equal(glibcCallsPageDirectly('2.5'), true);
  assert.equal(glibcCallsPageDirectly('2.9'), true, '2.9 < 2.14 numerically, not as text');
  assert.equal(glibcCallsPageDirectly('3.0'), false);
  assert.equal(glibcCallsPageDirectly('musl'), undefined);
  const names = FIXED_BASES.map((b) => b.name);
  for (const want of ['CentOS 7', 'RHEL 7', 'Debian 8 (jessie)', 'Ubuntu 12.04 LTS (precise)']) assert.ok(names.includes(want), want);
  const v = Object.fromEntries(FIXED_BASES.map((b) => [b.name, b.libcVersion]));
  assert.equal(v['CentOS 7'], '2.17');
  assert.equal(v['Debian 8 (jessie)'], '2.19');
  assert.equal(v['Ubuntu 12.04 LTS (precise)'], '2.15');
  for (const b of FIXED_BASES) {
    assert.ok(b.source.title.length > 10, b.name);
    if (b.libc === 'musl') assert.equal(b.libcVersion, undefined);
    else assert.equal(glibcCallsPageDirectly(b.libcVersion ?? ''), false, b.name);
  }
  for (const b of AFFECTED_BASES) assert.equal(glibcCallsPageDirectly(b.libcVersion ?? ''), true, b.name);
  assert.equal(KERNEL_PARAMETER.parameter, 'vsyscall=emulate');
  const host = (re: RegExp) => KERNEL_PARAMETER.hosts.find((h) => re.test(h.host));
  assert.match(host(/GRUB/)?.how ?? '', /GRUB_CMDLINE_LINUX in \/etc\/default\/grub.*update-grub.*grub2-mkconfig/);
  assert.match(host(/WSL2/)?.how ?? '', /%UserProfile%\\\.wslconfig under \[wsl2\] add kernelCommandLine = vsyscall=emulate/);
  assert.equal(host(/Docker Desktop on macOS/)?.settable, false);
  assert.match(KERNEL_PARAMETER.securityCost, /fixed address.*ASLR/);
});

test('vsys fix is announced only when the command exists (the CLI is the oracle)', () => {
  const help = runVsys(['--help']);
  const listed = /^\s+fix\b/m.test(help.stdout);
  assert.equal(VSYS_FIX.available, listed, help.stdout);
  for (const mode of ['none', 'xonly'] as const) {
    assert.equal(remedyLines({ name: 'glibc', version: '2.13' }, mode).some((l) => /vsys fix/.test(l)), listed, mode);
  }
});

/** Version from the libc's own banner, else the newest GLIBC_2.x it defines (readelf -V). */
function versionOf(file: string): string | undefined {
  const bytes = fs.readFileSync(file).toString('latin1');
  const banner = /release version (\d+\.\d+)/.exec(bytes)?.[1];
  if (banner) return banner;
  const r = spawnSync('readelf', ['-V', '-W', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const defs = [...(r.stdout.split('Version needs section')[0] ?? '').matchAll(/Name: GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
  defs.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const top = defs.at(-1);
  return top ? `${top[0]}.${top[1]}` : undefined;
}

/** objdump's answer: does any mov of a vsyscall entry into a register lead straight to a call through it? */
function objdumpDirect(file: string): boolean {
  const r = spawnSync('objdump', ['-d', '--no-show-raw-insn', file], { encoding: 'utf8', maxBuffer: 512 << 20 });
  const lines = r.stdout.split('\n');
  for (const [i, l] of lines.entries()) {
    const m = /mov(?:abs)?\s+\$0xffffffffff600[048]00,%(r\w+)/.exec(l);
    if (!m) continue;
    if (lines.slice(i + 1, i + 3).some((n) => new RegExp(`call\\w*\\s+\\*%${m[1]}\\b`).test(n))) return true;
  }
  return false;
}

const CORPUS_LIBCS = [
  'debian-wheezy-libc-2.13/libc-2.13.so',
  'gentoo-initfs-2011/lib64/libc-2.13.so',
  'fb-glibc-2.16-libc/libc.so.6',
  'rhel6-glibc-2.12-libpthread/libpthread.so.0',
];

test('the glibc boundary agrees with the corpus: ≤ 2.13 calls the page directly, 2.16 only as a fallback (objdump)', { skip: (!hasCommand('objdump') || !hasCommand('readelf')) && 'needs binutils', timeout: 120_000 }, (t) => {
  let checked = 0;
  for (const rel of CORPUS_LIBCS) {
    const file = path.join(CORPUS, rel);
    if (!fs.existsSync(file)) {
      t.diagnostic(`missing ${file}`);
      continue;
    }
    const version = versionOf(file);
    assert.ok(version, rel);
    const direct = objdumpDirect(file);
    t.diagnostic(`${rel}: glibc ${version}, direct call per objdump: ${direct}`);
    assert.equal(glibcCallsPageDirectly(version), direct, `${rel} (glibc ${version})`);
    checked++;
  }
  assert.ok(checked >= 3 || !fs.existsSync(CORPUS), `only ${checked} corpus libcs found`);
});

test('remedy lines: cause, bases, and under none the kernel parameter with where to set it and its cost', () => {
  const none = remedyLines({ name: 'glibc', version: '2.13' }, 'none');
  const text = none.join('\n');
  assert.match(none[0] ?? '', /^Cause: glibc 2\.13 calls the vsyscall page directly \(glibc before 2\.14 does/);
  assert.match(text, /CentOS 7 \(glibc 2\.17\).*Debian 8 \(jessie\) \(glibc 2\.19\).*Ubuntu 12\.04 LTS \(precise\) \(eglibc 2\.15\).*Alpine Linux \(musl never used the page\)/);
  assert.match(text, /boot the host with vsyscall=emulate/);
  assert.match(text, /GRUB_CMDLINE_LINUX/);
  assert.match(text, /\.wslconfig/);
  assert.match(text, /Docker Desktop on macOS.*not settable/);
  assert.match(text, /^Its cost: .*fixed address/m);
  const slow = remedyLines({ name: 'glibc', version: '2.13' }, 'xonly').join('\n');
  assert.doesNotMatch(slow, /boot the host with/, 'the parameter does not make an emulated call faster');
  assert.match(slow, /cannot speed this up/);
  const notLibc = remedyLines({ name: 'glibc', version: '2.17' }, 'none');
  assert.match(notLibc[0] ?? '', /^Cause: not glibc 2\.17 .*the program itself calls the page/);
  assert.match(remedyLines(undefined, 'none')[0] ?? '', /^Cause: code built against glibc before 2\.14/);
  for (const l of [...none, slow]) assert.doesNotMatch(l, /seed|\bcep\b/i);
});
