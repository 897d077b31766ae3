// Entry names made image paths: the fast path (no split) against the component-by-component rule,
// on every shape of name a tar can hold (seeded random names over '.', '..', '/', and letters),
// and on names as tar writes them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalisePath, normaliseParts } from '../../src/image/image-fs.js';

test('200,000 seeded random names: the same path, or the same refusal, as component by component', () => {
  const pieces = ['a', 'bin', '.', '..', '/', '//', '.wh.x', '.hidden', 'x.', '...', ''];
  let seed = 4242;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  let fast = 0;
  for (let k = 0; k < 200_000; k++) {
    let name = '';
    for (let n = rand(7); n > 0; n--) name += pieces[rand(pieces.length)];
    const want = normaliseParts(name);
    assert.equal(normalisePath(name), want, JSON.stringify(name));
    if (want !== undefined && !name.includes('.') && !name.includes('//')) fast++;
  }
  assert.ok(fast > 1000, `${fast} plain names`);
});

test('names as tars write them', () => {
  assert.equal(normalisePath('./usr/bin/ls'), '/usr/bin/ls');
  assert.equal(normalisePath('usr/lib/'), '/usr/lib');
  assert.equal(normalisePath('./'), '/');
  assert.equal(normalisePath('/etc/passwd'), '/etc/passwd');
  assert.equal(normalisePath('.//x'), '/x');
  assert.equal(normalisePath('a//'), '/a');
  assert.equal(normalisePath('usr/lib/.build-id/ab'), '/usr/lib/.build-id/ab');
  assert.equal(normalisePath('a/./b'), '/a/b');
  assert.equal(normalisePath('a/../../etc'), undefined);
  assert.equal(normalisePath('..'), undefined);
});
