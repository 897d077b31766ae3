// Spreads file analysis over worker threads (each reads and decodes its own files, so I/O and
// decoding overlap); falls back to the calling thread for small jobs or workers=0.
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import { analyseBuffer, analyseFile, type FileResult } from './read-file.js';

export interface Pool {
  analyse(path: string): Promise<FileResult>;
  /** Analyses bytes in a worker; the buffer is transferred (unusable here afterwards). */
  analyseBytes(path: string, bytes: Uint8Array): Promise<FileResult>;
  close(): Promise<void>;
}

export function defaultWorkers(): number {
  return Math.max(1, Math.min(8, os.availableParallelism()));
}

export function createPool(workers: number, maxBytes: number): Pool {
  if (workers <= 0) {
    return { analyse: async (p) => analyseFile(p, maxBytes), analyseBytes: async (p, b) => analyseBuffer(b, p), close: async () => {} };
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
  const send = (msg: { path: string; maxBytes: number; bytes?: Uint8Array }, transfer: ArrayBuffer[] = []): Promise<FileResult> => {
    const id = next++;
    let best = 0;
    for (let i = 1; i < threads.length; i++) if ((load[i] as number) < (load[best] as number)) best = i;
    load[best] = (load[best] as number) + 1;
    return new Promise((resolve) => {
      pending.set(id, resolve);
      (threads[best] as Worker).postMessage({ id, ...msg }, transfer);
    });
  };
  return {
    analyse(path: string): Promise<FileResult> {
      return send({ path, maxBytes });
    },
    analyseBytes(path: string, bytes: Uint8Array): Promise<FileResult> {
      // Own the memory outright so it can be transferred, not copied.
      const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer) ? bytes : bytes.slice();
      return send({ path, maxBytes, bytes: own }, [own.buffer as ArrayBuffer]);
    },
    async close(): Promise<void> {
      await Promise.all(threads.map((w) => w.terminate()));
    },
  };
}
