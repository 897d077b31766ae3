// The generated i386 executables against readelf/objdump and the real kernel, and the 32-bit path
// measurements against the child's pid, the parent's clocks and a gcc -m32 loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Asm } from '../../src/x86/assemble.js';
import { VsysError } from '../../src/errors.js';
import { buildI386Elf, I386_BSS_ADDRESS, I386_CODE_ADDRESS, I386_LOAD_ADDRESS } from '../../src/bench/i386-elf.js';
import { measureI386, measureI386Body, SYSENTER_AMD, type I386Result } from '../../src/bench/i386-paths.js';
import { runI386, describeI386Failure, NO_IA32 } from '../../src/bench/i386-run.js';
import { hasCommand } from '../helpers.js';

/** exit_group(42), entered after `pad` bytes of hlt (which would fault if the entry point were wrong). */
function exit42(pad: number): { code: Uint8Array; entryOffset: number } {
  const a = new Asm(32);
  for (let i = 0; i < pad; i++) a.hlt();
  a.movImm('eax', 252).movImm('ebx', 42).int(0x80);
  return { code: a.assemble(BigInt(I386_CODE_ADDRESS)), entryOffset: pad };
}

function withFile<T>(bytes: Uint8Array, fn: (file: string) => T): T {
  const dir = mkdtempSync(path.join(tmpdir(), 'vsys-i386-test-'));
  try {
    const f = path.join(dir, 'prog');
    writeFileSync(f, bytes, { mode: 0o755 });
    return fn(f);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Why 32-bit programs cannot run here, or undefined when they can (probed once, lazily). */
let canRun: Promise<string | undefined> | undefined;
function whyNo32(): Promise<string | undefined> {
  canRun ??= (async () => {
    const { code, entryOffset } = exit42(0);
    const run = await runI386(buildI386Elf(code, { entryOffset }), 10_000);
    if (run.kind === 'exit' && run.status === 42) return undefined;
    return `32-bit programs do not run here: ${describeI386Failure(run) ?? 'exit status ' + (run.kind === 'exit' ? run.status : '?')}`;
  })();
  return canRun;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function cycles(r: I386Result | undefined, name: string): number[] {
  assert.ok(r && 'cyclesPerCall' in r, `${name}: ${JSON.stringify(r)}`);
  assert.ok(r.cyclesPerCall.length > 0);
  for (const c of r.cyclesPerCall) assert.ok(Number.isFinite(c) && c > 0, `${name}: ${c} cycles per call`);
  return r.cyclesPerCall;
}

test('the generated ELF is what readelf and objdump expect: ELF32, EM_386, EXEC, entry as built', { skip: !hasCommand('readelf') && 'readelf not installed' }, () => {
  const { code, entryOffset } = exit42(3);
  const elf = buildI386Elf(code, { entryOffset, bssSize: 8192 });
  withFile(elf, (f) => {
    const r = spawnSync('readelf', ['-W', '-h', '-l', '-S', f], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    assert.equal(r.stderr, '', 'readelf has no warnings');
    const field = (name: string) => new RegExp(`^\\s*${name}:\\s+(.*)$`, 'm').exec(r.stdout)?.[1]?.trim();
    assert.equal(field('Class'), 'ELF32');
    assert.equal(field('Machine'), 'Intel 80386');
    assert.match(field('Type') ?? '', /^EXEC /);
    assert.equal(field('Entry point address'), `0x${(I386_CODE_ADDRESS + 3).toString(16)}`);
    const loads = r.stdout.split('\n').filter((l) => /^\s+LOAD\s/.test(l)).map((l) => l.trim().split(/\s+/));
    assert.deepEqual(loads, [
      ['LOAD', '0x000000', `0x0${I386_LOAD_ADDRESS.toString(16)}`, `0x0${I386_LOAD_ADDRESS.toString(16)}`, `0x${(I386_CODE_ADDRESS - I386_LOAD_ADDRESS + code.length).toString(16).padStart(5, '0')}`, `0x${(I386_CODE_ADDRESS - I386_LOAD_ADDRESS + code.length).toString(16).padStart(5, '0')}`, 'R', 'E', '0x1000'],
      ['LOAD', '0x000000', `0x0${I386_BSS_ADDRESS.toString(16)}`, `0x0${I386_BSS_ADDRESS.toString(16)}`, '0x00000', '0x02000', 'RW', '0x1000'],
    ]);
    assert.match(r.stdout, new RegExp(`\\.text\\s+PROGBITS\\s+0${I386_CODE_ADDRESS.toString(16)}\\s+\\S+\\s+0*${code.length.toString(16)}\\s+00\\s+AX`));
    assert.match(r.stdout, /\.bss\s+NOBITS\s+08148000\s+\S+\s+002000\s+00\s+WA/);
    if (hasCommand('objdump')) {
      const d = execFileSync('objdump', ['-d', '-M', 'intel', f], { encoding: 'utf8' });
      assert.match(d, /file format elf32-i386/);
      assert.match(d, new RegExp(`${(I386_CODE_ADDRESS + 3).toString(16)}:\\s+b8 fc 00 00 00\\s+mov\\s+eax,0xfc`));
    }
  });
  // Without a bss there is one program header and no .bss section.
  const small = buildI386Elf(code, { entryOffset });
  assert.equal(Buffer.from(small).readUInt16LE(44), 1);
  assert.equal(Buffer.from(small).readUInt16LE(48), 3);
});

test('buildI386Elf rejects impossible layouts with coded errors', () => {
  const isUsage = (e: unknown) => e instanceof VsysError && e.code === 'USAGE';
  assert.throws(() => buildI386Elf(new Uint8Array(0), {}), isUsage);
  assert.throws(() => buildI386Elf(new Uint8Array(4), { entryOffset: 4 }), isUsage);
  assert.throws(() => buildI386Elf(new Uint8Array(4), { entryOffset: -1 }), isUsage);
  assert.throws(() => buildI386Elf(new Uint8Array(4), { bssSize: 1.5 }), isUsage);
  assert.throws(() => buildI386Elf(new Uint8Array(I386_BSS_ADDRESS - I386_CODE_ADDRESS + 1), {}), isUsage);
});

test('the kernel runs the generated program from its entry point: exit_group(42) → status 42', async (t) => {
  const why = await whyNo32();
  if (why) return t.skip(why);
  const { code, entryOffset } = exit42(5);
  const run = await runI386(buildI386Elf(code, { entryOffset, bssSize: 4096 }));
  assert.equal(run.kind, 'exit');
  assert.equal(run.kind === 'exit' && run.status, 42);
  // Entered at the hlt padding instead, it faults: the entry point is what decides.
  const wrong = await runI386(buildI386Elf(code, { entryOffset: 0 }));
  assert.deepEqual(wrong.kind === 'signal' && wrong.signal, 'SIGSEGV');
});

test('measureI386: every path measured or explained, checks against the pid and the parent clocks', async (t) => {
  const why = await whyNo32();
  if (why) {
    const r = await measureI386({ iterations: 10, repeats: 1 });
    for (const v of Object.values(r)) assert.ok('unavailable' in v);
    return t.skip(why);
  }
  const opts = { iterations: 2000, repeats: 5 };
  const r = await measureI386(opts);
  const empty = median(cycles(await measureI386Body(() => {}, opts), 'empty loop'));

  const int80 = median(cycles(r.int80, 'int80'));
  assert.ok(r.int80 && 'check' in r.int80);
  assert.match(r.int80.check ?? '', /^getpid\(\) = \d+, the child's pid$/);
  cycles(r['kernel-vsyscall'], 'kernel-vsyscall');
  assert.match(('check' in r['kernel-vsyscall'] && r['kernel-vsyscall'].check) || '', /^getpid\(\) = \d+, the child's pid$/);

  const vendor = /^vendor_id\s*:\s*(\S+)/m.exec(readFileSync('/proc/cpuinfo', 'latin1'))?.[1];
  if (vendor === 'AuthenticAMD' || vendor === 'HygonGenuine') {
    assert.deepEqual(r.sysenter, { unavailable: SYSENTER_AMD });
  } else {
    cycles(r.sysenter, 'sysenter');
    assert.match(('check' in r.sysenter && r.sysenter.check) || '', /^getpid\(\) = \d+, the child's pid$/);
  }

  const gtod = median(cycles(r['vdso32-gettimeofday'], 'vdso32-gettimeofday'));
  assert.match(('check' in r['vdso32-gettimeofday'] && r['vdso32-gettimeofday'].check) || '', /^gettimeofday tv_sec \d+ lies within the parent's \d+\.\.\d+$/);
  const cgt = median(cycles(r['vdso32-clock_gettime'], 'vdso32-clock_gettime'));
  assert.match(('check' in r['vdso32-clock_gettime'] && r['vdso32-clock_gettime'].check) || '', /^clock_gettime\(CLOCK_MONOTONIC\) tv_sec \d+ lies within/);
  // Bracketed as test_vsyscall.c does: an empty loop < a vDSO call < a real kernel entry.
  assert.ok(empty < gtod && gtod < int80, `empty ${empty} < vDSO gettimeofday ${gtod} < int 0x80 ${int80}`);
  assert.ok(empty < cgt && cgt < int80, `empty ${empty} < vDSO clock_gettime ${cgt} < int 0x80 ${int80}`);
  t.diagnostic(`cycles/call: int80 ${int80}, kernel-vsyscall ${median(cycles(r['kernel-vsyscall'], ''))}, vdso32 gettimeofday ${gtod}, clock_gettime ${cgt}, empty ${empty}`);
});

test('a faulting generated program is reported unavailable with its signal, not thrown', async (t) => {
  const why = await whyNo32();
  if (why) return t.skip(why);
  const r = await measureI386Body((a) => a.hlt(), { iterations: 10, repeats: 2 });
  assert.deepEqual(r, { unavailable: 'the 32-bit program died of SIGSEGV' });
  const ud = await measureI386Body((a) => a.int3(), { iterations: 10, repeats: 2 });
  assert.deepEqual(ud, { unavailable: 'the 32-bit program died of SIGTRAP' });
});

test('a hung program is killed at the timeout and reported', async (t) => {
  const why = await whyNo32();
  if (why) return t.skip(why);
  const a = new Asm(32);
  a.label('spin').jmp('spin');
  const run = await runI386(buildI386Elf(a.assemble(BigInt(I386_CODE_ADDRESS)), {}), 300);
  assert.equal(describeI386Failure(run), 'the 32-bit program did not finish within 300 ms');
});

test('measureI386 rejects bad arguments; a missing IA32 emulation is a reason, not an error', async () => {
  const isUsage = (e: unknown) => e instanceof VsysError && e.code === 'USAGE';
  await assert.rejects(measureI386({ iterations: 0, repeats: 1 }), isUsage);
  await assert.rejects(measureI386({ iterations: 10, repeats: 1001 }), isUsage);
  await assert.rejects(measureI386({ iterations: 1.5, repeats: 1 }), isUsage);
  assert.equal(describeI386Failure({ kind: 'spawn-failed', stage: 'exec', code: 'ENOEXEC', message: 'spawn ENOEXEC' }), NO_IA32);
});

test('int 0x80 costs what a gcc -m32 loop measures (within 3×)', async (t) => {
  const why = await whyNo32();
  if (why) return t.skip(why);
  const dir = mkdtempSync(path.join(tmpdir(), 'vsys-i386-gcc-'));
  try {
    const src = path.join(dir, 'int80.c');
    const bin = path.join(dir, 'int80');
    // Freestanding, so no 32-bit libc is needed: the same lfence;rdtsc;lfence bracket and getpid loop.
    writeFileSync(src, `
static inline unsigned long long tsc(void) { unsigned lo, hi; __asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi)); return ((unsigned long long)hi << 32) | lo; }
void _start(void) {
  unsigned long long out[5];
  for (int i = 0; i < 1000; i++) { int r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory"); }
  for (int k = 0; k < 5; k++) {
    unsigned long long t = tsc();
    for (int i = 0; i < 2000; i++) { int r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory"); }
    out[k] = tsc() - t;
  }
  int r;
  __asm__ volatile("int $0x80" : "=a"(r) : "a"(4), "b"(1), "c"(out), "d"(sizeof out) : "memory");
  __asm__ volatile("int $0x80" : : "a"(252), "b"(0));
  for (;;) {}
}
`);
    const cc = spawnSync('gcc', ['-m32', '-O2', '-ffreestanding', '-nostdlib', '-static', '-fno-pie', '-no-pie', src, '-o', bin], { encoding: 'utf8' });
    if (cc.status !== 0) return t.skip(`gcc -m32 cannot build a freestanding program here: ${(cc.stderr || cc.error?.message || '').split('\n')[0]}`);
    const out = execFileSync(bin);
    assert.equal(out.length, 40);
    const c = median([0, 1, 2, 3, 4].map((k) => Number(out.readBigUInt64LE(k * 8)) / 2000));
    const r = await measureI386({ iterations: 2000, repeats: 5 });
    const ours = median(cycles(r.int80, 'int80'));
    t.diagnostic(`int 0x80: vsys ${ours} cycles, gcc -m32 ${c} cycles`);
    assert.ok(ours > c / 3 && ours < c * 3, `vsys ${ours} vs gcc ${c} cycles per int 0x80`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
