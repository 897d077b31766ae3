// Measures the 32-bit kernel entry paths (int 0x80, sysenter, __kernel_vsyscall, the i386 vDSO) by
// generating tiny static i386 programs, running each in its own child and reading its TSC deltas.
// Conventions follow the i386 psABI, the auxiliary vector of the ELF loader (AT_SYSINFO = 32,
// AT_SYSINFO_EHDR = 33) and arch/x86/entry/vdso/vdso32/system_call.S for the sysenter stub.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VsysError } from '../errors.js';
import { Asm } from '../x86/assemble.js';
import { parseVdsoImage } from '../host/vdso-parse.js';
import { ByteReader } from '../elf/bytes.js';
import { buildI386Elf, I386_BSS_ADDRESS, I386_CODE_ADDRESS } from './i386-elf.js';

export type I386Path = 'int80' | 'sysenter' | 'kernel-vsyscall' | 'vdso32-gettimeofday' | 'vdso32-clock_gettime';
export const I386_PATHS: readonly I386Path[] = ['int80', 'sysenter', 'kernel-vsyscall', 'vdso32-gettimeofday', 'vdso32-clock_gettime'];

export type I386Result = { cyclesPerCall: number[]; check?: string } | { unavailable: string };

export interface I386Options {
  /** Calls per timed repeat (1..1e9). */
  iterations: number;
  /** Timed repeats, one cycles-per-call figure each (1..1000). */
  repeats: number;
  /** Per child process; default 60 s. */
  timeoutMs?: number;
}

export const NO_IA32 = 'this kernel cannot run 32-bit programs (no IA32 emulation)';
export const SYSENTER_AMD = 'sysenter is not usable in compat mode on AMD CPUs (SIGILL)';

// i386 syscall numbers (arch/x86/entry/syscalls/syscall_32.tbl).
const NR_WRITE = 4;
const NR_GETPID = 20;
const NR_EXIT_GROUP = 252;
const AT_SYSINFO = 32;
const AT_SYSINFO_EHDR = 33;
const CLOCK_MONOTONIC = 1;
const PAGE = 4096;

// What every generated program writes first, as u32 words at the start of its bss; timed
// repeats follow as (start lo, start hi, end lo, end hi) TSC words.
const H = { magic: 0, status: 4, sysinfo: 8, ehdr: 12, ret: 16, out0: 20, out1: 24, fn: 28, size: 32 } as const;
const MAGIC = 0x56535953; // "SYSV" read as bytes: a sanity mark for the parent
const STATUS = { ok: 0, noSysinfo: 1, noEhdr: 2 } as const;
const ROUND = 16;

/** What a call does between the timing reads; `needs` says which auxv entry it depends on. */
interface Body {
  needs?: 'sysinfo' | 'ehdr';
  /** Offset of the vDSO function from the vDSO base (for 'ehdr'). */
  vdsoOffset?: number;
  emit(a: Asm): void;
}

/** Labels must be unique within one program. */
let labelSeq = 0;
const uid = (s: string) => `${s}_${++labelSeq}`;

/** Finds AT_SYSINFO and AT_SYSINFO_EHDR on the initial stack: argc, argv[], NULL, envp[], NULL, auxv pairs. */
function emitPrologue(a: Asm): void {
  const env = uid('env'), aux = uid('aux'), notSysinfo = uid('ns'), next = uid('next'), done = uid('auxdone');
  a.movImm('edi', I386_BSS_ADDRESS).storeImm32({ base: 'edi', disp: H.magic }, MAGIC);
  a.load('eax', { base: 'esp' }).shlImm('eax', 2).add_('eax', 'esp').addImm('eax', 8); // &envp[0]
  a.label(env).load('ecx', { base: 'eax' }).addImm('eax', 4).test('ecx', 'ecx').jnz(env);
  a.label(aux).load('ecx', { base: 'eax' }).test('ecx', 'ecx').jcc('e', done);
  a.cmpImm('ecx', AT_SYSINFO).jcc('ne', notSysinfo);
  a.load('edx', { base: 'eax', disp: 4 }).store({ base: 'edi', disp: H.sysinfo }, 'edx');
  a.label(notSysinfo).cmpImm('ecx', AT_SYSINFO_EHDR).jcc('ne', next);
  a.load('edx', { base: 'eax', disp: 4 }).store({ base: 'edi', disp: H.ehdr }, 'edx');
  a.label(next).addImm('eax', 8).jmp(aux);
  a.label(done);
  // The stack is 16-aligned at entry; keep it so at every call the psABI way (two pushed args + 8).
  a.subImm('esp', 8);
}

/** write(1, ptr, len) until done; jumps to `fail` on an error or a zero-byte write. Clobbers eax–edx, esi. */
function emitWriteAll(a: Asm, ptr: 'edi' | 'ecx', len: number, fail: string): void {
  const loop = uid('write');
  if (ptr === 'edi') a.mov('ecx', 'edi');
  a.movImm('esi', len);
  a.label(loop).movImm('eax', NR_WRITE).movImm('ebx', 1).mov('edx', 'esi').int(0x80);
  a.test('eax', 'eax').jcc('e', fail);
  a.cmpImm('eax', -4095).jcc('ae', fail); // -4095..-1: errno
  a.add_('ecx', 'eax').sub('esi', 'eax').jnz(loop);
}

function emitExit(a: Asm, status: number): void {
  a.movImm('eax', NR_EXIT_GROUP).movImm('ebx', status).int(0x80);
}

function emitTSC(a: Asm): void {
  a.lfence().rdtsc().lfence();
}

/** The timing program: prologue, prerequisite check, warm-up, `repeats` timed rounds, write, exit. */
function timingProgram(body: Body, iterations: number, repeats: number): Uint8Array {
  const a = new Asm(32);
  const out = uid('out'), exit = uid('exit');
  const size = H.size + repeats * ROUND;
  emitPrologue(a);
  if (body.needs) {
    const ok = uid('have');
    a.load('ecx', { base: 'edi', disp: body.needs === 'sysinfo' ? H.sysinfo : H.ehdr }).test('ecx', 'ecx').jnz(ok);
    a.storeImm32({ base: 'edi', disp: H.status }, body.needs === 'sysinfo' ? STATUS.noSysinfo : STATUS.noEhdr).jmp(out);
    a.label(ok);
    // The vDSO's address is randomized per process; the function's offset from its base is not.
    if (body.needs === 'ehdr') a.addImm('ecx', body.vdsoOffset ?? 0).store({ base: 'edi', disp: H.fn }, 'ecx');
  }
  const warm = uid('warm');
  a.movImm('esi', Math.min(iterations, 1000));
  a.label(warm);
  body.emit(a);
  a.dec('esi').jnz(warm);

  const round = uid('round'), inner = uid('inner');
  a.lea('ebx', { base: 'edi', disp: H.size });
  a.label(round);
  emitTSC(a);
  a.store({ base: 'ebx' }, 'eax').store({ base: 'ebx', disp: 4 }, 'edx');
  a.movImm('esi', iterations);
  a.label(inner);
  body.emit(a);
  a.dec('esi').jnz(inner);
  a.store({ base: 'edi', disp: H.ret }, 'eax');
  emitTSC(a);
  a.store({ base: 'ebx', disp: 8 }, 'eax').store({ base: 'ebx', disp: 12 }, 'edx');
  a.addImm('ebx', ROUND).cmpImm('ebx', I386_BSS_ADDRESS + size).jcc('ne', round);

  a.label(out);
  emitWriteAll(a, 'edi', size, exit);
  a.label(exit);
  emitExit(a, 0);
  // Reached by `call`: the stub of __kernel_vsyscall before its sysenter. The kernel resumes at the
  // vDSO's landing pad (it uses ebp as the user stack), which pops ebp, edx, ecx and returns to our caller.
  a.label('sysenter_stub').push('ecx').push('edx').push('ebp').mov('ebp', 'esp').sysenter();
  a.hlt();
  return buildI386Elf(a.assemble(BigInt(I386_CODE_ADDRESS)), { bssSize: align(size, PAGE) });
}

/** The probe: writes its header and `pages` pages of its vDSO (stopping at the first unreadable one), then reads the TSC. */
function probeProgram(pages: number): Uint8Array {
  const a = new Asm(32);
  const exit = uid('exit'), dumped = uid('dumped'), page = uid('page'), header = uid('header');
  emitPrologue(a);
  a.load('ecx', { base: 'edi', disp: H.ehdr }).test('ecx', 'ecx').jnz(header);
  a.storeImm32({ base: 'edi', disp: H.status }, STATUS.noEhdr);
  a.label(header);
  emitWriteAll(a, 'edi', H.size, exit);
  a.load('ecx', { base: 'edi', disp: H.ehdr }).test('ecx', 'ecx').jcc('e', dumped);
  a.movImm('ebp', pages);
  a.label(page);
  emitWriteAll(a, 'ecx', PAGE, dumped);
  a.dec('ebp').jnz(page);
  a.label(dumped);
  // Last, so that output already written shows the fault (CR4.TSD) came from rdtsc.
  emitTSC(a);
  a.label(exit);
  emitExit(a, 0);
  return buildI386Elf(a.assemble(BigInt(I386_CODE_ADDRESS)), { bssSize: PAGE });
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

const BODIES: Record<I386Path, (vdsoOffset?: number) => Body> = {
  int80: () => ({ emit: (a) => a.movImm('eax', NR_GETPID).int(0x80) }),
  'kernel-vsyscall': () => ({ needs: 'sysinfo', emit: (a) => a.movImm('eax', NR_GETPID).callMem({ base: 'edi', disp: H.sysinfo }) }),
  // The landing pad is in the vDSO, so sysenter needs it mapped as much as __kernel_vsyscall does.
  sysenter: () => ({ needs: 'sysinfo', emit: (a) => a.movImm('eax', NR_GETPID).call('sysenter_stub') }),
  // cdecl: arguments pushed right to left, the caller pops them; eax, ecx, edx are clobbered.
  'vdso32-gettimeofday': (vdsoOffset) => ({
    needs: 'ehdr', vdsoOffset,
    emit: (a) => a.xor('eax', 'eax').push('eax').lea('eax', { base: 'edi', disp: H.out0 }).push('eax')
      .callMem({ base: 'edi', disp: H.fn }).addImm('esp', 8),
  }),
  'vdso32-clock_gettime': (vdsoOffset) => ({
    needs: 'ehdr', vdsoOffset,
    emit: (a) => a.lea('eax', { base: 'edi', disp: H.out0 }).push('eax').movImm('eax', CLOCK_MONOTONIC).push('eax')
      .callMem({ base: 'edi', disp: H.fn }).addImm('esp', 8),
  }),
};

export type I386Run =
  | { kind: 'exit'; status: number; stdout: Buffer; pid: number }
  | { kind: 'signal'; signal: string; stdout: Buffer; pid: number }
  | { kind: 'timeout'; ms: number }
  /** `stage` says whether writing the temp file or exec failed. */
  | { kind: 'spawn-failed'; stage: 'write' | 'exec'; code: string; message: string };

/** Writes `elf` to a private temp dir, runs it with no arguments and no shell, and removes it again. */
export function runI386(elf: Uint8Array, timeoutMs = 60_000): Promise<I386Run> {
  let dir: string | undefined;
  let file: string;
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-i386-'));
    file = path.join(dir, 'prog');
    fs.writeFileSync(file, elf, { mode: 0o755 });
    fs.chmodSync(file, 0o755); // the umask may have cleared bits of `mode`
  } catch (e) {
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
    const err = e as NodeJS.ErrnoException;
    return Promise.resolve({ kind: 'spawn-failed', stage: 'write', code: err.code ?? 'UNKNOWN', message: `cannot write the program under ${os.tmpdir()}: ${err.message}` });
  }
  const tmp = dir;
  return new Promise<I386Run>((resolve) => {
    let settled = false;
    const chunks: Buffer[] = [];
    let bytes = 0;
    const finish = (r: I386Run) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fs.rmSync(tmp, { recursive: true, force: true });
      resolve(r);
    };
    const child = spawn(file, [], { stdio: ['ignore', 'pipe', 'ignore'], env: {} });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish({ kind: 'timeout', ms: timeoutMs });
    }, timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      if (bytes < 16 << 20) chunks.push(d);
      bytes += d.length;
    });
    child.on('error', (e: NodeJS.ErrnoException) => finish({ kind: 'spawn-failed', stage: 'exec', code: e.code ?? 'UNKNOWN', message: e.message }));
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(chunks);
      const pid = child.pid ?? -1;
      if (signal) finish({ kind: 'signal', signal, stdout, pid });
      else finish({ kind: 'exit', status: code ?? -1, stdout, pid });
    });
  });
}

/** Why a run gave no usable output, or undefined when it exited 0. */
export function describeI386Failure(run: I386Run): string | undefined {
  switch (run.kind) {
    case 'exit': return run.status === 0 ? undefined : `the 32-bit program exited with status ${run.status}`;
    case 'signal': return `the 32-bit program died of ${run.signal}`;
    case 'timeout': return `the 32-bit program did not finish within ${run.ms} ms`;
    case 'spawn-failed':
      if (run.stage === 'write') return run.message;
      if (run.code === 'ENOEXEC') return NO_IA32;
      if (run.code === 'EACCES') return `cannot execute a file in ${os.tmpdir()} (EACCES: mounted noexec? set TMPDIR)`;
      return `cannot start the 32-bit program: ${run.message}`;
  }
}

interface Header {
  status: number; sysinfo: number; ehdr: number; ret: number; out0: number; out1: number;
}

function readHeader(out: Buffer): Header | undefined {
  if (out.length < H.size || out.readUInt32LE(H.magic) !== MAGIC) return undefined;
  const u = (o: number) => out.readUInt32LE(o);
  return { status: u(H.status), sysinfo: u(H.sysinfo), ehdr: u(H.ehdr), ret: u(H.ret), out0: u(H.out0), out1: u(H.out1) };
}

function checkArgs(o: I386Options): void {
  if (!Number.isSafeInteger(o.iterations) || o.iterations < 1 || o.iterations > 1e9) {
    throw new VsysError('USAGE', `measureI386: iterations ${o.iterations} must be an integer in 1..1e9`);
  }
  if (!Number.isSafeInteger(o.repeats) || o.repeats < 1 || o.repeats > 1000) {
    throw new VsysError('USAGE', `measureI386: repeats ${o.repeats} must be an integer in 1..1000`);
  }
  if (o.timeoutMs !== undefined && !(o.timeoutMs > 0)) {
    throw new VsysError('USAGE', `measureI386: timeoutMs ${o.timeoutMs} must be positive`);
  }
}

/** Cycles per call of each repeat from the (start, end) TSC pairs after the header. */
function cyclesFrom(out: Buffer, iterations: number, repeats: number): number[] | undefined {
  if (out.length !== H.size + repeats * ROUND) return undefined;
  const cycles: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const o = H.size + i * ROUND;
    const start = out.readBigUInt64LE(o);
    const end = out.readBigUInt64LE(o + 8);
    cycles.push(Number(end - start) / iterations);
  }
  return cycles;
}

/** Times a caller-supplied 32-bit body (no prerequisites) the way the paths are timed: for baselines and tests. */
export async function measureI386Body(emit: (a: Asm) => void, opts: I386Options): Promise<I386Result> {
  checkArgs(opts);
  const run = await runI386(timingProgram({ emit }, opts.iterations, opts.repeats), opts.timeoutMs);
  const failed = describeI386Failure(run);
  if (failed !== undefined || run.kind !== 'exit') return { unavailable: failed ?? 'no output' };
  const cycles = cyclesFrom(run.stdout, opts.iterations, opts.repeats);
  return cycles ? { cyclesPerCall: cycles } : { unavailable: `the 32-bit program wrote ${run.stdout.length} bytes of output, not ${H.size + opts.repeats * ROUND}` };
}

function cpuVendor(): string | undefined {
  try {
    return /^vendor_id\s*:\s*(\S+)/m.exec(fs.readFileSync('/proc/cpuinfo', 'latin1'))?.[1];
  } catch {
    return undefined;
  }
}

interface Probe {
  /** Set when nothing 32-bit can be measured. */
  unavailable?: string;
  hasSysinfo: boolean;
  /** The vDSO image, or why there is none. */
  vdso: Uint8Array | string;
}

/** Runs the probe until it has dumped all of the vDSO's loaded part (or learned there is none). */
async function probe(timeoutMs: number | undefined): Promise<Probe> {
  let pages = 2;
  for (;;) {
    const run = await runI386(probeProgram(pages), timeoutMs);
    const stdout = run.kind === 'exit' || run.kind === 'signal' ? run.stdout : Buffer.alloc(0);
    const head = readHeader(stdout);
    if (run.kind === 'signal' && head && run.signal === 'SIGSEGV') {
      return { unavailable: 'rdtsc faults in this process (SIGSEGV): reading the TSC is disabled (CR4.TSD, prctl PR_SET_TSC)', hasSysinfo: false, vdso: '' };
    }
    if (run.kind === 'signal' && !head && (run.signal === 'SIGKILL' || run.signal === 'SIGSEGV')) {
      return { unavailable: NO_IA32, hasSysinfo: false, vdso: '' }; // killed during exec
    }
    const failed = describeI386Failure(run);
    if (failed !== undefined) return { unavailable: failed, hasSysinfo: false, vdso: '' };
    if (!head) return { unavailable: `the 32-bit probe wrote ${stdout.length} bytes of unexpected output`, hasSysinfo: false, vdso: '' };
    const hasSysinfo = head.sysinfo !== 0;
    if (head.status === STATUS.noEhdr) return { hasSysinfo, vdso: 'the kernel maps no vDSO into 32-bit processes (no AT_SYSINFO_EHDR; vdso32=0?)' };
    const image = stdout.subarray(H.size);
    const need = loadedSize(image);
    if (typeof need === 'string') return { hasSysinfo, vdso: need };
    if (need <= image.length) return { hasSysinfo, vdso: image.subarray(0, need) };
    if (image.length < pages * PAGE) return { hasSysinfo, vdso: `the vDSO is ${image.length} readable bytes, but its headers describe ${need}` };
    pages = Math.ceil(need / PAGE);
  }
}

/** Bytes from the image base to the end of its last PT_LOAD's file part, or why it cannot be read. */
function loadedSize(image: Uint8Array): number | string {
  try {
    const r = new ByteReader(image, 'vDSO');
    if (!r.has(0, 52) || r.u32(0) !== 0x464c457f || r.u8(4) !== 1) return 'the 32-bit vDSO does not start with an ELF32 header';
    const phoff = r.u32(28), phentsize = r.u16(42), phnum = r.u16(44);
    if (phentsize < 32 || phnum > 64) return `the 32-bit vDSO has implausible program headers (${phnum} × ${phentsize} bytes)`;
    let end = 0;
    for (let i = 0; i < phnum; i++) {
      const p = phoff + i * phentsize;
      if (r.u32(p) === 1) end = Math.max(end, r.u32(p + 4) + r.u32(p + 16));
    }
    if (end === 0 || end > 1 << 20) return `the 32-bit vDSO's PT_LOAD is ${end} bytes`;
    return end;
  } catch (e) {
    return `the 32-bit vDSO could not be read: ${(e as Error).message}`;
  }
}

function vdsoOffset(image: Uint8Array, name: string): number | string {
  try {
    const syms = parseVdsoImage(image, 0n).symbols;
    const s = syms.find((x) => x.name === name && x.type === 'func' && x.version === 'LINUX_2.6')
      ?? syms.find((x) => x.name === name && x.type === 'func' && x.version === null);
    return s ? s.offset : `the 32-bit vDSO has no ${name} (LINUX_2.6)`;
  } catch (e) {
    return `the 32-bit vDSO could not be parsed: ${(e as Error).message}`;
  }
}

const VDSO_SYMBOL = { 'vdso32-gettimeofday': '__vdso_gettimeofday', 'vdso32-clock_gettime': '__vdso_clock_gettime' } as const;

/** Checks what the last call returned against what the parent knows; a string when wrong. */
function verify(p: I386Path, h: Header, pid: number, before: { ms: number; mono: bigint }, after: { ms: number; mono: bigint }): { ok: string } | { wrong: string } {
  if (p === 'int80' || p === 'sysenter' || p === 'kernel-vsyscall') {
    return h.ret === pid ? { ok: `getpid() = ${pid}, the child's pid` } : { wrong: `getpid() returned ${h.ret | 0}, but the child's pid is ${pid}` };
  }
  const [lo, hi, name] = p === 'vdso32-gettimeofday'
    ? [Math.floor(before.ms / 1000) - 1, Math.ceil(after.ms / 1000) + 1, 'gettimeofday tv_sec']
    : [Number(before.mono / 1_000_000_000n) - 1, Number(after.mono / 1_000_000_000n) + 1, 'clock_gettime(CLOCK_MONOTONIC) tv_sec'];
  const frac = p === 'vdso32-gettimeofday' ? 1e6 : 1e9;
  if (h.ret !== 0) return { wrong: `${name.split(' ')[0]} returned ${h.ret | 0}` };
  if (h.out0 < lo || h.out0 > hi || h.out1 >= frac) return { wrong: `${name} = ${h.out0}.${h.out1}, outside the parent's ${lo}..${hi}` };
  return { ok: `${name} ${h.out0} lies within the parent's ${lo}..${hi}` };
}

async function measurePath(p: I386Path, body: Body, o: I386Options, vendor: string | undefined): Promise<I386Result> {
  const elf = timingProgram(body, o.iterations, o.repeats);
  const before = { ms: Date.now(), mono: process.hrtime.bigint() };
  const run = await runI386(elf, o.timeoutMs);
  const after = { ms: Date.now(), mono: process.hrtime.bigint() };
  if (p === 'sysenter' && run.kind === 'signal' && run.signal === 'SIGILL') {
    return { unavailable: vendor === 'AuthenticAMD' || vendor === 'HygonGenuine' ? SYSENTER_AMD : `sysenter raised SIGILL on this ${vendor ?? 'unknown'} CPU` };
  }
  const failed = describeI386Failure(run);
  if (failed !== undefined || run.kind !== 'exit') return { unavailable: failed ?? 'no output' };
  const h = readHeader(run.stdout);
  if (!h) return { unavailable: 'the 32-bit program wrote no valid header' };
  if (h.status === STATUS.noSysinfo) return { unavailable: 'no AT_SYSINFO in the auxiliary vector: the kernel maps no 32-bit vDSO' };
  if (h.status === STATUS.noEhdr) return { unavailable: 'no AT_SYSINFO_EHDR in the auxiliary vector: the kernel maps no 32-bit vDSO' };
  const cycles = cyclesFrom(run.stdout, o.iterations, o.repeats);
  if (!cycles) return { unavailable: `the 32-bit program wrote ${run.stdout.length} bytes, not ${H.size + o.repeats * ROUND}` };
  const v = verify(p, h, run.pid, before, after);
  return 'wrong' in v ? { unavailable: `wrong result: ${v.wrong}` } : { cyclesPerCall: cycles, check: v.ok };
}

/**
 * Measures every 32-bit path in its own child, one after another. Paths that cannot run here are
 * reported as `unavailable` with the reason; only bad arguments throw.
 */
export async function measureI386(opts: I386Options): Promise<Record<I386Path, I386Result>> {
  checkArgs(opts);
  const all = (reason: string) => Object.fromEntries(I386_PATHS.map((p) => [p, { unavailable: reason }])) as Record<I386Path, I386Result>;
  const pr = await probe(opts.timeoutMs);
  if (pr.unavailable !== undefined) return all(pr.unavailable);
  const vendor = cpuVendor();
  const results = {} as Record<I386Path, I386Result>;
  for (const p of I386_PATHS) {
    if (p === 'vdso32-gettimeofday' || p === 'vdso32-clock_gettime') {
      const off = typeof pr.vdso === 'string' ? pr.vdso : vdsoOffset(pr.vdso, VDSO_SYMBOL[p]);
      results[p] = typeof off === 'string' ? { unavailable: off } : await measurePath(p, BODIES[p](off), opts, vendor);
    } else {
      results[p] = await measurePath(p, BODIES[p](), opts, vendor);
    }
  }
  return results;
}
