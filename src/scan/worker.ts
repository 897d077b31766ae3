// Worker thread body: analyses the files the pool sends and posts the results back.
import { parentPort } from 'node:worker_threads';
import { analyseFile } from './read-file.js';

parentPort?.on('message', (m: { id: number; path: string; maxBytes: number }) => {
  parentPort?.postMessage({ id: m.id, result: analyseFile(m.path, m.maxBytes) });
});
