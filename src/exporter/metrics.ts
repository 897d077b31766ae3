// The exporter's metrics in prom-client's registry; their values are taken at scrape time from the
// series table, the host's mode and its bench figures (README, "vsys exporter").
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { SERIES_LABELS, emulationCostSeconds, type SeriesTable } from './series.js';
import type { ProcessScan } from './process-scan.js';

export interface MetricsSources {
  mode: string;
  kernel: string;
  version: string;
  table: SeriesTable;
  /** This host's figures (ns per call by path id), once known. */
  figures: () => Record<string, number> | undefined;
  /** Brings the table up to date with the kernel (called at each scrape). */
  refresh: () => void;
  /** Counts the kernel could not keep (a full map) and program runs it skipped. */
  kernelDropped: () => { counts: number; skipped: number };
  /** What counts crashes here, for vsys_exporter_hook. */
  hooks: Record<string, string>;
  /** The last periodic scan of the running processes, once one has run. */
  processScan?: () => ProcessScan | undefined;
}

export function makeRegistry(s: MetricsSources): Registry {
  const registry = new Registry();
  // The exporter's own process (prom-client's standard process_* and nodejs_* metrics: resident
  // memory, heap, CPU, event-loop lag), as every exporter serves them, so its memory limit can be watched.
  collectDefaultMetrics({ register: registry });
  // Less three gauges named like counters, which promtool's lint refuses; their per-type
  // breakdowns (nodejs_active_handles{type}, …) stay.
  for (const m of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(m);
  const labelNames = [...SERIES_LABELS];
  new Gauge({ name: 'vsys_vsyscall_mode', help: "1 for this host's vsyscall mode", labelNames: ['mode'], registers: [registry], collect() {
    this.reset();
    this.set({ mode: s.mode }, 1);
  } });
  new Gauge({ name: 'vsys_info', help: 'the kernel and the vsys version of this exporter', labelNames: ['kernel', 'version'], registers: [registry], collect() {
    this.reset();
    this.set({ kernel: s.kernel, version: s.version }, 1);
  } });
  new Gauge({ name: 'vsys_syscall_path_seconds', help: "this host's cost of one call by each path (vsys bench, minimum over repeats)", labelNames: ['path'], registers: [registry], collect() {
    this.reset();
    for (const [path, ns] of Object.entries(s.figures() ?? {})) this.set({ path }, ns / 1e9);
  } });
  // The counters' values are the table's running totals, set at each scrape (first in the
  // registry's order, so the others see the same fold).
  new Counter({ name: 'vsys_vsyscall_emulated_total', help: 'calls of the vsyscall page the kernel emulated, exactly (tracepoint emulate_vsyscall)', labelNames, registers: [registry], collect() {
    s.refresh();
    this.reset();
    for (const x of s.table.series.values()) if (x.emulated) this.inc(x.labels, x.emulated);
  } });
  new Counter({ name: 'vsys_vsyscall_crashes_total', help: 'processes killed by a SIGSEGV the vsyscall page caused', labelNames, registers: [registry], collect() {
    this.reset();
    for (const x of s.table.series.values()) if (x.crashes) this.inc(x.labels, x.crashes);
  } });
  new Counter({ name: 'vsys_vsyscall_emulation_cpu_seconds_total', help: "CPU time the emulations cost beyond vDSO calls: calls × (emulated − vDSO) from this host's figures", labelNames, registers: [registry], collect() {
    this.reset();
    const f = s.figures();
    for (const x of s.table.series.values()) {
      const cost = emulationCostSeconds(f, x.labels.entry);
      if (x.emulated && cost !== undefined) this.inc(x.labels, x.emulated * cost);
    }
  } });
  new Counter({ name: 'vsys_exporter_dropped_series_total', help: 'label sets not exported because --max-series was reached (once per process and label set)', registers: [registry], collect() {
    this.reset();
    this.inc(s.table.droppedSeries);
  } });
  new Counter({ name: 'vsys_exporter_dropped_counts_total', help: 'emulations and crashes not exported: their series was over --max-series (reason series), the kernel map was full (map_full), or the kernel skipped the program (skipped)', labelNames: ['reason', 'kind'], registers: [registry], collect() {
    this.reset();
    const k = s.kernelDropped();
    this.inc({ reason: 'series', kind: 'emulated' }, s.table.droppedCounts.emulated);
    this.inc({ reason: 'series', kind: 'crash' }, s.table.droppedCounts.crash);
    this.inc({ reason: 'map_full', kind: 'any' }, k.counts);
    this.inc({ reason: 'skipped', kind: 'any' }, k.skipped);
  } });
  new Gauge({ name: 'vsys_exporter_hook', help: 'the kernel hook counting each kind of event on this host', labelNames: ['kind', 'hook'], registers: [registry], collect() {
    this.reset();
    for (const [kind, hook] of Object.entries(s.hooks)) this.set({ kind, hook }, 1);
  } });
  new Gauge({ name: 'vsys_running_programs_using_vsyscall', help: 'running processes whose mapped files would not be ok under vsyscall=none (the worst of them: crash, review, fallback), from the last periodic scan --processes', labelNames: [...PROCESS_SCAN_LABELS], registers: [registry], collect() {
    this.reset();
    for (const u of s.processScan?.()?.uses ?? []) this.set(u.labels, u.processes);
  } });
  new Gauge({ name: 'vsys_process_scan_seconds', help: 'how long the last periodic scan of the running processes took', registers: [registry], collect() {
    this.reset();
    const p = s.processScan?.();
    if (p) this.set(p.seconds);
  } });
  new Gauge({ name: 'vsys_process_scan_timestamp_seconds', help: 'when the last periodic scan of the running processes ended (Unix time)', registers: [registry], collect() {
    this.reset();
    const p = s.processScan?.();
    if (p) this.set(p.at);
  } });
  return registry;
}

const PROCESS_SCAN_LABELS = ['comm', 'exe', 'container', 'pod', 'namespace', 'outcome'] as const;
