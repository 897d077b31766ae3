// What the walk and identification say about odd inputs (issue 23 item 5): a symlink loop as an
// argument is its own code, special files are named, an invalid e_machine is a warning, and hard
// links are told apart from inode numbers reused by files deleted during the walk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CORPUS, runVsys } from '../helpers.js';
import { analyseBytes } from '../../src/scan/analyse-file.js';
import { walk } from '../../src/scan/walk.js';

const BUSYBOX = path.join(CORPUS, 'busybox-1.15.2-static', 'busybox');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-walk-'));

test('a symlink loop given as an argument is FILE_SYMLINK_LOOP (not FILE_NOT_FOUND), exit 3', () => {
  const a = path.join(work, 'loop-a');
  fs.symlinkSync(path.join(work, 'loop-b'), a);
  fs.symlinkSync(a, path.join(work, 'loop-b'));
  const r = runVsys(['scan', '--json', '--mode', 'none', a]);
  assert.equal(r.status, 3);
  const err = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((x) => x.record === 'error');
  assert.equal(err.code, 'FILE_SYMLINK_LOOP');
});

test('special files are named in the text and the JSON summary', () => {
  const d = path.join(work, 'special');
  fs.mkdirSync(d);
  const fifo = path.join(d, 'pipe');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const text = runVsys(['scan', '--mode', 'none', d]);
  assert.match(text.stdout, new RegExp(`skipped 1 special file\\(s\\) .*: ${fifo.replace(/[.+]/g, '\\$&')}`));
  const json = runVsys(['scan', '--json', '--mode', 'none', d]);
  const summary = JSON.parse(json.stdout.trim().split('\n').at(-1) as string);
  assert.deepEqual(summary.special, [fifo]);
  assert.equal(summary.skipped.special, 1);
});

test('an e_machine of 0 or past the registry is a warning; x86-64 and arm are not', () => {
  const bytes = Buffer.from(fs.readFileSync(BUSYBOX));
  const good = analyseBytes(bytes, 'bb');
  assert.deepEqual(good?.identity?.warnings.filter((w) => /e_machine/.test(w)), []);
  for (const m of [0, 0x7777]) {
    const bad = Buffer.from(bytes);
    bad.writeUInt16LE(m, 18);
    const r = analyseBytes(bad, 'bad');
    assert.ok(r?.identity?.warnings.some((w) => w.includes(`e_machine ${m} is not a valid machine`)), JSON.stringify(r?.identity?.warnings));
  }
});

test('hard links are scanned once; a file with one name is never taken for a hard link', async () => {
  const d = path.join(work, 'links');
  fs.mkdirSync(d);
  fs.copyFileSync(BUSYBOX, path.join(d, 'a'));
  fs.linkSync(path.join(d, 'a'), path.join(d, 'b'));
  fs.writeFileSync(path.join(d, 'c'), 'one name');
  const seen: string[] = [];
  const skipped: string[] = [];
  for await (const f of walk([d], (s) => skipped.push(`${s.reason} ${path.basename(s.path)}`))) seen.push(path.basename(f.path));
  assert.equal(seen.filter((n) => n === 'a' || n === 'b').length, 1);
  assert.ok(seen.includes('c'));
  assert.deepEqual(skipped.filter((s) => s.startsWith('hard-link')).length, 1);
});

test('overlapping arguments scan each file once (a directory and a file inside it, the same directory twice)', () => {
  const r = runVsys(['scan', '--json', '--mode', 'none', path.join(CORPUS, 'busybox-1.15.2-static'), BUSYBOX, path.join(CORPUS, 'busybox-1.15.2-static')]);
  const files = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((x) => x.record === 'file');
  assert.equal(files.length, 1, files.map((f) => f.path).join(' '));
});
