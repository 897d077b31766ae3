// Child process for paths that can fault (the vsyscall page, int 0x80): measures one path and
// prints its result as JSON. If the path faults, this process dies and the parent reports why.
import { BENCH_PATHS, type BenchPath } from './paths.js';
import { measurePathInProcess, runFixedInProcess } from './measure-path.js';
import { pinToCpu } from '../native/libc.js';

/** A path that always faults: a call to address 0x10. The tests use it to prove faults are contained. */
export const FAULT_PATH: BenchPath = {
  id: 'fault-test', group: 'vsyscall', label: 'deliberate fault (call 0x10)', args: { k: 'none' }, invoke: { k: 'address', address: 0x10n }, check: 'none', risky: true,
};

const [id, budget, repeats, cpu] = process.argv.slice(2);
const path = id === FAULT_PATH.id ? FAULT_PATH : BENCH_PATHS.find((p) => p.id === id);
if (!path) {
  process.stderr.write(`bench-child: unknown path ${String(id)}\n`);
  process.exitCode = 2;
} else {
  if (cpu !== undefined && cpu !== '') pinToCpu(Number(cpu));
  // `n=COUNT` runs exactly COUNT calls once (the AppNexus scenario); otherwise a time budget in ms.
  const r = budget?.startsWith('n=') ? runFixedInProcess(path, Number(budget.slice(2))) : measurePathInProcess(path, { budgetMs: Number(budget), repeats: Number(repeats) });
  process.stdout.write(JSON.stringify(r) + '\n');
}
