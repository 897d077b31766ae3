// The exporter's series: kernel counts per process folded into counts per label set
// (entry, comm, exe, container, pod, namespace), with a cap on how many label sets exist.
// Pure: the kernel, /proc and prom-client are the callers' business.
import type { ProcessLabels } from './process-labels.js';

export const SERIES_LABELS = ['entry', 'comm', 'exe', 'container', 'pod', 'namespace'] as const;
export type SeriesLabels = Record<(typeof SERIES_LABELS)[number], string>;
export type CountKind = 'emulated' | 'crash';

export interface Series {
  labels: SeriesLabels;
  emulated: number;
  crashes: number;
}

/** A process's kernel count as read: what it counts and its running total. */
export interface ProcessCount {
  tgid: number;
  kind: CountKind;
  entry: string;
  value: number;
}

interface ProcessState {
  labels: ProcessLabels & { comm: string };
  last: Map<string, number>;
  refused: Set<string>;
}

export class SeriesTable {
  readonly series = new Map<string, Series>();
  /** Label sets refused because the cap was reached (once per process and label set). */
  droppedSeries = 0;
  /** Counts not recorded because their label set was refused. */
  readonly droppedCounts: Record<CountKind, number> = { emulated: 0, crash: 0 };
  private readonly processes = new Map<number, ProcessState>();

  constructor(readonly maxSeries: number) {}

  /**
   * Folds the kernel's running totals in: each count adds what it grew by since the last fold.
   * `labelsOf` is asked once per process, the first time it is seen.
   */
  fold(counts: ProcessCount[], labelsOf: (tgid: number) => ProcessLabels & { comm: string }): void {
    for (const c of counts) {
      let p = this.processes.get(c.tgid);
      if (!p) {
        p = { labels: labelsOf(c.tgid), last: new Map(), refused: new Set() };
        this.processes.set(c.tgid, p);
      }
      const k = `${c.kind}\0${c.entry}`;
      const delta = c.value - (p.last.get(k) ?? 0);
      p.last.set(k, c.value);
      if (delta > 0) this.add(p, c.kind, c.entry, delta);
    }
  }

  /** Forgets a process that is gone (after its last fold): its id may be reused. */
  forget(tgid: number): void {
    this.processes.delete(tgid);
  }

  get trackedProcesses(): number[] {
    return [...this.processes.keys()];
  }

  private add(p: ProcessState, kind: CountKind, entry: string, delta: number): void {
    const labels: SeriesLabels = { entry, comm: p.labels.comm, exe: p.labels.exe, container: p.labels.container, pod: p.labels.pod, namespace: p.labels.namespace };
    const key = SERIES_LABELS.map((l) => labels[l]).join('\0');
    let s = this.series.get(key);
    if (!s) {
      if (this.series.size >= this.maxSeries) {
        if (!p.refused.has(key)) {
          p.refused.add(key);
          this.droppedSeries++;
        }
        this.droppedCounts[kind] += delta;
        return;
      }
      s = { labels, emulated: 0, crashes: 0 };
      this.series.set(key, s);
    }
    if (kind === 'emulated') s.emulated += delta;
    else s.crashes += delta;
  }
}

/** CPU seconds the emulations of `entry` cost beyond the vDSO call, from this host's figures (ns); undefined without both figures. */
export function emulationCostSeconds(ns: Record<string, number> | undefined, entry: string): number | undefined {
  const emu = ns?.[`vsyscall-${entry}`];
  const vdso = ns?.[`vdso-${entry}`];
  if (emu === undefined || vdso === undefined) return undefined;
  return Math.max(0, emu - vdso) / 1e9;
}
