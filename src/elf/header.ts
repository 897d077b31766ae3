// The ELF identification, the ELF header and the program header table of a file, read from as few
// of its first bytes as hold them, and the extents they describe (System V gABI ch. 4 "ELF Header",
// ch. 5 "Program Header"). Every reader of these (readElf, the sparse reader, the vDSO parsers)
// goes through here and the layout tables; no other module knows where a header field lies.
import { VsysError } from '../errors.js';
import type { ByteReader } from './bytes.js';
import { toSafeNumber } from './bytes.js';
import { PT } from './constants.js';
import { big, layoutsFor, wordBig, wordNum } from './layouts.js';
import type { ElfClass, ElfHeader, ProgramHeader } from './types.js';

/** e_ident's indices (gABI "ELF Identification"). */
const EI = { CLASS: 4, DATA: 5, VERSION: 6, OSABI: 7, NIDENT: 16 } as const;

/** e_ident's bytes as the file holds them; judging them (and saying what is wrong) is the caller's. */
export interface ElfIdent {
  /** 0x7f 'E' 'L' 'F'. */
  magic: boolean;
  /** EI_CLASS: ELFCLASS32 (1) or ELFCLASS64 (2) in a file vsys reads. */
  class: number;
  /** EI_DATA: ELFDATA2LSB (1) in a file vsys reads. */
  data: number;
  version: number;
  osabi: number;
}

/** The identification bytes; undefined when the buffer is shorter than e_ident. */
export function readIdent(bytes: Uint8Array): ElfIdent | undefined {
  if (bytes.length < EI.NIDENT) return undefined;
  return {
    magic: bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46,
    class: bytes[EI.CLASS] as number,
    data: bytes[EI.DATA] as number,
    version: bytes[EI.VERSION] as number,
    osabi: bytes[EI.OSABI] as number,
  };
}

/**
 * The ELF header of class `cls` (the caller has judged e_ident), every field through the class's
 * layout table. Throws ELF_TRUNCATED (or HoleRead) when the buffer does not hold the whole header.
 */
export function readHeader(r: ByteReader, cls: ElfClass, osabi = 0): ElfHeader {
  const L = layoutsFor(cls);
  r.need(0, L.ehdr.size, 'ELF header');
  const e = L.ehdr.f;
  return {
    class: cls,
    osabi,
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
}

/**
 * Checks that a table of `count` entries of `entsize` bytes (at least `min`) at `off` fits in the
 * buffer: ELF_BAD_COUNT, ELF_BAD_OFFSET or ELF_TRUNCATED when not. Returns its offset.
 */
export function checkTable(r: ByteReader, off: bigint, count: number, entsize: number, min: number, what: string): number {
  if (entsize < min) fail('ELF_BAD_COUNT', r.source, `${what} entry size ${entsize} is smaller than ${min}`);
  const bytes = count * entsize;
  if (bytes > r.length) fail('ELF_BAD_COUNT', r.source, `${count} ${what} of ${entsize} bytes cannot fit in a ${r.length}-byte file`);
  if (off > BigInt(r.length)) fail('ELF_BAD_OFFSET', r.source, `${what} offset 0x${off.toString(16)} lies beyond the ${r.length}-byte file`);
  const start = Number(off);
  r.need(start, bytes, what);
  return start;
}

function fail(code: 'ELF_BAD_COUNT' | 'ELF_BAD_OFFSET', path: string, msg: string): never {
  throw new VsysError(code, `${path}: ${msg}`, { path });
}

/** Where the program header table lies: its checked offset, entry size and count (0 when there is none). */
export interface TableAt {
  start: number;
  entsize: number;
  count: number;
}

/**
 * The program header table's place, checked to lie in the buffer (checkTable). `count` replaces
 * e_phnum (readElf passes section 0's sh_info for PN_XNUM).
 */
export function programTable(r: ByteReader, h: ElfHeader, count = h.phnum): TableAt {
  if (count === 0) return { start: 0, entsize: h.phentsize, count: 0 };
  const start = checkTable(r, h.phoff, count, h.phentsize, layoutsFor(h.class).phdr.size, 'program headers');
  return { start, entsize: h.phentsize, count };
}

/** The p_type of each entry: for a caller that only asks which kinds of segment there are. */
export function segmentTypes(r: ByteReader, h: ElfHeader, t: TableAt): number[] {
  const at = t.start + layoutsFor(h.class).phdr.f.p_type.offset;
  const out: number[] = [];
  for (let i = 0; i < t.count; i++) out.push(r.view.getUint32(at + i * t.entsize, true));
  return out;
}

/**
 * The program headers of a whole file, in order, each segment's file part checked to lie in the
 * buffer (ELF_BAD_OFFSET); offsets and sizes as numbers (NUMBER_UNSAFE from 2^53 on).
 */
export function readProgramHeaders(r: ByteReader, h: ElfHeader, count = h.phnum): ProgramHeader[] {
  const t = programTable(r, h, count);
  const { phdr, addr: w } = layoutsFor(h.class);
  const f = phdr.f;
  // The table's range was checked (programTable): its fields are read straight from the view.
  const dv = r.view;
  const out: ProgramHeader[] = [];
  for (let i = 0; i < t.count; i++) {
    const b = t.start + i * t.entsize;
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

/** A program header as the file holds it: every offset, address and size a bigint, none judged. */
export interface RawSegment {
  type: number;
  flags: number;
  offset: bigint;
  vaddr: bigint;
  filesz: bigint;
  memsz: bigint;
}

/**
 * The program headers of an image of which the buffer may hold only the first bytes (a vDSO being
 * dumped): the table is checked, the segments are not, and a segment the caller does not use cannot
 * fail it (the kernel's parse_vdso.c looks at PT_LOAD and PT_DYNAMIC only).
 */
export function readSegments(r: ByteReader, h: ElfHeader): RawSegment[] {
  const t = programTable(r, h);
  const { phdr, addr: w } = layoutsFor(h.class);
  const f = phdr.f;
  const dv = r.view;
  const out: RawSegment[] = [];
  for (let i = 0; i < t.count; i++) {
    const b = t.start + i * t.entsize;
    out.push({
      type: dv.getUint32(b + f.p_type.offset, true),
      flags: dv.getUint32(b + f.p_flags.offset, true),
      offset: wordBig(dv, b + f.p_offset.offset, w),
      vaddr: wordBig(dv, b + f.p_vaddr.offset, w),
      filesz: wordBig(dv, b + f.p_filesz.offset, w),
      memsz: wordBig(dv, b + f.p_memsz.offset, w),
    });
  }
  return out;
}

/**
 * How far the loaded segments reach: in the file, the end of the last PT_LOAD's file part (the
 * bytes a dump of the mapped image must hold; 0 without a PT_LOAD); in memory, the lowest p_vaddr
 * and the highest p_vaddr + p_memsz (undefined without a PT_LOAD).
 */
export function loadedExtent(segments: readonly RawSegment[]): { fileEnd: bigint; vaddr: { start: bigint; end: bigint } | undefined } {
  let fileEnd = 0n;
  let vaddr: { start: bigint; end: bigint } | undefined;
  for (const p of segments) {
    if (p.type !== PT.LOAD) continue;
    if (p.offset + p.filesz > fileEnd) fileEnd = p.offset + p.filesz;
    const end = p.vaddr + p.memsz;
    if (!vaddr) vaddr = { start: p.vaddr, end };
    else vaddr = { start: p.vaddr < vaddr.start ? p.vaddr : vaddr.start, end: end > vaddr.end ? end : vaddr.end };
  }
  return { fileEnd, vaddr };
}

/** The end of the section header table: e_shoff + e_shnum × e_shentsize. */
export function sectionTableEnd(h: ElfHeader): number {
  return toSafeNumber(h.shoff, 'e_shoff') + h.shentsize * h.shnum;
}
