// Every use of the vsyscall page in one ELF file: code constants (byte search, then decode),
// 8-byte data words and the code that loads them, each placed in its function. Follows the
// corpus' classes: direct-call, fallback, data-ref, misaligned (indirect-sites.ts then tells the
// direct calls reached only through a pointer).
import type { ElfFile } from '../elf/read-elf.js';
import { offsetToVaddr } from '../elf/read-elf.js';
import type { ElfSymbol } from '../elf/types.js';
import { EM, PF, PT, SHF, SHT } from '../elf/constants.js';
import { HoleRead } from '../elf/bytes.js';
import { entryNameOf } from '../model/vsyscall-page.js';
import { findDataWords } from '../x86/candidates.js';
import { findCodeSites, findWordUses, type CodeRegion, type CodeSite, type SiteKind, type SiteUse } from '../x86/call-sites.js';
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
}

/** Executable and data ranges of the file: from section headers when present, else from PT_LOAD. */
export function regionsOf(elf: ElfFile): Regions {
  const code: CodeRegion[] = [];
  const data: CodeRegion[] = [];
  const alloc = elf.sections.filter((s) => s.type === SHT.PROGBITS && (s.flags & BigInt(SHF.ALLOC)) !== 0n && s.size > 0);
  if (alloc.length > 0) {
    for (const s of alloc) {
      if (!elf.reader.has(s.offset, s.size)) continue;
      const r = { bytes: elf.bytes, start: s.offset, end: s.offset + s.size, ip: s.addr };
      ((s.flags & BigInt(SHF.EXECINSTR)) !== 0n ? code : data).push(r);
    }
    return { code, data };
  }
  for (const p of elf.programHeaders) {
    if (p.type !== PT.LOAD || p.filesz === 0 || !elf.reader.has(p.offset, p.filesz)) continue;
    const r = { bytes: elf.bytes, start: p.offset, end: p.offset + p.filesz, ip: p.vaddr };
    ((p.flags & PF.X) !== 0 ? code : data).push(r);
  }
  return { code, data };
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
export function findUses(elf: ElfFile, functions: () => FunctionIndex, dataSymbols: () => ElfSymbol[], searched?: Searched): Finding[] {
  if (elf.header.class !== 64 || elf.header.machine !== EM.X86_64) return [];
  const out: Finding[] = [];
  const { code, data } = regionsOf(elf);
  const done = (r: CodeRegion, code: boolean) => {
    const s = searched?.get(r.start);
    if (s?.end === r.end && s.code === code) return s;
    if (elf.reader.inHole(r.start, r.end - r.start)) throw new HoleRead(r.start);
    return undefined;
  };
  for (const region of code) {
    for (const s of findCodeSites(region, done(region, true)?.candidates)) {
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
      if (hole.words.some((p) => (addressOf(region, p) & 7n) === 0n)) throw new HoleRead(region.start);
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
    for (const u of findWordUses(region, values)) {
      used.add(u.word);
      const symbol = dataSymbolAt(dataSymbols(), u.word);
      const kind: SiteKind = isVdsoSlot(symbol) ? 'fallback' : u.site.kind;
      out.push(findingOf(u.site, kind, symbol === undefined ? { address: u.word } : { address: u.word, symbol }, functions));
    }
  }
  for (const [address, w] of words) {
    if (used.has(address)) continue;
    const symbol = dataSymbolAt(dataSymbols(), address);
    const f: Finding = {
      kind: isVdsoSlot(symbol) ? 'fallback' : 'data-ref', use: 'data-word', entry: entryNameOf(w.value), target: w.value, offset: w.offset, address,
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
