// Measures one 64-bit path in this process: generate its loop, calibrate the call count to a time
// budget, warm up, then R timed repeats (min as seed 004 reports, median, p95), and check one call's
// result against real system calls made just before and after (test_vsyscall.c's bracketing).
import { VsysError } from '../errors.js';
import { findVdsoSymbol, readVdso, type VdsoImage } from '../host/vdso.js';
import { addressOf, ExecPage } from '../native/memory.js';
import { currentCpu, lookupSymbol } from '../native/libc.js';
import { BUF_SIZE, loopCode, RESULT_OFFSET, tscStub, type LoopSpec } from './loop-code.js';
import type { BenchPath } from './paths.js';

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
    free() {
      page.free();
      low?.free();
    },
  };
}

let clockLoop: Loop | undefined;

/** CLOCK_REALTIME through a real `syscall` instruction (never the vDSO), in ns. */
function nowNs(): bigint {
  clockLoop ??= buildLoop({
    id: 'bracket', group: 'syscall', label: 'bracket', args: { k: 'clock_gettime', clock: 0 }, invoke: { k: 'syscall', nr: 228 }, check: 'none', risky: false,
  }, false);
  clockLoop.run(1);
  const ts = clockLoop.read(0, 16);
  return ts.readBigInt64LE(0) * 1_000_000_000n + ts.readBigInt64LE(8);
}

/** One call with its result stored, bracketed by real system calls. */
function checkOnce(path: BenchPath): PathResult['check'] {
  if (path.check === 'none') return undefined;
  const loop = buildLoop(path, true);
  try {
    const before = nowNs();
    loop.run(1);
    const after = nowNs();
    const rax = loop.read(RESULT_OFFSET, 8).readBigInt64LE(0);
    switch (path.check) {
      case 'time': {
        // time() reads the coarse clock, updated once a tick: just after a second begins it may
        // still say the last one while the precise bracket says the new one (≤ 10 ms of lag).
        const s = rax;
        const lo = (before - 10_000_000n) / 1_000_000_000n;
        const ok = s >= lo && s <= after / 1_000_000_000n;
        return { ok, detail: `time() = ${s}, between ${lo} and ${after / 1_000_000_000n} from real syscalls (less a tick)` };
      }
      case 'timeval': {
        const b = loop.read(0, 16);
        const t = b.readBigInt64LE(0) * 1_000_000_000n + b.readBigInt64LE(8) * 1000n;
        const ok = rax === 0n && t >= (before / 1000n) * 1000n && t <= after;
        return { ok, detail: `returned ${rax}; tv = ${t / 1000n} µs, bracketed by real syscalls: ${ok ? 'yes' : 'no'}` };
      }
      case 'timespec': {
        const b = loop.read(0, 16);
        const t = b.readBigInt64LE(0) * 1_000_000_000n + b.readBigInt64LE(8);
        // Coarse clocks lag by up to a tick (≤ 10 ms).
        const ok = rax === 0n && t >= before - 10_000_000n && t <= after;
        return { ok, detail: `returned ${rax}; ts bracketed by real syscalls: ${ok ? 'yes' : 'no'}` };
      }
      case 'cpu': {
        const cpu = loop.read(0, 4).readUInt32LE(0);
        const here = currentCpu();
        return { ok: rax === 0n && cpu === here, detail: `getcpu says CPU ${cpu}; sched_getcpu says ${here}` };
      }
      case 'pid': {
        return { ok: Number(rax) === process.pid, detail: `getpid = ${rax}, process.pid = ${process.pid}` };
      }
    }
  } finally {
    loop.free();
  }
  return undefined;
}

/** Measures `path` here. Faulting paths must be called through the child runner, not directly. */
export function measurePathInProcess(path: BenchPath, opts: MeasureOptions): PathResult {
  const base: PathResult = { id: path.id, label: path.label, group: path.group, status: 'measured' };
  const check = checkOnce(path);
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
  const check = checkOnce(path);
  const loop = buildLoop(path, false);
  try {
    const m = loop.run(n);
    return check ? { seconds: m.ns / 1e9, check } : { seconds: m.ns / 1e9 };
  } finally {
    loop.free();
  }
}
