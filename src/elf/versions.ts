// Reads GNU symbol versioning (LSB 5.0 Core "Symbol Versioning"): version definitions
// (.gnu.version_d), version needs (.gnu.version_r) and the per-symbol index table (.gnu.version).
// Every chain is walked at most as many times as the section has room for records, and all of a
// section's chains together visit at most that many (a crafted table cannot make the walk quadratic).
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
 * What one section's walks may still visit, all chains together. Records do not share bytes in a
 * real table (each verdaux/vernaux belongs to one definition or need), so a walk that visits more
 * records than the section has room for is going round shared or looping chains: without this
 * bound, N records each walking one long chain cost N × its length (issue 23: 6 s and 0.9 GB for a
 * 128 KB .gnu.version_d).
 */
interface Budget {
  left: number;
  /** The section, for the message. */
  what: string;
}

function budgetOf(sec: Section, smallestRecord: number): Budget {
  return { left: Math.floor(sec.size / smallestRecord), what: sec.name || `section ${sec.index}` };
}

/**
 * Walks a chain of records that starts at `first` (relative to the section) and continues by
 * `next(at)` (relative to the record; 0 ends it). Each record must fit in [0, size); the walk
 * stops after `limit` records so a chain that never ends still costs O(size), and every record
 * visited is taken from `budget`, so all the section's chains together cost O(size) too.
 */
function chain(elf: ElfFile, size: number, first: number, recSize: number, limit: number, budget: Budget, next: (at: number) => number, what: string, visit: (at: number) => void): void {
  let at = first;
  for (let n = 0; n < limit; n++) {
    if (at < 0 || at + recSize > size) malformed(elf, `${what} record at +${at} lies outside its ${size}-byte section`);
    if (--budget.left < 0) {
      throw new VsysError('ELF_BAD_VERSIONS', `${elf.path}: ${budget.what}: its chains visit more records than its ${size} bytes hold (records shared between chains, or a loop); version names not read`, { path: elf.path });
    }
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

/** How a version section's records and their aux chains are laid out (verdef/verdaux, verneed/vernaux). */
interface Shape {
  names: [string, string];
  recSize: number;
  auxSize: number;
  /** Fields of a record at file offset p, and of an aux entry at q. */
  next(p: number): number;
  count(p: number): number;
  aux(p: number): number;
  auxNext(q: number): number;
}

/**
 * Walks a version section: its records (from sh_info or its room), each one's aux chain. Twice:
 * first visiting nothing, so a table past the bound fails before a name is decoded or kept; then
 * calling `record(p)` and `aux(q, n)` (file offsets; n counts from 0 in each chain).
 */
function walkVersions(elf: ElfFile, sec: Section, shape: Shape, record: (p: number) => void, aux: (q: number, n: number) => void): void {
  const room = Math.floor(sec.size / shape.recSize);
  const limit = sec.info > 0 ? Math.min(sec.info, room) : room;
  if (limit === 0) return;
  const base = sec.offset;
  const pass = (visit: boolean) => {
    const budget = budgetOf(sec, Math.min(shape.recSize, shape.auxSize));
    chain(elf, sec.size, 0, shape.recSize, limit, budget, (x) => shape.next(base + x), shape.names[0], (at) => {
      const p = base + at;
      if (visit) record(p);
      const cnt = shape.count(p);
      if (cnt === 0) return;
      const auxLimit = Math.min(cnt, Math.floor(sec.size / shape.auxSize));
      let n = 0;
      chain(elf, sec.size, at + shape.aux(p), shape.auxSize, auxLimit, budget, (x) => shape.auxNext(base + x), shape.names[1], (q) => {
        if (visit) aux(base + q, n);
        n++;
      });
    });
  };
  pass(false);
  pass(true);
}

function readDefinitions(elf: ElfFile): VersionDefinition[] {
  const sec = findSectionByType(elf, SHT.GNU_VERDEF);
  if (!sec) return [];
  const r = elf.reader;
  const strs = linkedStrings(elf, sec);
  const d = VERDEF.f;
  const a = VERDAUX.f;
  const shape: Shape = {
    names: ['verdef', 'verdaux'], recSize: VERDEF.size, auxSize: VERDAUX.size,
    next: (p) => r.u32(p + d.vd_next.offset), count: (p) => r.u16(p + d.vd_cnt.offset), aux: (p) => r.u32(p + d.vd_aux.offset), auxNext: (q) => r.u32(q + a.vda_next.offset),
  };
  const out: VersionDefinition[] = [];
  let def: VersionDefinition | undefined;
  walkVersions(elf, sec, shape, (p) => {
    def = { index: r.u16(p + d.vd_ndx.offset), flags: r.u16(p + d.vd_flags.offset), name: '', parents: [] };
    out.push(def);
  }, (q, n) => {
    const name = strs.get(r.u32(q + a.vda_name.offset));
    if (!def) return;
    if (n === 0) def.name = name;
    else def.parents.push(name);
  });
  return out;
}

function readNeeds(elf: ElfFile): VersionNeed[] {
  const sec = findSectionByType(elf, SHT.GNU_VERNEED);
  if (!sec) return [];
  const r = elf.reader;
  const strs = linkedStrings(elf, sec);
  const n = VERNEED.f;
  const a = VERNAUX.f;
  const shape: Shape = {
    names: ['verneed', 'vernaux'], recSize: VERNEED.size, auxSize: VERNAUX.size,
    next: (p) => r.u32(p + n.vn_next.offset), count: (p) => r.u16(p + n.vn_cnt.offset), aux: (p) => r.u32(p + n.vn_aux.offset), auxNext: (q) => r.u32(q + a.vna_next.offset),
  };
  const out: VersionNeed[] = [];
  let need: VersionNeed | undefined;
  walkVersions(elf, sec, shape, (p) => {
    need = { file: strs.get(r.u32(p + n.vn_file.offset)), versions: [] };
    out.push(need);
  }, (q) => {
    need?.versions.push({ name: strs.get(r.u32(q + a.vna_name.offset)), index: r.u16(q + a.vna_other.offset), flags: r.u16(q + a.vna_flags.offset) });
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
