// Parses a vDSO image (a small ELF shared object) the way the kernel's
// tools/testing/selftests/vDSO/parse_vdso.c does: PT_LOAD/PT_DYNAMIC, then DT_SYMTAB/DT_STRTAB,
// DT_HASH or DT_GNU_HASH for the symbol count and lookups, DT_VERSYM/DT_VERDEF for versions.
// Works on bytes, so a live image and a dumped file go through the same code.
import { VsysError } from '../errors.js';
import { ByteReader, toSafeNumber } from '../elf/bytes.js';
import { DT, PT, SHN_ABS } from '../elf/constants.js';

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
  if (!r.has(0, 52) || r.u32(0) !== 0x464c457f) fail('no ELF header at the vDSO base');
  const cls = r.u8(4) === 2 ? 64 : r.u8(4) === 1 ? 32 : fail(`unknown ELF class ${r.u8(4)}`);
  if (r.u8(5) !== 1) fail('not little-endian');
  const phoff = cls === 64 ? toSafeNumber(r.u64(32), 'e_phoff') : r.u32(28);
  const phentsize = r.u16(cls === 64 ? 54 : 42);
  const phnum = r.u16(cls === 64 ? 56 : 44);
  if (phentsize < (cls === 64 ? 56 : 32)) fail(`e_phentsize ${phentsize} too small`);
  r.need(phoff, phnum * phentsize, 'program headers');

  let load: { off: bigint; vaddr: bigint } | undefined;
  let dynamic: { off: bigint; size: bigint } | undefined;
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    const type = r.u32(p);
    const off = cls === 64 ? r.u64(p + 8) : BigInt(r.u32(p + 4));
    const vaddr = cls === 64 ? r.u64(p + 16) : BigInt(r.u32(p + 8));
    const filesz = cls === 64 ? r.u64(p + 32) : BigInt(r.u32(p + 16));
    if (type === PT.LOAD && !load) load = { off, vaddr };
    if (type === PT.DYNAMIC) dynamic = { off, size: filesz };
  }
  if (!load) fail('no PT_LOAD segment');
  if (!dynamic) fail('no PT_DYNAMIC segment');
  const delta = load.off - load.vaddr;
  const vaddrToOff = (v: bigint) => toSafeNumber(v + delta, 'vDSO address');

  const dyn = new Map<number, bigint>();
  const entSize = cls === 64 ? 16 : 8;
  const dynOff = toSafeNumber(dynamic.off, 'PT_DYNAMIC offset');
  const count = Math.floor(toSafeNumber(dynamic.size, 'PT_DYNAMIC size') / entSize);
  r.need(dynOff, count * entSize, 'dynamic section');
  for (let i = 0; i < count; i++) {
    const e = dynOff + i * entSize;
    const tag = cls === 64 ? Number(r.i64(e)) : r.i32(e);
    if (tag === DT.NULL) break;
    const val = cls === 64 ? r.u64(e + 8) : BigInt(r.u32(e + 4));
    if (!dyn.has(tag)) dyn.set(tag, val);
  }
  return { cls, r, vaddrToOff, dyn };
}

function symbolCount(l: Layout): { count: number; hash: 'gnu' | 'sysv' } {
  const { r, dyn } = l;
  const h = dyn.get(DT.HASH);
  if (h !== undefined) {
    const off = l.vaddrToOff(h);
    return { count: r.u32(off + 4), hash: 'sysv' }; // nchain = number of symbols
  }
  const g = dyn.get(DT.GNU_HASH);
  if (g === undefined) fail('neither DT_HASH nor DT_GNU_HASH');
  const off = l.vaddrToOff(g);
  const nbuckets = r.u32(off);
  const symoffset = r.u32(off + 4);
  const bloomSize = r.u32(off + 8);
  const word = l.cls === 64 ? 8 : 4;
  const buckets = off + 16 + bloomSize * word;
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
  const vd = l.dyn.get(DT.VERDEF);
  const strtab = l.dyn.get(DT.STRTAB);
  if (vd === undefined || strtab === undefined) return names;
  const { r } = l;
  const strOff = l.vaddrToOff(strtab);
  let off = l.vaddrToOff(vd);
  for (let guard = 0; guard < 1024; guard++) {
    const ndx = r.u16(off + 4);
    const cnt = r.u16(off + 6);
    const aux = r.u32(off + 12);
    const next = r.u32(off + 16);
    if (cnt > 0) names.set(ndx & 0x7fff, r.cstring(strOff + r.u32(off + aux)));
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
    const symSize = cls === 64 ? 24 : 16;
    r.need(symOff, count * symSize, 'symbol table');
    const symbols: VdsoSymbol[] = [];
    for (let i = 1; i < count; i++) {
      const s = symOff + i * symSize;
      const nameOff = r.u32(s);
      const info = cls === 64 ? r.u8(s + 4) : r.u8(s + 12);
      const shndx = cls === 64 ? r.u16(s + 6) : r.u16(s + 14);
      const value = cls === 64 ? r.u64(s + 8) : BigInt(r.u32(s + 4));
      const size = cls === 64 ? toSafeNumber(r.u64(s + 16), 'st_size') : r.u32(s + 8);
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
    return { elfClass: cls, machine: r.u16(18), symbols, hash, soname };
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
  if (!r.has(0, 64) || r.u32(0) !== 0x464c457f) fail('no ELF header at the vDSO base');
  const is64 = r.u8(4) === 2;
  const shoff = is64 ? toSafeNumber(r.u64(40), 'e_shoff') : r.u32(32);
  const shentsize = r.u16(is64 ? 58 : 46);
  const shnum = r.u16(is64 ? 60 : 48);
  return {
    phoff: is64 ? toSafeNumber(r.u64(32), 'e_phoff') : r.u32(28),
    phentsize: r.u16(is64 ? 54 : 42),
    phnum: r.u16(is64 ? 56 : 44),
    shEnd: shoff + shentsize * shnum,
  };
}
