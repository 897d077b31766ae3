// Section headers that lie (issue 23, item 1): the kernel maps program headers, so a call site in an
// executable PT_LOAD segment is found whatever .text's section header says, and the disagreement is
// a warning. The corpus' static busybox 1.15.2 (two direct calls, at 0x4e1394 and 0x4e13b4) with
// .text's sh_type, sh_flags or range rewritten; and a large dynamic host library, read sparsely,
// with a call site written into its .text and the same lies told about it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { analyseBytes } from '../../src/scan/analyse-file.js';
import { analyseFile, analyseSparse, SPARSE_MIN } from '../../src/scan/read-file.js';
import { readElf, type ElfFile } from '../../src/elf/read-elf.js';
import { PF, PT, SHF, SHT } from '../../src/elf/constants.js';
import type { ProgramHeader } from '../../src/elf/types.js';
import { CORPUS } from '../helpers.js';
import type { FileReport } from '../../src/scan/types.js';

const BUSYBOX = path.join(CORPUS, 'busybox-1.15.2-static', 'busybox');
/** An old layout: .rodata, .eh_frame and the symbol tables share the R+X segment with .text. */
const LIBC213 = path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so');

/** sh_addr, sh_offset, sh_size: the 24 bytes at +0x10 of a 64-byte section header. */
const RANGE = [0x10, 0x28] as const;

type Lie = (b: Buffer, header: (name: string) => number, elf: ElfFile) => void;

/** The executable PT_LOAD segment holding .text (the R+X one). */
function textSegment(elf: ElfFile): ProgramHeader {
  const text = elf.sections.find((s) => s.name === '.text');
  const seg = elf.programHeaders.find((p) => p.type === PT.LOAD && (p.flags & PF.X) !== 0 && text !== undefined && text.offset >= p.offset && text.offset < p.offset + p.filesz);
  assert.ok(seg, 'an executable segment holding .text');
  return seg;
}

/**
 * The issue's three lies about .text, and the range of code, of read-only data and of writable
 * data; then the reviewer's: .text's flags without EXECINSTR (ALLOC kept), its type one the loader
 * does not care about, and every section of the R+X segment called PROGBITS+ALLOC data.
 */
const LIES: Record<string, Lie> = {
  'sh_type 0xff00': (b, h) => b.writeUInt32LE(0xff00, h('.text') + 4),
  'sh_flags 0': (b, h) => b.writeBigUInt64LE(0n, h('.text') + 8),
  'sh_flags ALLOC': (b, h) => b.writeBigUInt64LE(BigInt(SHF.ALLOC), h('.text') + 8),
  'sh_flags ALLOC|WRITE': (b, h) => b.writeBigUInt64LE(BigInt(SHF.ALLOC | SHF.WRITE), h('.text') + 8),
  ...Object.fromEntries(
    (['NOTE', 'STRTAB', 'SYMTAB', 'DYNAMIC', 'INIT_ARRAY', 'GNU_HASH'] as const).map((t): [string, Lie] => [`sh_type ${t}`, (b, h) => b.writeUInt32LE(SHT[t], h('.text') + 4)]),
  ),
  'every section of the R+X segment PROGBITS+ALLOC': (b, _h, elf) => {
    const seg = textSegment(elf);
    for (const s of elf.sections) {
      if (s.index === 0 || s.size === 0 || s.offset < seg.offset || s.offset >= seg.offset + seg.filesz) continue;
      const at = Number(elf.header.shoff) + s.index * elf.header.shentsize;
      b.writeUInt32LE(SHT.PROGBITS, at + 4);
      b.writeBigUInt64LE(BigInt(SHF.ALLOC), at + 8);
    }
  },
  'sh_offset shifted by 3': (b, h) => b.writeBigUInt64LE(b.readBigUInt64LE(h('.text') + 0x18) + 3n, h('.text') + 0x18),
  'sh_addr shifted by 0x40': (b, h) => b.writeBigUInt64LE(b.readBigUInt64LE(h('.text') + 0x10) + 0x40n, h('.text') + 0x10),
  'range of .fini': (b, h) => b.copy(b, h('.text') + RANGE[0], h('.fini') + RANGE[0], h('.fini') + RANGE[1]),
  'range of .rodata': (b, h) => b.copy(b, h('.text') + RANGE[0], h('.rodata') + RANGE[0], h('.rodata') + RANGE[1]),
  'range of .data': (b, h) => b.copy(b, h('.text') + RANGE[0], h('.data') + RANGE[0], h('.data') + RANGE[1]),
};

/** A copy of `bytes` with `lie` told; section headers are found by name in the unmodified file. */
function withLie(bytes: Buffer, lie: Lie): Buffer {
  const elf = readElf(bytes, 'original');
  const header = (name: string) => {
    const s = elf.sections.find((x) => x.name === name);
    assert.ok(s, `section ${name}`);
    return Number(elf.header.shoff) + s.index * elf.header.shentsize;
  };
  const out = Buffer.from(bytes);
  lie(out, header, elf);
  return out;
}

function sites(r: FileReport | undefined, kind = true): string[] {
  return (r?.findings ?? []).map((f) => `${kind ? `${f.kind} ` : ''}${f.entry} 0x${f.address.toString(16)}`).sort();
}

const BUSYBOX_SITES = ['direct-call gettimeofday 0x4e13b4', 'direct-call time 0x4e1394'];

test('busybox 1.15.2 unmodified: the two direct calls, once each, and no warning', { skip: !fs.existsSync(BUSYBOX) && 'corpus not present' }, () => {
  const r = analyseBytes(fs.readFileSync(BUSYBOX), BUSYBOX);
  assert.equal(r?.error, undefined);
  assert.deepEqual(sites(r), BUSYBOX_SITES);
  assert.deepEqual(r?.identity?.warnings, []);
  assert.equal(r?.class, 'direct');
});

for (const [name, lie] of Object.entries(LIES)) {
  test(`busybox 1.15.2 with .text's ${name}: both direct calls found, and a warning`, { skip: !fs.existsSync(BUSYBOX) && 'corpus not present' }, () => {
    const bytes = withLie(fs.readFileSync(BUSYBOX), lie);
    const r = analyseBytes(bytes, `busybox (${name})`);
    assert.equal(r?.error, undefined, r?.error?.message);
    assert.equal(r?.class, 'direct');
    assert.deepEqual(sites(r), BUSYBOX_SITES, 'each site once, at its address');
    const warnings = r?.identity?.warnings ?? [];
    assert.ok(warnings.some((w) => /section headers disagree with program headers/.test(w)), `warnings: ${JSON.stringify(warnings)}`);
    if (name.startsWith('sh_addr')) {
      // The bytes are where they were; only the address lies, and the segment's address is the one reported.
      assert.ok(warnings.some((w) => /section \.text says address 0x400240, but the segment holding its offset 0x200 maps it at 0x400200/.test(w)), `warnings: ${JSON.stringify(warnings)}`);
    } else if (name.startsWith('sh_offset')) {
      assert.ok(warnings.some((w) => /section \.text says address 0x400200, but the segment holding its offset 0x203 maps it at 0x400203/.test(w)), `warnings: ${JSON.stringify(warnings)}`);
    } else {
      // The hidden code is named by where the kernel maps it: offset 0x200 is .text's start.
      assert.ok(warnings.some((w) => /bytes 0x200-0x[0-9a-f]+ of the executable segment at offset 0x0/.test(w)), `warnings: ${JSON.stringify(warnings)}`);
    }
    if (name === 'range of .data') assert.ok(warnings.some((w) => /code section \.text .* outside every executable segment/.test(w)));
  });
}

// libc 2.13: time() and getcpu() call the page directly; gettimeofday's is the vDSO's fallback.
const LIBC213_SITES = ['direct-call getcpu 0xce307', 'direct-call time 0x9cf54', 'fallback gettimeofday 0x1ecd7'];

test('libc 2.13 unmodified: its three sites, once each, and no warning (its .rodata and .eh_frame in the R+X segment are searched quietly)', { skip: !fs.existsSync(LIBC213) && 'corpus not present' }, () => {
  const r = analyseBytes(fs.readFileSync(LIBC213), LIBC213);
  assert.equal(r?.error, undefined);
  assert.deepEqual(sites(r), LIBC213_SITES);
  assert.deepEqual(r?.identity?.warnings, []);
});

// (libc 2.13 has no .fini to copy a range from.)
for (const [name, lie] of Object.entries(LIES).filter(([n]) => n !== 'range of .fini')) {
  test(`libc 2.13 with .text's ${name}: the direct calls of time and getcpu found, and a warning`, { skip: !fs.existsSync(LIBC213) && 'corpus not present' }, () => {
    const bytes = withLie(fs.readFileSync(LIBC213), lie);
    const r = analyseBytes(bytes, `libc-2.13.so (${name})`);
    assert.equal(r?.error, undefined, r?.error?.message);
    assert.equal(r?.class, 'direct');
    const found = sites(r);
    for (const s of ['direct-call getcpu 0xce307', 'direct-call time 0x9cf54']) assert.ok(found.includes(s), `${s} in ${found.join(', ')}`);
    assert.equal(new Set(found.map((f) => f.split(' ').at(-1))).size, found.length, `each site once: ${found.join(', ')}`);
    const warnings = r?.identity?.warnings ?? [];
    assert.ok(warnings.some((w) => /section headers disagree with program headers/.test(w)), `warnings: ${JSON.stringify(warnings)}`);
  });
}

/**
 * A large dynamic library of this host that a scan reads sparsely (not a libc: those are read
 * whole), with a big .text (a hole of the sparse read) and a .fini, .rodata and .data.
 */
function sparseHostLibrary(): string | undefined {
  const dir = '/usr/lib/x86_64-linux-gnu';
  if (!fs.existsSync(dir)) return undefined;
  const names = fs.readdirSync(dir).filter((n) => /^lib.*\.so[.\d]*$/.test(n) && !/^libc[.-]/.test(n)).sort();
  for (const n of names) {
    const p = path.join(dir, n);
    const st = fs.lstatSync(p);
    if (!st.isFile() || st.size < SPARSE_MIN || st.size > 16 * SPARSE_MIN) continue;
    let elf;
    try {
      elf = readElf(fs.readFileSync(p), p);
    } catch {
      continue;
    }
    if (!['.fini', '.rodata', '.data'].every((s) => elf.sections.some((x) => x.name === s))) continue;
    if ((elf.sections.find((x) => x.name === '.text')?.size ?? 0) < 256 * 1024) continue;
    const fd = fs.openSync(p, 'r');
    try {
      const s = analyseSparse(fd, st.size, p);
      if (s.how === 'sparse' && s.report?.class === 'clean') return p;
    } finally {
      fs.closeSync(fd);
    }
  }
  return undefined;
}

test('a large library read sparsely: a call site in a .text that lies is found (the file goes whole), with a warning', { timeout: 120_000 }, (t) => {
  const lib = sparseHostLibrary();
  if (!lib) return t.skip('no clean dynamic library of 1-16 MiB with .text, .fini, .rodata, .data that reads sparsely');
  const original = fs.readFileSync(lib);
  const elf = readElf(original, lib);
  const text = elf.sections.find((s) => s.name === '.text');
  assert.ok(text);
  // mov $0xffffffffff600400,%rax; call *%rax, in the middle of .text, behind NOPs so the decode is in step.
  const at = text.offset + (Math.floor(text.size / 2) & ~15);
  const call = Buffer.from([...Array(16).fill(0x90), 0x48, 0xc7, 0xc0, 0x00, 0x04, 0x60, 0xff, 0xff, 0xd0]);
  const planted = Buffer.from(original);
  call.copy(planted, at);
  const address = `0x${(text.addr + BigInt(at + 16 - text.offset)).toString(16)}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-lying-'));
  try {
    const honest = path.join(dir, 'honest.so');
    fs.writeFileSync(honest, planted);
    const h = analyseFile(honest);
    assert.equal(h.kind, 'elf');
    if (h.kind !== 'elf') return;
    // (Its kind, direct-call or indirect, depends on how the function it landed in is reached.)
    assert.deepEqual(sites(h.report, false), [`time ${address}`]);
    assert.deepEqual(h.report.identity?.warnings, []);
    for (const [name, lie] of Object.entries(LIES)) {
      const p = path.join(dir, `lie-${name.replace(/\W+/g, '-')}.so`);
      const bytes = withLie(planted, lie);
      fs.writeFileSync(p, bytes);
      assert.ok(bytes.length >= SPARSE_MIN, 'large enough for the sparse reader');
      const r = analyseFile(p);
      assert.equal(r.kind, 'elf', `${name}: ${r.kind === 'error' ? r.error.message : r.kind}`);
      if (r.kind !== 'elf') continue;
      assert.ok(sites(r.report, false).includes(`time ${address}`), `${name}: ${sites(r.report).join(', ')}`);
      assert.ok((r.report.identity?.warnings ?? []).some((w) => /section headers disagree/.test(w)), `${name}: ${JSON.stringify(r.report.identity?.warnings)}`);
      // Whatever path the read took, the report is the whole file's.
      assert.ok(isDeepStrictEqual(r.report, analyseBytes(bytes, p)), `${name}: sparse and whole reports differ`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * The ELF header's section fields lie (e_shoff past the end, e_shnum too large, e_shstrndx naming no
 * section): the kernel never reads section headers, so busybox still runs, and the file is judged
 * from its program headers, its sites at their addresses (not file offsets), with a warning. A
 * dynamic file (libc 2.13) keeps an error, its dynamic symbols being unreadable, but its sites are
 * still named at their addresses.
 */
const HEADER_LIES: Record<string, (b: Buffer) => void> = {
  'e_shoff past the end': (b) => b.writeBigUInt64LE(0x7fffffff0n, 0x28),
  'e_shnum 0xffff': (b) => b.writeUInt16LE(0xffff, 0x3c),
  'e_shstrndx 0x9999': (b) => b.writeUInt16LE(0x9999, 0x3e),
};

for (const [name, lie] of Object.entries(HEADER_LIES)) {
  test(`busybox 1.15.2 with ${name}: judged from its program headers, both calls at their addresses, with a warning`, { skip: !fs.existsSync(BUSYBOX) && 'corpus not present' }, () => {
    const bytes = Buffer.from(fs.readFileSync(BUSYBOX));
    lie(bytes);
    assert.throws(() => readElf(bytes, 'x'), /ELF_BAD_|section/, 'strict by default');
    const elf = readElf(bytes, 'x', undefined, { sectionsOptional: true });
    assert.deepEqual([elf.sections.length, elf.sectionError?.code.startsWith('ELF_BAD_')], [0, true], 'readElf drops the sections and says why');
    const r = analyseBytes(bytes, `busybox (${name})`);
    assert.equal(r?.error, undefined, r?.error?.message);
    assert.equal(r?.class, 'direct');
    assert.deepEqual(sites(r), BUSYBOX_SITES);
    assert.ok(r?.identity?.warnings.some((w) => /^section headers not read \(ELF_BAD_(OFFSET|COUNT)/.test(w)), JSON.stringify(r?.identity?.warnings));
  });

  test(`libc 2.13 with ${name}: an error (no dynamic symbols), its time and getcpu calls at their addresses`, { skip: !fs.existsSync(LIBC213) && 'corpus not present' }, () => {
    const bytes = Buffer.from(fs.readFileSync(LIBC213));
    lie(bytes);
    const r = analyseBytes(bytes, `libc-2.13.so (${name})`);
    assert.match(r?.error?.code ?? '', /^ELF_BAD_(OFFSET|COUNT)$/);
    assert.match(r?.error?.message ?? '', /dynamic symbols .* could not be read/);
    const found = sites(r);
    for (const s of ['direct-call getcpu 0xce307', 'direct-call time 0x9cf54']) assert.ok(found.includes(s), `${s} in ${found.join(', ')}`);
  });
}
