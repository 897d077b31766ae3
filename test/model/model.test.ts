import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  VSYSCALL_ENTRIES, VSYSCALL_PAGE_ADDR, classifyVsyscallTarget, MODE_BEHAVIOUR, VSYSCALL_MODES, SYS_X86_64, SYS_I386,
  CLOCK_IDS, AT_SYSINFO, AT_SYSINFO_EHDR, AT_HWCAP, AT_PLATFORM,
  decodePageFaultFlags, describePageFault, SEED004_TABLE, SEED003_RATES, SEED000_CEP, seedSlowdown,
} from '../../src/model/index.js';
import { ROOT } from '../helpers.js';

test('vsyscall entries follow the kernel: nr = (addr & 0xC00) >> 10, syscall numbers of x86_64', () => {
  for (const e of VSYSCALL_ENTRIES) {
    assert.equal(Number((e.address & 0xc00n) >> 10n), e.nr);
    assert.equal(e.address, VSYSCALL_PAGE_ADDR + BigInt(e.offset));
  }
  assert.deepEqual(VSYSCALL_ENTRIES.map((e) => e.syscall), [SYS_X86_64.gettimeofday, SYS_X86_64.time, SYS_X86_64.getcpu]);
  assert.equal(classifyVsyscallTarget(0xffffffffff600400n), VSYSCALL_ENTRIES[1]);
  assert.equal(classifyVsyscallTarget(0xffffffffff600410n), 'misaligned');
  assert.equal(classifyVsyscallTarget(0xffffffffff601000n), undefined);
});

test('syscall numbers agree with the system headers (an independent oracle)', (t) => {
  const read = (p: string) => { try { return readFileSync(p, 'utf8'); } catch { return null; } };
  const h64 = read('/usr/include/x86_64-linux-gnu/asm/unistd_64.h');
  const h32 = read('/usr/include/x86_64-linux-gnu/asm/unistd_32.h');
  if (!h64 || !h32) return t.skip('linux-libc-dev headers not installed');
  const num = (h: string, name: string) => Number(new RegExp(`#define __NR_${name} (\\d+)`).exec(h)?.[1]);
  for (const [name, nr] of Object.entries(SYS_X86_64)) assert.equal(nr, num(h64, name), `x86_64 ${name}`);
  for (const [name, nr] of Object.entries(SYS_I386)) assert.equal(nr, num(h32, name), `i386 ${name}`);
});

test('auxiliary vector keys and clock ids agree with the system headers (the i386 benchmark takes them from here)', (t) => {
  const read = (p: string) => { try { return readFileSync(p, 'utf8'); } catch { return null; } };
  // AT_SYSINFO is defined for __i386__ only, in the same header; the generic keys in linux/auxvec.h.
  const auxArch = read('/usr/include/x86_64-linux-gnu/asm/auxvec.h');
  const auxGeneric = read('/usr/include/linux/auxvec.h');
  const time = read('/usr/include/linux/time.h');
  if (!auxArch || !auxGeneric || !time) return t.skip('linux-libc-dev headers not installed');
  const num = (h: string, name: string) => Number(new RegExp(`#\\s*define\\s+${name}\\s+(\\d+)\\b`).exec(h)?.[1]);
  assert.equal(AT_SYSINFO, num(auxArch, 'AT_SYSINFO'));
  assert.equal(AT_SYSINFO_EHDR, num(auxArch, 'AT_SYSINFO_EHDR'));
  assert.equal(AT_HWCAP, num(auxGeneric, 'AT_HWCAP'));
  assert.equal(AT_PLATFORM, num(auxGeneric, 'AT_PLATFORM'));
  for (const [name, id] of Object.entries(CLOCK_IDS)) assert.equal(id, num(time, `CLOCK_${name}`), `CLOCK_${name}`);
});

test('modes: what reads and calls do, per DESIGN.md', () => {
  assert.deepEqual(VSYSCALL_MODES.map((m) => [m, MODE_BEHAVIOUR[m].read, MODE_BEHAVIOUR[m].call, MODE_BEHAVIOUR[m].mapsPerms]), [
    ['none', 'sigsegv', 'sigsegv', null],
    ['xonly', 'sigsegv', 'emulated', '--xp'],
    ['emulate', 'works', 'emulated', 'r-xp'],
    ['native', 'works', 'works', 'r-xp'],
  ]);
});

test('page-fault error codes: 0x14 for a call into the page on xonly, 15 in none-mode dmesg', () => {
  assert.deepEqual(decodePageFaultFlags(0x14), ['USER', 'INSTR']);
  assert.equal(describePageFault(0x14), 'PAGE_NOT_PRESENT|READ_ACCESS|USER_FAULT|INSTRUCTION_FETCH');
  assert.deepEqual(decodePageFaultFlags(15), ['PROT', 'WRITE', 'USER', 'RSVD']);
  assert.equal(describePageFault(0x15), 'PROTECTION_VIOLATION|READ_ACCESS|USER_FAULT|INSTRUCTION_FETCH');
});

test('seed figures are the ones printed in the seeds', () => {
  const seeds = path.resolve(ROOT, '..', 'shared', 'seeds');
  let s004: string;
  try {
    s004 = readFileSync(path.join(seeds, '004_4b504426f7bc06db.txt'), 'utf8');
  } catch {
    return;
  }
  for (const r of SEED004_TABLE) {
    assert.ok(s004.includes(` ${r.nsKptiOn}\n`) || s004.includes(` ${r.nsKptiOn}`), `${r.label} ${r.nsKptiOn}`);
    assert.ok(s004.includes(` ${r.nsKptiOff} `), `${r.label} ${r.nsKptiOff}`);
  }
  const s003 = readFileSync(path.join(seeds, '003_d743772ba912539b.txt'), 'utf8');
  assert.ok(s003.includes(`${SEED003_RATES.vdso / 1e6}M evt/s`));
  assert.ok(s003.includes(`${SEED003_RATES['vsyscall-emulated'] / 1e6}M evt/s`));
  const s000 = readFileSync(path.join(seeds, '000_00ae4c4d70a01093.txt'), 'utf8');
  assert.ok(s000.includes(`real 0m${SEED000_CEP.seconds['vsyscall-emulated']}s`));
  assert.ok(s000.includes(`real 0m${SEED000_CEP.seconds.vdso}s`));
  assert.equal(Math.round(seedSlowdown('time').ratio), 191);
});

test('published figures reach users by article and year, never by seed number', () => {
  assert.match(seedSlowdown('time').source, /^published: Sysdig blog, 2018, a time\(\) loop/);
  assert.match(seedSlowdown('gettimeofday').source, /^published: Habr, 2018, gettimeofday, KPTI on$/);
  assert.match(seedSlowdown('getcpu').source, /no published getcpu figure/);
  for (const e of ['time', 'gettimeofday', 'getcpu'] as const) assert.doesNotMatch(seedSlowdown(e).source, /seed/i);
});
