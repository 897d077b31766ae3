// The worker pool: files spread over worker threads and the calling thread, in batches, give exactly
// the results of analysing everything in one thread (this machine's default has no workers on two
// CPUs, so the threaded path is exercised here on purpose).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { scanPaths } from '../../src/scan/scan.js';
import { createPool } from '../../src/scan/pool.js';
import { CORPUS } from '../helpers.js';

test('scanPaths with 2 and 3 worker threads reports exactly what it reports with none', async () => {
  const paths = ['/usr/bin', ...(fs.existsSync(CORPUS) ? [CORPUS] : [])];
  const strip = (r: Awaited<ReturnType<typeof scanPaths>>) => ({ files: r.files, errors: r.errors, summary: { ...r.summary, seconds: 0 } });
  const none = strip(await scanPaths({ paths, workers: 0 }));
  assert.ok(none.files.length > 100, `ELF files in ${paths.join(' ')}: ${none.files.length}`);
  for (const workers of [2, 3]) {
    const threaded = strip(await scanPaths({ paths, workers }));
    assert.equal(threaded.files.length, none.files.length);
    assert.ok(isDeepStrictEqual(threaded, none), `workers: ${workers} differs from workers: 0`);
  }
});

test('the pool answers every file of a batch in order, from threads and the calling one alike', async () => {
  const pool = createPool(2, 2 ** 31 - 1);
  try {
    assert.equal(pool.lanes, 3);
    const names = fs.readdirSync('/usr/bin').slice(0, 300).map((n) => path.join('/usr/bin', n)).filter((p) => fs.lstatSync(p).isFile());
    const batches: string[][] = [];
    for (let i = 0; i < names.length; i += 17) batches.push(names.slice(i, i + 17));
    const results = await Promise.all(batches.map((b) => pool.analyseFiles(b.map((p) => ({ path: p, size: fs.statSync(p).size })))));
    for (const [i, b] of batches.entries()) {
      const r = results[i]!;
      assert.equal(r.length, b.length);
      for (const [j, p] of b.entries()) {
        const x = r[j]!;
        assert.equal(x.kind === 'elf' ? x.report.path : x.path, p);
      }
    }
    // A file that vanished is a coded error for that file, not a failed batch.
    const [gone] = await pool.analyseFiles([{ path: '/nonexistent/vsys-test', size: 1 }]);
    assert.equal(gone?.kind, 'error');
    assert.equal(gone?.kind === 'error' && gone.error.code, 'IO_FAILED');
  } finally {
    await pool.close();
  }
});

test('a worker that dies fails its batch with a coded error, leaves the pool, and the scan goes on', async () => {
  const pool = createPool(1, 2 ** 31 - 1, { workerUrl: new URL('../support/dying-worker.js', import.meta.url) });
  try {
    assert.equal(pool.lanes, 2);
    // The calling thread's lane is busy with a big batch, so the next two go to the worker: the
    // first kills it, the second was only queued behind it and is analysed elsewhere.
    const busy = pool.analyseFiles([{ path: '/usr/bin/ls', size: 2 ** 40 }]);
    const dying = pool.analyseFiles([{ path: '/vsys-test/die', size: 1 }, { path: '/usr/bin/cat', size: 1 }]);
    const queued = pool.analyseFiles([{ path: '/usr/bin/ls', size: 1 }]);
    const died = await dying;
    assert.deepEqual(died.map((r) => r.kind), ['error', 'error']);
    assert.ok(died.every((r) => r.kind === 'error' && r.error.code === 'INTERNAL_ERROR' && /worker exited with code 7/.test(r.error.message)));
    assert.deepEqual((await queued).map((r) => r.kind), ['elf'], 'the batch queued behind it was rerouted, not failed');
    await busy;
    assert.equal(pool.lanes, 1);
    // Later batches go to the lanes left, and settle.
    const after = await Promise.all([pool.analyseFiles([{ path: '/usr/bin/cat', size: 1 }]), pool.analyseFiles([{ path: '/usr/bin/ls', size: 1 }])]);
    assert.deepEqual(after.map((r) => r[0]?.kind), ['elf', 'elf']);
    assert.equal((await pool.analyseBytes('bytes', new Uint8Array(16))).kind, 'not-elf');
  } finally {
    await pool.close();
  }
});

test('close() of a pool whose worker just answered its settings always settles (the process never ends with it pending)', async () => {
  // A reply arriving while close() stopped the worker used to unref it again: a caller awaiting
  // close() could be left with nothing keeping the event loop alive (exit code 13). In a child
  // process, so such an end is seen as the child's exit code, not as this file's cancelled tests.
  const { spawnSync } = await import('node:child_process');
  const pool = new URL('../../src/scan/pool.js', import.meta.url).href;
  const script = `
    const { createPool } = await import(${JSON.stringify(pool)});
    for (let i = 0; i < 30; i++) {
      const p = createPool(1, 1 << 29);
      const t0 = Date.now();
      while (p.readyWorkers() === 0 && Date.now() - t0 < 30000) await new Promise((r) => setTimeout(r, 2));
      await p.close();
    }
    console.log('all closed');
  `;
  // From a file: under `--input-type=module -e` the worker inherits a flag it cannot start with.
  const os = await import('node:os');
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-pool-')), 'close.mjs');
  fs.writeFileSync(file, script);
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 120_000 });
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /all closed/);
});
