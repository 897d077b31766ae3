// sha256 of a byte range of an open file on a thread of its own, so that verifying a layer stored
// plainly in an archive overlaps with reading and analysing the same layer here and in the pool's
// workers (sha256 is serial: one layer is hashed by one thread, start to end).
import { Worker } from 'node:worker_threads';
import { VsysError } from '../errors.js';

interface Job {
  resolve: (r: { digest: string; bytes: number }) => void;
  reject: (e: Error) => void;
}

let worker: Worker | undefined;
const pending = new Map<number, Job>();
let next = 0;

function failAll(message: string): void {
  worker = undefined;
  for (const j of pending.values()) j.reject(new VsysError('INTERNAL_ERROR', `the hashing thread stopped: ${message}`));
  pending.clear();
}

function spawn(): Worker {
  const w = new Worker(new URL('./hash-worker.js', import.meta.url));
  // Idle, it keeps no process alive; with a job outstanding it does.
  w.unref();
  w.on('message', (m: { id: number; digest?: string; bytes?: number; cancelled?: boolean; error?: { message: string } }) => {
    const job = pending.get(m.id);
    pending.delete(m.id);
    if (pending.size === 0) w.unref();
    if (!job) return;
    if (m.cancelled) job.reject(new VsysError('HASH_CANCELLED', `hash cancelled after ${m.bytes ?? 0} bytes`));
    else if (m.error) job.reject(new VsysError('IO_FAILED', m.error.message));
    else job.resolve({ digest: m.digest as string, bytes: m.bytes as number });
  });
  w.on('error', (e) => failAll(e.message));
  w.on('exit', (code) => {
    if (worker === w) failAll(`exit code ${code}`);
  });
  return w;
}

/** A flag shared with the hashing thread: set (cancelHash), the job stops at its next read. */
export function hashCancelFlag(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4));
}

export function cancelHash(flag: Int32Array): void {
  Atomics.store(flag, 0, 1);
}

/**
 * `sha256:<hex>` of the bytes [start, start + size) of `fd`, and how many there were (fewer than
 * `size` when the file ends first). The caller keeps `fd` open until this settles; with `cancel`
 * set (cancelHash), it rejects with CANCELLED after at most one more read.
 */
export function hashRange(fd: number, start: number, size: number, cancel?: Int32Array): Promise<{ digest: string; bytes: number }> {
  worker ??= spawn();
  const w = worker;
  const id = next++;
  w.ref();
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    w.postMessage({ id, fd, start, size, ...(cancel ? { cancel } : {}) });
  });
}
