// Reads GNU symbol versioning (LSB 5.0 Core "Symbol Versioning"): version definitions
// (.gnu.version_d), version needs (.gnu.version_r) and the per-symbol index table (.gnu.version).
// The vd_next/vn_next chains are walked at most as many times as the section has room for entries.
import { VsysError } from '../errors.js';
import { SHT } from './constants.js';
import { VERDAUX, VERDEF, VERNAUX, VERNEED } from './layouts.js';
import { findSectionByType, type ElfFile } from './read-elf.js';
import { StringTable } from './string-table.js';
import type { Section } from './types.js';

export interface VersionDefinition {
  index: number;
  flags: number;
  name: string;
  /** The names of the verdaux entries after the first (the versions this one inherits from). */
  parents: string[];
}

export interface VersionNeed {
  file: string;
  versions: { name: string; index: number; flags: number }[];
}

/** VER_FLG_BASE: the definition naming the file itself. */
export const VER_FLG_BASE = 1;
/** Bit 15 of a versym entry: the symbol is not the default version. */
export const VERSYM_HIDDEN = 0x8000;

function malformed(elf: ElfFile, msg: string): never {
  throw new VsysError('ELF_MALFORMED', `${elf.path}: ${msg}`, { path: elf.path });
}

/** The string table a versioning section links to. */
export function linkedStrings(elf: ElfFile, sec: Section): StringTable {
  const strs = elf.sections[sec.link];
  if (!strs || strs.type === SHT.NOBITS || sec.link === 0) {
    throw new VsysError('ELF_BAD_OFFSET', `${elf.path}: section ${sec.name || sec.index} links to section ${sec.link}, which is not a string table`, { path: elf.path });
  }
  return new StringTable(elf.reader, strs.offset, strs.size, `${strs.name || 'string table'} (section ${strs.index})`);
}

/**
 * Walks a chain of records that starts at `first` (relative to the section) and continues by
 * `next(at)` (relative to the record; 0 ends it). Each record must fit in [0, size); the walk
 * stops after `limit` records so a chain that never ends still costs O(size).
 */
function chain(elf: ElfFile, size: number, first: number, recSize: number, limit: number, next: (at: number) => number, what: string, visit: (at: number) => void): void {
  let at = first;
  for (let n = 0; n < limit; n++) {
    if (at < 0 || at + recSize > size) malformed(elf, `${what} record at +${at} lies outside its ${size}-byte section`);
    visit(at);
    const step = next(at);
    if (step === 0) return;
    at += step;
  }
  malformed(elf, `${what} chain is longer than its section has room for (a cycle?)`);
}

/**
 * Each file's version tables are read once: identification and symbol versions both ask (the result,
 * or the coded error, is kept with the file). The arrays are shared: callers do not modify them.
 */
function once<T>(memo: WeakMap<ElfFile, { value: T } | { error: unknown }>, elf: ElfFile, read: (elf: ElfFile) => T): T {
  let m = memo.get(elf);
  if (!m) {
    try {
      m = { value: read(elf) };
    } catch (error) {
      m = { error };
    }
    memo.set(elf, m);
  }
  if ('error' in m) throw m.error;
  return m.value;
}

const definitions = new WeakMap<ElfFile, { value: VersionDefinition[] } | { error: unknown }>();
const needs = new WeakMap<ElfFile, { value: VersionNeed[] } | { error: unknown }>();

/** The file's version definitions (.gnu.version_d), read once per file. */
export function readVersionDefinitions(elf: ElfFile): VersionDefinition[] {
  return once(definitions, elf, readDefinitions);
}

/** The file's version needs (.gnu.version_r), read once per file. */
export function readVersionNeeds(elf: ElfFile): VersionNeed[] {
  return once(needs, elf, readNeeds);
}

function readDefinitions(elf: ElfFile): VersionDefinition[] {
  const sec = findSectionByType(elf, SHT.GNU_VERDEF);
  if (!sec) return [];
  const r = elf.reader;
  const strs = linkedStrings(elf, sec);
  const base = sec.offset;
  const d = VERDEF.f;
  const a = VERDAUX.f;
  // sh_info is the count of definitions; the section size bounds it either way.
  const room = Math.floor(sec.size / VERDEF.size);
  const limit = sec.info > 0 ? Math.min(sec.info, room) : room;
  const out: VersionDefinition[] = [];
  if (limit === 0) return out;
  chain(elf, sec.size, 0, VERDEF.size, limit, (x) => r.u32(base + x + d.vd_next.offset), 'verdef', (at) => {
    const p = base + at;
    const cnt = r.u16(p + d.vd_cnt.offset);
    const names: string[] = [];
    if (cnt > 0) {
      const auxLimit = Math.min(cnt, Math.floor(sec.size / VERDAUX.size));
      const first = at + r.u32(p + d.vd_aux.offset);
      chain(elf, sec.size, first, VERDAUX.size, auxLimit, (x) => r.u32(base + x + a.vda_next.offset), 'verdaux', (aux) => {
        names.push(strs.get(r.u32(base + aux + a.vda_name.offset)));
      });
    }
    out.push({
      index: r.u16(p + d.vd_ndx.offset),
      flags: r.u16(p + d.vd_flags.offset),
      name: names[0] ?? '',
      parents: names.slice(1),
    });
  });
  return out;
}

function readNeeds(elf: ElfFile): VersionNeed[] {
  const sec = findSectionByType(elf, SHT.GNU_VERNEED);
  if (!sec) return [];
  const r = elf.reader;
  const strs = linkedStrings(elf, sec);
  const base = sec.offset;
  const n = VERNEED.f;
  const a = VERNAUX.f;
  const room = Math.floor(sec.size / VERNEED.size);
  const limit = sec.info > 0 ? Math.min(sec.info, room) : room;
  const out: VersionNeed[] = [];
  if (limit === 0) return out;
  chain(elf, sec.size, 0, VERNEED.size, limit, (x) => r.u32(base + x + n.vn_next.offset), 'verneed', (at) => {
    const p = base + at;
    const cnt = r.u16(p + n.vn_cnt.offset);
    const versions: VersionNeed['versions'] = [];
    if (cnt > 0) {
      const auxLimit = Math.min(cnt, Math.floor(sec.size / VERNAUX.size));
      const first = at + r.u32(p + n.vn_aux.offset);
      chain(elf, sec.size, first, VERNAUX.size, auxLimit, (x) => r.u32(base + x + a.vna_next.offset), 'vernaux', (aux) => {
        const q = base + aux;
        versions.push({ name: strs.get(r.u32(q + a.vna_name.offset)), index: r.u16(q + a.vna_other.offset), flags: r.u16(q + a.vna_flags.offset) });
      });
    }
    out.push({ file: strs.get(r.u32(p + n.vn_file.offset)), versions });
  });
  return out;
}

/** The raw .gnu.version entries (one u16 per .dynsym symbol), or undefined when absent. */
export function readVersym(elf: ElfFile): Uint16Array | undefined {
  const sec = findSectionByType(elf, SHT.GNU_VERSYM);
  if (!sec) return undefined;
  const count = Math.floor(sec.size / 2);
  elf.reader.need(sec.offset, count * 2, '.gnu.version', 'ELF_BAD_OFFSET');
  const out = new Uint16Array(count);
  const dv = elf.reader.view; // the range is checked above
  for (let i = 0; i < count; i++) out[i] = dv.getUint16(sec.offset + 2 * i, true);
  return out;
}
