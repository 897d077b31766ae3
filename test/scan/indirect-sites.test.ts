// Direct calls of the page in a function reached only through a pointer are `indirect` (verdict
// review), not crashes. Real files: OpenJDK 17's libjvm.so from Debian (os::Linux::sched_getcpu_syscall,
// whose address os::Linux::sched_getcpu_init takes with lea), and every file of the corpus, whose
// sites stay as its README says (the static busyboxes reach time() through applet tables, but
// time() itself has direct callers). objdump -d is the oracle for callers and address-taking leas.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { CORPUS, hasCommand } from '../helpers.js';
import { analyseBytes } from '../../src/scan/analyse-file.js';
import { scanPaths } from '../../src/scan/scan.js';
import { isElf } from '../../src/elf/read-elf.js';
import { toJson } from '../../src/cli/io.js';
import { debianPackage } from '../support/debian-packages.js';
import type { FileReport } from '../../src/scan/types.js';

const JVM = 'usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so';

function analyse(p: string): FileReport {
  const r = analyseBytes(fs.readFileSync(p), p);
  assert.ok(r, `${p} is ELF`);
  assert.equal(r.error, undefined, `${p}: ${r.error?.message}`);
  return r;
}

interface Objdump {
  /** Lines branching to each address (call/jmp/jcc, "call   c2bd10 <…>"), by target, with their address. */
  branchesTo: Map<number, number[]>;
  /** Instructions whose comment names a target (`lea -0x4cc7(%rip),%rax        # c2bd10 <…>`), with their function. */
  refsTo: Map<number, { address: number; instruction: string; function: string }[]>;
}

/** Streams objdump -d over the file, keeping the lines that branch to or refer to one of `targets`. */
async function objdump(p: string, targets: number[]): Promise<Objdump> {
  const want = new Set(targets);
  const out: Objdump = { branchesTo: new Map(), refsTo: new Map() };
  const child = spawn('objdump', ['-d', '--no-show-raw-insn', '-w', p], { stdio: ['ignore', 'pipe', 'inherit'] });
  let fn = '';
  for await (const line of readline.createInterface({ input: child.stdout })) {
    const head = /^[0-9a-f]+ <(.+)>:$/.exec(line);
    if (head) {
      fn = head[1] as string;
      continue;
    }
    const m = /^\s*([0-9a-f]+):\t(\S+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const [, at, mnem, rest] = m as unknown as [string, string, string, string];
    // "call   c2bd10 <fn>", or "call   0x4e1390" in a stripped file.
    const branch = /^(?:0x)?([0-9a-f]+)(?: <|$)/.exec(rest.trim());
    if (branch && /^(call|jmp|j[a-z]+)/.test(mnem)) {
      const t = parseInt(branch[1] as string, 16);
      if (want.has(t)) out.branchesTo.set(t, [...(out.branchesTo.get(t) ?? []), parseInt(at, 16)]);
      continue;
    }
    const ref = /^(.*?)\s+# ([0-9a-f]+) </.exec(rest);
    if (ref && want.has(parseInt(ref[2] as string, 16))) {
      const t = parseInt(ref[2] as string, 16);
      out.refsTo.set(t, [...(out.refsTo.get(t) ?? []), { address: parseInt(at, 16), instruction: `${mnem} ${ref[1]}`, function: fn }]);
    }
  }
  await new Promise((resolve) => child.on('close', resolve));
  return out;
}

test('OpenJDK 17 libjvm.so: the getcpu call in os::Linux::sched_getcpu_syscall is indirect, review under none, address taken where objdump shows the lea', { timeout: 600_000 }, async (t) => {
  const root = debianPackage('openjdk-17-jre-headless');
  if (!root) return t.skip('apt-get download openjdk-17-jre-headless failed (no apt repository?)');
  const p = path.join(root, JVM);
  const r = analyse(p);
  const sites = r.findings.filter((f) => f.entry === 'getcpu');
  assert.equal(sites.length, 1, JSON.stringify(r.findings.map((f) => [f.kind, f.entry, f.function?.name])));
  const site = sites[0]!;
  assert.equal(site.function?.name, '_ZN2os5Linux20sched_getcpu_syscallEv');
  assert.equal(site.kind, 'indirect');
  assert.equal(r.class, 'indirect');
  assert.ok((site.addressTakenAt?.length ?? 0) > 0, 'says where the address is taken');

  // The verdict of the file in a scan (through the sparse read and a worker thread): review, not crash.
  const res = await scanPaths({ paths: [p], workers: 1 });
  const file = res.files.find((f) => f.path === p);
  assert.ok(file, 'scanned');
  assert.equal(file.class, 'indirect');
  assert.equal(file.verdicts.none.outcome, 'review');
  assert.notEqual(file.verdicts.emulate.outcome, 'crash');
  const json = JSON.parse(toJson(file)) as { findings: { addressTakenAt?: { address: string; instruction: string; function?: string }[] }[] };
  const wire = json.findings.find((f) => f.addressTakenAt)?.addressTakenAt;
  assert.deepEqual(wire, site.addressTakenAt!.map((a) => ({ address: `0x${a.address.toString(16)}`, instruction: a.instruction, function: a.function })), 'the field crosses the worker and reaches JSON');

  if (!hasCommand('objdump')) return t.skip('objdump not installed: the oracle part is skipped');
  const start = Number(site.function!.start);
  const o = await objdump(p, [start]);
  // Nothing calls or jumps to it…
  assert.deepEqual(o.branchesTo.get(start) ?? [], []);
  // …and vsys lists exactly objdump's leas of it, with their text and function.
  const leas = (o.refsTo.get(start) ?? []).filter((x) => x.instruction.startsWith('lea '));
  assert.ok(leas.some((x) => x.function === '_ZN2os5Linux17sched_getcpu_initEv'), 'sched_getcpu_init takes its address');
  assert.deepEqual(
    site.addressTakenAt!.map((a) => ({ address: Number(a.address), instruction: a.instruction, function: a.function })),
    leas.map((x) => ({ address: x.address, instruction: x.instruction.replace(/\s+/g, ' '), function: x.function })),
  );
});

/** Every ELF file under the corpus (regular files, not the symlinks the initramfs holds). */
function corpusElfFiles(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const fd = fs.openSync(p, 'r');
        const head = Buffer.alloc(64);
        fs.readSync(fd, head, 0, 64, 0);
        fs.closeSync(fd);
        if (isElf(head)) out.push(p);
      }
    }
  };
  walk(CORPUS);
  return out.sort();
}

/** The corpus README's classes, for the files that have sites; every other ELF file is clean. */
const CLASSES: Record<string, string> = {
  'busybox-1.15.2-static/busybox': 'direct',
  'debian-wheezy-libc-2.13/libc-2.13.so': 'direct',
  'rhel6-glibc-2.12-libpthread/libpthread.so.0': 'direct',
  'fb-glibc-2.16-libc/libc.so.6': 'fallback',
  'gentoo-initfs-2011/lib64/libc-2.13.so': 'direct',
  'gentoo-initfs-2011/lib64/libpthread-2.13.so': 'direct',
  'gentoo-initfs-2011/bin/busybox': 'direct',
  'gentoo-initfs-2011/bin/cryptsetup': 'direct',
  'gentoo-initfs-2011/bin/mdadm': 'direct',
  'ctl-busybox-1.22.1-static-glibc2.17/busybox': 'clean',
};

test('corpus: every file keeps its README class; each direct call\'s function has a direct caller in objdump', { skip: !fs.existsSync(CORPUS) && 'corpus not present', timeout: 600_000 }, async () => {
  const files = corpusElfFiles();
  assert.ok(files.length >= 15, `${files.length} ELF files`);
  for (const p of files) {
    const rel = path.relative(CORPUS, p);
    const r = analyse(p);
    assert.equal(r.class, CLASSES[rel] ?? 'clean', rel);
    assert.deepEqual(r.findings.filter((f) => f.kind === 'indirect' || f.addressTakenAt).map((f) => f.address), [], `${rel}: no indirect site`);
    const direct = r.findings.filter((f) => f.kind === 'direct-call');
    if (direct.length === 0 || !hasCommand('objdump')) continue;
    // The oracle: objdump shows a call or jump to the start of each such function (the static
    // busyboxes' time() and gettimeofday() wrappers), or the function is exported.
    const starts = [...new Set(direct.map((f) => Number(f.function!.start)))];
    const o = await objdump(p, starts);
    for (const s of starts) {
      const f = r.findings.find((x) => Number(x.function?.start) === s)!;
      const exported = r.affectedExports.some((e) => e.chain.length === 1 && e.chain[0] === f.function?.name);
      assert.ok(exported || (o.branchesTo.get(s)?.length ?? 0) > 0, `${rel}: ${f.function?.name ?? `fn@0x${s.toString(16)}`} is exported or called directly`);
    }
  }
});
