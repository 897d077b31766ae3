// The functions of an ELF file as sorted address ranges with names: from .symtab/.dynsym FUNC and
// IFUNC symbols when present, from .eh_frame FDEs when stripped. Used to name the function that
// holds a call site and to map branch targets to functions for the call graph.
import type { ElfFile } from '../elf/read-elf.js';
import type { ElfSymbol } from '../elf/types.js';
import { readSymbols } from '../elf/symbols.js';
import { readFunctionRanges } from '../elf/eh-frame.js';
import { HoleRead } from '../elf/bytes.js';
import { STB, STT } from '../elf/constants.js';

export interface FunctionInfo {
  start: number;
  end: number;
  /** Best name: an exported one when there is one, else a local symbol; undefined for FDE-only ranges. */
  name?: string;
  /** Every symbol name at this address (aliases: time, __time, __GI_time). */
  aliases: string[];
  exported: boolean;
  ifunc: boolean;
  source: 'symtab' | 'dynsym' | 'eh_frame';
}

export interface FunctionIndex {
  functions: FunctionInfo[];
  /** Index of the function containing `addr`, or -1. */
  find(addr: number): number;
}

function isFunc(s: ElfSymbol): boolean {
  return (s.type === STT.FUNC || s.type === STT.GNU_IFUNC) && s.shndx !== 0 && s.value !== 0n;
}

function rank(name: string, exported: boolean): number {
  // Exported beats local; fewer leading underscores beats more; shorter beats longer.
  const under = /^_*/.exec(name)?.[0].length ?? 0;
  return (exported ? 0 : 1000) + under * 100 + Math.min(name.length, 99);
}

export function buildFunctionIndex(elf: ElfFile, symbols?: { dynsym: ElfSymbol[]; symtab: ElfSymbol[] }): FunctionIndex {
  const dynsym = symbols?.dynsym ?? readSymbols(elf, '.dynsym');
  const symtab = symbols?.symtab ?? readSymbols(elf, '.symtab');
  const byStart = new Map<number, FunctionInfo>();
  const add = (s: ElfSymbol, source: 'symtab' | 'dynsym'): void => {
    if (!isFunc(s) || s.value > BigInt(Number.MAX_SAFE_INTEGER)) return;
    const start = Number(s.value);
    const end = start + Math.max(1, Number(s.size > 0x10000000n ? 1n : s.size));
    const exported = source === 'dynsym' && s.bind !== STB.LOCAL;
    const f = byStart.get(start);
    if (!f) {
      byStart.set(start, { start, end, name: s.name, aliases: [s.name], exported, ifunc: s.type === STT.GNU_IFUNC, source });
      return;
    }
    if (!f.aliases.includes(s.name)) f.aliases.push(s.name);
    f.end = Math.max(f.end, end);
    f.exported ||= exported;
    f.ifunc ||= s.type === STT.GNU_IFUNC;
    if (f.name === undefined || rank(s.name, exported) < rank(f.name, f.exported && exported)) f.name = s.name;
  };
  for (const s of dynsym) add(s, 'dynsym');
  for (const s of symtab) add(s, 'symtab');
  // FDE ranges fill what symbols do not cover (stripped files, local functions without symbols).
  let fdes: { start: bigint; end: bigint }[] = [];
  try {
    fdes = readFunctionRanges(elf);
  } catch (e) {
    if (e instanceof HoleRead) throw e; // a sparse read: the caller reads the file whole
    fdes = []; // a broken .eh_frame only costs names, not findings
  }
  for (const r of fdes) {
    if (r.end > BigInt(Number.MAX_SAFE_INTEGER)) continue;
    const start = Number(r.start);
    const known = byStart.get(start);
    // A symbol's st_size can be smaller than the code its FDE covers (cold paths, prelinked files).
    if (known) known.end = Math.max(known.end, Number(r.end));
    else byStart.set(start, { start, end: Number(r.end), aliases: [], exported: false, ifunc: false, source: 'eh_frame' });
  }
  const functions = [...byStart.values()].sort((a, b) => a.start - b.start);
  // Code between a function's end and the next start is its out-of-line part (cold paths that
  // neither st_size nor an FDE covers, as in RHEL 6's libpthread) or padding: give it to the
  // function before, as objdump does (pthread_rwlock_timedrdlock+0x17b).
  for (let i = 0; i + 1 < functions.length; i++) {
    const f = functions[i] as FunctionInfo;
    const next = (functions[i + 1] as FunctionInfo).start;
    if (next > f.end && next - f.end <= 4096) f.end = next;
  }
  const starts = Float64Array.from(functions.map((f) => f.start));
  return {
    functions,
    find(addr: number): number {
      let lo = 0;
      let hi = starts.length - 1;
      let best = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if ((starts[mid] as number) <= addr) {
          best = mid;
          lo = mid + 1;
        } else hi = mid - 1;
      }
      // Overlapping ranges (a symbol inside a bigger FDE): walk back to one that contains addr.
      for (let i = best; i >= 0 && i > best - 4; i--) {
        const f = functions[i] as FunctionInfo;
        if (addr < f.end) return i;
      }
      return -1;
    },
  };
}

/** "time()" for named functions, "the function at 0x4e1390" otherwise. */
export function describeFunction(f: FunctionInfo | undefined, addr: number): string {
  if (!f) return `the code at 0x${addr.toString(16)}`;
  if (f.name) return `${f.name}()`;
  return `the function at 0x${f.start.toString(16)}`;
}
