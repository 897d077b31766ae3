// How a failed child is described: by the reason it printed, never by Node's version banner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeChildEnd, firstTryNote, runNodeChild, runNodeChildSteady } from '../../src/host/child.js';

const fixture = new URL('../../../test/fixtures/child/throws.mjs', import.meta.url);

test('a child that dies of an uncaught exception is described by its error line, not "Node.js vNN"', async () => {
  const o = await runNodeChild(fixture, ['throw']);
  assert.equal(o.outcome, 'exit');
  assert.match(o.stderr.trim().split('\n').pop()!, /^Node\.js v\d+/, 'Node ends such stderr with its version (the line this replaces)');
  assert.equal(describeChildEnd(o), 'exit 1: RangeError: trap-flag code does not fit its slots (1, 2, 3 bytes)');
});

test('a rejected top-level await names the error; a plain exit names its last line; a signal names the signal', async () => {
  const r = await runNodeChild(fixture, ['reject']);
  assert.match(describeChildEnd(r), /^exit 1: Error: ENOMEM: cannot map/);
  const e = await runNodeChild(fixture, ['exit']);
  assert.equal(describeChildEnd(e), 'exit 3: the reason it gave up');
  const k = await runNodeChild(fixture, ['kill']);
  assert.equal(describeChildEnd(k), 'killed by SIGKILL');
});

test('a child that failed without a signal is tried once more, and the first try is named; a signal is an answer, never retried', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-child-'));
  try {
    const once = await runNodeChildSteady(fixture, ['once', path.join(dir, 'marker')]);
    assert.equal(once.outcome, 'works');
    assert.deepEqual(once.result, { ok: true });
    assert.equal(firstTryNote(once), ' (tried twice: the first child ended exit 1: TypeError: a transient failure)');
    const always = await runNodeChildSteady(fixture, ['throw']);
    assert.equal(always.outcome, 'exit');
    assert.equal(describeChildEnd(always) + firstTryNote(always), 'exit 1: RangeError: trap-flag code does not fit its slots (1, 2, 3 bytes) (tried twice: the first child ended exit 1: RangeError: trap-flag code does not fit its slots (1, 2, 3 bytes))');
    // A signal on the second try is the answer, and the first try is still named.
    const thenKilled = await runNodeChildSteady(fixture, ['once-then-kill', path.join(dir, 'marker2')]);
    assert.equal(thenKilled.outcome, 'signal');
    assert.equal(thenKilled.firstTry, 'exit 1: TypeError: a transient failure');
    // A child that hangs is not run twice: one timeout, not two.
    const starts = path.join(dir, 'starts');
    const hung = await runNodeChildSteady(fixture, ['hang', starts], 1500);
    assert.equal(hung.outcome, 'timeout');
    assert.equal(hung.firstTry, undefined);
    assert.equal(fs.readFileSync(starts, 'utf8'), 'started\n', 'the hanging child was started once');
    const killed = await runNodeChildSteady(fixture, ['kill']);
    assert.equal(killed.outcome, 'signal');
    assert.equal(killed.firstTry, undefined);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
