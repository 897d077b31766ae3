// Worker thread body: analyses the batches of files (by path) or the bytes (from image layers) the
// pool sends, and posts the results back. The first message carries the settings.
import { parentPort } from 'node:worker_threads';
import { analyseFile, analyseBuffer, DEFAULT_MAX_FILE_BYTES, type Inner } from './read-file.js';

let maxBytes = DEFAULT_MAX_FILE_BYTES;

parentPort?.on('message', (m: { id: number; maxBytes?: number; paths?: string[]; sizes?: number[]; inner?: (Inner | undefined)[]; path?: string; bytes?: Uint8Array }) => {
  if (m.maxBytes !== undefined) maxBytes = m.maxBytes;
  const result = m.paths ? m.paths.map((p, i) => analyseFile(p, maxBytes, m.sizes?.[i], m.inner?.[i])) : m.bytes && m.path !== undefined ? analyseBuffer(m.bytes, m.path) : null;
  // Imports travel as the one string they are made as (wire.ts); the pool revives them.
  parentPort?.postMessage({ id: m.id, result });
});

// Said once this module (and the analysis code it imports) has loaded: a caller that must not wait
// for a starting thread gives it work only from then on (Pool.readyWorkers).
parentPort?.postMessage({ ready: true });
