// The shapes the ELF reader returns (System V gABI, ELF-64 Object File Format 1.5, LSB 5.0 for
// symbol versions and .eh_frame). Plain objects: no reader state leaks out.

export type ElfClass = 32 | 64;

export interface ElfHeader {
  class: ElfClass;
  /** e_ident[EI_OSABI] */
  osabi: number;
  /** e_type: 1 REL, 2 EXEC, 3 DYN, 4 CORE */
  type: number;
  /** e_machine: 62 x86-64, 3 i386 */
  machine: number;
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

export interface ProgramHeader {
  type: number;
  flags: number;
  /** File offset, checked to lie inside the file together with filesz. */
  offset: number;
  vaddr: bigint;
  paddr: bigint;
  filesz: number;
  memsz: bigint;
  align: bigint;
}

export interface Section {
  index: number;
  name: string;
  nameOffset: number;
  type: number;
  flags: bigint;
  addr: bigint;
  /** File offset. For SHT_NOBITS the range is not checked (it occupies no file bytes). */
  offset: number;
  size: number;
  link: number;
  info: number;
  addralign: bigint;
  entsize: number;
}

export interface SymbolVersion {
  name: string;
  /** Bit 15 of the versym entry: not the default version (printed `@` instead of `@@`). */
  hidden: boolean;
  /** True when the version comes from a verdef (this file defines it), false for verneed. */
  defined: boolean;
  /** For verneed versions: the file the version is needed from (vn_file). */
  file?: string;
}

export interface ElfSymbol {
  index: number;
  name: string;
  value: bigint;
  size: bigint;
  /** STT_*: 0 NOTYPE, 1 OBJECT, 2 FUNC, 3 SECTION, 4 FILE, 6 TLS, 10 GNU_IFUNC */
  type: number;
  /** STB_*: 0 LOCAL, 1 GLOBAL, 2 WEAK, 10 GNU_UNIQUE */
  bind: number;
  visibility: number;
  shndx: number;
  /** Only for .dynsym when the file has .gnu.version; undefined for local/global (versym 0/1). */
  version?: SymbolVersion;
}

export interface DynamicInfo {
  entries: { tag: bigint; value: bigint }[];
  needed: string[];
  soname?: string;
  runpath?: string;
  rpath?: string;
}

export interface ElfNote {
  /** Owner name without the trailing NUL ("GNU", "Go", …). */
  name: string;
  type: number;
  desc: Uint8Array;
  /** The section (or "PT_NOTE") it came from. */
  source: string;
}

export interface GoBuildInfo {
  /** e.g. "go1.12.9" */
  version: string;
  /**
   * Where the version came from: the .go.buildinfo blob (go ≥ 1.13), the runtime.buildVersion
   * string in .symtab, or (last resort, least certain) the first "go1.N" pattern in .rodata.
   */
  source: 'buildinfo' | 'symbol' | 'rodata';
  /** Main module path and mod lines when the binary carries them (go ≥ 1.13). */
  path?: string;
  modinfo?: string;
}

/** A function's address range [start, end) from an FDE of .eh_frame. */
export interface FunctionRange {
  start: bigint;
  end: bigint;
}
