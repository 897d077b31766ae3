// Reads .symtab / .dynsym (gABI "Symbol Table") and attaches GNU symbol versions to .dynsym entries
// the way the dynamic linker resolves them (LSB 5.0: versym index → verdef or vernaux index).
import { VsysError } from '../errors.js';
import { SHT, SHN_UNDEF } from './constants.js';
import { big, layoutsFor, num } from './layouts.js';
import type { ElfFile } from './read-elf.js';
import type { ElfSymbol, SymbolVersion } from './types.js';
import type { StringTable } from './string-table.js';
import { linkedStrings, readVersionDefinitions, readVersionNeeds, readVersym, VERSYM_HIDDEN } from './versions.js';

export { readVersionDefinitions, readVersionNeeds, type VersionDefinition, type VersionNeed } from './versions.js';

export type SymbolTableName = '.symtab' | '.dynsym';

/**
 * Version index → name and origin, from both the definitions and the needs (a later entry with the
 * same index replaces an earlier one). Indexed arrays: looked up once per versioned symbol.
 */
function versionNames(elf: ElfFile): { defs: (string | undefined)[]; needs: ({ name: string; file: string } | undefined)[] } {
  const defs: (string | undefined)[] = [];
  for (const d of readVersionDefinitions(elf)) defs[d.index] = d.name;
  const needs: ({ name: string; file: string } | undefined)[] = [];
  for (const n of readVersionNeeds(elf)) for (const v of n.versions) needs[v.index] = { name: v.name, file: n.file };
  return { defs, needs };
}

/** A symbol table opened for reading: its section checked, its strings and versions at hand. */
interface OpenTable {
  sec: ElfFile['sections'][number];
  entsize: number;
  count: number;
  strs: StringTable;
  versym: Uint16Array | undefined;
  names: ReturnType<typeof versionNames> | undefined;
}

/** Undefined when the file has no such table or it is empty; throws on a malformed one. */
function openTable(elf: ElfFile, table: SymbolTableName): OpenTable | undefined {
  const type = table === '.symtab' ? SHT.SYMTAB : SHT.DYNSYM;
  const sec = elf.sections.find((s) => s.type === type) ?? elf.sections.find((s) => s.name === table && s.type !== SHT.NOBITS);
  if (!sec) return undefined;
  const L = layoutsFor(elf.header.class);
  const entsize = sec.entsize === 0 ? L.sym.size : sec.entsize;
  if (entsize !== L.sym.size) {
    throw new VsysError('ELF_BAD_COUNT', `${elf.path}: ${table} entry size ${sec.entsize}, expected ${L.sym.size}`, { path: elf.path });
  }
  const count = Math.floor(sec.size / entsize);
  if (count === 0) return undefined;
  elf.reader.need(sec.offset, count * entsize, table, 'ELF_BAD_OFFSET');
  const strs = linkedStrings(elf, sec);
  let versym: Uint16Array | undefined;
  let names: ReturnType<typeof versionNames> | undefined;
  if (type === SHT.DYNSYM) {
    versym = readVersym(elf);
    if (versym) names = versionNames(elf);
  }
  return { sec, entsize, count, strs, versym, names };
}

/**
 * The one pass over a table that both readers below make: each entry's st_info and st_shndx read
 * straight from the bytes (the table's range was checked by openTable), `where` asked before
 * anything else is decoded, and each picked entry handed to `take` with its index and file offset.
 */
function pickEntries(elf: ElfFile, t: OpenTable, where: ((info: number, shndx: number) => boolean) | undefined, take: (i: number, at: number, info: number, shndx: number) => void): void {
  const f = layoutsFor(elf.header.class).sym.f;
  const bytes = elf.reader.bytes;
  const base = t.sec.offset;
  const infoAt = base + f.st_info.offset;
  const shndxAt = base + f.st_shndx.offset;
  for (let i = 0; i < t.count; i++) {
    const e = i * t.entsize;
    const info = bytes[infoAt + e] as number;
    const shndx = (bytes[shndxAt + e] as number) | ((bytes[shndxAt + e + 1] as number) << 8);
    if (where && !where(info, shndx)) continue;
    take(i, base + e, info, shndx);
  }
}

/**
 * The symbols of `table`, in order. `where(info, shndx)`, when given, picks the entries to decode
 * before their names, values and versions are read (a library's imports are a few hundred of its
 * tens of thousands of symbols).
 */
export function readSymbols(elf: ElfFile, table: SymbolTableName, where?: (info: number, shndx: number) => boolean): ElfSymbol[] {
  const t = openTable(elf, table);
  if (!t) return [];
  const { strs, versym, names } = t;
  const r = elf.reader;
  const f = layoutsFor(elf.header.class).sym.f;
  const out: ElfSymbol[] = where ? [] : new Array(t.count);
  pickEntries(elf, t, where, (i, b, info, shndx) => {
    const sym: ElfSymbol = {
      index: i,
      name: strs.get(num(r, b, f.st_name, 'st_name')),
      value: big(r, b, f.st_value),
      size: big(r, b, f.st_size),
      type: info & 0xf,
      bind: info >> 4,
      visibility: r.view.getUint8(b + f.st_other.offset) & 0x3,
      shndx,
    };
    const v = versym?.[i];
    if (v !== undefined && names) {
      const version = resolveVersion(v, shndx, names);
      if (version) sym.version = version;
    }
    if (where) out.push(sym);
    else out[i] = sym;
  });
  return out;
}

/**
 * What readSymbols(elf, table, where) gives, without making an object or a string per symbol:
 * `visit` gets each picked entry's name as bytes [start, end) of the file (checked as
 * StringTable.get checks it; the same errors, in the same order) and the name of its version.
 * For a caller that only packs names (a file's imports, thousands per image).
 */
export function visitSymbolNames(elf: ElfFile, table: SymbolTableName, where: (info: number, shndx: number) => boolean, visit: (start: number, end: number, version: string | undefined) => void): void {
  const t = openTable(elf, table);
  if (!t) return;
  const { strs, versym, names } = t;
  const bytes = elf.reader.bytes;
  const nameAt = layoutsFor(elf.header.class).sym.f.st_name.offset;
  pickEntries(elf, t, where, (i, b, _info, shndx) => {
    // st_name is 4 bytes in both classes, read straight from the checked table.
    const n = b + nameAt;
    const at = ((bytes[n] as number) | ((bytes[n + 1] as number) << 8) | ((bytes[n + 2] as number) << 16)) + (bytes[n + 3] as number) * 0x1000000;
    const end = strs.end(at);
    const v = versym?.[i];
    visit(strs.offset + at, strs.offset + end, v !== undefined && names ? versionName(v, shndx, names) : undefined);
  });
}

/**
 * Whether a symbol's version index is named by what the file needs (an undefined symbol, or an index
 * the file does not define) rather than by what it defines.
 */
function fromNeeds(index: number, shndx: number, names: ReturnType<typeof versionNames>): boolean {
  return names.needs[index] !== undefined && (shndx === SHN_UNDEF || names.defs[index] === undefined);
}

/** The name resolveVersion gives the symbol's version, without its object. */
function versionName(v: number, shndx: number, names: ReturnType<typeof versionNames>): string | undefined {
  const index = v & 0x7fff;
  if (index <= 1) return undefined;
  return fromNeeds(index, shndx, names) ? names.needs[index]?.name : names.defs[index];
}

function resolveVersion(v: number, shndx: number, names: ReturnType<typeof versionNames>): SymbolVersion | undefined {
  const index = v & 0x7fff;
  // 0 is *local*, 1 is *global* (unversioned): no name to print.
  if (index <= 1) return undefined;
  const hidden = (v & VERSYM_HIDDEN) !== 0;
  // An undefined symbol takes its version from what the file needs; a defined one from what it defines.
  const need = names.needs[index];
  if (need && fromNeeds(index, shndx, names)) return { name: need.name, hidden, defined: false, file: need.file };
  const def = names.defs[index];
  if (def !== undefined) return { name: def, hidden, defined: true };
  return undefined;
}

/**
 * The name as readelf prints it: `name@@VER` for a default definition, `name@VER` otherwise; the
 * absolute symbols the linker emits for each version definition (named after it) print bare.
 */
export function formatVersionedName(sym: ElfSymbol): string {
  if (!sym.version || (sym.version.defined && sym.version.name === sym.name)) return sym.name;
  return `${sym.name}${sym.version.defined && !sym.version.hidden ? '@@' : '@'}${sym.version.name}`;
}
