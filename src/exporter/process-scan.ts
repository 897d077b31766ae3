// The exporter's periodic `scan --processes`: the files every running process maps, judged as
// `vsys scan` judges them (with their libraries), and the processes counted by what the worst of
// their files would do under vsyscall=none. A static prediction beside the live counts: a program
// that holds a direct call but has not called yet shows here before it shows in the counters.
import { performance } from 'node:perf_hooks';
import { mappedFiles } from '../scan/processes.js';
import { scanPaths } from '../scan/scan.js';
import { releaseScratch } from '../native/file-read.js';
import { OUTCOME_RANK, type Outcome } from '../scan/verdict.js';
import { readProcessLabels, type ProcessLabels } from './process-labels.js';

export interface RunningUse {
  labels: ProcessLabels & { comm: string; outcome: Outcome };
  /** Processes with these labels. */
  processes: number;
}

export interface ProcessScan {
  uses: RunningUse[];
  /** How long the scan took, and when it ended (Unix seconds). */
  seconds: number;
  at: number;
  /** Processes whose maps could not be read, and distinct files judged. */
  unreadable: number;
  files: number;
}

/**
 * Scans the files mapped by every running process; counts the processes whose worst file would not
 * be `ok` under vsyscall=none (crash, review, fallback), by their labels and that outcome.
 */
export async function scanRunningProcesses(procRoot = '/proc'): Promise<ProcessScan> {
  const t0 = performance.now();
  const procs = mappedFiles(procRoot);
  // The next scan is minutes away: its read buffer (as large as the largest file read) is not kept.
  const result = await scanPaths({ paths: procs.files.map((f) => f.hostPath), workers: 0 }).finally(releaseScratch);
  const outcomeOf = new Map(result.files.map((f) => [f.path, f.verdicts.none.outcome]));
  // Each process's worst outcome over the files it maps.
  const worst = new Map<number, { comm: string; outcome: Outcome }>();
  for (const m of procs.files) {
    const o = outcomeOf.get(m.hostPath);
    if (o === undefined || o === 'ok') continue;
    for (const p of m.processes) {
      const w = worst.get(p.pid);
      if (!w || OUTCOME_RANK[o] > OUTCOME_RANK[w.outcome]) worst.set(p.pid, { comm: p.comm, outcome: o });
    }
  }
  const byLabels = new Map<string, RunningUse>();
  for (const [pid, w] of worst) {
    const labels = { comm: w.comm, ...readProcessLabels(pid, procRoot), outcome: w.outcome };
    const key = JSON.stringify(labels);
    const u = byLabels.get(key);
    if (u) u.processes++;
    else byLabels.set(key, { labels, processes: 1 });
  }
  return { uses: [...byLabels.values()], seconds: (performance.now() - t0) / 1000, at: Date.now() / 1000, unreadable: procs.unreadable, files: procs.files.length };
}
