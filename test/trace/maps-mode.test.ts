// model/maps-mode.ts, the mode trace/ reads from /proc/self/maps without asking host/, against
// host/vsyscall-mode.ts's modeFromMaps (the oracle) on maps captured in each mode and this host's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES } from '../helpers.js';
import { modeOfMaps, vsyscallPermsOfMaps } from '../../src/model/maps-mode.js';
import { modeFromMaps } from '../../src/host/vsyscall-mode.js';

test('the [vsyscall] line\'s permissions say the same mode as host/\'s reading, in every mode and on this host', () => {
  const texts = ['maps-xonly.txt', 'maps-emulate.txt', 'maps-none.txt'].map((f) => fs.readFileSync(path.join(FIXTURES, 'host', f), 'utf8'));
  assert.deepEqual(texts.map(modeOfMaps), ['xonly', 'emulate-or-native', 'none']);
  for (const t of [...texts, fs.readFileSync('/proc/self/maps', 'utf8')]) assert.equal(modeOfMaps(t), modeFromMaps(t).says);
});

test('odd lines: unexpected permissions, a name that only contains [vsyscall], a line that is not a mapping', () => {
  assert.equal(modeOfMaps('ffffffffff600000-ffffffffff601000 rw-p 00000000 00:00 0                  [vsyscall]\n'), 'unknown');
  assert.equal(modeOfMaps('7f0000000000-7f0000001000 r-xp 00000000 08:01 42   /tmp/[vsyscall]\n'), 'none');
  assert.equal(vsyscallPermsOfMaps('garbage [vsyscall]\nffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n'), '--xp');
});
