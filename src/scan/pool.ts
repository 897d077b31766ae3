// Spreads file analysis over worker threads, and over the calling thread too: files go out in
// batches (a message per file cost more than small files take to analyse), each to the lane with
// the fewest bytes queued. Reading is bound by memory bandwidth and does not scale with threads;
// the decoding, tables and identification do. `workers: 0` analyses everything in this thread.
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import { analyseBuffer, analyseFile, type Inner } from './read-file.js';
import { Imports } from './wire.js';
import type { FileResult } from './types.js';

export interface PoolFile {
  path: string;
  size: number;
  /** A file inside `path` (an entry of an uncompressed image layer): where it starts and its name. */
  inner?: Inner;
}

export interface Pool {
  /**
   * Analyses a batch of files (by path); results in the same order. `workersOnly`: to the worker
   * with the least queued (the caller keeps them fed and takes its own share itself); this thread
   * only when no worker is left.
   */
  analyseFiles(files: PoolFile[], o?: { workersOnly?: boolean }): Promise<FileResult[]>;
  /** Analyses bytes in a worker; the buffer is transferred (unusable here afterwards). */
  analyseBytes(path: string, bytes: Uint8Array): Promise<FileResult>;
  /** Threads analysing batches, the calling one included. */
  readonly lanes: number;
  /** Worker threads that have loaded their code and can take work now (starting them if not yet). */
  readyWorkers(): number;
  close(): Promise<void>;
}

/**
 * Worker threads beside the calling thread, which takes a share of the files itself. None on two
 * CPUs or fewer: there, reading is bound by memory bandwidth, and a worker's start-up and cold JIT
 * cost more than it saves (bench/README.md, "Figures behind the code").
 */
export function defaultWorkers(): number {
  const n = os.availableParallelism();
  return n <= 2 ? 0 : Math.min(8, n - 1);
}

interface Lane {
  queued: number;
  run(files: PoolFile[]): Promise<FileResult[]>;
}

/** The lane with the fewest bytes queued (the first on a tie). */
function leastQueued<T extends Lane>(lanes: T[]): T {
  let best = lanes[0] as T;
  for (const l of lanes) if (l.queued < best.queued) best = l;
  return best;
}

/** A file a dead worker took with it. */
function workerError(path: string, size: number, message: string): FileResult {
  return { kind: 'error', path, size, error: { code: 'INTERNAL_ERROR', message: `${path}: ${message}` } };
}

/** The calling thread as a lane: one batch per turn of the event loop, so workers' messages are seen between batches. */
function localLane(maxBytes: number): Lane {
  let chain: Promise<unknown> = Promise.resolve();
  const lane: Lane = {
    queued: 0,
    run(files) {
      const bytes = files.reduce((a, f) => a + f.size, 0);
      lane.queued += bytes;
      const p = chain.then(
        () =>
          new Promise<FileResult[]>((resolve) =>
            setImmediate(() => {
              const out = files.map((f) => analyseFile(f.path, maxBytes, f.size, f.inner));
              lane.queued -= bytes;
              resolve(out);
            }),
          ),
      );
      chain = p;
      return p;
    },
  };
  return lane;
}

interface WorkerLane extends Lane {
  worker: Worker;
  /** Its code has loaded (the worker said so). */
  ready: boolean;
  /** Set once the worker has died: the lane takes no more work. */
  dead?: string;
  /**
   * Stops the worker. It is kept ref'd until it has exited: an idle worker is unref'd, and a reply
   * arriving meanwhile would unref it again, leaving a caller awaiting this with nothing keeping the
   * event loop alive (the process then ended with the await unsettled, exit code 13).
   */
  stop(): Promise<number>;
  send(msg: Record<string, unknown>, transfer?: ArrayBuffer[]): Promise<unknown>;
}

/**
 * `reroute` analyses files elsewhere in the pool: the batches a dying worker had only queued (it
 * takes messages in order, so all but the oldest outstanding one were never started) go there
 * rather than failing with it.
 */
function workerLane(url: URL, onDeath: (lane: WorkerLane) => void, reroute: (files: PoolFile[]) => Promise<FileResult[]>): WorkerLane {
  const worker = new Worker(url);
  const pending = new Map<number, (r: unknown) => void>();
  let next = 0;
  let stopping = false;
  /** The first message a worker gets carries its settings. */
  const settingsId = 0;
  // An idle worker does not keep the process alive (a pool kept for later scans must not hold a
  // CLI open); one with work outstanding does.
  worker.unref();
  worker.on('message', (m: { id: number; result: unknown; ready?: boolean }) => {
    if (m.ready) {
      lane.ready = true;
      return;
    }
    const done = pending.get(m.id);
    pending.delete(m.id);
    if (pending.size === 0 && !stopping) worker.unref();
    if (m.result && typeof m.result === 'object' && (Array.isArray(m.result) || 'kind' in m.result)) reviveResults(m.result as FileResult | FileResult[]);
    done?.(m.result);
  });
  const fail = (message: string) => {
    // A worker that dies (out of memory on a hostile file, say) fails its outstanding files with a
    // coded error, not the scan, and leaves the pool: later work goes to the other lanes.
    lane.dead ??= message;
    onDeath(lane);
    // The oldest outstanding work message may be the one that killed it: that one fails, never
    // rerouted (it could kill the next thread too). The settings message does not count.
    const oldest = Math.min(...[...pending.keys()].filter((id) => id !== settingsId));
    for (const [id, done] of pending) done(id === oldest ? { failed: `#${id}`, message } : { reroute: true, message });
    pending.clear();
  };
  worker.on('error', (e) => fail(`worker failed: ${e.message}`));
  worker.on('exit', (code) => fail(`worker exited with code ${code}`));
  const lane: WorkerLane = {
    worker,
    ready: false,
    stop() {
      stopping = true;
      worker.ref();
      return worker.terminate();
    },
    queued: 0,
    send(msg, transfer = []) {
      if (lane.dead) return Promise.resolve({ failed: 'dead', message: lane.dead });
      const id = next++;
      return new Promise((resolve) => {
        if (pending.size === 0) worker.ref();
        pending.set(id, resolve);
        worker.postMessage({ id, ...msg }, transfer);
      });
    },
    async run(files) {
      const bytes = files.reduce((a, f) => a + f.size, 0);
      lane.queued += bytes;
      const r = await lane.send({ paths: files.map((f) => f.path), sizes: files.map((f) => f.size), inner: files.map((f) => f.inner) });
      lane.queued -= bytes;
      if (Array.isArray(r)) return r as FileResult[];
      if ((r as { reroute?: boolean }).reroute) return reroute(files);
      const message = (r as { message: string }).message;
      return files.map((f) => workerError(f.inner?.name ?? f.path, f.size, message));
    },
  };
  return lane;
}

/** `workerUrl`: the worker's module (tests use one that can be made to die). */
export function createPool(workers: number, maxBytes: number, o: { workerUrl?: URL } = {}): Pool {
  const local = localLane(maxBytes);
  if (workers <= 0) {
    return {
      lanes: 1,
      readyWorkers: () => 0,
      analyseFiles: (files) => local.run(files),
      analyseBytes: async (p, b) => analyseBuffer(b, p),
      close: async () => {},
    };
  }
  const url = o.workerUrl ?? new URL('./worker.js', import.meta.url);
  let closing = false;
  const threads: WorkerLane[] = [];
  const lanes: Lane[] = [local];
  const retire = (dead: WorkerLane) => {
    for (const list of [threads, lanes] as Lane[][]) {
      const i = list.indexOf(dead);
      if (i >= 0) list.splice(i, 1);
    }
  };
  for (let i = 0; i < workers; i++) {
    const t = workerLane(url, retire, (files) => leastQueued(lanes).run(files));
    threads.push(t);
    lanes.push(t);
    void t.send({ maxBytes }); // settings first; messages arrive in order
  }
  return {
    get lanes() {
      return lanes.length;
    },
    readyWorkers: () => threads.filter((t) => t.ready).length,
    analyseFiles(files, how) {
      if (how?.workersOnly && threads.length > 0) {
        const ready = threads.filter((t) => t.ready);
        return leastQueued(ready.length > 0 ? ready : threads).run(files);
      }
      return leastQueued(lanes).run(files);
    },
    async analyseBytes(path, bytes) {
      if (threads.length === 0) return analyseBuffer(bytes, path); // every worker died: this thread
      // Own the memory outright so it can be transferred, not copied.
      const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer) ? bytes : bytes.slice();
      const best = leastQueued(threads);
      best.queued += own.byteLength;
      const r = await best.send({ path, bytes: own }, [own.buffer as ArrayBuffer]);
      best.queued -= own.byteLength;
      // A dead worker's bytes went with it (they were transferred): a coded error for this file.
      if (r && typeof r === 'object' && ('failed' in r || 'reroute' in r)) return workerError(path, own.byteLength, (r as unknown as { message: string }).message);
      return r as FileResult;
    },
    async close() {
      if (closing) return;
      closing = true;
      await Promise.all([...threads].map((t) => t.stop()));
    },
  };
}

const shared = new Map<string, Pool>();

/**
 * A pool kept for the process: later scans find its workers started and their code compiled (a
 * cold worker spends a noticeable part of a scan compiling before it runs at speed). Its workers start on its first
 * use, not before, and when idle do not keep the process alive. One per (workers, maxBytes);
 * `close` on it does nothing.
 */
export function sharedPool(workers: number, maxBytes: number): Pool {
  const key = `${workers}:${maxBytes}`;
  let pool = shared.get(key);
  if (!pool) {
    let p: Pool | undefined;
    const real = () => (p ??= createPool(workers, maxBytes));
    pool = { get lanes() { return p ? p.lanes : workers + 1; }, readyWorkers: () => real().readyWorkers(), analyseFiles: (f, how) => real().analyseFiles(f, how), analyseBytes: (path, b) => real().analyseBytes(path, b), close: async () => {} };
    shared.set(key, pool);
  }
  return pool;
}

/** Here, on receipt of a worker's results: their imports made `Imports` again. */
export function reviveResults<T extends FileResult | FileResult[]>(results: T): T {
  for (const r of Array.isArray(results) ? results : [results]) if (r?.kind === 'elf') r.report.imports = Imports.revive(r.report.imports);
  return results;
}
