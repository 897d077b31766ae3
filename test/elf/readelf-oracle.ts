// Parses GNU readelf's text output (binutils 2.3x/2.4x, -W) into plain values the ELF reader's
// results can be compared with field by field. Unknown names fail loudly rather than being skipped.
import { execFileSync } from 'node:child_process';

export function readelf(args: string[], file: string): string {
  return execFileSync('readelf', ['-W', ...args, file], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    maxBuffer: 1 << 30,
    env: { ...process.env, LC_ALL: 'C' },
  });
}

const hex = (s: string) => BigInt('0x' + s);

function lookup(table: Record<string, number>, name: string, what: string): number {
  const v = table[name];
  if (v !== undefined) return v;
  const m = /^(?:LOOS|LOPROC|LOUSER)\+0x([0-9a-f]+)$/.exec(name);
  if (m) {
    const base = name.startsWith('LOOS') ? 0x60000000 : name.startsWith('LOPROC') ? 0x70000000 : 0x80000000;
    return base + Number.parseInt(m[1]!, 16);
  }
  throw new Error(`readelf printed an unknown ${what} type name "${name}"; add it to the test's table`);
}

export interface ReadelfHeader {
  ident: number[];
  cls: number;
  osabi: string;
  type: string;
  machine: string;
  version: number;
  entry: bigint;
  phoff: bigint;
  shoff: bigint;
  flags: number;
  ehsize: number;
  phentsize: number;
  phnum: number;
  shentsize: number;
  shnum: number;
  shstrndx: number;
}

export function parseHeader(text: string): ReadelfHeader {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^ {2}([^:]+):\s+(.*?)\s*$/.exec(line);
    // "Version" appears twice (EI_VERSION, then e_version): the last one wins.
    if (m) kv.set(m[1]!, m[2]!);
  }
  const get = (k: string) => {
    const v = kv.get(k);
    if (v === undefined) throw new Error(`readelf -h printed no "${k}"`);
    return v;
  };
  const lead = (k: string) => Number.parseInt(get(k), 10);
  return {
    ident: get('Magic').split(/\s+/).map((h) => Number.parseInt(h, 16)),
    cls: get('Class') === 'ELF64' ? 64 : 32,
    osabi: get('OS/ABI'),
    type: get('Type').split(' ')[0]!,
    machine: get('Machine'),
    version: Number(get('Version')),
    entry: BigInt(get('Entry point address')),
    phoff: BigInt(lead('Start of program headers')),
    shoff: BigInt(lead('Start of section headers')),
    flags: Number(get('Flags').split(/[ ,]/)[0]),
    ehsize: lead('Size of this header'),
    phentsize: lead('Size of program headers'),
    phnum: lead('Number of program headers'),
    shentsize: lead('Size of section headers'),
    shnum: lead('Number of section headers'),
    shstrndx: lead('Section header string table index'),
  };
}

export const E_TYPE: Record<string, number> = { NONE: 0, REL: 1, EXEC: 2, DYN: 3, CORE: 4 };
export const MACHINE: Record<number, string> = { 3: 'Intel 80386', 62: 'Advanced Micro Devices X86-64', 183: 'AArch64' };
export const OSABI: Record<number, string> = { 0: 'UNIX - System V', 3: 'UNIX - GNU', 9: 'UNIX - FreeBSD' };

const PT_NAMES: Record<string, number> = {
  NULL: 0, LOAD: 1, DYNAMIC: 2, INTERP: 3, NOTE: 4, SHLIB: 5, PHDR: 6, TLS: 7,
  GNU_EH_FRAME: 0x6474e550, GNU_STACK: 0x6474e551, GNU_RELRO: 0x6474e552, GNU_PROPERTY: 0x6474e553, GNU_SFRAME: 0x6474e554,
};

export interface ReadelfSegment { type: number; offset: number; vaddr: bigint; paddr: bigint; filesz: number; memsz: bigint; flags: number; align: bigint }

export function parseSegments(text: string): { segments: ReadelfSegment[]; interp?: string } {
  const segments: ReadelfSegment[] = [];
  let interp: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^ {2}(\S+)\s+0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) (.{3}) 0x([0-9a-f]+)$/.exec(line);
    if (m) {
      const f = m[7]!;
      segments.push({
        type: lookup(PT_NAMES, m[1]!, 'segment'),
        offset: Number(hex(m[2]!)), vaddr: hex(m[3]!), paddr: hex(m[4]!), filesz: Number(hex(m[5]!)), memsz: hex(m[6]!),
        flags: (f[0] === 'R' ? 4 : 0) | (f[1] === 'W' ? 2 : 0) | (f[2] === 'E' ? 1 : 0),
        align: hex(m[8]!),
      });
      continue;
    }
    const i = /\[Requesting program interpreter: (.*)\]$/.exec(line);
    if (i) interp = i[1]!;
  }
  return interp === undefined ? { segments } : { segments, interp };
}

const SHT_NAMES: Record<string, number> = {
  NULL: 0, PROGBITS: 1, SYMTAB: 2, STRTAB: 3, RELA: 4, HASH: 5, DYNAMIC: 6, NOTE: 7, NOBITS: 8, REL: 9, SHLIB: 10, DYNSYM: 11,
  INIT_ARRAY: 14, FINI_ARRAY: 15, PREINIT_ARRAY: 16, GROUP: 17, SYMTAB_SHNDX: 18, RELR: 19,
  GNU_ATTRIBUTES: 0x6ffffff5, GNU_HASH: 0x6ffffff6, GNU_LIBLIST: 0x6ffffff7, CHECKSUM: 0x6ffffff8,
  VERDEF: 0x6ffffffd, VERNEED: 0x6ffffffe, VERSYM: 0x6fffffff, X86_64_UNWIND: 0x70000001,
};
const SHF_LETTERS: Record<string, number> = { W: 0x1, A: 0x2, X: 0x4, M: 0x10, S: 0x20, I: 0x40, L: 0x80, O: 0x100, G: 0x200, T: 0x400, C: 0x800, E: 0x80000000 };
/** The flag bits readelf prints with letters of their own. */
export const SHF_KNOWN = Object.values(SHF_LETTERS).reduce((a, b) => a | b, 0) >>> 0;

export interface ReadelfSection { index: number; name: string; type: number; addr: bigint; offset: number; size: number; entsize: number; flags: number; link: number; info: number; align: bigint }

export function parseSections(text: string): ReadelfSection[] {
  const out: ReadelfSection[] = [];
  for (const line of text.split('\n')) {
    const head = /^ {2}\[\s*(\d+)\] (.*)$/.exec(line);
    if (!head) continue;
    const rest = head[2]!;
    // The name column is empty for section 0 (and any unnamed section): then the line continues with spaces.
    const name = rest.startsWith(' ') ? '' : rest.split(/\s+/)[0]!;
    const cols = rest.slice(name.length).trim().split(/\s+/);
    // type addr off size es [flags] lk inf al
    const hasFlags = cols.length === 9;
    if (cols.length !== 8 && !hasFlags) throw new Error(`cannot parse readelf section line: ${line}`);
    const letters = hasFlags ? cols[5]! : '';
    const [lk, inf, al] = cols.slice(hasFlags ? 6 : 5);
    let flags = 0;
    for (const ch of letters) flags |= SHF_LETTERS[ch] ?? 0;
    out.push({
      index: Number(head[1]), name, type: lookup(SHT_NAMES, cols[0]!, 'section'), addr: hex(cols[1]!), offset: Number(hex(cols[2]!)),
      size: Number(hex(cols[3]!)), entsize: Number(hex(cols[4]!)), flags: flags >>> 0, link: Number(lk), info: Number(inf), align: BigInt(al!),
    });
  }
  return out;
}

const STT: Record<string, number> = { NOTYPE: 0, OBJECT: 1, FUNC: 2, SECTION: 3, FILE: 4, COMMON: 5, TLS: 6, IFUNC: 10 };
const STB: Record<string, number> = { LOCAL: 0, GLOBAL: 1, WEAK: 2, UNIQUE: 10 };
const STV: Record<string, number> = { DEFAULT: 0, INTERNAL: 1, HIDDEN: 2, PROTECTED: 3 };

function symbolCode(table: Record<string, number>, s: string, what: string): number {
  const special = /^<[^>]*>: (\d+)$/.exec(s);
  if (special) return Number(special[1]);
  const v = table[s];
  if (v === undefined) throw new Error(`readelf printed an unknown symbol ${what} "${s}"`);
  return v;
}

export interface ReadelfSymbol { index: number; value: bigint; size: bigint; type: number; bind: number; visibility: number; ndx: string; name: string }

/** Symbol tables by name ('.dynsym', '.symtab'), each with its declared entry count. */
export function parseSymbols(text: string): Map<string, { count: number; symbols: ReadelfSymbol[] }> {
  const tables = new Map<string, { count: number; symbols: ReadelfSymbol[] }>();
  let cur: { count: number; symbols: ReadelfSymbol[] } | undefined;
  const row = /^\s*(\d+): ([0-9a-f]+)\s+(0x[0-9a-f]+|\d+) (<[^>]*>: \d+|\S+)\s+(<[^>]*>: \d+|\S+)\s+(\S+)\s+(\S+) ?(.*)$/;
  for (const line of text.split('\n')) {
    const t = /^Symbol table '([^']+)' contains (\d+) entr/.exec(line);
    if (t) {
      cur = { count: Number(t[2]), symbols: [] };
      tables.set(t[1]!, cur);
      continue;
    }
    const m = row.exec(line);
    if (!m || !cur) continue;
    cur.symbols.push({
      index: Number(m[1]), value: hex(m[2]!), size: BigInt(m[3]!), type: symbolCode(STT, m[4]!, 'type'), bind: symbolCode(STB, m[5]!, 'binding'),
      visibility: symbolCode(STV, m[6]!, 'visibility'), ndx: m[7]!, name: m[8]!,
    });
  }
  return tables;
}

export interface ReadelfDynamic { tags: bigint[]; needed: string[]; soname?: string; runpath?: string; rpath?: string }

export function parseDynamic(text: string): ReadelfDynamic | undefined {
  if (!/Dynamic section at offset/.test(text)) return undefined;
  const d: ReadelfDynamic = { tags: [], needed: [] };
  for (const line of text.split('\n')) {
    const m = /^ 0x([0-9a-f]+) \((\w+)\)\s+(.*)$/.exec(line);
    if (!m) continue;
    const tag = hex(m[1]!);
    if (tag === 0n) break;
    d.tags.push(tag);
    const name = /\[(.*)\]$/.exec(m[3]!)?.[1];
    if (m[2] === 'NEEDED' && name !== undefined) d.needed.push(name);
    if (m[2] === 'SONAME' && name !== undefined) d.soname ??= name;
    if (m[2] === 'RUNPATH' && name !== undefined) d.runpath ??= name;
    if (m[2] === 'RPATH' && name !== undefined) d.rpath ??= name;
  }
  return d;
}

const NOTE_TYPES: Record<string, number> = {
  NT_GNU_ABI_TAG: 1, NT_GNU_HWCAP: 2, NT_GNU_BUILD_ID: 3, NT_GNU_GOLD_VERSION: 4, NT_GNU_PROPERTY_TYPE_0: 5,
  'GO BUILDID': 4, NT_STAPSDT: 3, NT_VERSION: 1, NT_ARCH: 2, NT_FDO_PACKAGING_METADATA: 0xcafe1a7e,
};

export interface ReadelfNote { source: string; owner: string; size: number; type: number }

export function parseNotes(text: string): { notes: ReadelfNote[]; buildId?: string; abi?: { os: string; version: string } } {
  const notes: ReadelfNote[] = [];
  let source = '';
  let buildId: string | undefined;
  let abi: { os: string; version: string } | undefined;
  for (const line of text.split('\n')) {
    const s = /^Displaying notes found (?:in: (\S+)|at file offset)/.exec(line);
    if (s) {
      source = s[1] ?? 'PT_NOTE';
      continue;
    }
    const n = /^ {2}(\S+)\s+0x([0-9a-f]{8})\t(.*?)(?:\t|$)/.exec(line);
    if (n && n[1] !== 'Owner') {
      const desc = n[3]!.trim();
      const unknown = /Unknown note type: \(0x([0-9a-f]+)\)/.exec(desc);
      const key = unknown ? undefined : desc.replace(/ \(.*$/, '');
      const type = unknown ? Number.parseInt(unknown[1]!, 16) : NOTE_TYPES[key!];
      if (type === undefined) throw new Error(`readelf printed an unknown note type "${desc}"`);
      notes.push({ source, owner: n[1]!, size: Number.parseInt(n[2]!, 16), type });
    }
    // With -W the details follow the description on the same line; without, on the next.
    const b = /\sBuild ID: ([0-9a-f]+)/.exec(line);
    if (b) buildId ??= b[1]!;
    const a = /\sOS: (\w+), ABI: ([\d.]+)/.exec(line);
    if (a) abi ??= { os: a[1]!, version: a[2]! };
  }
  const out: { notes: ReadelfNote[]; buildId?: string; abi?: { os: string; version: string } } = { notes };
  if (buildId !== undefined) out.buildId = buildId;
  if (abi !== undefined) out.abi = abi;
  return out;
}

export interface ReadelfVersions {
  defs: { index: number; flags: number; name: string; parents: string[] }[];
  needs: { file: string; versions: { name: string; index: number; flags: number }[] }[];
}

const VER_FLAGS: Record<string, number> = { none: 0, BASE: 1, WEAK: 2, INFO: 4 };
const verFlags = (s: string) => s.split(' | ').reduce((a, f) => a | (VER_FLAGS[f.trim()] ?? 0), 0);

export function parseVersions(text: string): ReadelfVersions {
  const v: ReadelfVersions = { defs: [], needs: [] };
  for (const line of text.split('\n')) {
    let m = /^ {2}\S+: Rev: \d+\s+Flags: (.*?)\s+Index: (\d+)\s+Cnt: \d+\s+Name: (.*)$/.exec(line);
    if (m) { v.defs.push({ index: Number(m[2]), flags: verFlags(m[1]!), name: m[3]!, parents: [] }); continue; }
    m = /^ {2}\S+: Parent \d+: (.*)$/.exec(line);
    if (m) { v.defs.at(-1)!.parents.push(m[1]!); continue; }
    m = /^ {2}\S+: Version: \d+\s+File: (.*?)\s+Cnt: \d+$/.exec(line);
    if (m) { v.needs.push({ file: m[1]!, versions: [] }); continue; }
    m = /^ {2}\S+:\s+Name: (.*?)\s+Flags: (.*?)\s+Version: (\d+)$/.exec(line);
    if (m) v.needs.at(-1)!.versions.push({ name: m[1]!, flags: verFlags(m[2]!), index: Number(m[3]) });
  }
  return v;
}

/** FDE pc ranges from `readelf -wf` (sorted, empty ones dropped, duplicates merged) and the FDE count. */
export function parseFdeRanges(text: string): { fdes: number; ranges: { start: bigint; end: bigint }[] } {
  const seen = new Map<string, { start: bigint; end: bigint }>();
  let fdes = 0;
  // -wf also dumps .debug_frame (and Go's compressed .zdebug_frame): keep only the .eh_frame blocks.
  const blocks = text.split(/^(?=Contents of the \S+ section:)/m).filter((b) => b.startsWith('Contents of the .eh_frame section:'));
  for (const m of blocks.join('').matchAll(/ FDE cie=[0-9a-f]+ pc=([0-9a-f]+)\.\.([0-9a-f]+)/g)) {
    fdes++;
    const start = hex(m[1]!);
    const end = hex(m[2]!);
    if (end > start) seen.set(`${start}:${end}`, { start, end });
  }
  const ranges = [...seen.values()].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.end < b.end ? -1 : a.end > b.end ? 1 : 0));
  return { fdes, ranges };
}
