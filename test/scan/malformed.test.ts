// The whole analysis (reader, search, decoder, call graph, identification) on broken files: every
// truncation point of a real file's headers and tables and thousands of seeded byte flips give a
// report (possibly with a coded error), never an exception, a hang, or unbounded output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CORPUS } from '../helpers.js';
import { analyseBytes } from '../../src/scan/analyse-file.js';
import { readElf } from '../../src/elf/read-elf.js';


const PTHREAD = path.join(CORPUS, 'rhel6-glibc-2.12-libpthread', 'libpthread.so.0');
const skip = !fs.existsSync(PTHREAD) && 'corpus not present';

const CODE = /^(ELF_|NUMBER_UNSAFE$|FILE_TOO_LARGE$)/;

function check(bytes: Uint8Array, what: string): void {
  const t0 = performance.now();
  let r;
  try {
    r = analyseBytes(bytes, what);
  } catch (e) {
    assert.fail(`${what}: threw ${(e as Error).stack}`);
  }
  if (r?.error) assert.match(r.error.code, CODE, `${what}: ${r.error.code}`);
  assert.ok((r?.findings.length ?? 0) < 10_000, `${what}: bounded findings`);
  assert.ok(performance.now() - t0 < 5_000, `${what}: took ${performance.now() - t0} ms`);
}

/** xorshift32: the same corruptions on every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

test('every truncation of the first 4 KiB, and at every section and table boundary, of libpthread', { skip, timeout: 120_000 }, () => {
  const full = fs.readFileSync(PTHREAD);
  const elf = readElf(full, PTHREAD);
  const cuts = new Set<number>();
  for (let n = 0; n <= 4096; n++) cuts.add(n);
  for (const s of elf.sections) for (const d of [-1, 0, 1, 8, s.size >> 1]) cuts.add(s.offset + d), cuts.add(s.offset + s.size + d);
  const shoff = Number(elf.header.shoff);
  for (let i = 0; i <= elf.header.shnum; i++) cuts.add(shoff + i * 64), cuts.add(shoff + i * 64 + 17);
  let errors = 0;
  for (const n of [...cuts].filter((n) => n >= 0 && n < full.length).sort((a, b) => a - b)) {
    const cut = full.subarray(0, n);
    check(cut, `${path.basename(PTHREAD)}[0:${n}]`);
    const r = analyseBytes(cut, 'cut');
    if (r?.error) errors++;
  }
  assert.ok(errors > 100, `truncations yield coded errors (${errors})`);
});

test('5,000 seeded byte flips in the headers, tables and around the call sites of RHEL 6 libpthread', { skip, timeout: 300_000 }, () => {
  const orig = fs.readFileSync(PTHREAD);
  const elf = readElf(orig, PTHREAD);
  // Regions worth corrupting: ELF header, program headers, section headers, .dynsym/.dynstr/.gnu.version*,
  // .eh_frame_hdr, and the code around each of its six call sites.
  const regions: [number, number][] = [[0, 64], [Number(elf.header.phoff), elf.header.phnum * 56], [Number(elf.header.shoff), elf.header.shnum * 64]];
  for (const s of elf.sections) {
    if (['.dynsym', '.dynstr', '.gnu.version', '.gnu.version_d', '.gnu.version_r', '.dynamic', '.eh_frame_hdr', '.gnu.hash'].includes(s.name)) regions.push([s.offset, Math.min(s.size, 1 << 16)]);
  }
  const sites = analyseBytes(orig, PTHREAD)?.findings ?? [];
  assert.equal(sites.length, 6);
  for (const f of sites) regions.push([f.offset - 32, 64]);
  const next = rng(0x5eed);
  const buf = Buffer.from(orig);
  let errors = 0;
  for (let i = 0; i < 5000; i++) {
    const [start, len] = regions[next() % regions.length]!;
    const flips: [number, number][] = [];
    for (let k = 0; k < 1 + (next() % 4); k++) {
      const at = start + (next() % Math.max(1, len));
      flips.push([at, buf[at]!]);
      buf[at] = next() & 0xff;
    }
    const r = analyseBytes(buf, `flip#${i}`);
    if (r?.error) {
      errors++;
      assert.match(r.error.code, CODE, `flip#${i}: ${r.error.message}`);
    }
    for (const [at, v] of flips.reverse()) buf[at] = v;
  }
  assert.ok(Buffer.compare(buf, orig) === 0, 'every flip was undone');
  assert.ok(errors > 0, 'some corruptions are detected as errors');
});

test('hostile headers: huge counts and offsets give coded errors quickly', { skip }, () => {
  const orig = fs.readFileSync(PTHREAD);
  const cases: [string, (b: Buffer) => void][] = [
    ['e_shnum 65535 with a far shoff', (b) => { b.writeUInt16LE(0xffff, 60); b.writeBigUInt64LE(0x7fffffffffff0000n, 40); }],
    ['e_phnum 65535', (b) => b.writeUInt16LE(0xffff, 56)],
    ['e_shentsize 1', (b) => b.writeUInt16LE(1, 58)],
    ['e_phoff past the end', (b) => b.writeBigUInt64LE(0xffffffffffffffffn, 32)],
    ['class 3', (b) => { b[4] = 3; }],
    ['big endian', (b) => { b[5] = 2; }],
  ];
  for (const [what, mutate] of cases) {
    const b = Buffer.from(orig);
    mutate(b);
    check(b, what);
  }
  // Not ELF at all: skipped, not an error.
  assert.equal(analyseBytes(Buffer.from('#!/bin/sh\necho hi\n'), 'script'), undefined);
  assert.equal(analyseBytes(new Uint8Array(0), 'empty'), undefined);
});
