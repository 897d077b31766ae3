import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { runActiveTest, modeFromMaps } from '../../src/host/vsyscall-mode.js';

const onLinux = process.platform === 'linux' && process.arch === 'x64';

test('the active test in child processes agrees with the kernel\'s own [vsyscall] line', { skip: !onLinux }, async () => {
  const maps = modeFromMaps(readFileSync('/proc/self/maps', 'utf8')).says;
  const a = await runActiveTest();
  if (maps === 'xonly') {
    assert.equal(a.call.outcome, 'works');
    assert.ok(Math.abs((a.call.value ?? 0) - Date.now() / 1000) < 5, 'the emulated time() returned the current time');
    assert.equal(a.read.outcome, 'sigsegv');
    assert.equal(a.read.signal, 'SIGSEGV');
    assert.equal(a.implies, 'xonly');
  } else if (maps === 'none') {
    assert.equal(a.call.outcome, 'sigsegv');
    assert.equal(a.read.outcome, 'sigsegv');
    assert.equal(a.implies, 'none');
  } else {
    assert.equal(a.call.outcome, 'works');
    assert.equal(a.read.outcome, 'works');
    assert.equal(a.implies, 'emulate-or-native');
  }
});
