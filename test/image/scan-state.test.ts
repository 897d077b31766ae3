// The state file of a long scan (--state) and the bounded layer cache, without a registry: a line
// cut off by a kill is dropped and overwritten, addresses survive as bigints, another scan's state
// is refused; the cache lets the least recently used finished layers go and keeps the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { readStateFile, StateWriter, type DoneRecord } from '../../src/image/scan-state.js';
import { hasCommand, runVsys } from '../helpers.js';
import { BoundedLayerCache } from '../../src/image/layer-cache.js';
import { Imports } from '../../src/scan/wire.js';
import type { LayerResult } from '../../src/image/layer-builder.js';
import type { ImageReport } from '../../src/image/analyse-image.js';

function done(ref: string, address = 0xffffffffff600400n): DoneRecord {
  const file = { path: '/usr/bin/x', size: 1, class: 'direct', findings: [{ address, target: 0xffffffffff600400n }], affectedExports: [], imports: Imports.of([{ name: 'time', version: 'GLIBC_2.2.5' }]) };
  return { record: 'done', ref, images: [{ ref, files: [file] } as unknown as ImageReport], errors: [] };
}

test('state: written, cut off mid-line by a kill, reopened: the cut line is dropped and overwritten', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-state-'));
  try {
    const file = path.join(dir, 's.ndjson');
    const w = await StateWriter.open(file, { registry: 'r:5000', shard: '0/2' });
    w.add(done('registry://r:5000/a:1'));
    w.add(done('registry://r:5000/a:2'));
    w.close();
    const whole = fs.statSync(file).size;
    fs.appendFileSync(file, '{"record":"done","ref":"registry://r:5000/a:3","ima');
    const s = await readStateFile(file);
    assert.deepEqual([...s.done.keys()], ['registry://r:5000/a:1', 'registry://r:5000/a:2']);
    assert.equal(s.wholeBytes, whole);
    // Addresses come back as bigints, imports as Imports.
    const f = s.done.get('registry://r:5000/a:1')?.images[0]?.files[0] as unknown as { findings: { address: bigint }[]; imports: Imports };
    assert.equal(f.findings[0]?.address, 0xffffffffff600400n);
    assert.ok(f.imports instanceof Imports);
    assert.deepEqual([...f.imports], [{ name: 'time', version: 'GLIBC_2.2.5' }]);
    const again = await StateWriter.open(file, { registry: 'r:5000', shard: '0/2' });
    assert.equal(again.done.size, 2);
    again.add(done('registry://r:5000/a:3'));
    again.close();
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    assert.equal(lines.length, 5, 'header, three records, and the final newline');
    assert.ok(lines.slice(1, 4).every((l) => JSON.parse(l).record === 'done'));
    await assert.rejects(StateWriter.open(file, { registry: 'r:5000', shard: '1/2' }), /holds the state of another scan \(registry:\/\/r:5000 --shard 0\/2\)/);
    fs.writeFileSync(file, '{"record":"vsys-scan-state","version":2,"scan":{}}\nnot json\n');
    await assert.rejects(readStateFile(file), (e: Error & { code?: string }) => e.code === 'SCAN_STATE_BAD' && /:2: not JSON/.test(e.message));
    fs.writeFileSync(file, '{"record":"vsys-scan-state","version":9,"scan":{}}\n');
    await assert.rejects(readStateFile(file), /state version 9/);
    // A file of one line without its newline is started over only when it is a cut-off header.
    fs.writeFileSync(file, '{"record":"vsys-scan-state","version":2,"sc');
    (await StateWriter.open(file, {})).close();
    assert.match(fs.readFileSync(file, 'utf8'), /^\{"record":"vsys-scan-state","version":2,"scan":\{\}\}\n$/);
    fs.writeFileSync(file, 'someone else\'s notes, one line');
    await assert.rejects(StateWriter.open(file, {}), /is not a vsys state file/);
    assert.equal(fs.readFileSync(file, 'utf8'), 'someone else\'s notes, one line', 'left as it was');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('state: one writer at a time, as util-linux flock(1) sees it; the lock goes with the writer, even killed', { skip: !hasCommand('flock') && 'util-linux flock(1) not installed' }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-state-'));
  try {
    const file = path.join(dir, 's.ndjson');
    const w = await StateWriter.open(file, { registry: 'r:5000' });
    w.add(done('registry://r:5000/a:1'));
    // flock(1) -n: exit 1 when the lock is held elsewhere.
    assert.equal(spawnSync('flock', ['-n', file, 'true']).status, 1, 'flock(1) finds the file locked');
    w.close();
    assert.equal(spawnSync('flock', ['-n', file, 'true']).status, 0, 'closed, the file is free');
    // Held by another process (flock --close: the lock is flock's own, not its sleep's): this writer
    // is refused and the file left as it was.
    const holder = spawn('flock', ['--close', file, 'sleep', '30'], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && spawnSync('flock', ['-n', file, 'true']).status === 0; i++) await new Promise((r) => setTimeout(r, 20));
      const before = fs.readFileSync(file, 'utf8');
      await assert.rejects(StateWriter.open(file, { registry: 'r:5000' }), (e: Error & { code?: string }) => e.code === 'SCAN_STATE_LOCKED' && /being written by another vsys scan/.test(e.message));
      assert.equal(fs.readFileSync(file, 'utf8'), before, 'nothing truncated or appended');
      // The CLI is refused before it reads any catalog (exit 3), the file left as it was.
      const cli = runVsys(['scan', '--mode', 'none', '--state', file, 'registry://127.0.0.1:9']);
      assert.equal(cli.status, 3, cli.stderr);
      assert.match(cli.stderr, /being written by another vsys scan/);
      assert.doesNotMatch(cli.stderr, /reading the catalog/);
      assert.equal(fs.readFileSync(file, 'utf8'), before);
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
    }
    // The holder killed, the kernel dropped its lock: the file opens, its record still there.
    const again = await StateWriter.open(file, { registry: 'r:5000' });
    assert.deepEqual([...again.done.keys()], ['registry://r:5000/a:1']);
    again.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const layer = (entries: number): Promise<LayerResult> => Promise.resolve({ ops: new Array(entries).fill({}), bytes: 0, files: entries, elfFiles: 0, problems: [] } as unknown as LayerResult);

test('layer cache: the least recently used finished layers go once over the bound; the newest stays', async () => {
  const c = new BoundedLayerCache(100);
  c.set('a', layer(40));
  c.set('b', layer(40));
  await new Promise((r) => setImmediate(r));
  assert.equal(c.heldEntries, 80);
  c.get('a'); // a used again: b is now the oldest
  c.set('c', layer(40));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual([c.has('a'), c.has('b'), c.has('c')], [true, false, true]);
  assert.equal(c.evicted, 1);
  assert.equal(c.heldEntries, 80);
  // One layer over the bound alone is kept while it is the newest.
  c.set('huge', layer(500));
  await new Promise((r) => setImmediate(r));
  assert.ok(c.has('huge'));
  assert.equal(c.heldEntries, 500);
  // A layer not finished is never let go.
  let finish!: (r: LayerResult) => void;
  c.set('slow', new Promise((r) => (finish = r)));
  c.set('next', layer(10));
  await new Promise((r) => setImmediate(r));
  assert.ok(c.has('slow'));
  finish({ ops: [], bytes: 0, files: 0, elfFiles: 0, problems: [] } as unknown as LayerResult);
});
