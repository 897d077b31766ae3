// Seed 000 reproduced: 10,000,000 time() calls through the vDSO, the syscall instruction and the
// vsyscall page (a child: it may be unavailable), in seconds and as ratios to the vDSO.
import { SEED000_CEP } from '../model/figures.js';
import { runFixedInProcess } from './measure-path.js';
import { BENCH_PATHS, type BenchPath } from './paths.js';
import { runNodeChild } from '../host/child.js';

export interface CepRow {
  id: string;
  label: string;
  seconds?: number;
  ratio?: number;
  reason?: string;
  check?: { ok: boolean; detail: string };
}

export interface CepReport {
  calls: number;
  rows: CepRow[];
  seed: typeof SEED000_CEP;
}

const CHILD = new URL('./bench-child.js', import.meta.url);

export async function runCep(calls: number = SEED000_CEP.calls): Promise<CepReport> {
  const ids = ['vdso-time', 'syscall-time', 'vsyscall-time'];
  const rows: CepRow[] = [];
  for (const id of ids) {
    const p = BENCH_PATHS.find((x) => x.id === id) as BenchPath;
    if (!p.risky) {
      const r = runFixedInProcess(p, calls);
      rows.push({ id, label: p.label, seconds: r.seconds, ...(r.check ? { check: r.check } : {}) });
      continue;
    }
    const out = await runNodeChild(CHILD, [id, `n=${calls}`, '1', ''], 600_000);
    if (out.outcome === 'works') {
      const r = out.result as { seconds: number; check?: CepRow['check'] };
      rows.push({ id, label: p.label, seconds: r.seconds, ...(r.check ? { check: r.check } : {}) });
    } else {
      rows.push({ id, label: p.label, reason: out.outcome === 'signal' ? `killed by ${out.signal} (no callable vsyscall page: vsyscall=none?)` : `${out.outcome}: ${out.stderr.trim().split('\n').pop() ?? ''}` });
    }
  }
  const vdso = rows[0]?.seconds;
  for (const r of rows) if (r.seconds !== undefined && vdso) r.ratio = r.seconds / vdso;
  return { calls, rows, seed: SEED000_CEP };
}
