// Reading a large ELF file without copying its bulk into memory. Most of a large file is code and
// data that the byte search looks at once and nothing else reads when the file turns out clean; the
// rest (headers, symbol and string tables, versions, .dynamic, notes) is small. So: the small parts
// are read into the file-sized buffer at their offsets, the big PROGBITS sections are streamed
// through a small cache-resident buffer and searched there, and only the few bytes around each
// candidate (what the decoder looks at) are kept. Copying a whole file into a cold buffer costs
// several times what streaming through the cache does (bench/README.md, "Figures behind the code").
//
// The result is a "sparse" buffer whose holes hold stale bytes. The ELF reader over it knows the
// holes and throws HoleRead on any read that meets one, and a code or data region that is not
// exactly a searched hole is refused the same way; then, and for a file with a finding, an error,
// or an identity that needs the whole file (static, Go, libc), the file is read whole
// (analyseSparse in read-file.ts).
import fs from 'node:fs';
import { ByteReader } from '../elf/bytes.js';
import { ELFCLASS64, ELFDATA2LSB, EM, PN_XNUM, PT, SHF, SHT } from '../elf/constants.js';
import { programTable, readHeader, readIdent, segmentTypes } from '../elf/header.js';
import { big, EHDR64, PHDR64, SHDR64 } from '../elf/layouts.js';
import type { ElfHeader } from '../elf/types.js';
import { findDataWords, findImm32Candidates } from '../x86/candidates.js';
import { decodeWindowOf } from '../x86/call-sites.js';
import { alignedBuffer, readUpTo } from '../native/file-read.js';

/**
 * A large section not copied into the buffer. `searched`: a loaded PROGBITS section (one of the
 * regions the byte search covers), searched while streaming; `candidates` for code sections.
 */
export interface Hole {
  start: number;
  end: number;
  searched: boolean;
  code: boolean;
  /** Imm32 candidates (file offsets) in a code section; their decode windows are in the buffer. */
  candidates: number[];
  /** Offsets in a data section of byte patterns that may be page words (find-uses judges them). */
  words: number[];
  /** Ranges inside the hole whose bytes are in the buffer (decode windows, page words, glibc's banner): real bytes. */
  kept: [number, number][];
}

/** Tests shrink these to put chunk boundaries everywhere. */
export interface SparseOptions {
  /** Sections from this size on are holes. */
  holeMin?: number;
  /** Bytes streamed at a time. */
  chunk?: number;
  /** Bytes read first (the headers); a section starting in them can still be a hole. */
  head?: number;
  /** Where the file starts in `fd` (an entry of an uncompressed tar); default 0. */
  base?: number;
  /**
   * Asked once the tables are in the buffer, before the big sections are streamed: true when the
   * file will be analysed whole anyway (its identity says so), so the holes are read straight into
   * the buffer instead of being streamed and then read again. The result then has no holes.
   */
  wholeIf?: (bytes: Buffer, holes: readonly (readonly [number, number])[]) => boolean;
  /**
   * A file too large to read whole (read-file.ts WHOLE_MAX): static and Go files go sparse too, and
   * the tables their analysis reads (.eh_frame, .go.buildinfo) are read; each data hole keeps its
   * page words and glibc's banner. Nothing makes it fall back to a whole read.
   */
  bounded?: boolean;
}

export interface SparseFile {
  bytes: Buffer;
  holes: Hole[];
  /** Where the file starts in its fd. */
  base: number;
}

/**
 * Section types a clean file's analysis never reads: code and data (searched on the way), relocations,
 * the static symbol table, hash tables. String tables too, except those the dynamic symbols, the
 * versions, .dynamic and the section names use (`needed` in readSparse).
 */
const SKIPPABLE = new Set<number>([SHT.PROGBITS, SHT.RELA, SHT.REL, SHT.SYMTAB, SHT.STRTAB, SHT.HASH, SHT.GNU_HASH]);
/** Sections smaller than this are read like tables. */
const HOLE_MIN = 64 * 1024;
const HEAD = 64 * 1024;
const CHUNK = 1024 * 1024;
/** Bytes shared by consecutive chunks, so a pattern across a boundary is seen whole (the 8-byte word). */
const OVERLAP = 8;
/** A chunk's last bytes are always kept: a candidate found in the next chunk may decode from there. */
const KEEP_TAIL = 32;
/** Sections a clean file's analysis reads (Go build info, the interpreter's path). */
const KEEP = new Set(['.interp', '.go.buildinfo']);
/** Also read for a bounded file: what its function index reads when it has findings. */
const KEEP_BOUNDED = new Set(['.eh_frame', '.eh_frame_hdr']);
/** glibc's banner (identify.ts), kept with the bytes after it when a data hole holds it. */
const BANNER = Buffer.from('GNU C Library');
const BANNER_KEEP = 256;
/** Sections whose presence means the whole file is needed (Go's build info lookups, pclntab). */
const GO_SECTIONS = new Set(['.go.buildinfo', '.gopclntab', '.note.go.buildid']);
const MAX_NAME = 256;
/** More holes or possible page words than this (a real file has a handful): read it whole. */
const MAX_HOLES = 64;
const MAX_WORDS = 4096;

let hot = Buffer.allocUnsafeSlow(0);

/** A file's bytes: those of `fd` from `base` on (a whole file: base 0; an entry of a tar: its data offset). */
interface At {
  fd: number;
  base: number;
}

/** Reads `len` bytes at the file's offset `pos` into `buf` at `off`; false when the file ends first. */
function readFully(at: At, buf: Buffer, off: number, len: number, pos: number): boolean {
  return readUpTo(at.fd, buf, off, len, at.base + pos) === len;
}

/** Reads bytes [start, end) of the file into `buf` at the same offsets. */
function fill(at: At, buf: Buffer, start: number, end: number): boolean {
  return end <= start || readFully(at, buf, start, end - start, start);
}

interface SectionRow {
  index: number;
  link: number;
  name: string;
  type: number;
  flags: bigint;
  offset: number;
  size: number;
}

/** The section headers, from a buffer that holds the ELF header; undefined when anything is odd (the whole-file path then reports it). */
function sectionRows(src: At, buf: Buffer, r: ByteReader, h: ElfHeader, size: number): SectionRow[] | undefined {
  const { shoff, shnum, shstrndx } = h;
  const n = SHDR64.size;
  if (shoff === 0n || shnum === 0 || h.shentsize !== n || shstrndx >= shnum || shoff > BigInt(size - shnum * n)) return undefined;
  const sh = Number(shoff);
  if (!fill(src, buf, sh, sh + shnum * n)) return undefined;
  const f = SHDR64.f;
  const raw = (i: number) => {
    const b = sh + i * n;
    return {
      nameAt: r.u32(b + f.sh_name.offset), type: r.u32(b + f.sh_type.offset), flags: big(r, b, f.sh_flags),
      offset: big(r, b, f.sh_offset), size: big(r, b, f.sh_size), link: r.u32(b + f.sh_link.offset),
    };
  };
  const strs = raw(shstrndx);
  if (strs.offset + strs.size > BigInt(size)) return undefined;
  const so = Number(strs.offset);
  const ss = Number(strs.size);
  if (!fill(src, buf, so, so + ss)) return undefined;
  const rows: SectionRow[] = [];
  for (let i = 0; i < shnum; i++) {
    const s = raw(i);
    if (s.nameAt >= ss) return undefined;
    // Section names are short; a long or unterminated one is left to the whole-file reader.
    const nul = buf.subarray(so + s.nameAt, Math.min(so + ss, so + s.nameAt + MAX_NAME)).indexOf(0);
    if (nul < 0) return undefined;
    const hasBytes = s.type !== SHT.NOBITS && s.size > 0n;
    if (hasBytes && s.offset + s.size > BigInt(size)) return undefined;
    rows.push({ index: i, link: s.link, name: buf.toString('latin1', so + s.nameAt, so + s.nameAt + nul), type: s.type, flags: s.flags, offset: hasBytes ? Number(s.offset) : 0, size: hasBytes ? Number(s.size) : 0 });
  }
  return rows;
}

/**
 * Whether the program headers show an interpreter or a dynamic section (else a static file, read
 * whole). Undefined when the table is odd, absent, or counted elsewhere (PN_XNUM): the whole-file
 * reader handles those.
 */
function isDynamic(src: At, buf: Buffer, r: ByteReader, h: ElfHeader, size: number): boolean | undefined {
  const n = PHDR64.size;
  if (h.phoff === 0n || h.phnum === 0 || h.phnum === PN_XNUM || h.phentsize !== n || h.phoff + BigInt(h.phnum * n) > BigInt(size)) return undefined;
  const at = Number(h.phoff);
  if (!fill(src, buf, at, at + h.phnum * n)) return undefined;
  return segmentTypes(r, h, programTable(r, h)).some((t) => t === PT.INTERP || t === PT.DYNAMIC);
}

/** The ELF header of a little-endian x86-64 ELF64 file, from its first bytes in `buf`; undefined for any other. */
function x86_64Header(r: ByteReader): ElfHeader | undefined {
  const id = readIdent(r.bytes);
  if (!id || id.class !== ELFCLASS64 || id.data !== ELFDATA2LSB || r.length < EHDR64.size) return undefined;
  const h = readHeader(r, 64);
  return h.machine === EM.X86_64 ? h : undefined;
}

/**
 * Reads a large dynamically linked x86-64 ELF64 file sparsely: tables into the returned buffer (the
 * thread's reused one from `scratch`), big sections searched on the way. Undefined when the file is
 * better read whole: odd headers, a static or Go file, a section sharing a hole's bytes, too many
 * holes or possible page words, a read that came up short.
 */
export function readSparse(file: number, size: number, scratch: (n: number) => Buffer, o: SparseOptions = {}): SparseFile | undefined {
  const src: At = { fd: file, base: o.base ?? 0 };
  const holeMin = o.holeMin ?? HOLE_MIN;
  const chunk = Math.max(KEEP_TAIL + OVERLAP, o.chunk ?? CHUNK);
  const buf = scratch(size);
  const head = Math.min(size, Math.max(64, o.head ?? HEAD));
  if (!readFully(src, buf, 0, head, 0)) return undefined;
  // The buffer is the file's size; its header was read first (head), the tables are read as they are met.
  const r = new ByteReader(buf, 'sparse read');
  const h = x86_64Header(r);
  if (!h) return undefined;
  const bounded = o.bounded === true;
  const dynamic = isDynamic(src, buf, r, h, size);
  if (dynamic === undefined || (!dynamic && !bounded)) return undefined;
  const rows = sectionRows(src, buf, r, h, size);
  if (!rows || (!bounded && rows.some((r) => GO_SECTIONS.has(r.name)))) return undefined;
  // String tables that analysis reads: linked from .dynsym, the version sections and .dynamic, and the section names.
  const needed = new Set<number>([h.shstrndx]);
  for (const r of rows) if (r.type === SHT.DYNSYM || r.type === SHT.DYNAMIC || r.type === SHT.GNU_VERDEF || r.type === SHT.GNU_VERNEED) needed.add(r.link);
  const big = rows
    .filter((r) => SKIPPABLE.has(r.type) && r.size >= holeMin && !KEEP.has(r.name) && !needed.has(r.index) && !(bounded && (KEEP_BOUNDED.has(r.name) || !isSearched(r))))
    .sort((a, b) => a.offset - b.offset);
  if (big.length === 0 || big.length > MAX_HOLES) return undefined;
  for (let i = 1; i < big.length; i++) if ((big[i] as SectionRow).offset < (big[i - 1] as SectionRow).offset + (big[i - 1] as SectionRow).size) return undefined;
  // No other section may share a hole's bytes (it would be read, or searched, as something else).
  const isHole = new Set(big);
  for (const r of rows) {
    if (r.size === 0 || isHole.has(r)) continue;
    if (big.some((h) => r.offset < h.offset + h.size && h.offset < r.offset + r.size)) return undefined;
  }
  // Everything between the holes, in one read each.
  let at = head;
  for (const r of big) {
    if (!fill(src, buf, at, r.offset)) return undefined;
    at = r.offset + r.size;
  }
  if (!fill(src, buf, at, size)) return undefined;
  if (!bounded && o.wholeIf?.(buf, big.map((r) => [r.offset, r.offset + r.size] as const))) {
    for (const r of big) if (!fill(src, buf, r.offset, r.offset + r.size)) return undefined;
    return { bytes: buf, holes: [], base: src.base };
  }
  if (hot.length < chunk) hot = alignedBuffer(chunk);
  const holes: Hole[] = [];
  for (const r of big) {
    // As regionsOf: loaded PROGBITS sections are the code and data the byte search covers.
    const searched = isSearched(r);
    const code = searched && (r.flags & BigInt(SHF.EXECINSTR)) !== 0n;
    const hole: Hole = { start: r.offset, end: r.offset + r.size, searched, code, candidates: [], words: [], kept: [] };
    holes.push(hole);
    if (searched && !streamSection(src, buf, hole, chunk, bounded)) return undefined;
  }
  return { bytes: buf, holes, base: src.base };
}

/** A loaded PROGBITS section: one of the regions the byte search covers (as regionsOf). */
function isSearched(r: SectionRow): boolean {
  return r.type === SHT.PROGBITS && (r.flags & BigInt(SHF.ALLOC)) !== 0n;
}

/**
 * Streams one section through the hot buffer; false when a read came up short or it holds too many
 * possible page words. `bounded`: a data hole also keeps its page words' bytes and glibc's banner.
 */
function streamSection(src: At, buf: Buffer, hole: Hole, chunk: number, bounded = false): boolean {
  const windows: [number, number][] = [];
  let banner = !bounded || hole.code;
  let lastCandidate = -1;
  for (let pos = hole.start; pos < hole.end; pos += chunk - OVERLAP) {
    const n = Math.min(chunk, hole.end - pos);
    if (!readFully(src, hot, 0, n, pos)) return false;
    if (hole.code) {
      for (const rel of findImm32Candidates(hot, 0, n)) {
        const p = pos + rel;
        if (p <= lastCandidate) continue; // seen in the previous chunk's overlap
        lastCandidate = p;
        hole.candidates.push(p);
        windows.push(decodeWindowOf(p, hole.start, hole.end));
      }
    } else {
      let lastWord = hole.words.at(-1) ?? -1;
      for (const rel of findDataWords(hot, 0, n)) {
        const p = pos + rel;
        if (p <= lastWord) continue; // seen in the previous chunk's overlap
        lastWord = p;
        hole.words.push(p);
        if (hole.words.length > MAX_WORDS) return false;
        if (bounded) windows.push([p, Math.min(p + 8, hole.end)]);
      }
      const b = banner ? -1 : hot.subarray(0, n).indexOf(BANNER);
      if (b >= 0) {
        banner = true;
        windows.push([pos + b, Math.min(pos + b + BANNER_KEEP, hole.end)]);
      }
    }
    // Keep the parts of the candidates' decode windows that this chunk holds, and its tail.
    const end = pos + n;
    hot.copy(buf, Math.max(pos, end - KEEP_TAIL), Math.max(0, n - KEEP_TAIL), n);
    for (const [ws, we] of windows) {
      const s = Math.max(ws, pos);
      const e = Math.min(we, end);
      if (s < e) hot.copy(buf, s, s - pos, e - pos);
    }
    for (const w of windows) if (w[1] <= end) keep(hole, w);
    while (windows.length > 0 && (windows[0] as [number, number])[1] <= end) windows.shift();
    if (end >= hole.end) break;
  }
  for (const w of windows) keep(hole, w);
  return true;
}

/** Records a range of the hole as kept, merged with the one before when they meet (windows come in order of start). */
function keep(hole: Hole, [s, e]: [number, number]): void {
  const last = hole.kept.at(-1);
  if (last && s <= last[1]) last[1] = Math.max(last[1], e);
  else hole.kept.push([s, e]);
}

/**
 * The ranges of the buffer that hold no file bytes: the holes less what they kept. Sorted and
 * disjoint, as ByteReader wants them.
 */
export function unreadRanges(holes: readonly Hole[]): [number, number][] {
  const out: [number, number][] = [];
  for (const h of holes) {
    let at = h.start;
    for (const [s, e] of [...h.kept].sort((a, b) => a[0] - b[0])) {
      if (s > at) out.push([at, s]);
      at = Math.max(at, e);
    }
    if (at < h.end) out.push([at, h.end]);
  }
  return out;
}

/** Reads the holes too, turning a sparse buffer into the whole file. */
export function fillHoles(fd: number, sparse: SparseFile): boolean {
  const at = { fd, base: sparse.base };
  for (const h of sparse.holes) if (!fill(at, sparse.bytes, h.start, h.end)) return false;
  return true;
}
