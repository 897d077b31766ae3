// What one emulated vsyscall time() costs on this host against a vDSO time(): from the figures
// `vsys bench` saved on this boot (host-figures.ts), else measured now and saved for the next caller.
// The measuring modules are loaded only when nothing was saved (the doctor's common case loads none).
import { loadHostFigures, saveHostFigures } from './host-figures.js';

/** What one emulated vsyscall time() costs here against a vDSO time(), and where the figures come from. */
export interface TimeCost {
  emulatedNs: number;
  vdsoNs: number;
  /** When the figures came from a saved `vsys bench` run: its timestamp. */
  savedAt?: string;
}

/**
 * The figures `vsys bench` saved on this boot, else a short measurement now (the vDSO here, the
 * page in a child, which may die: then `error` says why), saved for the next caller.
 */
export async function vsyscallTimeCost(opts: { measure: boolean }): Promise<TimeCost | { error: string } | undefined> {
  const saved = loadHostFigures();
  const emu = saved?.ns['vsyscall-time'];
  const vdso = saved?.ns['vdso-time'];
  if (emu && vdso) return { emulatedNs: emu, vdsoNs: vdso, savedAt: saved.measuredAt };
  if (!opts.measure) return undefined;
  const { BENCH_PATHS } = await import('./paths.js');
  const { measurePathInProcess } = await import('./measure-path.js');
  const { runChildPath } = await import('./run-bench.js');
  const vdsoPath = BENCH_PATHS.find((p) => p.id === 'vdso-time');
  const emuPath = BENCH_PATHS.find((p) => p.id === 'vsyscall-time');
  if (!vdsoPath || !emuPath) return undefined;
  const v = measurePathInProcess(vdsoPath, { budgetMs: 30, repeats: 3 });
  const e = await runChildPath(emuPath, 60, 3, null);
  if (!v.ns || !e.result?.ns) return { error: e.detail };
  saveHostFigures({ 'vdso-time': v.ns.min, 'vsyscall-time': e.result.ns.min });
  return { emulatedNs: e.result.ns.min, vdsoNs: v.ns.min };
}
