// Spreads file analysis over worker threads (each reads and decodes its own files, so I/O and
// decoding overlap); falls back to the calling thread for small jobs or workers=0.
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import { analyseFile, type FileResult } from './read-file.js';

export interface Pool {
  analyse(path: string): Promise<FileResult>;
  close(): Promise<void>;
}

export function defaultWorkers(): number {
  return Math.max(1, Math.min(8, os.availableParallelism()));
}

export function createPool(workers: number, maxBytes: number): Pool {
  if (workers <= 0) {
    return { analyse: async (p) => analyseFile(p, maxBytes), close: async () => {} };
  }
  const url = new URL('./worker.js', import.meta.url);
  const threads = Array.from({ length: workers }, () => new Worker(url));
  const pending = new Map<number, (r: FileResult) => void>();
  const load = threads.map(() => 0);
  let next = 0;
  for (const [i, w] of threads.entries()) {
    w.on('message', (m: { id: number; result: FileResult }) => {
      load[i] = (load[i] as number) - 1;
      const done = pending.get(m.id);
      pending.delete(m.id);
      done?.(m.result);
    });
    w.on('error', (e) => {
      // A worker that dies fails its outstanding files with a coded error, not the scan.
      for (const [id, done] of pending) {
        done({ kind: 'error', path: `#${id}`, size: 0, error: { code: 'INTERNAL_ERROR', message: `worker failed: ${e.message}` } });
      }
      pending.clear();
    });
  }
  return {
    analyse(path: string): Promise<FileResult> {
      const id = next++;
      let best = 0;
      for (let i = 1; i < threads.length; i++) if ((load[i] as number) < (load[best] as number)) best = i;
      load[best] = (load[best] as number) + 1;
      return new Promise((resolve) => {
        pending.set(id, resolve);
        (threads[best] as Worker).postMessage({ id, path, maxBytes });
      });
    },
    async close(): Promise<void> {
      await Promise.all(threads.map((w) => w.terminate()));
    },
  };
}
