// `vsys bench` as a library: every selected path measured (safe ones here, pinned to one CPU;
// faulting ones in child processes; 32-bit ones by the tiny i386 program), with this host's KPTI and
// vsyscall mode, each path's ratio to the vDSO call of the same function, and the figures saved for
// scan and the doctor.
import os from 'node:os';
import { describeChildEnd, runNodeChild } from '../host/child.js';
import { kptiState, readText, readVulnerabilities } from '../host/facts.js';
import { modeFromMaps } from '../host/vsyscall-mode.js';
import { currentCpu, onCpu, pinToCpu, restoreAffinity } from '../native/libc.js';
import { measurePathInProcess, stats, type PathResult } from './measure-path.js';
import { BENCH_PATHS, selectPaths, type BenchPath } from './paths.js';
import { saveHostFigures } from './host-figures.js';
import { measureI386, type I386Result } from './i386-paths.js';

export interface BenchOptions {
  /** `--paths`: ids or groups, comma-separated. */
  paths?: string;
  /** Timed budget per path, ms. */
  budgetMs?: number;
  repeats?: number;
  /** CPU to pin to; default: the one we are on. */
  cpu?: number;
  /** Save the figures for scan and the doctor (default true). */
  save?: boolean;
  onProgress?: (done: number, total: number, path: BenchPath) => void;
}

/** A path's figures, and how they compare with the vDSO call of the same function when both ran. */
export type BenchResult = PathResult & {
  /** ns (min) of this path over ns (min) of `ratioTo`. */
  ratio?: number;
  /** The vDSO path of the same function (e.g. vdso-gettimeofday for vsyscall-gettimeofday). */
  ratioTo?: string;
};

export interface BenchReport {
  host: { kernel: string; cpu: string; cpus: number; kpti: boolean | null; vsyscallMode: string; clocksource: string | null };
  pinnedCpu: number | null;
  /** TSC ticks per ns, from the 64-bit runs (used to convert the i386 program's ticks). */
  tscGhz: number | null;
  results: BenchResult[];
  budgetMs: number;
  repeats: number;
}

function cpuModel(): string {
  const m = /^model name\s*:\s*(.+)$/m.exec(readText('/proc/cpuinfo') ?? '');
  return m?.[1]?.trim() ?? 'unknown CPU';
}

function unavailable(p: BenchPath, reason: string): PathResult {
  return { id: p.id, label: p.label, group: p.group, status: 'unavailable', reason };
}

/** Why a faulting child died, in the terms of the path. */
function faultReason(p: BenchPath, signal: string | undefined, mode: string): string {
  if (p.group === 'vsyscall') {
    if (mode === 'none') return `unavailable (vsyscall=none): the call dies with ${signal ?? 'a signal'}`;
    return `the call died with ${signal ?? 'a signal'} (vsyscall mode ${mode})`;
  }
  if (p.group === 'int80-64') return `int 0x80 died with ${signal ?? 'a signal'}: no IA32 emulation in this kernel?`;
  return `died with ${signal ?? 'a signal'}`;
}

const CHILD = new URL('./bench-child.js', import.meta.url);

export async function runChildPath(p: BenchPath | { id: string }, budgetMs: number, repeats: number, cpu: number | null): Promise<{ result?: PathResult; signal?: string; detail: string }> {
  const out = await runNodeChild(CHILD, [p.id, String(budgetMs), String(repeats), cpu === null ? '' : String(cpu)], 30_000 + budgetMs * 4);
  if (out.outcome === 'works') return { result: out.result as PathResult, detail: 'ok' };
  if (out.outcome === 'signal') return { signal: out.signal, detail: `killed by ${out.signal}` };
  return { detail: describeChildEnd(out) };
}

async function measureI386Paths(paths: BenchPath[], tscGhz: number | null, repeats: number): Promise<PathResult[]> {
  const got = (await measureI386({ iterations: 20_000, repeats })) as Record<string, I386Result>;
  return paths.map((p) => {
    const which = p.invoke.k === 'i386' ? p.invoke.which : '';
    const r = got[which];
    if (!r) return unavailable(p, 'not measured');
    if ('unavailable' in r) return unavailable(p, r.unavailable);
    const cyc = stats(r.cyclesPerCall);
    const res: PathResult = { id: p.id, label: p.label, group: p.group, status: 'measured', cycles: { min: cyc.min, median: cyc.median }, repeats: r.cyclesPerCall.length, iterations: 20_000 };
    if (tscGhz) {
      res.ns = stats(r.cyclesPerCall.map((c) => c / tscGhz));
    } else {
      res.reason = 'TSC rate unknown: cycles only';
    }
    if (r.check) res.check = { ok: !/fail|bad|mismatch/i.test(r.check), detail: r.check };
    return res;
  });
}

/**
 * Each result's ratio to the vDSO call of the same function, when both were measured. The twin is
 * measured here when it was not asked for (a short run), so `--paths vsyscall` still has its ratios.
 */
export function likeForLike(results: PathResult[], extra: PathResult[] = []): BenchResult[] {
  const twinOf = new Map(BENCH_PATHS.map((p) => [p.id, p.vdsoTwin]));
  const byId = new Map([...extra, ...results].map((r) => [r.id, r]));
  return results.map((r) => {
    const twin = twinOf.get(r.id);
    const t = twin ? byId.get(twin) : undefined;
    return r.ns && t?.ns && twin ? { ...r, ratio: r.ns.min / t.ns.min, ratioTo: twin } : r;
  });
}

export async function runBench(opts: BenchOptions = {}): Promise<BenchReport> {
  const budgetMs = opts.budgetMs ?? 300;
  const repeats = opts.repeats ?? 7;
  const paths = selectPaths(opts.paths);
  const mode = modeFromMaps(readText('/proc/self/maps') ?? '').says ?? 'unknown';
  const modeName = mode === 'emulate-or-native' ? 'emulate' : String(mode);
  const cpu = opts.cpu ?? currentCpu();
  const progress = { done: 0, total: paths.length, say: (p: BenchPath) => opts.onProgress?.(progress.done++, progress.total, p) };
  // Safe paths in this process, pinned; those that can kill it (the page, int 0x80…) in a child each.
  const results = onCpu(cpu, () => paths.filter((x) => !x.risky).map((p) => {
    progress.say(p);
    try {
      return measurePathInProcess(p, { budgetMs, repeats });
    } catch (e) {
      return unavailable(p, (e as Error).message);
    }
  }));
  for (const p of paths.filter((x) => x.risky && x.group !== 'i386')) {
    progress.say(p);
    const c = await runChildPath(p, budgetMs, repeats, cpu);
    results.push(c.result ?? unavailable(p, c.signal ? faultReason(p, c.signal, modeName) : c.detail));
  }
  const i386 = paths.filter((x) => x.group === 'i386');
  const tscGhz = tscRate(results, i386.length > 0);
  if (i386.length) {
    opts.onProgress?.(progress.done, progress.total, i386[0] as BenchPath);
    // The 32-bit programs inherit this thread's affinity: pin while they run.
    const saved = pinToCpu(cpu);
    try {
      results.push(...(await measureI386Paths(i386, tscGhz, repeats)));
    } finally {
      restoreAffinity(saved);
    }
  }
  const order = new Map(paths.map((p, i) => [p.id, i]));
  results.sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0));
  const withRatio = likeForLike(results, measureTwins(results, cpu, Math.min(budgetMs, 100), repeats));
  if (opts.save !== false) {
    const ns: Record<string, number> = {};
    for (const r of results) if (r.status === 'measured' && r.ns) ns[r.id] = r.ns.min;
    saveHostFigures(ns);
  }
  const kpti = kptiState(readVulnerabilities(), null, null);
  return {
    host: {
      kernel: os.release(), cpu: cpuModel(), cpus: os.availableParallelism(), kpti: kpti.enabled, vsyscallMode: modeName,
      clocksource: readText('/sys/devices/system/clocksource/clocksource0/current_clocksource')?.trim() ?? null,
    },
    pinnedCpu: cpu, tscGhz, results: withRatio, budgetMs, repeats,
  };
}

/**
 * The TSC rate from what ran here: ticks / ns, the median over the measured paths. When only
 * 32-bit paths were asked for (`needed`), a short 64-bit loop is timed to learn it.
 */
function tscRate(results: PathResult[], needed: boolean): number | null {
  const withCycles = results.filter((r) => r.cycles && r.ns && r.cycles.min > 0);
  const rates = withCycles.map((r) => (r.cycles as { min: number }).min / (r.ns as { min: number }).min).sort((a, b) => a - b);
  if (rates.length) return rates[rates.length >> 1] as number;
  if (!needed) return null;
  try {
    const cal = measurePathInProcess(selectPaths('syscall-getpid')[0] as BenchPath, { budgetMs: 30, repeats: 3 });
    return cal.cycles && cal.ns ? cal.cycles.min / cal.ns.min : null;
  } catch {
    return null;
  }
}

/** The vDSO twins of measured rows that were not asked for: measured briefly, used for the ratios only. */
function measureTwins(results: PathResult[], cpu: number, budgetMs: number, repeats: number): PathResult[] {
  const have = new Set(results.map((r) => r.id));
  const missing = [...new Set(results.filter((r) => r.ns).map((r) => BENCH_PATHS.find((p) => p.id === r.id)?.vdsoTwin).filter((t): t is string => !!t && !have.has(t)))];
  if (missing.length === 0) return [];
  return onCpu(cpu, () => {
    const extra: PathResult[] = [];
    for (const id of missing) {
      const p = BENCH_PATHS.find((x) => x.id === id);
      try {
        if (p) extra.push(measurePathInProcess(p, { budgetMs, repeats }));
      } catch {
        // No ratio for its rows: the table says so.
      }
    }
    return extra;
  });
}
