// Truncated, corrupted and hostile ELF input: every reader either returns or throws a VsysError coded
// ELF_* or NUMBER_UNSAFE — never another exception, never a hang. Base file: Debian's libc-2.13.so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { VsysError } from '../../src/errors.js';
import { readElf, readInterp, vaddrToOffset, offsetToVaddr, findSection, type ElfFile } from '../../src/elf/read-elf.js';
import { readSymbols, readVersionDefinitions, readVersionNeeds } from '../../src/elf/symbols.js';
import { readDynamic } from '../../src/elf/dynamic.js';
import { readNotes, readBuildId, readAbiTag } from '../../src/elf/notes.js';
import { readGoBuildInfo, isGoBinary } from '../../src/elf/go-buildinfo.js';
import { readFunctionRanges } from '../../src/elf/eh-frame.js';
import { SHT } from '../../src/elf/constants.js';
import { CORPUS } from '../helpers.js';

const FILE = path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so');
const skip = !existsSync(FILE) && `${FILE} is not available`;
const original = skip ? new Uint8Array(0) : new Uint8Array(readFileSync(FILE));
// Without the corpus every test here skips; `ok` is then never read.
const ok = skip ? (undefined as unknown as ElfFile) : readElf(original, FILE);

const READERS: [string, (e: ElfFile) => unknown][] = [
  ['readSymbols(.dynsym)', (e) => readSymbols(e, '.dynsym')],
  ['readSymbols(.symtab)', (e) => readSymbols(e, '.symtab')],
  ['readVersionDefinitions', readVersionDefinitions],
  ['readVersionNeeds', readVersionNeeds],
  ['readDynamic', readDynamic],
  ['readNotes', readNotes],
  ['readBuildId', readBuildId],
  ['readAbiTag', readAbiTag],
  ['readGoBuildInfo', readGoBuildInfo],
  ['isGoBinary', isGoBinary],
  ['readFunctionRanges', readFunctionRanges],
  ['readInterp', readInterp],
  ['findSection', (e) => findSection(e, '.text')],
  ['vaddrToOffset', (e) => vaddrToOffset(e, 0x1eb80n)],
  ['offsetToVaddr', (e) => offsetToVaddr(e, 0x1eb80)],
];

/** Codes seen, per reader, so the test can show that each kind of failure was reached. */
type Tally = Map<string, number>;

function expectCoded(e: unknown, what: string): string {
  if (!(e instanceof VsysError)) throw new assert.AssertionError({ message: `${what}: threw a non-VsysError: ${String((e as Error)?.stack ?? e)}` });
  assert.ok(e.code.startsWith('ELF_') || e.code === 'NUMBER_UNSAFE', `${what}: unexpected code ${e.code}`);
  return e.code;
}

/** Runs readElf and every reader; returns how long it took. */
function runAll(bytes: Uint8Array, what: string, tally: Tally): number {
  const t0 = performance.now();
  let elf: ElfFile;
  try {
    elf = readElf(bytes, what);
  } catch (e) {
    const code = expectCoded(e, `${what} readElf`);
    tally.set(`readElf ${code}`, (tally.get(`readElf ${code}`) ?? 0) + 1);
    return performance.now() - t0;
  }
  tally.set('readElf ok', (tally.get('readElf ok') ?? 0) + 1);
  for (const [name, fn] of READERS) {
    try {
      fn(elf);
      tally.set(`${name} ok`, (tally.get(`${name} ok`) ?? 0) + 1);
    } catch (e) {
      const code = expectCoded(e, `${what} ${name}`);
      tally.set(`${name} ${code}`, (tally.get(`${name} ${code}`) ?? 0) + 1);
    }
  }
  return performance.now() - t0;
}

/** Per-case bound: generous for slow CI machines, far below what an unbounded walk would take. */
const CASE_MS = 2000;

test('the unmodified file reads cleanly through every reader', { skip }, () => {
  const tally: Tally = new Map();
  runAll(original, 'libc-2.13.so', tally);
  assert.equal(tally.get('readElf ok'), 1);
  for (const [name] of READERS) assert.equal(tally.get(`${name} ok`), 1, `${name} succeeds on the real file`);
});

test('every truncation length in the first 4 KiB, and at every section and header-table boundary', { skip, timeout: 60_000 }, () => {
  const lengths = new Set<number>();
  for (let n = 0; n <= 4096; n++) lengths.add(n);
  const shoff = Number(ok.header.shoff);
  for (let i = 0; i <= ok.sections.length; i++) for (const d of [-1, 0, 1]) lengths.add(shoff + i * ok.header.shentsize + d);
  for (const s of ok.sections) for (const n of [s.offset, s.offset + s.size, s.offset + s.size - 1]) lengths.add(n);
  for (const p of ok.programHeaders) lengths.add(p.offset + p.filesz);
  lengths.add(original.length - 1);
  const tally: Tally = new Map();
  let worst = 0;
  for (const n of lengths) {
    if (n < 0 || n >= original.length) continue;
    worst = Math.max(worst, runAll(original.subarray(0, n), `truncated to ${n}`, tally));
  }
  assert.ok(worst < CASE_MS, `slowest case took ${worst.toFixed(0)} ms`);
  // Short files are not ELF, longer ones cut off a header or table: both kinds were reached.
  assert.ok((tally.get('readElf ELF_BAD_MAGIC') ?? 0) >= 4);
  // A cut file cannot tell "truncated" from "the header lies": the table starts past the end
  // (ELF_BAD_OFFSET), runs past it (ELF_TRUNCATED) or is bigger than what is left (ELF_BAD_COUNT).
  const cut = ['ELF_TRUNCATED', 'ELF_BAD_OFFSET', 'ELF_BAD_COUNT'].reduce((n, c) => n + (tally.get(`readElf ${c}`) ?? 0), 0);
  assert.equal(cut + (tally.get('readElf ELF_BAD_MAGIC') ?? 0), [...tally.values()].reduce((a, b) => a + b, 0), JSON.stringify([...tally]));
  assert.ok(cut > 4000);
  assert.equal(tally.get('readElf ok'), undefined, 'the section header table is at the end: no truncation reads cleanly');
});

test('each section zeroed in turn: readers see zero counts, empty strings and terminators', { skip }, () => {
  const tally: Tally = new Map();
  const bytes = original.slice();
  for (const s of ok.sections) {
    if (s.type === SHT.NOBITS || s.size === 0) continue;
    const saved = bytes.slice(s.offset, s.offset + s.size);
    bytes.fill(0, s.offset, s.offset + s.size);
    runAll(bytes, `${s.name} zeroed`, tally);
    bytes.set(saved, s.offset);
  }
  assert.ok((tally.get('readElf ok') ?? 0) > 20);
});

/** mulberry32: small, seeded, deterministic. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('5,000 seeded random corruptions of the headers, tables, .dynsym, versions, .dynamic and .eh_frame', { skip, timeout: 120_000 }, () => {
  const sec = (name: string) => ok.sections.find((s) => s.name === name)!;
  const regions: [string, number, number][] = [
    ['ELF header', 0, 64],
    ['program headers', Number(ok.header.phoff), ok.header.phnum * ok.header.phentsize],
    ['section headers', Number(ok.header.shoff), ok.header.shnum * ok.header.shentsize],
    ...['.dynsym', '.eh_frame', '.eh_frame_hdr', '.gnu.version', '.gnu.version_d', '.gnu.version_r', '.dynamic', '.note.gnu.build-id', '.note.ABI-tag']
      .map((n): [string, number, number] => [n, sec(n).offset, sec(n).size]),
  ];
  const rnd = prng(0x5eed_e1f);
  const bytes = original.slice();
  const tally: Tally = new Map();
  let worst = 0;
  // CPU time, not wall time: the bound is about our work, not about what else the machine runs.
  const cpu0 = process.cpuUsage();
  for (let c = 0; c < 5000; c++) {
    const [name, start, size] = regions[Math.floor(rnd() * regions.length)]!;
    const edits: [number, number][] = [];
    const count = 1 + Math.floor(rnd() * 4);
    for (let k = 0; k < count; k++) {
      const at = start + Math.floor(rnd() * size);
      edits.push([at, bytes[at]!]);
      const how = rnd();
      bytes[at] = how < 0.5 ? bytes[at]! ^ (1 << Math.floor(rnd() * 8)) : how < 0.75 ? 0xff : Math.floor(rnd() * 256);
    }
    worst = Math.max(worst, runAll(bytes, `case ${c} (${name})`, tally));
    for (const [at, v] of edits.reverse()) bytes[at] = v;
  }
  const used = process.cpuUsage(cpu0);
  const total = (used.user + used.system) / 1000;
  assert.deepEqual(bytes, original, 'every edit was undone');
  assert.ok(worst < CASE_MS, `slowest case took ${worst.toFixed(0)} ms`);
  assert.ok(total < 30_000, `5,000 cases took ${total.toFixed(0)} ms of CPU time`);
  // The corruptions reached past readElf into the readers, and some were caught there.
  assert.ok((tally.get('readElf ok') ?? 0) > 2500, `readElf accepted ${tally.get('readElf ok')} of 5000`);
  const readerErrors = [...tally].filter(([k]) => !k.startsWith('readElf') && !k.endsWith(' ok')).reduce((n, [, v]) => n + v, 0);
  assert.ok(readerErrors > 100, `readers raised ${readerErrors} coded errors`);
  for (const code of ['ELF_MALFORMED', 'ELF_BAD_OFFSET']) assert.ok([...tally.keys()].some((k) => k.endsWith(code)), `some case raised ${code}`);
});

function patched(edit: (v: DataView, elf: ElfFile) => void): Uint8Array {
  const b = original.slice();
  edit(new DataView(b.buffer), ok);
  return b;
}

function timed<T>(fn: () => T): T {
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    assert.ok(performance.now() - t0 < CASE_MS, `took ${(performance.now() - t0).toFixed(0)} ms`);
  }
}

test('hostile: e_shnum = 65535 with a huge e_shoff', { skip }, () => {
  const b = patched((v) => {
    v.setUint16(60, 0xffff, true);
    v.setBigUint64(40, 0xffff_ffff_ffff_0000n, true);
  });
  assert.throws(() => timed(() => readElf(b, 'hostile')), (e: unknown) => e instanceof VsysError && ['ELF_BAD_COUNT', 'ELF_BAD_OFFSET'].includes(e.code));
  const c = patched((v) => v.setUint16(60, 0xffff, true));
  assert.throws(() => readElf(c, 'hostile'), { code: 'ELF_BAD_COUNT' });
});

test('hostile: e_phnum × e_phentsize far beyond the file', { skip }, () => {
  const b = patched((v) => {
    v.setUint16(54, 0xffff, true);
    v.setUint16(56, 0xfffe, true);
  });
  assert.throws(() => timed(() => readElf(b, 'hostile')), { code: 'ELF_BAD_COUNT' });
  const small = patched((v) => v.setUint16(54, 8, true));
  assert.throws(() => readElf(small, 'hostile'), { code: 'ELF_BAD_COUNT' }, 'an entry size below sizeof(Elf64_Phdr)');
});

test('hostile: sh_size = 2^63 on .dynsym', { skip }, () => {
  const i = ok.sections.findIndex((s) => s.name === '.dynsym');
  const b = patched((v, e) => v.setBigUint64(Number(e.header.shoff) + i * 64 + 32, 1n << 63n, true));
  assert.throws(() => timed(() => readElf(b, 'hostile')), { code: 'NUMBER_UNSAFE' });
  const c = patched((v, e) => v.setBigUint64(Number(e.header.shoff) + i * 64 + 32, 1n << 40n, true));
  assert.throws(() => readElf(c, 'hostile'), { code: 'ELF_BAD_OFFSET' });
});

test('hostile: a string table without any NUL costs time linear in its size', { skip }, () => {
  const dynstr = ok.sections.find((s) => s.name === '.dynstr')!;
  const b = patched(() => undefined);
  b.fill(0x41, dynstr.offset, dynstr.offset + dynstr.size);
  const elf = readElf(b, 'hostile');
  assert.throws(() => timed(() => readSymbols(elf, '.dynsym')), { code: 'ELF_MALFORMED' });
  assert.throws(() => timed(() => readVersionNeeds(elf)), { code: 'ELF_MALFORMED' });
  assert.throws(() => timed(() => readDynamic(elf)), { code: 'ELF_MALFORMED' });
  // The section name table too: readElf itself names the sections.
  const shstr = ok.sections[ok.header.shstrndx]!;
  const c = patched(() => undefined);
  c.fill(0x41, shstr.offset, shstr.offset + shstr.size);
  assert.throws(() => timed(() => readElf(c, 'hostile')), { code: 'ELF_MALFORMED' });
  // One NUL at the very end, so every name runs to it: still linear (one index of the table), and
  // every symbol still gets its (long) name.
  const d = patched(() => undefined);
  d.fill(0x41, dynstr.offset, dynstr.offset + dynstr.size - 1);
  const syms = timed(() => readSymbols(readElf(d, 'hostile'), '.dynsym'));
  assert.ok(syms.length > 100);
  for (const s of syms) if (s.name !== '') assert.match(s.name, /^A+$/);
});

test('hostile: verneed/verdef chains that would loop in 32-bit pointer arithmetic, and huge counts', { skip }, () => {
  const vr = ok.sections.find((s) => s.type === SHT.GNU_VERNEED)!;
  const vd = ok.sections.find((s) => s.type === SHT.GNU_VERDEF)!;
  const vrIndex = ok.sections.indexOf(vr);
  // vn_next = -16 (mod 2^32) points back at the entry itself in C's wrapping arithmetic.
  const cycle = patched((v) => v.setUint32(vr.offset + 12, 0xfffffff0, true));
  assert.throws(() => timed(() => readVersionNeeds(readElf(cycle, 'hostile'))), { code: 'ELF_MALFORMED' });
  // vna_next likewise, with vn_cnt claiming 65535 entries.
  const aux = patched((v) => {
    v.setUint16(vr.offset + 2, 0xffff, true);
    const auxAt = vr.offset + v.getUint32(vr.offset + 8, true);
    v.setUint32(auxAt + 12, 0xfffffff0, true);
  });
  assert.throws(() => timed(() => readVersionNeeds(readElf(aux, 'hostile'))), { code: 'ELF_MALFORMED' });
  // sh_info (the entry count) = 2^32-1 and a vn_next of 0 on the first entry: the chain ends there.
  const count = patched((v, e) => {
    v.setUint32(Number(e.header.shoff) + vrIndex * 64 + 44, 0xffffffff, true);
    v.setUint32(vr.offset + 12, 0, true);
  });
  const needs = timed(() => readVersionNeeds(readElf(count, 'hostile')));
  assert.equal(needs.length, 1);
  // vd_next pointing into the middle of the previous entry's verdaux: caught by the bounds or the count.
  const mid = patched((v) => v.setUint32(vd.offset + 16, 4, true));
  const defs = timed(() => {
    try {
      return readVersionDefinitions(readElf(mid, 'hostile'));
    } catch (e) {
      expectCoded(e, 'verdef');
      return undefined;
    }
  });
  if (defs) assert.ok(defs.length <= Math.floor(vd.size / 20));
});

test('hostile: an .eh_frame record whose length runs past the section, and a CIE pointer to nowhere', { skip }, () => {
  const eh = ok.sections.find((s) => s.name === '.eh_frame')!;
  const long = patched((v) => v.setUint32(eh.offset + 0x18, 0x7fffffff, true));
  assert.throws(() => timed(() => readFunctionRanges(readElf(long, 'hostile'))), { code: 'ELF_MALFORMED' });
  const ext = patched((v) => v.setUint32(eh.offset, 0xffffffff, true));
  assert.throws(() => timed(() => readFunctionRanges(readElf(ext, 'hostile'))), (e: unknown) => e instanceof VsysError && ['ELF_MALFORMED', 'NUMBER_UNSAFE'].includes(e.code));
  const cie = patched((v) => v.setUint32(eh.offset + 0x18 + 4, 0x7ffffff0, true));
  assert.throws(() => timed(() => readFunctionRanges(readElf(cie, 'hostile'))), { code: 'ELF_MALFORMED' });
});

test('not ELF, big-endian, unknown class or version', () => {
  assert.throws(() => readElf(new Uint8Array([0x7f, 0x45, 0x4c]), 'x'), { code: 'ELF_BAD_MAGIC' });
  assert.throws(() => readElf(Buffer.from('#!/bin/sh\n'), 'x'), { code: 'ELF_BAD_MAGIC' });
  const id = (cls: number, data: number, ver: number) => Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, cls, data, ver, ...new Array(57).fill(0)]);
  assert.throws(() => readElf(id(2, 2, 1), 'x'), { code: 'ELF_UNSUPPORTED', message: /big-endian/ });
  assert.throws(() => readElf(id(3, 1, 1), 'x'), { code: 'ELF_UNSUPPORTED', message: /class 3/ });
  assert.throws(() => readElf(id(2, 1, 2), 'x'), { code: 'ELF_UNSUPPORTED', message: /version 2/ });
  assert.throws(() => readElf(id(2, 1, 1).subarray(0, 40), 'x'), { code: 'ELF_TRUNCATED' });
  const empty = readElf(id(2, 1, 1), 'x');
  assert.deepEqual([empty.programHeaders, empty.sections], [[], []]);
});
