// A scan worker that exits when it is sent the path /vsys-test/die: for the pool's tests of a
// worker that dies (out of memory, a crash) in the middle of a scan. Otherwise the real worker.
import { parentPort } from 'node:worker_threads';

parentPort?.on('message', (m: { paths?: string[] }) => {
  if (m.paths?.includes('/vsys-test/die')) process.exit(7);
});
await import('../../src/scan/worker.js');
