// Reads the dynamic section (gABI "Dynamic Section"): its tags up to DT_NULL, and the names behind
// DT_NEEDED, DT_SONAME, DT_RUNPATH and DT_RPATH from the DT_STRTAB string table.
import { VsysError } from '../errors.js';
import { DT, PT, SHT } from './constants.js';
import { layoutsFor, wordBig } from './layouts.js';
import { offsetToVaddr, vaddrToOffset, type ElfFile } from './read-elf.js';
import { StringTable } from './string-table.js';
import type { DynamicInfo } from './types.js';

/** Where the dynamic array lies in the file, from the section header or else PT_DYNAMIC. */
function locate(elf: ElfFile): { offset: number; size: number; link?: number } | undefined {
  const sec = elf.sections.find((s) => s.type === SHT.DYNAMIC);
  if (sec) return { offset: sec.offset, size: sec.size, link: sec.link };
  const ph = elf.programHeaders.find((p) => p.type === PT.DYNAMIC);
  if (ph) return { offset: ph.offset, size: ph.filesz };
  return undefined;
}

const NEEDED = BigInt(DT.NEEDED);
const SONAME = BigInt(DT.SONAME);
const RUNPATH = BigInt(DT.RUNPATH);
const RPATH = BigInt(DT.RPATH);
const STRTAB = BigInt(DT.STRTAB);
const STRSZ = BigInt(DT.STRSZ);

export function readDynamic(elf: ElfFile): DynamicInfo | undefined {
  const where = locate(elf);
  if (!where) return undefined;
  const r = elf.reader;
  const L = layoutsFor(elf.header.class);
  const f = L.dyn.f;
  r.need(where.offset, where.size, 'dynamic section', 'ELF_BAD_OFFSET');
  const count = Math.floor(where.size / L.dyn.size);
  const entries: DynamicInfo['entries'] = [];
  // The array's range is checked above: its fields are read straight from the view.
  const dv = r.view;
  let hasNames = false;
  for (let i = 0; i < count; i++) {
    const b = where.offset + i * L.dyn.size;
    const tag = wordBig(dv, b + f.d_tag.offset, L.addr);
    if (tag === 0n) break; // DT_NULL
    hasNames ||= tag === NEEDED || tag === SONAME || tag === RUNPATH || tag === RPATH;
    entries.push({ tag, value: wordBig(dv, b + f.d_val.offset, L.addr) });
  }

  const info: DynamicInfo = { entries, needed: [] };
  if (!hasNames) return info;
  const strs = stringTable(elf, entries, where.link);
  for (const e of entries) {
    const tag = Number(e.tag);
    if (tag !== DT.NEEDED && tag !== DT.SONAME && tag !== DT.RUNPATH && tag !== DT.RPATH) continue;
    if (e.value > BigInt(strs.size)) {
      throw new VsysError('ELF_BAD_OFFSET', `${elf.path}: dynamic tag ${tag} names string ${e.value}, past the ${strs.size}-byte string table`, { path: elf.path });
    }
    const s = strs.get(Number(e.value));
    if (tag === DT.NEEDED) info.needed.push(s);
    else if (tag === DT.SONAME) info.soname ??= s;
    else if (tag === DT.RUNPATH) info.runpath ??= s;
    else info.rpath ??= s;
  }
  return info;
}

/** DT_STRTAB mapped to the file (sized by DT_STRSZ, else to its segment's end), else sh_link. */
function stringTable(elf: ElfFile, entries: DynamicInfo['entries'], link: number | undefined): StringTable {
  const strtab = entries.find((e) => e.tag === STRTAB)?.value;
  const strsz = entries.find((e) => e.tag === STRSZ)?.value;
  const off = strtab === undefined ? undefined : vaddrToOffset(elf, strtab);
  if (off !== undefined) {
    const vaddr = offsetToVaddr(elf, off)!;
    const seg = elf.programHeaders.find((p) => p.type === PT.LOAD && vaddr >= p.vaddr && vaddr < p.vaddr + BigInt(p.filesz))!;
    const room = seg.offset + seg.filesz - off;
    const size = strsz === undefined || strsz > BigInt(room) ? room : Number(strsz);
    return new StringTable(elf.reader, off, size, 'the dynamic string table');
  }
  const sec = link === undefined ? undefined : elf.sections[link];
  if (sec && link !== 0 && sec.type !== SHT.NOBITS) return new StringTable(elf.reader, sec.offset, sec.size, `${sec.name || 'the dynamic string table'}`);
  throw new VsysError('ELF_MALFORMED', `${elf.path}: the dynamic section names libraries but DT_STRTAB maps to no file bytes`, { path: elf.path });
}
