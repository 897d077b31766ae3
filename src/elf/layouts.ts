// ELF structure layouts as tables (System V gABI ch. 4, ELF-64 Object File Format 1.5, LSB 5.0
// symbol versioning): field order and width per class; offsets and sizes are computed, not typed in.
import { ByteReader, toSafeNumber } from './bytes.js';

export type Width = 1 | 2 | 4 | 8;

export interface Field {
  offset: number;
  size: Width;
}

export interface Layout<F extends string> {
  name: string;
  size: number;
  f: Readonly<Record<F, Field>>;
}

/** Lays the fields out one after another. ELF's structs are designed with no padding. */
export function layout<F extends string>(name: string, fields: readonly (readonly [F, Width])[]): Layout<F> {
  const f = {} as Record<F, Field>;
  let offset = 0;
  for (const [field, size] of fields) {
    f[field] = { offset, size };
    offset += size;
  }
  return { name, size: offset, f };
}

/** Writes fields of a structure at `base` (little-endian), each by the layout's offset and width. */
export function writeFields<F extends string>(view: DataView, base: number, l: Layout<F>, values: Partial<Record<F, number | bigint>>): void {
  for (const [name, v] of Object.entries(values) as [F, number | bigint][]) {
    const { offset, size } = l.f[name];
    const at = base + offset;
    if (size === 1) view.setUint8(at, Number(v));
    else if (size === 2) view.setUint16(at, Number(v), true);
    else if (size === 4) view.setUint32(at, Number(v) >>> 0, true);
    else view.setBigUint64(at, BigInt.asUintN(64, BigInt(v)), true);
  }
}

type EhdrField = 'e_ident' | 'e_type' | 'e_machine' | 'e_version' | 'e_entry' | 'e_phoff' | 'e_shoff' | 'e_flags'
  | 'e_ehsize' | 'e_phentsize' | 'e_phnum' | 'e_shentsize' | 'e_shnum' | 'e_shstrndx';

// e_ident is 16 bytes; as a table it is 2×8 so that Width stays a machine word. Only its offset is used.
const ehdr = (addr: Width) => layout<EhdrField | 'e_ident_hi'>(`Elf${addr * 8}_Ehdr`, [
  ['e_ident', 8], ['e_ident_hi', 8], ['e_type', 2], ['e_machine', 2], ['e_version', 4], ['e_entry', addr],
  ['e_phoff', addr], ['e_shoff', addr], ['e_flags', 4], ['e_ehsize', 2], ['e_phentsize', 2], ['e_phnum', 2],
  ['e_shentsize', 2], ['e_shnum', 2], ['e_shstrndx', 2],
]);
export const EHDR32 = ehdr(4);
export const EHDR64 = ehdr(8);

type PhdrField = 'p_type' | 'p_flags' | 'p_offset' | 'p_vaddr' | 'p_paddr' | 'p_filesz' | 'p_memsz' | 'p_align';
// The 64-bit layout moves p_flags up next to p_type to keep the 8-byte fields aligned.
export const PHDR32 = layout<PhdrField>('Elf32_Phdr', [
  ['p_type', 4], ['p_offset', 4], ['p_vaddr', 4], ['p_paddr', 4], ['p_filesz', 4], ['p_memsz', 4], ['p_flags', 4], ['p_align', 4],
]);
export const PHDR64 = layout<PhdrField>('Elf64_Phdr', [
  ['p_type', 4], ['p_flags', 4], ['p_offset', 8], ['p_vaddr', 8], ['p_paddr', 8], ['p_filesz', 8], ['p_memsz', 8], ['p_align', 8],
]);

type ShdrField = 'sh_name' | 'sh_type' | 'sh_flags' | 'sh_addr' | 'sh_offset' | 'sh_size' | 'sh_link' | 'sh_info'
  | 'sh_addralign' | 'sh_entsize';
const shdr = (addr: Width) => layout<ShdrField>(`Elf${addr * 8}_Shdr`, [
  ['sh_name', 4], ['sh_type', 4], ['sh_flags', addr], ['sh_addr', addr], ['sh_offset', addr], ['sh_size', addr],
  ['sh_link', 4], ['sh_info', 4], ['sh_addralign', addr], ['sh_entsize', addr],
]);
export const SHDR32 = shdr(4);
export const SHDR64 = shdr(8);

type SymField = 'st_name' | 'st_info' | 'st_other' | 'st_shndx' | 'st_value' | 'st_size';
export const SYM32 = layout<SymField>('Elf32_Sym', [
  ['st_name', 4], ['st_value', 4], ['st_size', 4], ['st_info', 1], ['st_other', 1], ['st_shndx', 2],
]);
export const SYM64 = layout<SymField>('Elf64_Sym', [
  ['st_name', 4], ['st_info', 1], ['st_other', 1], ['st_shndx', 2], ['st_value', 8], ['st_size', 8],
]);

export const DYN32 = layout<'d_tag' | 'd_val'>('Elf32_Dyn', [['d_tag', 4], ['d_val', 4]]);
export const DYN64 = layout<'d_tag' | 'd_val'>('Elf64_Dyn', [['d_tag', 8], ['d_val', 8]]);

// Relocations with explicit addends, as x86-64 uses them (gABI "Relocation"; r_info = sym << 32 | type).
export const RELA64 = layout<'r_offset' | 'r_info' | 'r_addend'>('Elf64_Rela', [['r_offset', 8], ['r_info', 8], ['r_addend', 8]]);

// The version structures and note headers are the same in both classes.
export const VERDEF = layout('Elf_Verdef', [
  ['vd_version', 2], ['vd_flags', 2], ['vd_ndx', 2], ['vd_cnt', 2], ['vd_hash', 4], ['vd_aux', 4], ['vd_next', 4],
] as const);
export const VERDAUX = layout('Elf_Verdaux', [['vda_name', 4], ['vda_next', 4]] as const);
export const VERNEED = layout('Elf_Verneed', [
  ['vn_version', 2], ['vn_cnt', 2], ['vn_file', 4], ['vn_aux', 4], ['vn_next', 4],
] as const);
export const VERNAUX = layout('Elf_Vernaux', [
  ['vna_hash', 4], ['vna_flags', 2], ['vna_other', 2], ['vna_name', 4], ['vna_next', 4],
] as const);
export const NHDR = layout('Elf_Nhdr', [['n_namesz', 4], ['n_descsz', 4], ['n_type', 4]] as const);

// The hash tables' headers, the same in both classes: DT_HASH (gABI "Hash Table": nbucket, nchain,
// then the buckets and chains) and DT_GNU_HASH (as glibc's dl-lookup.c reads it: then the bloom
// filter of bloom_size address-sized words, the buckets and the chains).
export const SYSV_HASH = layout('Elf_Hash', [['nbucket', 4], ['nchain', 4]] as const);
export const GNU_HASH = layout('Elf_GnuHash', [['nbuckets', 4], ['symoffset', 4], ['bloom_size', 4], ['bloom_shift', 4]] as const);

export interface ClassLayouts {
  ehdr: typeof EHDR64;
  phdr: typeof PHDR64;
  shdr: typeof SHDR64;
  sym: typeof SYM64;
  dyn: typeof DYN64;
  /** Size of an address / pointer in bytes. */
  addr: 4 | 8;
}

const LAYOUTS64: Readonly<ClassLayouts> = { ehdr: EHDR64, phdr: PHDR64, shdr: SHDR64, sym: SYM64, dyn: DYN64, addr: 8 };
const LAYOUTS32: Readonly<ClassLayouts> = { ehdr: EHDR32, phdr: PHDR32, shdr: SHDR32, sym: SYM32, dyn: DYN32, addr: 4 };

/** The tables of one class; made once (the readers ask for them per file and per table). */
export function layoutsFor(cls: 32 | 64): Readonly<ClassLayouts> {
  return cls === 64 ? LAYOUTS64 : LAYOUTS32;
}

/** Reads a field of any width as an unsigned bigint. */
export function big(r: ByteReader, base: number, f: Field): bigint {
  const off = base + f.offset;
  switch (f.size) {
    case 1: return BigInt(r.u8(off));
    case 2: return BigInt(r.u16(off));
    case 4:
    case 8:
      r.need(off, f.size, f.size === 8 ? 'u64' : 'u32');
      return wordBig(r.view, off, f.size);
  }
}

/** Small values' bigints, made once: most flags, alignments and dynamic tags are among them. */
const SMALL_BIG = Array.from({ length: 4097 }, (_, i) => BigInt(i));

/**
 * An address-sized field (4 or 8 bytes) at `off` as a bigint, read straight from the view: only
 * inside a table whose range has been checked (ByteReader.need).
 */
export function wordBig(dv: DataView, off: number, w: 4 | 8): bigint {
  const lo = dv.getUint32(off, true);
  if (w === 8 && dv.getUint32(off + 4, true) !== 0) return dv.getBigUint64(off, true);
  return lo < SMALL_BIG.length ? (SMALL_BIG[lo] as bigint) : BigInt(lo);
}

/** An address-sized field inside a checked table as a number; as `num`, NUMBER_UNSAFE from 2^53 on. */
export function wordNum(dv: DataView, off: number, w: 4 | 8, what: string): number {
  const lo = dv.getUint32(off, true);
  if (w === 4) return lo;
  const hi = dv.getUint32(off + 4, true);
  return hi < 0x200000 ? hi * 0x100000000 + lo : toSafeNumber(dv.getBigUint64(off, true), what);
}

/** Reads a field as a number; 8-byte fields must hold a safe integer (else NUMBER_UNSAFE). */
export function num(r: ByteReader, base: number, f: Field, what: string): number {
  const off = base + f.offset;
  switch (f.size) {
    case 1: return r.u8(off);
    case 2: return r.u16(off);
    case 4: return r.u32(off);
    case 8:
      // Without a bigint below 2^53 (wordNum).
      r.need(off, 8, 'u64');
      return wordNum(r.view, off, 8, what);
  }
}
