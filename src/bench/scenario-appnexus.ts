// The AppNexus experiment (seed 000) reproduced: 10,000,000 time() calls through the vDSO, the
// syscall instruction and the vsyscall page (a child: it may be unavailable), in seconds and as
// ratios to the vDSO.
import { SEED000_CEP, SEEDS } from '../model/figures.js';
import { runFixedInProcess } from './measure-path.js';
import { BENCH_PATHS, type BenchPath } from './paths.js';
import { describeChildEnd, runNodeChild } from '../host/child.js';

export interface AppNexusRow {
  id: string;
  label: string;
  seconds?: number;
  /** seconds over the vDSO row's (every row is time(), so the vDSO row is the same call). */
  ratio?: number;
  reason?: string;
  check?: { ok: boolean; detail: string };
}

export interface AppNexusReport {
  calls: number;
  rows: AppNexusRow[];
  /** What the article published, and where. */
  published: { source: string; setup: string; calls: number; seconds: { 'vsyscall-emulated': number; vdso: number } };
}

const CHILD = new URL('./bench-child.js', import.meta.url);

export async function runAppNexus(calls: number = SEED000_CEP.calls): Promise<AppNexusReport> {
  const ids = ['vdso-time', 'syscall-time', 'vsyscall-time'];
  const rows: AppNexusRow[] = [];
  for (const id of ids) {
    const p = BENCH_PATHS.find((x) => x.id === id) as BenchPath;
    if (!p.risky) {
      const r = runFixedInProcess(p, calls);
      rows.push({ id, label: p.label, seconds: r.seconds, ...(r.check ? { check: r.check } : {}) });
      continue;
    }
    const out = await runNodeChild(CHILD, [id, `n=${calls}`, '1', ''], 600_000);
    if (out.outcome === 'works') {
      const r = out.result as { seconds: number; check?: AppNexusRow['check'] };
      rows.push({ id, label: p.label, seconds: r.seconds, ...(r.check ? { check: r.check } : {}) });
    } else {
      rows.push({ id, label: p.label, reason: out.outcome === 'signal' ? `killed by ${out.signal} (no callable vsyscall page: vsyscall=none?)` : describeChildEnd(out) });
    }
  }
  const vdso = rows[0]?.seconds;
  for (const r of rows) if (r.seconds !== undefined && vdso) r.ratio = r.seconds / vdso;
  return {
    calls, rows,
    published: { source: SEEDS.s000.cite, setup: SEEDS.s000.setup, calls: SEED000_CEP.calls, seconds: { ...SEED000_CEP.seconds } },
  };
}
