// Numeric constants of the ELF format used by the readers (gABI, LSB 5.0 and GNU extensions as
// documented in glibc's elf.h and the Linux Foundation's LSB Core specification).

export const ELFCLASS32 = 1;
export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const ELFDATA2MSB = 2;
export const EV_CURRENT = 1;

/** Extended numbering: e_shnum/e_phnum/e_shstrndx live in section header 0. */
export const SHN_UNDEF = 0;
export const SHN_LORESERVE = 0xff00;
export const SHN_XINDEX = 0xffff;
export const PN_XNUM = 0xffff;

export const PT = {
  NULL: 0, LOAD: 1, DYNAMIC: 2, INTERP: 3, NOTE: 4, SHLIB: 5, PHDR: 6, TLS: 7,
  GNU_EH_FRAME: 0x6474e550, GNU_STACK: 0x6474e551, GNU_RELRO: 0x6474e552, GNU_PROPERTY: 0x6474e553,
} as const;

export const PF = { X: 1, W: 2, R: 4 } as const;

export const ET = { REL: 1, EXEC: 2, DYN: 3, CORE: 4 } as const;
export const EM = { I386: 3, X86_64: 62 } as const;

/** Section flags (sh_flags). */
export const SHF = { WRITE: 1, ALLOC: 2, EXECINSTR: 4 } as const;
export const SHN_ABS = 0xfff1;

/** Symbol types and bindings (st_info). */
export const STT = { NOTYPE: 0, OBJECT: 1, FUNC: 2, SECTION: 3, FILE: 4, TLS: 6, GNU_IFUNC: 10 } as const;
export const STB = { LOCAL: 0, GLOBAL: 1, WEAK: 2, GNU_UNIQUE: 10 } as const;

export const SHT = {
  NULL: 0, PROGBITS: 1, SYMTAB: 2, STRTAB: 3, RELA: 4, HASH: 5, DYNAMIC: 6, NOTE: 7, NOBITS: 8, REL: 9,
  DYNSYM: 11, INIT_ARRAY: 14, FINI_ARRAY: 15, PREINIT_ARRAY: 16, GROUP: 17, SYMTAB_SHNDX: 18, RELR: 19,
  GNU_ATTRIBUTES: 0x6ffffff5, GNU_HASH: 0x6ffffff6, GNU_LIBLIST: 0x6ffffff7, X86_64_UNWIND: 0x70000001, GNU_VERDEF: 0x6ffffffd, GNU_VERNEED: 0x6ffffffe, GNU_VERSYM: 0x6fffffff,
} as const;

export const DT = {
  NULL: 0, NEEDED: 1, PLTRELSZ: 2, HASH: 4, STRTAB: 5, SYMTAB: 6, RELA: 7, RELASZ: 8, STRSZ: 10, INIT: 12, FINI: 13,
  SONAME: 14, RPATH: 15, JMPREL: 23, INIT_ARRAY: 25, FINI_ARRAY: 26, INIT_ARRAYSZ: 27, FINI_ARRAYSZ: 28, RUNPATH: 29,
  PREINIT_ARRAY: 32, PREINIT_ARRAYSZ: 33,
  GNU_HASH: 0x6ffffef5, VERSYM: 0x6ffffff0, VERDEF: 0x6ffffffc, VERDEFNUM: 0x6ffffffd, VERNEED: 0x6ffffffe, VERNEEDNUM: 0x6fffffff,
} as const;

/** x86-64 relocation types (System V x86-64 psABI, table "Relocation Types"). */
export const R_X86_64 = { NONE: 0, R64: 1, GLOB_DAT: 6, JUMP_SLOT: 7, RELATIVE: 8, IRELATIVE: 37 } as const;

export const NT_GNU_ABI_TAG = 1;
export const NT_GNU_BUILD_ID = 3;
export const NT_GO_BUILD_ID = 4;
