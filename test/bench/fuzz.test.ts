// A small, fixed-seed run of the hostile-input campaign (bench/fuzz.mjs): mutated real ELF files of
// the corpus, each analysed in a child process with a kill timer; none may crash, hang or take
// more than a bounded amount of memory. The generator itself is checked to be reproducible.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CORPUS, ROOT } from '../helpers.js';

const FUZZ = path.join(ROOT, 'bench', 'fuzz.mjs');
const skip = !fs.existsSync(CORPUS) && 'corpus not present';

test('the same seed gives the same inputs; different seeds give different ones', { skip }, async () => {
  const { makeInput, seeds } = (await import(FUZZ)) as { makeInput: (f: string[], s: number, i: number) => { bytes: Buffer; kind: string }; seeds: () => string[] };
  const files = seeds();
  assert.ok(files.length >= 10, `${files.length} seed files`);
  const a = makeInput(files, 3, 17);
  const b = makeInput(files, 3, 17);
  assert.ok(a.bytes.equals(b.bytes));
  const kinds = new Set(Array.from({ length: 60 }, (_, i) => makeInput(files, 3, i).kind));
  assert.ok(kinds.size >= 6, [...kinds].join(' '));
  assert.ok(!makeInput(files, 4, 17).bytes.equals(a.bytes) || makeInput(files, 4, 17).kind !== a.kind);
});

test('3,000 mutated ELF files: no crash, no hang, each under 2 s and 256 MB', { skip, timeout: 600_000 }, () => {
  const r = spawnSync(process.execPath, [FUZZ, '--inputs', '3000', '--seed', '1', '--timeout-ms', '20000', '--json'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const doc = JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
  assert.equal(doc.inputs, 3000);
  assert.deepEqual(doc.crashes, []);
  assert.deepEqual(doc.hangs, []);
  assert.equal(r.status, 0);
  assert.ok(doc.coded > 0 && doc.ok > 0, 'the mutations reach both the coded errors and whole analyses');
  assert.ok(doc.worst.ms < 2000, JSON.stringify(doc.worst));
  assert.ok(doc.worstMemory.kib < 256 * 1024, JSON.stringify(doc.worstMemory));
});

test('the campaign reports a planted crash, hang and allocation, with replayable seeds', { skip, timeout: 300_000 }, () => {
  const run = (plant: string, extra: string[] = []) => {
    const r = spawnSync(process.execPath, [FUZZ, '--inputs', '40', '--seed', '5', '--json', ...extra], { encoding: 'utf8', env: { ...process.env, VSYS_FUZZ_PLANT: plant } });
    return { status: r.status, doc: JSON.parse(r.stdout.trim().split('\n').at(-1) as string) };
  };
  const thrown = run('throw');
  assert.equal(thrown.status, 1);
  assert.deepEqual(thrown.doc.crashes.map((c: { at: string }) => c.at).sort(), ['5:13', '5:23', '5:3', '5:33']);
  const hung = run('hang', ['--timeout-ms', '3000']);
  assert.equal(hung.status, 1);
  assert.equal(hung.doc.hangs.length, 4);
  const alloc = run('alloc:300');
  assert.ok(alloc.doc.worstMemory.kib >= 290 * 1024, JSON.stringify(alloc.doc.worstMemory));
  assert.match(alloc.doc.worstMemory.at, /^5:(3|13|23|33)$/);
});
