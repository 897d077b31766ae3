// The thread of hash-range.ts: sha256 of a byte range of a file, read by position through a
// descriptor of this process (threads share the descriptor table) in 4 MiB reads. A job's shared
// cancel flag is checked between reads: a layer that failed stops its hash within one read.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';

const CHUNK = 4 * 1024 * 1024;
const buf = Buffer.allocUnsafeSlow(CHUNK);

parentPort?.on('message', (m: { id: number; fd: number; start: number; size: number; cancel?: Int32Array }) => {
  try {
    const h = crypto.createHash('sha256');
    let done = 0;
    while (done < m.size) {
      if (m.cancel && Atomics.load(m.cancel, 0) !== 0) {
        parentPort?.postMessage({ id: m.id, cancelled: true, bytes: done });
        return;
      }
      const got = fs.readSync(m.fd, buf, 0, Math.min(CHUNK, m.size - done), m.start + done);
      if (got === 0) break;
      h.update(got === CHUNK ? buf : buf.subarray(0, got));
      done += got;
    }
    parentPort?.postMessage({ id: m.id, digest: `sha256:${h.digest('hex')}`, bytes: done });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    parentPort?.postMessage({ id: m.id, error: { message: err.message, ...(err.code ? { errno: err.code } : {}) } });
  }
});
