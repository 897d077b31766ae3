// Reads an ELF32/ELF64 little-endian file's header, program headers and section headers (System V
// gABI ch. 4 and 5, with extended section numbering); maps addresses to file offsets through PT_LOAD.
import { VsysError, type ErrorCode } from '../errors.js';
import { ByteReader } from './bytes.js';
import { ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB, EV_CURRENT, PN_XNUM, PT, SHN_UNDEF, SHN_XINDEX, SHT } from './constants.js';
import { checkTable, readHeader, readIdent, readProgramHeaders, type ElfIdent } from './header.js';
import { layoutsFor, num, wordBig, wordNum, type ClassLayouts } from './layouts.js';
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
  const ei = readIdent(bytes) as ElfIdent; // its 16 bytes are there (need, above)
  const cls: ElfClass = ei.class === ELFCLASS64 ? 64 : ei.class === ELFCLASS32 ? 32 : fail('ELF_UNSUPPORTED', path, `unknown ELF class ${ei.class}`);
  if (ei.data === ELFDATA2MSB) fail('ELF_UNSUPPORTED', path, 'big-endian ELF files are not supported');
  if (ei.data !== ELFDATA2LSB) fail('ELF_UNSUPPORTED', path, `unknown ELF data encoding ${ei.data}`);
  if (ei.version !== EV_CURRENT) fail('ELF_UNSUPPORTED', path, `unknown ELF version ${ei.version}`);
  const L = layoutsFor(cls);
  const header = readHeader(r, cls, ei.osabi);
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
  const programHeaders = programHeadersOf(r, header, sections[0]);
  const elf: ElfFile = { path, bytes, reader: r, header, programHeaders, sections };
  if (sectionError) elf.sectionError = sectionError;
  return elf;
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

/** The program headers; with PN_XNUM their count is section 0's sh_info (gABI extended numbering). */
function programHeadersOf(r: ByteReader, h: ElfHeader, section0: Section | undefined): ProgramHeader[] {
  if (h.phoff === 0n) return [];
  return readProgramHeaders(r, h, h.phnum === PN_XNUM && section0 ? section0.info : h.phnum);
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
