// Measures one 64-bit path in this process: generate its loop, calibrate the call count to a time
// budget, warm up, then R timed repeats (min as seed 004 reports, median, p95), and check one call's
// result against real system calls made just before and after (test_vsyscall.c's bracketing).
import { VsysError } from '../errors.js';
import { findVdsoSymbol, readVdso, type VdsoImage } from '../host/vdso.js';
import { addressOf, ExecPage } from '../native/memory.js';
import { lookupSymbol } from '../native/libc.js';
import { CLOCK_IDS, SYS_X86_64 } from '../model/syscalls.js';
import { BUF_SIZE, loopCode, RESULT_OFFSET, tscStub, type LoopSpec } from './loop-code.js';
import type { ArgShape, BenchPath, CheckKind } from './paths.js';
import { judgeCall } from './result-check.js';

export interface Stats {
  min: number;
  median: number;
  p95: number;
}

export interface PathResult {
  id: string;
  label: string;
  group: BenchPath['group'];
  status: 'measured' | 'unavailable';
  /** Why a path could not be measured. */
  reason?: string;
  /** ns per call over the repeats. */
  ns?: Stats;
  /** TSC ticks per call (min, median), when rdtsc was usable. */
  cycles?: { min: number; median: number };
  iterations?: number;
  repeats?: number;
  check?: { ok: boolean; detail: string };
}

export interface MeasureOptions {
  /** Total time to spend on timed repeats, ms. */
  budgetMs: number;
  repeats: number;
}

export function stats(values: number[]): Stats {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
  return { min: s[0] as number, median: at(0.5), p95: at(0.95) };
}

let vdso: VdsoImage | null | undefined;

function targetOf(path: BenchPath): bigint | undefined {
  const inv = path.invoke;
  if (inv.k === 'address') return inv.address;
  if (inv.k === 'vdso') {
    if (vdso === undefined) {
      try {
        vdso = readVdso();
      } catch {
        vdso = null;
      }
    }
    if (!vdso) throw new VsysError('BENCH_FAILED', 'no vDSO in this process');
    const s = findVdsoSymbol(vdso, inv.symbol);
    if (!s) throw new VsysError('BENCH_FAILED', `this kernel's vDSO has no ${inv.symbol}`);
    return s.address;
  }
  if (inv.k === 'libc') {
    const p = lookupSymbol(inv.symbol);
    if (!p) throw new VsysError('BENCH_FAILED', `dlsym(${inv.symbol}) found nothing`);
    return addressOf(p);
  }
  return undefined;
}

function specOf(path: BenchPath, storeResult: boolean, lowBuffer: bigint | undefined): LoopSpec {
  const spec: LoopSpec = { args: path.args, storeResult };
  const inv = path.invoke;
  if (inv.k === 'syscall' || inv.k === 'int80') spec.inline = { k: inv.k, nr: inv.nr };
  else {
    const t = targetOf(path);
    if (t !== undefined) spec.target = t;
  }
  if (lowBuffer !== undefined) spec.fixedBuffer = lowBuffer;
  return spec;
}

let tscRate: number | null | undefined;

/** TSC ticks per ns, measured once against the monotonic clock over ~20 ms; null if rdtsc faults here. */
export function tscGhz(): number | null {
  if (tscRate !== undefined) return tscRate;
  const page = new ExecPage(4096);
  try {
    page.write(tscStub(page.address));
    page.seal();
    const read = () => BigInt(page.call('uint64_t (void)') as bigint | number);
    const t0 = process.hrtime.bigint();
    const c0 = read();
    while (process.hrtime.bigint() - t0 < 20_000_000n) {
      // spin
    }
    const c1 = read();
    const t1 = process.hrtime.bigint();
    tscRate = Number(c1 - c0) / Number(t1 - t0);
  } catch {
    tscRate = null;
  } finally {
    page.free();
  }
  return tscRate;
}

interface Loop {
  run(n: number): { ns: number; ticks: number };
  buffer: Buffer | ExecPage;
  read(offset: number, len: number): Buffer;
  /** Fills the scratch buffer with `byte`. */
  prefill(byte: number): void;
  free(): void;
}

function buildLoop(path: BenchPath, storeResult: boolean): Loop {
  // int 0x80 truncates pointers to 32 bits: its buffer must be mapped below 4 GiB.
  const low = path.invoke.k === 'int80' ? new ExecPage(4096, { low32: true }) : undefined;
  const page = new ExecPage(4096);
  try {
    page.write(loopCode(specOf(path, storeResult, low?.address), page.address));
    page.seal();
  } catch (e) {
    page.free();
    low?.free();
    throw e;
  }
  const buf = Buffer.alloc(BUF_SIZE);
  return {
    buffer: low ?? buf,
    run(n: number) {
      const t0 = process.hrtime.bigint();
      page.call('void (uint64_t, void *)', n, buf);
      const ns = Number(process.hrtime.bigint() - t0);
      return { ns, ticks: ns * (tscGhz() ?? 0) };
    },
    read(offset: number, len: number): Buffer {
      if (!low) return buf.subarray(offset, offset + len);
      return Buffer.from(low.read(offset, len));
    },
    prefill(byte: number) {
      buf.fill(byte);
      low?.write(new Uint8Array(BUF_SIZE).fill(byte));
    },
    free() {
      page.free();
      low?.free();
    },
  };
}

/** Real system calls that answer what a check compares with, one generated loop each, kept for the process. */
const oracleLoops = new Map<string, Loop>();

function oracleLoop(key: string, args: BenchPath['args'], nr: number): Loop {
  let l = oracleLoops.get(key);
  if (!l) {
    l = buildLoop({ id: `oracle-${key}`, group: 'syscall', label: key, args, invoke: { k: 'syscall', nr }, check: 'none', risky: false }, false);
    oracleLoops.set(key, l);
  }
  return l;
}

/** A clock through a real `syscall` instruction (never the vDSO), in ns. */
function clockNs(clock: number): bigint {
  const l = oracleLoop(`clock${clock}`, { k: 'clock_gettime', clock }, SYS_X86_64.clock_gettime);
  l.run(1);
  const ts = l.read(0, 16);
  return ts.readBigInt64LE(0) * 1_000_000_000n + ts.readBigInt64LE(8);
}

/** The CPU getcpu(2) names, through a real `syscall` instruction. */
function cpuNow(): bigint {
  const l = oracleLoop('getcpu', { k: 'getcpu' }, SYS_X86_64.getcpu);
  l.run(1);
  return BigInt(l.read(0, 4).readUInt32LE(0));
}

/** What a check of `path` compares its result with, read once before and once after the call. */
function oracleOf(kind: Exclude<CheckKind, 'none'>, args: ArgShape): () => bigint {
  switch (kind) {
    case 'time':
    case 'timeval':
      return () => clockNs(CLOCK_IDS.REALTIME);
    case 'timespec': {
      const clock = args.k === 'clock_gettime' ? args.clock : CLOCK_IDS.REALTIME;
      return () => clockNs(clock);
    }
    case 'cpu':
    case 'cpu-return':
      return cpuNow;
    case 'pid':
      return () => BigInt(process.pid);
  }
}

/**
 * One call with its result stored, bracketed by what real system calls say just before and after
 * (result-check.ts judges). The buffer is filled with 0xa5 first: a call that writes nothing fails.
 */
export function checkResult(path: BenchPath): PathResult['check'] {
  const kind = path.check;
  if (kind === 'none') return undefined;
  const loop = buildLoop(path, true);
  try {
    const oracle = oracleOf(kind, path.args);
    loop.prefill(0xa5);
    const before = oracle();
    loop.run(1);
    const after = oracle();
    const call = { rax: loop.read(RESULT_OFFSET, 8).readBigInt64LE(0), buf: Buffer.from(loop.read(0, 20)) };
    return judgeCall(kind, call, { before, after });
  } finally {
    loop.free();
  }
}

/** Measures `path` here. Faulting paths must be called through the child runner, not directly. */
export function measurePathInProcess(path: BenchPath, opts: MeasureOptions): PathResult {
  const base: PathResult = { id: path.id, label: path.label, group: path.group, status: 'measured' };
  const check = checkResult(path);
  const loop = buildLoop(path, false);
  try {
    // Calibrate: grow n until one run takes ≥ 2 ms, then size runs to the budget.
    let n = 16;
    let probe = loop.run(n);
    while (probe.ns < 2e6 && n < 1e9) {
      n *= 4;
      probe = loop.run(n);
    }
    const perCall = probe.ns / n;
    const perRepeatNs = (opts.budgetMs * 1e6) / opts.repeats;
    const iterations = Math.max(1, Math.min(2e9, Math.round(perRepeatNs / perCall)));
    loop.run(iterations); // warm-up
    const ns: number[] = [];
    const ticks: number[] = [];
    for (let r = 0; r < opts.repeats; r++) {
      const m = loop.run(iterations);
      ns.push(m.ns / iterations);
      ticks.push(m.ticks / iterations);
    }
    const t = stats(ticks);
    const out: PathResult = { ...base, ns: stats(ns), iterations, repeats: opts.repeats };
    if (t.min > 0) out.cycles = { min: t.min, median: t.median };
    if (check) out.check = check;
    return out;
  } finally {
    loop.free();
  }
}

/** Runs exactly `n` calls of `path` once (seed 000's experiment) and returns the wall seconds. */
export function runFixedInProcess(path: BenchPath, n: number): { seconds: number; check?: PathResult['check'] } {
  const check = checkResult(path);
  const loop = buildLoop(path, false);
  try {
    const m = loop.run(n);
    return check ? { seconds: m.ns / 1e9, check } : { seconds: m.ns / 1e9 };
  } finally {
    loop.free();
  }
}
