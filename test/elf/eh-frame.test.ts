// .eh_frame parsing beyond what compilers usually emit: every DW_EH_PE format with and without
// pcrel, "zPLR" augmentations, a 64-bit extended-length FDE, ELF32 and ELF64 — checked against
// readelf -wf — and the PT_GNU_EH_FRAME/.eh_frame_hdr path for files without section headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readElf, type ElfFile } from '../../src/elf/read-elf.js';
import { readFunctionRanges } from '../../src/elf/eh-frame.js';
import { PT, SHT } from '../../src/elf/constants.js';
import { CORPUS, hasCommand } from '../helpers.js';
import { buildElf, concat, le, sleb, uleb } from './build-elf.js';
import { parseFdeRanges, parseSections, readelf } from './readelf-oracle.js';

const ALLOC = 2n;

/** An encoded pointer as the FDE stores it. `field` is the address of the field itself. */
function encode(enc: number, value: bigint, field: bigint, addr: 4 | 8): Uint8Array {
  const v = (enc & 0x70) === 0x10 ? value - field : value;
  switch (enc & 0x0f) {
    case 0x00: return le(addr, v);
    case 0x01: return uleb(Number(v));
    case 0x02: case 0x0a: return le(2, BigInt.asUintN(16, v));
    case 0x03: case 0x0b: return le(4, BigInt.asUintN(32, v));
    case 0x04: case 0x0c: return le(8, v);
    case 0x09: return sleb(v);
    default: throw new Error(`encoding ${enc}`);
  }
}

const pad = (b: Uint8Array, to: number) => concat(b, new Uint8Array((to - (b.length % to)) % to));

interface Fde { enc: number; start: bigint; size: bigint; extended?: boolean }

/** One CIE per encoding (alternating "zR" and "zPLR"), each followed by its FDE; then a terminator. */
function ehFrame(base: bigint, text: bigint, fdes: Fde[], addr: 4 | 8): Uint8Array {
  const parts: Uint8Array[] = [];
  let pos = 0;
  const push = (b: Uint8Array) => { parts.push(b); pos += b.length; };
  fdes.forEach((f, i) => {
    const plr = i % 2 === 1;
    const augData = plr ? concat(le(1, 0x9b), le(4, 0), le(1, 0x1b), le(1, f.enc)) : le(1, f.enc);
    const cieBody = concat(le(4, 0), le(1, 1), Buffer.from(plr ? 'zPLR\0' : 'zR\0'), uleb(1), sleb(-8n), le(1, 16), uleb(augData.length), augData);
    const ciePos = pos;
    push(pad(concat(le(4, cieBody.length + ((4 - ((cieBody.length + 4) % 4)) % 4)), cieBody), 4));
    const fdePos = pos;
    if (f.extended) {
      // LSB: the CIE pointer stays 4 bytes after an extended length.
      const startAt = base + BigInt(fdePos + 16);
      const body = concat(le(4, fdePos + 12 - ciePos), encode(f.enc, text + f.start, startAt, addr), encode(f.enc & 0x0f, f.size, 0n, addr), uleb(plr ? 4 : 0), plr ? le(4, 0) : new Uint8Array(0));
      const padded = pad(body, 4);
      push(concat(le(4, 0xffffffff), le(8, BigInt(padded.length)), padded));
    } else {
      const startAt = base + BigInt(fdePos + 8);
      const body = concat(le(4, fdePos + 4 - ciePos), encode(f.enc, text + f.start, startAt, addr), encode(f.enc & 0x0f, f.size, 0n, addr), uleb(plr ? 4 : 0), plr ? le(4, 0) : new Uint8Array(0));
      const padded = pad(concat(le(4, 0), body), 4).subarray(4);
      push(concat(le(4, padded.length), padded));
    }
  });
  push(le(4, 0));
  return concat(...parts);
}

const ENCODINGS = [0x00, 0x03, 0x04, 0x0b, 0x0c, 0x1b, 0x1c, 0x10, 0x01, 0x09, 0x19, 0x1a, 0x0b];

function fdesFor(cls: 32 | 64): Fde[] {
  return ENCODINGS.filter((e) => cls === 64 || (e & 0x0f) !== 0x04 && (e & 0x0f) !== 0x0c)
    .map((enc, i) => ({ enc, start: BigInt(0x40 * i), size: BigInt(0x10 + i), extended: i === 3 }));
}

function file(cls: 32 | 64, withHdr: boolean, noSectionHeaders = false): Uint8Array {
  const addr = cls === 64 ? 8 : 4;
  const fdes = fdesFor(cls);
  const sections = [
    { name: '.text', type: SHT.PROGBITS, flags: ALLOC | 4n, data: new Uint8Array(0x400).fill(0x90) },
    { name: '.eh_frame_hdr', type: SHT.PROGBITS, flags: ALLOC, align: 4, data: (a: (n: string) => bigint) => {
      const hdr = a('.eh_frame_hdr');
      const sorted = [...fdes.keys()];
      const frame = ehFrame(a('.eh_frame'), a('.text'), fdes, addr);
      // FDE addresses: walk the records we just built.
      const fdeAddrs: bigint[] = [];
      const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
      for (let p = 0; v.getUint32(p, true) !== 0;) {
        const len = v.getUint32(p, true);
        const ext = len === 0xffffffff;
        const total = ext ? 12 + Number(v.getBigUint64(p + 4, true)) : 4 + len;
        const id = ext ? v.getBigUint64(p + 12, true) : BigInt(v.getUint32(p + 4, true));
        if (id !== 0n) fdeAddrs.push(a('.eh_frame') + BigInt(p));
        p += total;
      }
      const table = sorted.map((i) => concat(le(4, a('.text') + fdes[i]!.start - hdr), le(4, fdeAddrs[i]! - hdr)));
      return withHdr ? concat(Uint8Array.from([1, 0x1b, 0x03, 0x3b]), le(4, a('.eh_frame') - (hdr + 4n)), le(4, fdes.length), ...table) : new Uint8Array(8);
    } },
    { name: '.eh_frame', type: SHT.PROGBITS, flags: ALLOC, align: 8, data: (a: (n: string) => bigint) => ehFrame(a('.eh_frame'), a('.text'), fdes, addr) },
  ];
  return buildElf({
    cls, sections, noSectionHeaders,
    segments: [
      { type: PT.LOAD, flags: 5, from: '.text', to: '.eh_frame' },
      ...(withHdr ? [{ type: PT.GNU_EH_FRAME, flags: 4, from: '.eh_frame_hdr', to: '.eh_frame_hdr', align: 4n }] : []),
    ],
  });
}

function expected(elf: ElfFile, cls: 32 | 64): { start: bigint; end: bigint }[] {
  const text = elf.sections.find((s) => s.name === '.text')?.addr ?? 0x401000n;
  return fdesFor(cls).map((f) => ({ start: text + f.start, end: text + f.start + f.size }));
}

for (const cls of [64, 32] as const) {
  test(`ELF${cls}: every pointer encoding, zR and zPLR, an extended-length FDE — as readelf decodes them`, { skip: !hasCommand('readelf') && 'no readelf' }, () => {
    const bytes = file(cls, true);
    const elf = readElf(bytes, `eh-${cls}`);
    const ours = readFunctionRanges(elf);
    assert.deepEqual(ours, expected(elf, cls));
    const dir = mkdtempSync(path.join(tmpdir(), 'vsys-eh-'));
    try {
      const f = path.join(dir, `eh${cls}`);
      writeFileSync(f, bytes);
      // The hand-made file is valid in readelf's eyes: same sections, same FDEs.
      assert.deepEqual(parseSections(readelf(['-S'], f)).map((s) => [s.name, s.offset, s.size, s.addr]), elf.sections.map((s) => [s.name, s.offset, s.size, s.addr]));
      // readelf decodes only fixed-size pointer formats (GCC never emits LEB128 ones) and reads the
      // CIE pointer after an extended length as 8 bytes; compare on the FDEs it can decode.
      const r = parseFdeRanges(readelf(['-wN', '-wf'], f));
      const text = elf.sections.find((s) => s.name === '.text')!.addr;
      const decodable = fdesFor(cls).filter((x) => !x.extended && (x.enc & 0x0f) !== 0x01 && (x.enc & 0x0f) !== 0x09);
      assert.ok(decodable.length >= 6);
      for (const x of decodable) assert.ok(r.ranges.some((y) => y.start === text + x.start && y.end === text + x.start + x.size), `readelf decodes encoding 0x${x.enc.toString(16)}`);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test(`ELF${cls} without section headers: the .eh_frame_hdr table leads to the same FDEs`, () => {
    const withSh = readElf(file(cls, true), 'x');
    const elf = readElf(file(cls, true, true), 'x');
    assert.equal(elf.sections.length, 0);
    assert.deepEqual(readFunctionRanges(elf), expected(withSh, cls));
  });
}

test('real files: the .eh_frame_hdr path finds the same ranges as the .eh_frame section walk', () => {
  const files = [
    ...['debian-wheezy-libc-2.13/libc-2.13.so', 'rhel6-glibc-2.12-libpthread/libpthread.so.0', 'fb-glibc-2.16-libc/libc.so.6',
      'busybox-1.15.2-static/busybox', 'ctl-busybox-1.22.1-static-glibc2.17/busybox'].map((f) => path.join(CORPUS, f)),
    '/usr/bin/ls',
  ].filter((f) => existsSync(f));
  let compared = 0;
  for (const f of files) {
    const elf = readElf(new Uint8Array(readFileSync(f)), f);
    const viaSection = readFunctionRanges(elf);
    const viaHdr = readFunctionRanges({ ...elf, sections: [] });
    assert.ok(viaSection.length > 100, f);
    if (elf.programHeaders.some((p) => p.type === PT.GNU_EH_FRAME)) {
      assert.deepEqual(viaHdr, viaSection, f);
      compared++;
    } else {
      // The static busyboxes have no PT_GNU_EH_FRAME: without sections nothing leads to their FDEs.
      assert.deepEqual(viaHdr, [], f);
    }
  }
  assert.ok(compared >= 1, 'some real file has PT_GNU_EH_FRAME');
});

test('a DW_EH_PE_indirect FDE start is read through memory', () => {
  // One CIE with R = indirect|pcrel|sdata4; the FDE's start points at a word in .data holding the address.
  const bytes = buildElf({
    cls: 64,
    sections: [
      { name: '.text', type: SHT.PROGBITS, flags: ALLOC | 4n, data: new Uint8Array(0x40) },
      { name: '.data', type: SHT.PROGBITS, flags: ALLOC | 1n, align: 8, data: (a) => le(8, a('.text') + 0x20n) },
      { name: '.eh_frame', type: SHT.PROGBITS, flags: ALLOC, align: 8, data: (a) => {
        const cie = concat(le(4, 16), le(4, 0), le(1, 1), Buffer.from('zR\0'), uleb(1), sleb(-8n), le(1, 16), uleb(1), le(1, 0x9b), new Uint8Array(3));
        const startAt = a('.eh_frame') + BigInt(cie.length) + 8n;
        const fde = concat(le(4, 16), le(4, cie.length + 4), le(4, a('.data') - startAt), le(4, 0x10), uleb(0), new Uint8Array(3));
        return concat(cie, fde, le(4, 0));
      } },
    ],
    segments: [{ type: PT.LOAD, flags: 7, from: '.text', to: '.eh_frame' }],
  });
  const elf = readElf(bytes, 'indirect');
  const text = elf.sections.find((s) => s.name === '.text')!.addr;
  assert.deepEqual(readFunctionRanges(elf), [{ start: text + 0x20n, end: text + 0x30n }]);
});
