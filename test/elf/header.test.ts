// The header-and-extent helper (src/elf/header.ts) against GNU readelf on real files, read from their
// first page only, as the vDSO dumps and the sparse reader see them; and on hostile headers.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ByteReader } from '../../src/elf/bytes.js';
import { PT } from '../../src/elf/constants.js';
import { loadedExtent, programTable, readHeader, readIdent, readSegments, sectionTableEnd, segmentTypes } from '../../src/elf/header.js';
import { VsysError } from '../../src/errors.js';
import { hasCommand } from '../helpers.js';
import { elf32Files } from '../support/real-files.js';
import { parseHeader, parseSegments, readelf } from './readelf-oracle.js';

const HAS_READELF = hasCommand('readelf');

/** The first `n` bytes of a file: the header and its program headers, not what they describe. */
function head(file: string, n = 4096): ByteReader {
  return new ByteReader(new Uint8Array(readFileSync(file)).subarray(0, n), file);
}

function checkFile(file: string): void {
  const r = head(file);
  const id = readIdent(r.bytes);
  assert.ok(id?.magic, `${file}: magic`);
  const cls = id.class === 2 ? 64 : 32;
  const h = readHeader(r, cls, id.osabi);
  const want = parseHeader(readelf(['-h'], file));
  assert.equal(h.class, want.cls);
  assert.deepEqual([h.phoff, h.phentsize, h.phnum, h.shoff, h.shentsize, h.shnum, h.shstrndx],
    [want.phoff, want.phentsize, want.phnum, want.shoff, want.shentsize, want.shnum, want.shstrndx]);
  assert.equal(sectionTableEnd(h), Number(want.shoff) + want.shentsize * want.shnum);

  const segs = parseSegments(readelf(['-l'], file)).segments;
  const got = readSegments(r, h);
  assert.deepEqual(got.map((s) => [s.type, Number(s.offset), s.vaddr, Number(s.filesz), s.memsz, s.flags]),
    segs.map((s) => [s.type, s.offset, s.vaddr, s.filesz, s.memsz, s.flags]));
  assert.deepEqual(segmentTypes(r, h, programTable(r, h)), segs.map((s) => s.type));
  const loads = segs.filter((s) => s.type === PT.LOAD);
  const ext = loadedExtent(got);
  assert.equal(ext.fileEnd, BigInt(Math.max(...loads.map((s) => s.offset + s.filesz))));
  assert.equal(ext.vaddr?.start, loads.map((s) => s.vaddr).reduce((a, b) => (a < b ? a : b)));
  assert.equal(ext.vaddr?.end, loads.map((s) => s.vaddr + s.memsz).reduce((a, b) => (a > b ? a : b)));
  // The segments reach past the first page: the header helper does not ask them to fit.
  assert.ok(ext.fileEnd > BigInt(r.length), `${file}: the loaded part is larger than the page read`);
}

test('header, program headers and loaded extent from the first page equal readelf: ELF64', (t: TestContext) => {
  if (!HAS_READELF) return t.skip('readelf not installed');
  for (const file of [process.execPath, '/bin/ls']) checkFile(file);
});

test('header, program headers and loaded extent from the first page equal readelf: ELF32 (gcc -m32)', (t: TestContext) => {
  if (!HAS_READELF) return t.skip('readelf not installed');
  const files = elf32Files();
  if ('reason' in files) return t.skip(files.reason);
  checkFile(files.exec);
  checkFile(files.shared);
});

test('readIdent: short buffers have none; the bytes are returned unjudged', () => {
  assert.equal(readIdent(new Uint8Array(15)), undefined);
  const b = new Uint8Array(16);
  b.set([0x7f, 0x45, 0x4c, 0x46, 9, 7, 5, 3]);
  assert.deepEqual(readIdent(b), { magic: true, class: 9, data: 7, version: 5, osabi: 3 });
  b[3] = 0x47;
  assert.equal(readIdent(b)?.magic, false);
});

test('hostile headers: a truncated header, a table past the end, an entry size below Elf64_Phdr', () => {
  const bytes = new Uint8Array(readFileSync(process.execPath).subarray(0, 4096));
  assert.throws(() => readHeader(new ByteReader(bytes.subarray(0, 63), 'h'), 64), (e: unknown) => e instanceof VsysError && e.code === 'ELF_TRUNCATED');
  const r = new ByteReader(bytes, 'h');
  const h = readHeader(r, 64);
  assert.throws(() => readSegments(r, { ...h, phoff: 4000n }), (e: unknown) => e instanceof VsysError && e.code === 'ELF_TRUNCATED');
  assert.throws(() => readSegments(r, { ...h, phoff: 1n << 40n }), (e: unknown) => e instanceof VsysError && e.code === 'ELF_BAD_OFFSET');
  assert.throws(() => readSegments(r, { ...h, phnum: 0xffff }), (e: unknown) => e instanceof VsysError && e.code === 'ELF_BAD_COUNT');
  assert.throws(() => readSegments(r, { ...h, phentsize: 32 }), (e: unknown) => e instanceof VsysError && e.code === 'ELF_BAD_COUNT');
  assert.deepEqual(readSegments(r, { ...h, phnum: 0 }), []);
  assert.deepEqual(loadedExtent([]), { fileEnd: 0n, vaddr: undefined });
  assert.throws(() => sectionTableEnd({ ...h, shoff: 1n << 60n }), (e: unknown) => e instanceof VsysError && e.code === 'NUMBER_UNSAFE');
});
