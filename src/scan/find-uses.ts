// Every use of the vsyscall page in one ELF file: code constants (byte search, then decode),
// 8-byte data words and the code that loads them, each placed in its function. Follows the
// corpus' classes: direct-call, fallback, data-ref, misaligned (indirect-sites.ts then tells the
// direct calls reached only through a pointer).
import type { ElfFile } from '../elf/read-elf.js';
import { offsetToVaddr } from '../elf/read-elf.js';
import type { ElfSymbol, ProgramHeader, Section } from '../elf/types.js';
import { EM, PF, PT, SHF, SHT } from '../elf/constants.js';
import { HoleRead } from '../elf/bytes.js';
import { entryNameOf } from '../model/vsyscall-page.js';
import { findDataWords, findImm32Candidates } from '../x86/candidates.js';
import { findCodeSites, findWordUses, type CodeRegion, type CodeSite } from '../x86/call-sites.js';
import { siteKindOf, type SiteKind, type SiteUse } from '../model/site-kinds.js';
import { describeFunction, type FunctionIndex } from './functions.js';

export type EntryName = 'gettimeofday' | 'time' | 'getcpu' | 'misaligned';

export interface Finding {
  kind: SiteKind;
  use: SiteUse;
  entry: EntryName;
  /** The page address referenced. */
  target: bigint;
  /** File offset and virtual address of the instruction (or data word) holding it. */
  offset: number;
  address: bigint;
  /** Containing function: symbol name, or its FDE range when stripped. */
  function?: { name?: string; start: bigint; end: bigint; source: string };
  /** The instruction that holds the address (objdump's AT&T syntax), or `.quad 0x…` for a data word. */
  instruction: string;
  /** The instruction that calls / cmovs / stores it, when found. */
  useInstruction?: string;
  useAddress?: bigint;
  /** For a use through a data word: the word's address and the symbol it belongs to. */
  dataWord?: { address: bigint; symbol?: string };
  /**
   * Kind `indirect`: where the address of the function holding the site is taken (the only ways
   * it can run), by address: `lea -0x4cc7(%rip),%rax` in a function, or a data word / relocation.
   */
  addressTakenAt?: AddressTaken[];
}

/** A place that takes a function's address: an instruction (in `function`) or a data word (in the object `function` names). */
export interface AddressTaken {
  address: bigint;
  /** objdump's AT&T text (`lea -0x4cc7(%rip),%rax`), or `.quad 0x… (R_X86_64_RELATIVE)` for a word. */
  instruction: string;
  /** The function holding the instruction, or the data symbol holding the word. */
  function?: string;
}

export interface Regions {
  code: CodeRegion[];
  data: CodeRegion[];
  /** Where the section headers disagree with the program headers (identity.warnings). */
  warnings: string[];
  /**
   * Code regions the section headers call non-code, by start offset: the imm32 candidates to decode
   * there (those inside a page word the data search reports are left to it, so no byte is reported twice).
   */
  quiet: Map<number, number[]>;
}

/**
 * Sections that account for loaded bytes of a non-executable segment: a byte there under none of
 * them (nor the ELF and program headers) is something the section headers do not describe. A
 * section of another type (0xff00, say) accounts for nothing.
 */
const KNOWN_TYPES = new Set<number>([
  SHT.PROGBITS, SHT.SYMTAB, SHT.STRTAB, SHT.RELA, SHT.HASH, SHT.DYNAMIC, SHT.NOTE, SHT.REL, SHT.DYNSYM, SHT.INIT_ARRAY,
  SHT.FINI_ARRAY, SHT.PREINIT_ARRAY, SHT.GROUP, SHT.SYMTAB_SHNDX, SHT.RELR, SHT.GNU_ATTRIBUTES, SHT.GNU_HASH, SHT.GNU_LIBLIST,
  SHT.X86_64_UNWIND, SHT.GNU_VERDEF, SHT.GNU_VERNEED, SHT.GNU_VERSYM,
]);
/** Disagreements named one by one; past this many, counted. */
const MAX_WARNINGS = 4;

const hex = (n: number | bigint) => `0x${n.toString(16)}`;

/** Overlapping code ranges (a section's range copied onto another) as one, so nothing is decoded or reported twice. Adjacent ones stay apart, as the sections draw them. */
function mergeOverlaps(regions: CodeRegion[]): CodeRegion[] {
  const sorted = [...regions].sort((a, b) => a.start - b.start || b.end - a.end);
  const out: CodeRegion[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last && r.start < last.end) {
      if (r.end > last.end) out[out.length - 1] = { ...last, end: r.end };
    } else out.push(r);
  }
  return out;
}

/** Whether a page word found at `p` of a data region counts: pointers in data are 8-byte aligned (Go's stack object records hold such byte patterns by chance). */
function isPageWord(elf: ElfFile, region: CodeRegion, p: number): boolean {
  return ((offsetToVaddr(elf, p) ?? region.ip + BigInt(p - region.start)) & 7n) === 0n;
}

/**
 * Executable and data ranges of the file, as the kernel maps them. Code is every code section
 * (PROGBITS, ALLOC, EXECINSTR) inside an executable PT_LOAD segment, and every other byte of such a
 * segment that holds a use of the page: the kernel maps it executable whatever the sections call it,
 * so it is searched as code too, quietly (old layouts keep .rodata and .eh_frame there), and named in
 * a warning only when a use is found. Data is every loaded non-code PROGBITS section, and the bytes
 * of a non-executable segment no section accounts for that hold a page word (with a warning).
 * Sections only draw the lines inside a segment (a decode starts at a section's start, as objdump's
 * does). Files without PT_LOAD (relocatable objects): the sections alone.
 * Reads the bytes that are not code sections, so over a sparse read it can throw HoleRead.
 */
export function regionsOf(elf: ElfFile): Regions {
  const { bytes, reader } = elf;
  const loads = elf.programHeaders.filter((p) => p.type === PT.LOAD && p.filesz > 0 && reader.has(p.offset, p.filesz));
  const code: CodeRegion[] = [];
  const data: CodeRegion[] = [];
  const said: string[] = [];
  const piece = (seg: ProgramHeader, start: number, end: number): CodeRegion => ({ bytes, start, end, ip: seg.vaddr + BigInt(start - seg.offset) });
  // What accounts for loaded bytes, as [start, end) pairs (flat): in a non-executable segment the
  // sections of known types; in an executable one only the code sections. The ELF and program
  // headers always do (the kernel reads them as headers).
  const coverData: number[] = [0, elf.header.ehsize];
  if (elf.header.phoff > 0n && elf.header.phoff < BigInt(bytes.length)) coverData.push(Number(elf.header.phoff), Number(elf.header.phoff) + elf.programHeaders.length * elf.header.phentsize);
  const coverCode = coverData.slice();
  const allocated: Section[] = []; // where a quiet range is split, and what names it
  for (const s of elf.sections) {
    const f = Number(s.flags & 7n); // SHF_WRITE | SHF_ALLOC | SHF_EXECINSTR, as a number once
    if ((f & SHF.ALLOC) === 0 || s.size === 0) continue;
    const exec = (f & SHF.EXECINSTR) !== 0;
    if (s.type !== SHT.NOBITS) allocated.push(s);
    if (KNOWN_TYPES.has(s.type) && !exec) coverData.push(s.offset, s.offset + s.size);
    if (s.type !== SHT.NOBITS) checkAddress(s, loads, said);
    if (s.type !== SHT.PROGBITS || !reader.has(s.offset, s.size)) continue;
    if (!exec || loads.length === 0) {
      (exec ? code : data).push({ bytes, start: s.offset, end: s.offset + s.size, ip: s.addr });
      continue;
    }
    let inside = 0;
    for (const seg of loads) {
      if ((seg.flags & PF.X) === 0) continue;
      const a = Math.max(s.offset, seg.offset);
      const z = Math.min(s.offset + s.size, seg.offset + seg.filesz);
      if (a < z) {
        code.push(piece(seg, a, z));
        coverCode.push(a, z);
        inside += z - a;
      }
    }
    if (inside < s.size) said.push(`code section ${s.name || s.index} (offset ${hex(s.offset)}, ${s.size} bytes) lies ${inside === 0 ? '' : 'partly '}outside every executable segment`);
  }
  // A non-executable segment's bytes under no section that accounts for them: data, when they hold a page word.
  const dataCover = sortPairs(coverData);
  for (const seg of loads) {
    if ((seg.flags & PF.X) !== 0) continue;
    forEachGap(seg.offset, seg.offset + seg.filesz, dataCover, (a, z) => {
      if (reader.inHole(a, z - a)) throw new HoleRead(a);
      const gap = piece(seg, a, z);
      if (!findDataWords(bytes, a, z).some((p) => isPageWord(elf, gap, p))) return; // padding, or bytes a repair tool left
      data.push(gap);
      said.push(`bytes ${hex(a)}-${hex(z)} of the segment at offset ${hex(seg.offset)} are in no section that accounts for them and hold a page word (searched as data)`);
    });
  }
  // An executable segment's other bytes: searched as code, quietly; named only when they hold a use.
  const quiet = new Map<number, number[]>();
  const starts = allocated.map((s) => s.offset).sort((a, b) => a - b);
  const codeCover = sortPairs(coverCode);
  for (const seg of loads) {
    if ((seg.flags & PF.X) === 0) continue;
    forEachGap(seg.offset, seg.offset + seg.filesz, codeCover, (gapStart, gapEnd) => {
      for (const [a, z] of splitAt(gapStart, gapEnd, starts)) {
        if (reader.inHole(a, z - a)) throw new HoleRead(a);
        const candidates = findImm32Candidates(bytes, a, z).filter((p) => !inPageWord(elf, data, p));
        if (candidates.length === 0) continue;
        const region = piece(seg, a, z);
        const site = findCodeSites(region, candidates)[0];
        if (!site) continue;
        code.push(region);
        quiet.set(a, candidates);
        said.push(`bytes ${hex(a)}-${hex(z)} of the executable segment at offset ${hex(seg.offset)} are ${whatSectionsSay(allocated, a)} but hold a use of the page at ${hex(site.ip)} (searched as code)`);
      }
    });
  }
  const warnings = said.slice(0, MAX_WARNINGS).map((w) => `section headers disagree with program headers: ${w}`);
  if (said.length > MAX_WARNINGS) warnings.push(`section headers disagree with program headers in ${said.length - MAX_WARNINGS} more places`);
  return { code: mergeOverlaps(code), data, warnings, quiet };
}

/**
 * A loaded section whose sh_addr is not where the segments holding its offset map it (sh_offset or
 * sh_addr shifted): the kernel maps by segment, so places are named by segment and this is said.
 */
function checkAddress(s: Section, loads: ProgramHeader[], said: string[]): void {
  let mappedAt: bigint | undefined;
  for (const seg of loads) {
    if (s.offset < seg.offset || s.offset >= seg.offset + seg.filesz) continue;
    const at = seg.vaddr + BigInt(s.offset - seg.offset);
    if (at === s.addr) return;
    mappedAt ??= at;
  }
  if (mappedAt !== undefined) said.push(`section ${s.name || s.index} says address ${hex(s.addr)}, but the segment holding its offset ${hex(s.offset)} maps it at ${hex(mappedAt)}`);
}

/** [start, end) cut at every offset of the sorted `starts` inside it: a decode starts where a section does. */
function splitAt(start: number, end: number, starts: number[]): [number, number][] {
  const out: [number, number][] = [];
  let at = start;
  for (const s of starts) {
    if (s <= at) continue;
    if (s >= end) break;
    out.push([at, s]);
    at = s;
  }
  out.push([at, end]);
  return out;
}

/** Whether offset `p` lies in a page word that the data search reports (in a data region, aligned): such bytes are reported once, as that word. */
function inPageWord(elf: ElfFile, data: CodeRegion[], p: number): boolean {
  for (const d of data) {
    if (p < d.start || p >= d.end) continue;
    const from = Math.max(d.start, p - 7);
    if (findDataWords(d.bytes, from, Math.min(d.end, p + 8)).some((q) => q <= p && isPageWord(elf, d, q))) return true;
  }
  return false;
}

/** What the section headers call the bytes at `offset`: "in .text (type 0xff00, flags 0x6)", "in no section". */
function whatSectionsSay(allocated: Section[], offset: number): string {
  const s = allocated.find((x) => offset >= x.offset && offset < x.offset + x.size);
  return s ? `in ${s.name || `section ${s.index}`} (type ${hex(s.type)}, flags ${hex(s.flags)}), not a code section,` : 'in no section';
}

/** Flat [start, end, start, end, …] pairs, sorted by start. */
function sortPairs(flat: number[]): Float64Array {
  const n = flat.length / 2;
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => (flat[2 * i] as number) - (flat[2 * j] as number));
  const out = new Float64Array(flat.length);
  order.forEach((k, i) => {
    out[2 * i] = flat[2 * k] as number;
    out[2 * i + 1] = flat[2 * k + 1] as number;
  });
  return out;
}

/** Calls `gap(a, z)` for each part of the file range [start, end) outside the sorted pairs `cover`, in order. */
function forEachGap(start: number, end: number, cover: Float64Array, gap: (a: number, z: number) => void): void {
  let at = start;
  for (let i = 0; i < cover.length; i += 2) {
    const a = cover[i] as number;
    const z = cover[i + 1] as number;
    if (z <= at) continue;
    if (a >= end) break;
    if (a > at) gap(at, a);
    at = Math.max(at, z);
  }
  if (at < end) gap(at, end);
}

function placeIn(fns: FunctionIndex, addr: bigint): Finding['function'] {
  if (addr > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  const i = fns.find(Number(addr));
  const f = fns.functions[i];
  if (!f) return undefined;
  const out: NonNullable<Finding['function']> = { start: BigInt(f.start), end: BigInt(f.end), source: f.source };
  if (f.name !== undefined) out.name = f.name;
  return out;
}

/** The data symbol (OBJECT) that holds `addr`, for naming data words. */
export function dataSymbolAt(symbols: ElfSymbol[], addr: bigint): string | undefined {
  for (const s of symbols) {
    if (s.type !== 1 || s.shndx === 0) continue;
    if (addr >= s.value && addr < s.value + (s.size === 0n ? 8n : s.size)) return s.name;
  }
  return undefined;
}

/** A word named like a vDSO slot (Go's runtime.vdsoGettimeofdaySym, __vdso_gettimeofday_sym) is a fallback. */
function isVdsoSlot(name: string | undefined): boolean {
  return name !== undefined && /vdso/i.test(name);
}

/** A decoded site as a finding, placed in its function. */
function findingOf(s: CodeSite, kind: SiteKind, dataWord: Finding['dataWord'], functions: () => FunctionIndex): Finding {
  const f: Finding = { kind, use: s.use, entry: entryNameOf(s.target), target: s.target, offset: s.offset, address: s.ip, instruction: s.instruction };
  if (dataWord) f.dataWord = dataWord;
  const fn = placeIn(functions(), s.ip);
  if (fn) f.function = fn;
  if (s.useInstruction !== undefined) f.useInstruction = s.useInstruction;
  if (s.useIp !== undefined) f.useAddress = s.useIp;
  return f;
}

/**
 * Regions searched already (while streaming a large file), by start offset: whether it is code, its
 * imm32 candidates (code), the offsets of byte patterns that may be page words (data). A region is
 * taken as searched only when it is exactly such a hole of the same kind; any other region that
 * meets a hole of the sparse buffer is not searched on stale bytes: HoleRead, and the caller reads
 * the file whole. So does a data hole with a page word that counts (8-byte aligned by this file's
 * own address rule), since its uses are found by decoding every code region.
 */
export type Searched = Map<number, { end: number; code: boolean; candidates: number[]; words: number[] }>;

/**
 * `functions` and `symbols` are asked for only when something was found: most files have no use
 * of the page, and building their function index would cost more than the search itself.
 */
/**
 * `bounded`: a file too large to read whole (read-file.ts), whose warnings these are: the page words
 * of its data holes (kept with the hole) are judged, and the code that loads them is looked for only
 * in the code that was read, with a warning.
 */
export function findUses(elf: ElfFile, functions: () => FunctionIndex, dataSymbols: () => ElfSymbol[], searched?: Searched, regions = regionsOf(elf), bounded?: string[]): Finding[] {
  if (elf.header.class !== 64 || elf.header.machine !== EM.X86_64) return [];
  const out: Finding[] = [];
  const { code, data } = regions;
  const done = (r: CodeRegion, code: boolean) => {
    const s = searched?.get(r.start);
    if (s?.end === r.end && s.code === code) return s;
    if (elf.reader.inHole(r.start, r.end - r.start)) throw new HoleRead(r.start);
    return undefined;
  };
  for (const region of code) {
    for (const s of findCodeSites(region, regions.quiet.get(region.start) ?? done(region, true)?.candidates)) {
      out.push(findingOf(s, s.kind, undefined, functions));
    }
  }
  // Data words: their addresses and values, then the code that loads them.
  const words = new Map<bigint, { offset: number; value: bigint }>();
  // Pointers in data are 8-byte aligned; unaligned matches are other data (Go's stack object
  // records hold such byte patterns by chance).
  const addressOf = (region: CodeRegion, p: number) => offsetToVaddr(elf, p) ?? region.ip + BigInt(p - region.start);
  for (const region of data) {
    const hole = done(region, false);
    if (hole) {
      if (bounded) {
        for (const p of hole.words) if ((addressOf(region, p) & 7n) === 0n) words.set(addressOf(region, p), { offset: p, value: elf.reader.u64(p) });
      } else if (hole.words.some((p) => (addressOf(region, p) & 7n) === 0n)) throw new HoleRead(region.start);
      continue;
    }
    for (const p of findDataWords(region.bytes, region.start, region.end)) {
      const address = addressOf(region, p);
      if ((address & 7n) !== 0n) continue;
      words.set(address, { offset: p, value: elf.reader.u64(p) });
    }
  }
  if (words.size === 0) return out;
  const values = new Map([...words].map(([a, w]) => [a, w.value] as const));
  const used = new Set<bigint>();
  for (const region of code) {
    if (bounded && elf.reader.inHole(region.start, region.end - region.start)) {
      bounded.push(`code loading the page words at offsets ${[...words.values()].slice(0, 4).map((w) => hex(w.offset)).join(', ')} not looked for in the ${region.end - region.start} bytes at offset ${hex(region.start)} (the file is too large to read whole)`);
      continue;
    }
    for (const u of findWordUses(region, values)) {
      used.add(u.word);
      const symbol = dataSymbolAt(dataSymbols(), u.word);
      const kind = siteKindOf(u.site.use, u.site.target, { vdsoSlot: isVdsoSlot(symbol) });
      out.push(findingOf(u.site, kind, symbol === undefined ? { address: u.word } : { address: u.word, symbol }, functions));
    }
  }
  for (const [address, w] of words) {
    if (used.has(address)) continue;
    const symbol = dataSymbolAt(dataSymbols(), address);
    const f: Finding = {
      kind: siteKindOf('data-word', w.value, { vdsoSlot: isVdsoSlot(symbol) }), use: 'data-word', entry: entryNameOf(w.value), target: w.value, offset: w.offset, address,
      instruction: `.quad 0x${w.value.toString(16)}`, dataWord: symbol === undefined ? { address } : { address, symbol },
    };
    out.push(f);
  }
  return out;
}

/** Who uses the page in a finding, in words: "time()", "the function at 0x4e1390". */
export function callerOf(f: Finding): string {
  if (f.dataWord?.symbol && f.kind === 'fallback') return `the code using ${f.dataWord.symbol}`;
  if (f.function?.name) return `${f.function.name}()`;
  if (f.function) return `the function at 0x${f.function.start.toString(16)}`;
  if (f.dataWord) return f.dataWord.symbol ?? `the word at 0x${f.dataWord.address.toString(16)}`;
  return describeFunction(undefined, Number(f.address));
}
