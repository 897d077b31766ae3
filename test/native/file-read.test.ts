import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { alignedBuffer } from '../../src/native/file-read.js';
import { loadKoffi } from '../../src/native/koffi.js';

test('alignedBuffer starts on a 64-byte boundary (Node\'s own large buffers start 16 bytes past a page) and reads a file right', () => {
  const plain = Buffer.allocUnsafeSlow(4 << 20);
  const k = loadKoffi();
  for (const size of [1, 4096, 1 << 20, 4 << 20]) {
    const b = alignedBuffer(size);
    assert.equal(b.length, size);
    assert.equal(BigInt(k.address(b as never)) % 64n, 0n, `size ${size}`);
  }
  // What the helper is for: the same bytes as a plain read.
  const file = '/proc/self/exe';
  const fd = fs.openSync(file, 'r');
  try {
    const a = alignedBuffer(1 << 20);
    const n = fs.readSync(fd, a, 0, a.length, 0);
    const m = fs.readSync(fd, plain, 0, 1 << 20, 0);
    assert.equal(n, m);
    assert.ok(a.subarray(0, n).equals(plain.subarray(0, m)));
  } finally {
    fs.closeSync(fd);
  }
});
