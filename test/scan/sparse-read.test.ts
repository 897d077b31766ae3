// The sparse read of large files (src/scan/sparse-read.ts) against the whole file: the candidates
// it finds while streaming are exactly the byte search's over the whole section, the bytes it keeps
// are the file's, and analyseFile (which uses it for every file from 1 MiB on) reports exactly what
// analysing the whole file reports. Chunks down to 40 bytes put boundaries inside every pattern and
// every decode window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { readSparse, type SparseOptions } from '../../src/scan/sparse-read.js';
import { analyseFile } from '../../src/scan/read-file.js';
import { analyseBytes } from '../../src/scan/analyse-file.js';
import { findImm32Candidates } from '../../src/x86/candidates.js';
import { decodeWindowOf } from '../../src/x86/call-sites.js';
import { CORPUS } from '../helpers.js';
import { buildC, hasGcc } from '../support/fixtures.js';

const HOST_DIRS = ['/usr/bin', '/usr/lib/x86_64-linux-gnu'];
const MiB = 1024 * 1024;

function isElf(p: string): boolean {
  const fd = fs.openSync(p, 'r');
  try {
    const b = Buffer.alloc(4);
    return fs.readSync(fd, b, 0, 4, 0) === 4 && b.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } finally {
    fs.closeSync(fd);
  }
}

/** Regular ELF files of this host between `min` and `max` bytes, the largest first, at most `n`. */
function hostFiles(min: number, max: number, n: number): string[] {
  const out: { p: string; size: number }[] = [];
  for (const d of HOST_DIRS) {
    for (const name of fs.readdirSync(d)) {
      const p = path.join(d, name);
      const st = fs.lstatSync(p);
      if (st.isFile() && st.size >= min && st.size <= max && isElf(p)) out.push({ p, size: st.size });
    }
  }
  return out.sort((a, b) => b.size - a.size).slice(0, n).map((x) => x.p);
}

/** Checks one sparse read against the file; returns how many candidates it checked (undefined: read whole). */
function checkSparse(p: string, o: SparseOptions): number | undefined {
  const whole = fs.readFileSync(p);
  const fd = fs.openSync(p, 'r');
  try {
    const sparse = readSparse(fd, whole.length, (n) => Buffer.alloc(n, 0xcc), o);
    if (!sparse) return undefined;
    let checked = 0;
    let at = 0;
    for (const h of sparse.holes) {
      // Outside the holes: the file's bytes.
      assert.ok(sparse.bytes.subarray(at, h.start).equals(whole.subarray(at, h.start)), `${p}: bytes before the hole at ${h.start}`);
      at = h.end;
      if (!h.code) {
        assert.deepEqual(h.candidates, []);
        continue;
      }
      assert.deepEqual(h.candidates, findImm32Candidates(whole, h.start, h.end), `${p}: candidates in the hole at ${h.start} (chunk ${o.chunk})`);
      for (const c of h.candidates) {
        const [s, e] = decodeWindowOf(c, h.start, h.end);
        assert.ok(sparse.bytes.subarray(s, e).equals(whole.subarray(s, e)), `${p}: decode window of ${c}`);
        checked++;
      }
    }
    assert.ok(sparse.bytes.subarray(at).equals(whole.subarray(at)), `${p}: bytes after the last hole`);
    return checked;
  } finally {
    fs.closeSync(fd);
  }
}

test('streaming finds exactly the whole-file candidates and keeps their decode windows, for chunks of 40 bytes to 1 MiB', () => {
  const files = [...hostFiles(MiB, 6 * MiB, 6), path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so')].filter((p) => fs.existsSync(p));
  assert.ok(files.length >= 3, 'large ELF files to read');
  let candidates = 0;
  let sparse = 0;
  for (const p of files) {
    for (const chunk of [40, 4093, MiB]) {
      const n = checkSparse(p, { chunk, holeMin: 1024 });
      if (n === undefined) continue;
      sparse++;
      candidates += n;
    }
  }
  assert.ok(sparse >= 6, `sparse reads done: ${sparse}`);
  assert.ok(candidates > 0, 'some candidates were found and checked');
});

test('gcc-built programs with direct calls and a data word: candidates and windows exact; a data word makes the file read whole', { skip: !hasGcc() && 'gcc not installed' }, () => {
  const calls = buildC('call-regs', 'call-regs-dynamic', []);
  for (const chunk of [40, 97, 4096]) assert.ok((checkSparse(calls, { chunk, holeMin: 256, head: 64 }) ?? 0) >= 19, `call-regs, chunk ${chunk}`);
  const sparseOf = (p: string, o: SparseOptions) => {
    const fd = fs.openSync(p, 'r');
    try {
      return readSparse(fd, fs.fstatSync(fd).size, (n) => Buffer.alloc(n), o);
    } finally {
      fs.closeSync(fd);
    }
  };
  // The same build without the word is read sparsely; with it, whole.
  assert.notEqual(sparseOf(buildC('clean', 'clean-dynamic', []), { chunk: 64, holeMin: 1, head: 64 }), undefined);
  assert.equal(sparseOf(buildC('data-word', 'data-word-dynamic', []), { chunk: 64, holeMin: 1, head: 64 }), undefined);
  // Static files are read whole (glibc's banner, Go build info live in their data).
  assert.equal(sparseOf(buildC('clean', 'clean-static', ['-static']), { holeMin: 1, head: 64 }), undefined);
});

test('analyseFile on large files (read sparsely) reports exactly what analysing the whole file reports', () => {
  const files = [...hostFiles(MiB, 512 * MiB, 40), ...['debian-wheezy-libc-2.13/libc-2.13.so', 'busybox-1.15.2-static/busybox'].map((f) => path.join(CORPUS, f))].filter((p) => fs.existsSync(p));
  let compared = 0;
  for (const p of files) {
    const r = analyseFile(p);
    if (r.kind !== 'elf') continue;
    const whole = analyseBytes(fs.readFileSync(p), p);
    assert.ok(isDeepStrictEqual(r.report, whole), `${p}: the sparse read's report differs from the whole file's`);
    compared++;
  }
  assert.ok(compared >= 20, `files compared: ${compared}`);
});
