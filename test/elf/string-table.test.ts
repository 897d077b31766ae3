// StringTable against readelf's string dump (`readelf -p`), on a real libc's .dynstr and a gcc-built
// program's .strtab: every string readelf lists is what get() returns at its index, both while names
// are searched one by one and after the table has been indexed. Then hand-made tables: suffixes,
// the empty string, indexes out of range, a last string without its NUL, a table past the buffer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { StringTable } from '../../src/elf/string-table.js';
import { ByteReader } from '../../src/elf/index.js';
import { CORPUS, hasCommand } from '../helpers.js';
import { buildC, hasGcc } from '../support/fixtures.js';
import { parseSections, readelf } from './readelf-oracle.js';

const LIBC = path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so');
const noReadelf = !hasCommand('readelf') && 'readelf not installed';

/** readelf -p's listing: index → string, printable ASCII strings only (readelf escapes the rest). */
function dump(file: string, section: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of readelf(['-p', section], file).split('\n')) {
    const m = /^ {2}\[ *([0-9a-f]+)\] {2}(.*)$/.exec(line);
    if (m && /^[\x21-\x7e]+$/.test(m[2]!)) out.set(Number.parseInt(m[1]!, 16), m[2]!);
  }
  return out;
}

function tableOf(file: string, section: string): { table: StringTable; bytes: Buffer } {
  const bytes = fs.readFileSync(file);
  const s = parseSections(readelf(['-S'], file)).find((x) => x.name === section);
  assert.ok(s, `${file} has no ${section}`);
  return { table: new StringTable(new ByteReader(bytes, file), s.offset, s.size, section), bytes };
}

function indexed(t: StringTable): boolean {
  // The private index is what the quadratic guard switches to; the test checks it was reached.
  return t['index'] !== undefined;
}

function checkAgainstReadelf(file: string, section: string, atLeast: number): void {
  const expect = dump(file, section);
  assert.ok(expect.size >= atLeast, `readelf listed ${expect.size} strings of ${section}`);
  const { table } = tableOf(file, section);
  // First pass, names searched one by one (a real table: each name's NUL is a few bytes on).
  for (const [i, s] of expect) {
    assert.equal(table.get(i), s, `${section}+0x${i.toString(16)}`);
    assert.equal(table.end(i), i + s.length, `end of ${section}+0x${i.toString(16)}`);
  }
  // A second pass scans past the table's size: the index takes over, and the answers stay the same.
  for (const [i, s] of [...expect].reverse()) assert.equal(table.get(i), s, `indexed ${section}+0x${i.toString(16)}`);
  assert.equal(indexed(table), true, 'two passes over every name scan more than the table: it is indexed');
  for (const [i, s] of expect) assert.equal(table.get(i), s, `indexed ${section}+0x${i.toString(16)}`);
}

test('libc-2.13.so .dynstr: every string readelf -p lists, at its index, before and after indexing', { skip: noReadelf || (!fs.existsSync(LIBC) && 'corpus not found') }, () => {
  checkAgainstReadelf(LIBC, '.dynstr', 1700);
});

test('a gcc-built program .strtab and .dynstr: the same against readelf -p', { skip: noReadelf || (!hasGcc() && 'gcc not installed') }, () => {
  const exe = buildC('clean', 'clean-dynamic', []);
  checkAgainstReadelf(exe, '.strtab', 10);
  checkAgainstReadelf(exe, '.dynstr', 3);
  const names = [...dump(exe, '.strtab').values()];
  assert.ok(names.includes('main'), `.strtab names main: ${names.slice(0, 20).join(' ')}`);
});

/** A table at offset 3 of a buffer with guard bytes around it, as a section sits inside a file. */
function handTable(content: string, before = 'XYZ', after = 'QQ'): StringTable {
  const bytes = Buffer.from(before + content + after, 'latin1');
  return new StringTable(new ByteReader(bytes, 'hand.so'), before.length, content.length, '.strtab');
}

test('hand-made table: index 0 is the empty string, an index inside a name is its suffix, latin1 bytes pass through', () => {
  const t = handTable('\0time\0__vdso_time\0caf\xe9\0');
  assert.equal(t.get(0), '');
  assert.equal(t.end(0), 0);
  assert.equal(t.get(1), 'time');
  assert.equal(t.end(1), 5);
  assert.equal(t.get(6), '__vdso_time');
  assert.equal(t.get(13), 'time', 'suffix sharing: __vdso_time + 7');
  assert.equal(t.get(17), '', 'the NUL of __vdso_time');
  assert.equal(t.get(18), 'caf\xe9');
  assert.equal(t.offset, 3);
  assert.equal(t.size, 23);
});

test('an index outside the table throws ELF_BAD_OFFSET naming the table; so do negative and fractional ones', () => {
  const t = handTable('\0ab\0');
  for (const i of [4, 5, 1000, -1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 2]) {
    assert.throws(() => t.get(i), (e: { code?: string; message?: string }) => e.code === 'ELF_BAD_OFFSET' && /\.strtab \(4 bytes\)/.test(e.message ?? ''), String(i));
  }
});

test('a last string without its NUL: ELF_MALFORMED, never a read into the bytes past the table', () => {
  const t = handTable('\0ab\0cd');
  assert.equal(t.get(1), 'ab');
  assert.throws(() => t.get(4), (e: { code?: string; message?: string }) => e.code === 'ELF_MALFORMED' && /\.strtab\+4 has no NUL/.test(e.message ?? ''));
  assert.throws(() => t.get(5), { code: 'ELF_MALFORMED' });
  // A table with no NUL at all.
  assert.throws(() => handTable('abc').get(0), { code: 'ELF_MALFORMED' });
  // The earlier names still read, from the index the failed search built.
  assert.equal(t.get(1), 'ab');
  assert.equal(t.get(2), 'b');
});

test('a table that does not fit in the buffer is refused when built (ELF_BAD_OFFSET)', () => {
  const bytes = Buffer.from('\0abc\0', 'latin1');
  const r = new ByteReader(bytes, 'short.so');
  assert.throws(() => new StringTable(r, 2, 4, '.dynstr'), (e: { code?: string; message?: string }) => e.code === 'ELF_BAD_OFFSET' && /\.dynstr at offset 2 \(\+4 bytes\)/.test(e.message ?? ''));
  assert.throws(() => new StringTable(r, -1, 2, '.dynstr'), { code: 'ELF_BAD_OFFSET' });
  assert.equal(new StringTable(r, 1, 4, '.dynstr').get(0), 'abc');
});

test('hostile table (one NUL at the end, every lookup before it): answers equal a naive decode, and it gets indexed', () => {
  const n = 20_000;
  const content = 'a'.repeat(n) + '\0';
  const t = handTable(content);
  const naive = (i: number) => content.slice(i, content.indexOf('\0', i));
  for (let i = 0; i < 400; i += 1) assert.equal(t.get(i * 37), naive(i * 37), String(i * 37));
  assert.equal(indexed(t), true, 'scans past the table size switch to the index');
  assert.equal(t.end(0), n);
  assert.equal(t.get(n), '');
});
