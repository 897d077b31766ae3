// The ELF reader against GNU readelf, field by field, on real files: the shared corpus, this
// machine's libc/ls/node, i386 files built with gcc -m32, and a Go 1.12 binary (esbuild 0.0.2).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readElf, readInterp, vaddrToOffset, offsetToVaddr, type ElfFile } from '../../src/elf/read-elf.js';
import { readSymbols, readVersionDefinitions, readVersionNeeds, formatVersionedName } from '../../src/elf/symbols.js';
import { readDynamic } from '../../src/elf/dynamic.js';
import { readNotes, readBuildId, readAbiTag } from '../../src/elf/notes.js';
import { readFunctionRanges } from '../../src/elf/eh-frame.js';
import { PT } from '../../src/elf/constants.js';
import { CORPUS, hasCommand } from '../helpers.js';
import { elf32Files, esbuild002 } from '../support/real-files.js';
import {
  readelf, parseHeader, parseSegments, parseSections, parseSymbols, parseDynamic, parseNotes, parseVersions, parseFdeRanges,
  E_TYPE, MACHINE, OSABI, SHF_KNOWN, type ReadelfSymbol,
} from './readelf-oracle.js';

const HAS_READELF = hasCommand('readelf');

function load(file: string): ElfFile {
  return readElf(new Uint8Array(readFileSync(file)), file);
}

function checkHeaders(elf: ElfFile, file: string): void {
  const h = parseHeader(readelf(['-h'], file));
  assert.deepEqual([...elf.bytes.subarray(0, 16)], h.ident, 'e_ident');
  assert.equal(elf.header.class, h.cls);
  assert.equal(OSABI[elf.header.osabi] ?? `osabi ${elf.header.osabi}`, h.osabi);
  assert.equal(elf.header.type, E_TYPE[h.type], `e_type (${h.type})`);
  assert.equal(MACHINE[elf.header.machine] ?? `machine ${elf.header.machine}`, h.machine);
  const { class: _c, osabi: _o, type: _t, machine: _m, ...ours } = elf.header;
  const { ident: _i, cls: _k, osabi: _p, type: _u, machine: _n, ...theirs } = h;
  assert.deepEqual(ours, theirs, 'header numbers');

  const l = parseSegments(readelf(['-l'], file));
  assert.equal(elf.programHeaders.length, elf.header.phnum);
  // readelf prints only R, W and E; some old linkers set OS-specific flag bits (0x2800 in the busybox files).
  assert.deepEqual(elf.programHeaders.map((p) => ({ ...p, flags: p.flags & 7 })), l.segments, 'program headers');
  assert.equal(readInterp(elf), l.interp);

  const s = parseSections(readelf(['-S'], file));
  assert.equal(elf.sections.length, s.length, 'section count');
  assert.ok(elf.sections.length === 0 || s.length > 0);
  const ours2 = elf.sections.map((x) => ({
    index: x.index, name: x.name, type: x.type, addr: x.addr, offset: x.offset, size: x.size, entsize: x.entsize,
    flags: Number(x.flags & BigInt(SHF_KNOWN)) >>> 0, link: x.link, info: x.info, align: x.addralign,
  }));
  assert.deepEqual(ours2, s, 'section headers');

  // Address ↔ offset through PT_LOAD, at each segment's first and last file byte.
  for (const p of elf.programHeaders.filter((q) => q.type === PT.LOAD && q.filesz > 0)) {
    assert.equal(vaddrToOffset(elf, p.vaddr), p.offset);
    assert.equal(vaddrToOffset(elf, p.vaddr + BigInt(p.filesz - 1)), p.offset + p.filesz - 1);
    assert.equal(offsetToVaddr(elf, p.offset + p.filesz - 1), p.vaddr + BigInt(p.filesz - 1));
  }
}

function checkSymbols(elf: ElfFile, file: string): void {
  const tables = parseSymbols(readelf(['-s', '--dyn-syms'], file));
  for (const name of ['.dynsym', '.symtab'] as const) {
    const ours = readSymbols(elf, name);
    const theirs = tables.get(name);
    if (!theirs) {
      assert.deepEqual(ours, [], `${name}: readelf prints none`);
      continue;
    }
    assert.equal(ours.length, theirs.count, `${name} count`);
    assert.equal(theirs.symbols.length, theirs.count, `${name}: every readelf row parsed`);
    for (let i = 0; i < ours.length; i++) {
      const a = ours[i]!;
      const b: ReadelfSymbol = theirs.symbols[i]!;
      const ndx = a.shndx === 0 ? 'UND' : a.shndx === 0xfff1 ? 'ABS' : a.shndx === 0xfff2 ? 'COM' : String(a.shndx);
      // readelf appends " (N)" (the version index) to versions the file needs.
      const printed = name === '.dynsym' ? b.name.replace(/ \(\d+\)$/, '') : b.name;
      // readelf names an unnamed STT_SECTION symbol after its section.
      const base = a.type === 3 && a.name === '' ? (elf.sections[a.shndx]?.name ?? '') : a.name;
      const shown = name === '.dynsym' ? formatVersionedName({ ...a, name: base }) : base;
      assert.deepEqual(
        { index: a.index, value: a.value, size: a.size, type: a.type, bind: a.bind, visibility: a.visibility, ndx, name: shown },
        { index: b.index, value: b.value, size: b.size, type: b.type, bind: b.bind, visibility: b.visibility, ndx: b.ndx, name: printed },
        `${name}[${i}]`,
      );
    }
  }
}

function checkVersionsAndDynamic(elf: ElfFile, file: string): void {
  const v = parseVersions(readelf(['-V'], file));
  assert.deepEqual(readVersionDefinitions(elf), v.defs, 'version definitions');
  assert.deepEqual(readVersionNeeds(elf), v.needs, 'version needs');
  const d = parseDynamic(readelf(['-d'], file));
  const ours = readDynamic(elf);
  if (!d) {
    assert.equal(ours, undefined);
    return;
  }
  assert.ok(ours);
  assert.deepEqual(ours.entries.map((e) => e.tag), d.tags, 'dynamic tags');
  assert.deepEqual(ours.needed, d.needed, 'DT_NEEDED');
  assert.equal(ours.soname, d.soname, 'DT_SONAME');
  assert.equal(ours.runpath, d.runpath, 'DT_RUNPATH');
  assert.equal(ours.rpath, d.rpath, 'DT_RPATH');
}

function checkNotes(elf: ElfFile, file: string): void {
  const n = parseNotes(readelf(['-n'], file));
  assert.deepEqual(readNotes(elf).map((x) => ({ source: x.source, owner: x.name, size: x.desc.length, type: x.type })), n.notes, 'notes');
  assert.equal(readBuildId(elf), n.buildId, 'build-id');
  assert.deepEqual(readAbiTag(elf), n.abi, 'ABI tag');
}

function checkFrames(elf: ElfFile, file: string): void {
  const f = parseFdeRanges(readelf(['-wN', '-wf'], file));
  const ours = readFunctionRanges(elf);
  assert.deepEqual(ours, f.ranges, 'FDE ranges');
  if (f.fdes > 0) assert.ok(ours.length > 0);
}

interface Target {
  label: string;
  file: () => Promise<string | undefined> | string | undefined;
  skip?: string;
  headersOnly?: boolean;
  extra?: (elf: ElfFile, t: TestContext) => void;
}

/** The corpus' ELF files, at any depth (the 2011 initramfs is a whole tree, with scripts and symlinks). */
function corpusFiles(): string[] {
  if (!existsSync(CORPUS)) return [];
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, d.name);
      if (d.isDirectory()) walk(p);
      else if (d.isFile() && readFileSync(p).subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) out.push(p);
    }
  };
  walk(CORPUS);
  return out.sort();
}

const built32 = elf32Files();
const targets: Target[] = [
  ...corpusFiles().map((f): Target => ({ label: `corpus ${path.relative(CORPUS, f)}`, file: () => f })),
  { label: 'this machine: libc.so.6', file: () => '/lib/x86_64-linux-gnu/libc.so.6' },
  { label: 'this machine: /bin/busybox', file: () => '/bin/busybox' },
  { label: 'this machine: /usr/bin/ls', file: () => '/usr/bin/ls' },
  { label: `node (${process.execPath}), headers only`, file: () => process.execPath, headersOnly: true },
  { label: 'esbuild 0.0.2 (Go 1.12.9)', file: esbuild002 },
  ...('reason' in built32
    ? [{ label: 'i386 files from gcc -m32', file: () => undefined, skip: built32.reason }]
    : [{ label: 'i386 static executable (gcc -m32)', file: () => built32.exec }, { label: 'i386 versioned shared object (gcc -m32)', file: () => built32.shared }]),
];

test('the corpus is present', { skip: !existsSync(CORPUS) && `no corpus at ${CORPUS}` }, () => {
  assert.ok(corpusFiles().length >= 5, `expected the five corpus files under ${CORPUS}`);
});

for (const t of targets) {
  test(`readelf agrees: ${t.label}`, { skip: !HAS_READELF ? 'readelf is not installed' : t.skip }, async (ctx) => {
    const file = await t.file();
    if (!file || !existsSync(file)) return ctx.skip(`${file ?? t.label} is not available here`);
    const elf = load(file);
    await ctx.test('header, program headers, section headers', () => checkHeaders(elf, file));
    if (t.headersOnly) return;
    await ctx.test('symbols (.dynsym with versions, .symtab)', () => checkSymbols(elf, file));
    await ctx.test('version definitions and needs, dynamic section', () => checkVersionsAndDynamic(elf, file));
    await ctx.test('notes, build-id, ABI tag', () => checkNotes(elf, file));
    await ctx.test('.eh_frame FDE ranges', () => checkFrames(elf, file));
  });
}

// Files whose section name tables are byte for byte the same share their decoded names (read-elf.ts,
// sectionNames): each file must still get the names its own headers point at, and its own errors.
test('section names shared between identical name tables stay each file\'s own (readelf)', { skip: !HAS_READELF && 'readelf is not installed' }, (ctx) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vsys-shnames-'));
  ctx.after(() => rmSync(dir, { recursive: true, force: true }));
  const orig = readFileSync('/usr/bin/ls');
  const base = load('/usr/bin/ls'); // its table is now known
  const shstr = base.sections[base.header.shstrndx]!;
  const text = base.sections.find((s) => s.name === '.text')!;
  const data = base.sections.find((s) => s.name === '.data')!;
  const shdr = (i: number) => Number(base.header.shoff) + i * base.header.shentsize;
  const write = (name: string, bytes: Buffer) => {
    const file = path.join(dir, name);
    writeFileSync(file, bytes);
    return file;
  };
  const namesByReadelf = (file: string) => parseSections(readelf(['-S'], file)).map((s) => s.name);

  // The same table, one header pointing at another name: a table known already, a name of its own.
  const pointed = Buffer.from(orig);
  pointed.writeUInt32LE(data.nameOffset, shdr(text.index));
  const f1 = write('pointed', pointed);
  const e1 = load(f1);
  assert.equal(e1.sections[text.index]!.name, '.data');
  assert.deepEqual(e1.sections.map((s) => s.name), namesByReadelf(f1));

  // A table one byte different (".text" → ".tExt"): not the known one.
  const renamed = Buffer.from(orig);
  renamed[shstr.offset + text.nameOffset + 2] = 'E'.charCodeAt(0);
  const f2 = write('renamed', renamed);
  const e2 = load(f2);
  assert.equal(e2.sections[text.index]!.name, '.tExt');
  assert.deepEqual(e2.sections.map((s) => s.name), namesByReadelf(f2));
  assert.equal(load('/usr/bin/ls').sections[text.index]!.name, '.text', 'the original file is unchanged by the other two');

  // The known table, a name offset past its end: the coded error, each time.
  const outside = Buffer.from(orig);
  outside.writeUInt32LE(shstr.size + 5, shdr(text.index));
  for (let i = 0; i < 2; i++) assert.throws(() => readElf(new Uint8Array(outside), 'outside'), { code: 'ELF_BAD_OFFSET' });
});
