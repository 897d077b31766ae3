// Worker thread body: analyses the files (by path) or the bytes (from image layers) the pool sends
// and posts the results back.
import { parentPort } from 'node:worker_threads';
import { analyseFile, analyseBuffer } from './read-file.js';

parentPort?.on('message', (m: { id: number; path: string; maxBytes: number; bytes?: Uint8Array }) => {
  const result = m.bytes ? analyseBuffer(m.bytes, m.path) : analyseFile(m.path, m.maxBytes);
  parentPort?.postMessage({ id: m.id, result });
});
