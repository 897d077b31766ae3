// `vsys exporter` as a library: the page-only counters, the series table, the host's mode and
// figures, and an HTTP server for /metrics (Prometheus text format, prom-client) and /healthz.
// Steps: figures (saved, or measured in the background), counters, poll timer, server; close()
// undoes them in reverse.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import { loadHostFigures } from '../bench/host-figures.js';
import { runBench } from '../bench/run-bench.js';
import { detectVsyscallMode } from '../host/vsyscall-mode.js';
import { makeRegistry } from './metrics.js';
import { PageCounters } from './page-counters.js';
import { readProcessLabels } from './process-labels.js';
import { SeriesTable } from './series.js';
import { scanRunningProcesses, type ProcessScan } from './process-scan.js';

import { VSYS_VERSION } from '../version.js';

export { VSYS_VERSION };

export interface ExporterOptions {
  host: string;
  port: number;
  /** Cap on label sets of the per-workload metrics. */
  maxSeries?: number;
  /** How often the kernel counts are folded in (and gone processes forgotten), ms. */
  pollMs?: number;
  /** Budget per path of the background bench when no figures are saved, ms. */
  benchBudgetMs?: number;
  /** Told about background work that failed (the bench); the exporter goes on. */
  onWarning?: (message: string) => void;
  /** How often the running processes' mapped files are scanned (ms; default 5 minutes; 0: never). */
  scanIntervalMs?: number;
}

export interface Exporter {
  /** http://HOST:PORT */
  url: string;
  /** Resolves when the background bench is done (at once when figures were saved). */
  figuresReady: Promise<void>;
  /** Resolves with the scan of the running processes under way, or one started now (undefined when scans are off). */
  processScan(): Promise<ProcessScan | undefined>;
  close(): Promise<void>;
}

/** The bench paths the metrics need: each entry emulated and through the vDSO, and the plain syscalls. */
const BENCH_PATHS = 'vsyscall,vdso,syscall';

export async function startExporter(o: ExporterOptions): Promise<Exporter> {
  const mode = (await detectVsyscallMode({ active: false, kernelRelease: os.release() })).mode;
  const state = { figures: loadHostFigures()?.ns };
  const figuresReady = state.figures ? Promise.resolve() : measureFigures(o, state);
  const counters = new PageCounters(mode === 'xonly' || mode === 'emulate');
  try {
    counters.enable();
    const table = new SeriesTable(o.maxSeries ?? 10000);
    const refresh = () => foldCounts(counters, table);
    const scans = new ProcessScanner(o.scanIntervalMs ?? 300_000, o.onWarning);
    const registry = makeRegistry({
      mode, kernel: os.release(), version: VSYS_VERSION, table, refresh,
      figures: () => state.figures, kernelDropped: () => counters.dropped(), hooks: { ...counters.hooks },
      processScan: () => scans.last,
    });
    const timer = setInterval(refresh, o.pollMs ?? 1000);
    timer.unref();
    scans.start();
    const server = await listen(o, registry);
    const a = server.address() as AddressInfo;
    let closed: Promise<void> | undefined;
    return {
      url: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`,
      figuresReady,
      processScan: () => scans.next(),
      close: () => (closed ??= (async () => {
        clearInterval(timer);
        await scans.stop();
        const done = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await done;
        counters.close();
      })()),
    };
  } catch (e) {
    counters.close();
    throw e;
  }
}

/**
 * Kernel counts into the table; processes that are gone are folded a last time, then forgotten in
 * both. A gone process's counts are read again after it was found gone: its last counts (a crash is
 * counted as the signal is delivered, just before it dies) may have come after the first read, and
 * forgetting it with the first read's keys would leave them without the process's name.
 */
export function foldCounts(counters: PageCounters, table: SeriesTable): void {
  const labelsOf = (tgid: number) => ({ comm: counters.commOf(tgid), ...readProcessLabels(tgid) });
  const counts = counters.read();
  table.fold(counts, labelsOf);
  const gone = new Set([...new Set(counts.map((c) => c.tgid))].filter((tgid) => !fs.existsSync(`/proc/${tgid}`)));
  if (gone.size === 0) return;
  const last = counters.read().filter((c) => gone.has(c.tgid));
  table.fold(last, labelsOf);
  const byTgid = new Map<number, Buffer[]>();
  for (const c of last) byTgid.set(c.tgid, [...(byTgid.get(c.tgid) ?? []), c.key]);
  for (const tgid of gone) {
    counters.forget(tgid, byTgid.get(tgid) ?? []);
    table.forget(tgid);
  }
}

async function measureFigures(o: ExporterOptions, state: { figures: Record<string, number> | undefined }): Promise<void> {
  try {
    const r = await runBench({ paths: BENCH_PATHS, budgetMs: o.benchBudgetMs ?? 30, repeats: 3 });
    const ns: Record<string, number> = {};
    for (const x of r.results) if (x.status === 'measured' && x.ns) ns[x.id] = x.ns.min;
    state.figures = ns;
  } catch (e) {
    o.onWarning?.(`background bench failed: ${(e as Error).message}; vsys_syscall_path_seconds and the CPU cost stay empty`);
  }
}

function listen(o: ExporterOptions, registry: ReturnType<typeof makeRegistry>): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (url === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
      );
    } else if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** The periodic scan of the running processes: one at start, then every `intervalMs`, never two at once. */
class ProcessScanner {
  last: ProcessScan | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private waiters: ((p: ProcessScan | undefined) => void)[] = [];
  private stopped = false;

  constructor(private readonly intervalMs: number, private readonly onWarning?: (message: string) => void) {}

  start(): void {
    if (this.intervalMs <= 0) return;
    this.run();
    this.timer = setInterval(() => this.run(), this.intervalMs);
    this.timer.unref();
  }

  /** The scan under way to end, or a new one started now. */
  next(): Promise<ProcessScan | undefined> {
    if (this.intervalMs <= 0 || this.stopped) return Promise.resolve(undefined);
    const p = new Promise<ProcessScan | undefined>((resolve) => this.waiters.push(resolve));
    this.run();
    return p;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  private run(): void {
    if (this.running || this.stopped) return;
    this.running = scanRunningProcesses().then(
      (p) => {
        this.last = p;
        for (const w of this.waiters.splice(0)) w(p);
      },
      (e: Error) => {
        this.onWarning?.(`scan of the running processes failed: ${e.message}`);
        for (const w of this.waiters.splice(0)) w(undefined);
      },
    ).finally(() => {
      this.running = undefined;
    });
  }
}
