// Parses a vDSO image (a small ELF shared object) the way the kernel's
// tools/testing/selftests/vDSO/parse_vdso.c does: PT_LOAD/PT_DYNAMIC, then DT_SYMTAB/DT_STRTAB,
// DT_HASH or DT_GNU_HASH for the symbol count and lookups, DT_VERSYM/DT_VERDEF for versions.
// Works on bytes, so a live image and a dumped file go through the same code.
import { VsysError } from '../errors.js';
import { ByteReader, toSafeNumber } from '../elf/bytes.js';
import { DT, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, PT, SHN_ABS } from '../elf/constants.js';
import { readHeader, readIdent, readSegments, sectionTableEnd, type RawSegment } from '../elf/header.js';
import { big, EHDR32, EHDR64, GNU_HASH, layoutsFor, num, SYSV_HASH, VERDAUX, VERDEF } from '../elf/layouts.js';

export type VdsoSymbolType = 'func' | 'object' | 'notype' | 'other';

export interface VdsoSymbol {
  name: string;
  version: string | null;
  /** Absolute address in the process the image came from (base + offset). */
  address: bigint;
  /** Offset from the image base (st_value - first PT_LOAD vaddr + its file offset). */
  offset: number;
  size: number;
  type: 'func' | 'object' | 'other';
  binding: 'local' | 'global' | 'weak' | 'other';
}

export interface ParsedVdso {
  elfClass: 32 | 64;
  machine: number;
  symbols: VdsoSymbol[];
  /** Which hash table the symbol count and lookups came from. */
  hash: 'gnu' | 'sysv';
  soname: string | null;
}


interface Layout {
  cls: 32 | 64;
  machine: number;
  r: ByteReader;
  /** Add to a link-time address to get a file offset. */
  vaddrToOff: (v: bigint) => number;
  dyn: Map<number, bigint>;
}

function fail(msg: string): never {
  throw new VsysError('VDSO_MALFORMED', `vDSO: ${msg}`);
}

function readLayout(bytes: Uint8Array): Layout {
  const r = new ByteReader(bytes, 'vDSO');
  const id = readIdent(bytes);
  if (!r.has(0, EHDR32.size) || !id?.magic) fail('no ELF header at the vDSO base');
  const cls = id.class === ELFCLASS64 ? 64 : id.class === ELFCLASS32 ? 32 : fail(`unknown ELF class ${id.class}`);
  if (id.data !== ELFDATA2LSB) fail('not little-endian');
  const L = layoutsFor(cls);
  const h = readHeader(r, cls);
  const phoff = toSafeNumber(h.phoff, 'e_phoff');
  if (h.phentsize < L.phdr.size) fail(`e_phentsize ${h.phentsize} too small`);
  r.need(phoff, h.phnum * h.phentsize, 'program headers');

  // parse_vdso.c: the first PT_LOAD gives the load offset, the last PT_DYNAMIC the dynamic section.
  let load: RawSegment | undefined;
  let dynamic: RawSegment | undefined;
  for (const p of readSegments(r, h)) {
    if (p.type === PT.LOAD && !load) load = p;
    if (p.type === PT.DYNAMIC) dynamic = p;
  }
  if (!load) fail('no PT_LOAD segment');
  if (!dynamic) fail('no PT_DYNAMIC segment');
  const delta = load.offset - load.vaddr;
  const vaddrToOff = (v: bigint) => toSafeNumber(v + delta, 'vDSO address');

  const dyn = new Map<number, bigint>();
  const d = L.dyn;
  const dynOff = toSafeNumber(dynamic.offset, 'PT_DYNAMIC offset');
  const count = Math.floor(toSafeNumber(dynamic.filesz, 'PT_DYNAMIC size') / d.size);
  r.need(dynOff, count * d.size, 'dynamic section');
  for (let i = 0; i < count; i++) {
    const e = dynOff + i * d.size;
    // d_tag is signed (Elf_Sxword / Elf32_Sword).
    const tag = cls === 64 ? Number(r.i64(e + d.f.d_tag.offset)) : r.i32(e + d.f.d_tag.offset);
    if (tag === DT.NULL) break;
    const val = big(r, e, d.f.d_val);
    if (!dyn.has(tag)) dyn.set(tag, val);
  }
  return { cls, machine: h.machine, r, vaddrToOff, dyn };
}

function symbolCount(l: Layout): { count: number; hash: 'gnu' | 'sysv' } {
  const { r, dyn } = l;
  const h = dyn.get(DT.HASH);
  if (h !== undefined) {
    const off = l.vaddrToOff(h);
    return { count: r.u32(off + SYSV_HASH.f.nchain.offset), hash: 'sysv' }; // nchain = number of symbols
  }
  const g = dyn.get(DT.GNU_HASH);
  if (g === undefined) fail('neither DT_HASH nor DT_GNU_HASH');
  const off = l.vaddrToOff(g);
  const gh = GNU_HASH.f;
  const nbuckets = r.u32(off + gh.nbuckets.offset);
  const symoffset = r.u32(off + gh.symoffset.offset);
  const bloomSize = r.u32(off + gh.bloom_size.offset);
  const word = layoutsFor(l.cls).addr;
  const buckets = off + GNU_HASH.size + bloomSize * word;
  const chains = buckets + nbuckets * 4;
  r.need(buckets, nbuckets * 4, 'GNU hash buckets');
  let max = 0;
  for (let i = 0; i < nbuckets; i++) max = Math.max(max, r.u32(buckets + i * 4));
  if (max < symoffset) return { count: symoffset, hash: 'gnu' };
  // Follow the last chain to its end (low bit set) to find the highest symbol index.
  for (let idx = max; ; idx++) {
    if (idx - max > 1 << 20) fail('GNU hash chain does not terminate');
    if (r.u32(chains + (idx - symoffset) * 4) & 1) return { count: idx + 1, hash: 'gnu' };
  }
}

function versionNames(l: Layout): Map<number, string> {
  const names = new Map<number, string>();
  const verdef = l.dyn.get(DT.VERDEF);
  const strtab = l.dyn.get(DT.STRTAB);
  if (verdef === undefined || strtab === undefined) return names;
  const { r } = l;
  const vd = VERDEF.f;
  const strOff = l.vaddrToOff(strtab);
  let off = l.vaddrToOff(verdef);
  for (let guard = 0; guard < 1024; guard++) {
    const ndx = r.u16(off + vd.vd_ndx.offset);
    const cnt = r.u16(off + vd.vd_cnt.offset);
    const aux = r.u32(off + vd.vd_aux.offset);
    const next = r.u32(off + vd.vd_next.offset);
    if (cnt > 0) names.set(ndx & 0x7fff, r.cstring(strOff + r.u32(off + aux + VERDAUX.f.vda_name.offset)));
    if (next === 0) break;
    off += next;
  }
  return names;
}

/** Parses a vDSO image whose first byte was mapped at `base`. */
export function parseVdsoImage(bytes: Uint8Array, base: bigint): ParsedVdso {
  try {
    const l = readLayout(bytes);
    const { r, dyn, cls } = l;
    const symtab = dyn.get(DT.SYMTAB);
    const strtab = dyn.get(DT.STRTAB);
    if (symtab === undefined || strtab === undefined) fail('no DT_SYMTAB/DT_STRTAB');
    const symOff = l.vaddrToOff(symtab);
    const strOff = l.vaddrToOff(strtab);
    const versym = dyn.get(DT.VERSYM);
    const versymOff = versym === undefined ? undefined : l.vaddrToOff(versym);
    const versions = versionNames(l);
    const { count, hash } = symbolCount(l);
    const sym = layoutsFor(cls).sym;
    const f = sym.f;
    r.need(symOff, count * sym.size, 'symbol table');
    const symbols: VdsoSymbol[] = [];
    for (let i = 1; i < count; i++) {
      const s = symOff + i * sym.size;
      const nameOff = r.u32(s + f.st_name.offset);
      const info = r.u8(s + f.st_info.offset);
      const shndx = r.u16(s + f.st_shndx.offset);
      const value = big(r, s, f.st_value);
      const size = num(r, s, f.st_size, 'st_size');
      if (shndx === 0) continue; // undefined
      const t = info & 0xf;
      const b = info >> 4;
      const offset = l.vaddrToOff(value);
      const vi = versymOff === undefined ? undefined : r.u16(versymOff + i * 2) & 0x7fff;
      const name = r.cstring(strOff + nameOff);
      const version = vi === undefined || vi <= 1 ? null : versions.get(vi) ?? null;
      symbols.push({
        name,
        // The absolute symbol named after a version (e.g. LINUX_2.6) defines that version; it has none itself.
        version: shndx === SHN_ABS && version === name ? null : version,
        address: base + BigInt(offset),
        offset,
        size,
        type: t === 2 ? 'func' : t === 1 ? 'object' : 'other',
        binding: b === 0 ? 'local' : b === 1 ? 'global' : b === 2 ? 'weak' : 'other',
      });
    }
    const sonameVal = dyn.get(DT.SONAME);
    const soname = sonameVal === undefined ? null : r.cstring(strOff + toSafeNumber(sonameVal, 'DT_SONAME'));
    return { elfClass: cls, machine: l.machine, symbols, hash, soname };
  } catch (e) {
    if (e instanceof VsysError && e.code !== 'VDSO_MALFORMED') {
      throw new VsysError('VDSO_MALFORMED', `vDSO: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

/** Extent of the ELF file inside an image: the larger of the section headers' end and the segments' end. */
export function vdsoImageExtent(header: Uint8Array): { phoff: number; phnum: number; phentsize: number; shEnd: number } {
  const r = new ByteReader(header, 'vDSO');
  const id = readIdent(header);
  if (!r.has(0, EHDR64.size) || !id?.magic) fail('no ELF header at the vDSO base');
  const h = readHeader(r, id.class === ELFCLASS64 ? 64 : 32);
  const shEnd = sectionTableEnd(h);
  return { phoff: toSafeNumber(h.phoff, 'e_phoff'), phentsize: h.phentsize, phnum: h.phnum, shEnd };
}
