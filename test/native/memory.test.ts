// Native memory through ExecPage: bytes written come back, a sealed page refuses writes, and a
// long-running process (the exporter reads its eBPF maps through such a page every poll) keeps no
// native memory per access. The oracle is the kernel's count of the malloc heap's resident pages
// ([heap] in /proc/self/smaps), after a GC; per-access koffi pointers kept ~375 bytes each.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { ExecPage } from '../../src/native/memory.js';

const onLinux = process.platform === 'linux' && process.arch === 'x64';

function mallocHeapKb(): number {
  const t = fs.readFileSync('/proc/self/smaps', 'utf8');
  const i = t.indexOf('[heap]');
  return i < 0 ? 0 : Number(/Rss:\s+(\d+)/.exec(t.slice(i))?.[1] ?? 0);
}

test('ExecPage: what is written reads back; sealed, it refuses writes; freed, it refuses reads', { skip: !onLinux }, () => {
  const p = new ExecPage(8192);
  p.write(Uint8Array.of(1, 2, 3), 4095);
  assert.deepEqual([...p.read(4094, 5)], [0, 1, 2, 3, 0]);
  const copy = p.read(4095, 3);
  p.write(Uint8Array.of(9), 4095);
  assert.equal(copy[0], 1, 'a read is a copy, not a window on the page');
  assert.throws(() => p.write(new Uint8Array(2), 8191), /does not fit/);
  p.seal();
  assert.throws(() => p.write(new Uint8Array(1), 0), /after seal/);
  assert.equal(p.read(4095, 1)[0], 9, 'a sealed page still reads');
  p.free();
  assert.throws(() => p.read(0, 1), /outside/);
});

test('ExecPage: 200,000 writes and reads keep no native memory (malloc heap after GC)', { skip: !onLinux }, () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const p = new ExecPage(1 << 16);
  const v = Buffer.alloc(64, 7);
  for (let i = 0; i < 1000; i++) p.write(v, 4096 + (i & 63));
  gc();
  const before = mallocHeapKb();
  for (let i = 0; i < 200_000; i++) {
    p.write(v, 4096);
    if (p.read(4096, 64)[63] !== 7) throw new Error('wrong bytes');
  }
  gc();
  const grown = mallocHeapKb() - before;
  p.free();
  // 375 bytes an access would be ~73 MB; 4 MB leaves room for the allocator's own noise.
  assert.ok(grown < 4096, `the malloc heap grew ${grown} KB over 200,000 accesses`);
});
