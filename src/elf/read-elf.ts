// Reads an ELF32/ELF64 little-endian file's header, program headers and section headers (System V
// gABI ch. 4 and 5, with extended section numbering); maps addresses to file offsets through PT_LOAD.
import { VsysError, type ErrorCode } from '../errors.js';
import { ByteReader } from './bytes.js';
import { ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB, EV_CURRENT, PN_XNUM, PT, SHN_UNDEF, SHN_XINDEX, SHT } from './constants.js';
import { big, layoutsFor, num, wordBig, wordNum, type ClassLayouts } from './layouts.js';
import { StringTable } from './string-table.js';
import type { ElfClass, ElfHeader, ProgramHeader, Section } from './types.js';

export interface ElfFile {
  path: string;
  bytes: Uint8Array;
  reader: ByteReader;
  header: ElfHeader;
  programHeaders: ProgramHeader[];
  sections: Section[];
  /**
   * Why the section headers were not read, when they could not be and the program headers could:
   * the kernel never reads sections, so such a file is judged from its segments (sections empty).
   */
  sectionError?: VsysError;
}

/** Magic only: 0x7f 'E' 'L' 'F'. */
export function isElf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

function fail(code: ErrorCode, path: string, msg: string): never {
  throw new VsysError(code, `${path}: ${msg}`, { path });
}

/**
 * `holes`: ranges of `bytes` that were not read from the file (a sparse read); reading them throws
 * HoleRead. `sectionsOptional`: section headers that cannot be read leave `sections` empty and say
 * why in `sectionError` (when the program headers can be read), instead of failing the file.
 */
export function readElf(bytes: Uint8Array, path: string, holes?: readonly (readonly [number, number])[], opts: { sectionsOptional?: boolean } = {}): ElfFile {
  if (!isElf(bytes)) fail('ELF_BAD_MAGIC', path, 'not an ELF file (no \\x7fELF magic)');
  const r = new ByteReader(bytes, path, holes);
  r.need(0, 16, 'e_ident');
  const ei = bytes.subarray(0, 16);
  const cls: ElfClass = ei[4] === ELFCLASS64 ? 64 : ei[4] === ELFCLASS32 ? 32 : fail('ELF_UNSUPPORTED', path, `unknown ELF class ${ei[4]}`);
  if (ei[5] === ELFDATA2MSB) fail('ELF_UNSUPPORTED', path, 'big-endian ELF files are not supported');
  if (ei[5] !== ELFDATA2LSB) fail('ELF_UNSUPPORTED', path, `unknown ELF data encoding ${ei[5]}`);
  if (ei[6] !== EV_CURRENT) fail('ELF_UNSUPPORTED', path, `unknown ELF version ${ei[6]}`);
  const L = layoutsFor(cls);
  r.need(0, L.ehdr.size, 'ELF header');
  const e = L.ehdr.f;
  const header: ElfHeader = {
    class: cls,
    osabi: ei[7]!,
    type: r.u16(e.e_type.offset),
    machine: r.u16(e.e_machine.offset),
    version: r.u32(e.e_version.offset),
    entry: big(r, 0, e.e_entry),
    phoff: big(r, 0, e.e_phoff),
    shoff: big(r, 0, e.e_shoff),
    flags: r.u32(e.e_flags.offset),
    ehsize: r.u16(e.e_ehsize.offset),
    phentsize: r.u16(e.e_phentsize.offset),
    phnum: r.u16(e.e_phnum.offset),
    shentsize: r.u16(e.e_shentsize.offset),
    shnum: r.u16(e.e_shnum.offset),
    shstrndx: r.u16(e.e_shstrndx.offset),
  };
  let sections: Section[];
  let sectionError: VsysError | undefined;
  try {
    sections = readSectionHeaders(r, L, header);
  } catch (e) {
    // Lying section headers do not stop a program from running: with program headers the kernel can
    // load (their count is not kept in section 0), read on without sections. A HoleRead goes on up.
    if (!opts.sectionsOptional || !(e instanceof VsysError) || header.phnum === 0 || header.phnum === PN_XNUM || header.phoff === 0n) throw e;
    sections = [];
    sectionError = e;
  }
  const programHeaders = readProgramHeaders(r, L, header, sections[0]);
  const elf: ElfFile = { path, bytes, reader: r, header, programHeaders, sections };
  if (sectionError) elf.sectionError = sectionError;
  return elf;
}

/** Checks that a table of `count` entries of `entsize` bytes at `off` fits in the file. */
function checkTable(r: ByteReader, off: bigint, count: number, entsize: number, min: number, what: string): number {
  if (entsize < min) fail('ELF_BAD_COUNT', r.source, `${what} entry size ${entsize} is smaller than ${min}`);
  const bytes = count * entsize;
  if (bytes > r.length) fail('ELF_BAD_COUNT', r.source, `${count} ${what} of ${entsize} bytes cannot fit in a ${r.length}-byte file`);
  if (off > BigInt(r.length)) fail('ELF_BAD_OFFSET', r.source, `${what} offset 0x${off.toString(16)} lies beyond the ${r.length}-byte file`);
  const start = Number(off);
  r.need(start, bytes, what);
  return start;
}

function readSectionHeaders(r: ByteReader, L: ClassLayouts, h: ElfHeader): Section[] {
  if (h.shoff === 0n) return [];
  const f = L.shdr.f;
  const start = checkTable(r, h.shoff, Math.max(h.shnum, 1), h.shentsize, L.shdr.size, 'section headers');
  // Extended numbering (gABI): with more than 0xff00 sections the real counts sit in section 0.
  let count = h.shnum;
  if (count === 0) count = num(r, start, f.sh_size, 'section count (sh_size of section 0)');
  if (count === 0) return [];
  checkTable(r, h.shoff, count, h.shentsize, L.shdr.size, 'section headers');
  let strndx = h.shstrndx;
  if (strndx === SHN_XINDEX) strndx = r.u32(start + f.sh_link.offset);
  if (strndx >= count) fail('ELF_BAD_OFFSET', r.source, `e_shstrndx ${strndx} names no section (there are ${count})`);

  // The table's range was checked (checkTable): its fields are read straight from the view.
  const dv = r.view;
  const w = L.addr;
  const sections: Section[] = [];
  for (let i = 0; i < count; i++) {
    const b = start + i * h.shentsize;
    const type = dv.getUint32(b + f.sh_type.offset, true);
    const s: Section = {
      index: i,
      name: '',
      nameOffset: dv.getUint32(b + f.sh_name.offset, true),
      type,
      flags: wordBig(dv, b + f.sh_flags.offset, w),
      addr: wordBig(dv, b + f.sh_addr.offset, w),
      offset: wordNum(dv, b + f.sh_offset.offset, w, `sh_offset of section ${i}`),
      size: wordNum(dv, b + f.sh_size.offset, w, `sh_size of section ${i}`),
      link: dv.getUint32(b + f.sh_link.offset, true),
      info: dv.getUint32(b + f.sh_info.offset, true),
      addralign: wordBig(dv, b + f.sh_addralign.offset, w),
      entsize: wordNum(dv, b + f.sh_entsize.offset, w, `sh_entsize of section ${i}`),
    };
    if (type !== SHT.NOBITS && type !== SHT.NULL) r.within(s.offset, s.size, `section ${i}`, 'ELF_BAD_OFFSET');
    sections.push(s);
  }
  if (strndx !== SHN_UNDEF) {
    const st = sections[strndx]!;
    if (st.type === SHT.NOBITS) fail('ELF_MALFORMED', r.source, `the section name table (section ${strndx}) has no file bytes`);
    const names = sectionNames(r, st.offset, st.size);
    for (const s of sections) s.name = s.nameOffset === 0 && s.type === SHT.NULL ? '' : names(s.nameOffset);
  }
  return sections;
}

/**
 * Names in a section name table, shared between files whose tables are byte for byte the same (most
 * files one toolchain made): a file's ~30 names are then looked up, not decoded again. Checked as
 * StringTable checks them (a new table decodes through one).
 */
const NAME_TABLES = new Map<string, Map<number, string>>();
const NAME_TABLES_MAX = 256;
const NAME_TABLE_KEY_MAX = 2048;

function sectionNames(r: ByteReader, offset: number, size: number): (at: number) => string {
  const table = new StringTable(r, offset, size, 'the section name table');
  if (size > NAME_TABLE_KEY_MAX) return (at) => table.get(at);
  const key = Buffer.from(r.bytes.buffer, r.bytes.byteOffset + offset, size).toString('latin1');
  let known = NAME_TABLES.get(key);
  if (!known) {
    if (NAME_TABLES.size >= NAME_TABLES_MAX) NAME_TABLES.clear();
    NAME_TABLES.set(key, (known = new Map()));
  }
  const names = known;
  return (at) => {
    let name = names.get(at);
    if (name === undefined) names.set(at, (name = table.get(at)));
    return name;
  };
}

function readProgramHeaders(r: ByteReader, L: ClassLayouts, h: ElfHeader, section0: Section | undefined): ProgramHeader[] {
  let count = h.phnum;
  if (count === PN_XNUM && section0) count = section0.info;
  if (count === 0 || h.phoff === 0n) return [];
  const start = checkTable(r, h.phoff, count, h.phentsize, L.phdr.size, 'program headers');
  const f = L.phdr.f;
  const dv = r.view;
  const w = L.addr;
  const out: ProgramHeader[] = [];
  for (let i = 0; i < count; i++) {
    const b = start + i * h.phentsize;
    const p: ProgramHeader = {
      type: dv.getUint32(b + f.p_type.offset, true),
      flags: dv.getUint32(b + f.p_flags.offset, true),
      offset: wordNum(dv, b + f.p_offset.offset, w, `p_offset of program header ${i}`),
      vaddr: wordBig(dv, b + f.p_vaddr.offset, w),
      paddr: wordBig(dv, b + f.p_paddr.offset, w),
      filesz: wordNum(dv, b + f.p_filesz.offset, w, `p_filesz of program header ${i}`),
      memsz: wordBig(dv, b + f.p_memsz.offset, w),
      align: wordBig(dv, b + f.p_align.offset, w),
    };
    r.within(p.offset, p.filesz, `segment ${i}`, 'ELF_BAD_OFFSET');
    out.push(p);
  }
  return out;
}

/** The first section with this name. */
export function findSection(elf: ElfFile, name: string): Section | undefined {
  return elf.sections.find((s) => s.name === name);
}

/** The first section of this sh_type. */
export function findSectionByType(elf: ElfFile, type: number): Section | undefined {
  return elf.sections.find((s) => s.type === type);
}

/** File offset of a virtual address that lies in the file part of a PT_LOAD segment. */
export function vaddrToOffset(elf: ElfFile, vaddr: bigint): number | undefined {
  for (const p of elf.programHeaders) {
    if (p.type !== PT.LOAD) continue;
    const delta = vaddr - p.vaddr;
    if (delta >= 0n && delta < BigInt(p.filesz)) return p.offset + Number(delta);
  }
  return undefined;
}

/** Virtual address of a file offset that lies in the file part of a PT_LOAD segment. */
export function offsetToVaddr(elf: ElfFile, offset: number): bigint | undefined {
  for (const p of elf.programHeaders) {
    if (p.type !== PT.LOAD) continue;
    if (offset >= p.offset && offset < p.offset + p.filesz) return p.vaddr + BigInt(offset - p.offset);
  }
  return undefined;
}

/** The program interpreter named by PT_INTERP, without its NUL. */
export function readInterp(elf: ElfFile): string | undefined {
  const p = elf.programHeaders.find((ph) => ph.type === PT.INTERP);
  if (!p) return undefined;
  if (p.filesz === 0) fail('ELF_MALFORMED', elf.path, 'PT_INTERP is empty');
  return elf.reader.cstring(p.offset, p.filesz);
}
