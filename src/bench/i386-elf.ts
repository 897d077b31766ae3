// Wraps machine code in a minimal static i386 executable (ELF32 ET_EXEC, EM_386) so vsys can run
// 32-bit code without a compiler or linker. Follows the System V gABI ch. 4–5 and the i386 psABI;
// field offsets come from the layout tables in src/elf/layouts.ts.
import { VsysError } from '../errors.js';
import { EHDR32, PHDR32, SHDR32, writeFields } from '../elf/layouts.js';
import { ELFCLASS32, ELFDATA2LSB, EM, ET, EV_CURRENT, PF, PT, SHF, SHT } from '../elf/constants.js';

const PAGE = 0x1000;

/** The traditional i386 load address; the file is mapped from offset 0 here. */
export const I386_LOAD_ADDRESS = 0x08048000;
/** The file offset of the code: after the ELF header and room for two program headers, 16-aligned. */
const CODE_OFFSET = align(EHDR32.size + 2 * PHDR32.size, 16);
/** Where the first code byte is loaded: assemble with `new Asm(32).assemble(BigInt(I386_CODE_ADDRESS))`. */
export const I386_CODE_ADDRESS = I386_LOAD_ADDRESS + CODE_OFFSET;
/**
 * Where the zero-filled read-write segment starts when `bssSize` > 0. It is fixed (not placed after
 * the code) so that code can be assembled with absolute data addresses before its size is known.
 */
export const I386_BSS_ADDRESS = I386_LOAD_ADDRESS + 0x100000;
/** Largest code the layout leaves room for below the bss. */
export const I386_MAX_CODE = I386_BSS_ADDRESS - I386_CODE_ADDRESS;
/** Largest bss accepted (the segment must stay far below the 3 GiB user-space limit). */
export const I386_MAX_BSS = 256 << 20;

export interface I386ElfOptions {
  /** Bytes of zeroed read-write memory at I386_BSS_ADDRESS (none when 0 or absent). */
  bssSize?: number;
  /** Entry point as an offset into `code` (default 0). */
  entryOffset?: number;
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

function checkArgs(code: Uint8Array, bssSize: number, entryOffset: number): void {
  if (code.length === 0 || code.length > I386_MAX_CODE) {
    throw new VsysError('USAGE', `buildI386Elf: code is ${code.length} bytes; it must be 1..${I386_MAX_CODE}`);
  }
  if (!Number.isSafeInteger(bssSize) || bssSize < 0 || bssSize > I386_MAX_BSS) {
    throw new VsysError('USAGE', `buildI386Elf: bssSize ${bssSize} must be an integer in 0..${I386_MAX_BSS}`);
  }
  if (!Number.isSafeInteger(entryOffset) || entryOffset < 0 || entryOffset >= code.length) {
    throw new VsysError('USAGE', `buildI386Elf: entryOffset ${entryOffset} lies outside the ${code.length}-byte code`);
  }
}

/**
 * Returns the bytes of an executable that loads `code` at I386_CODE_ADDRESS (R+X) and, when asked,
 * `bssSize` zeroed bytes at I386_BSS_ADDRESS (R+W), and starts at code + entryOffset. A small section
 * header table (.text, .bss, .shstrtab) follows the loaded part so that `readelf -S` and
 * `objdump -d` can read the file too; the kernel only looks at the program headers.
 */
export function buildI386Elf(code: Uint8Array, opts: I386ElfOptions = {}): Uint8Array {
  const bssSize = opts.bssSize ?? 0;
  const entryOffset = opts.entryOffset ?? 0;
  checkArgs(code, bssSize, entryOffset);
  const hasBss = bssSize > 0;

  const names = hasBss ? ['', '.text', '.bss', '.shstrtab'] : ['', '.text', '.shstrtab'];
  const nameOff = new Map<string, number>();
  let strSize = 0;
  for (const n of names) {
    nameOff.set(n, strSize);
    strSize += Buffer.byteLength(n, 'latin1') + 1;
  }
  const codeEnd = CODE_OFFSET + code.length;
  const strOff = codeEnd;
  const shOff = align(strOff + strSize, 4);
  const shnum = names.length;
  const total = shOff + shnum * SHDR32.size;

  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);

  out.set([0x7f, 0x45, 0x4c, 0x46, ELFCLASS32, ELFDATA2LSB, EV_CURRENT], EHDR32.f.e_ident.offset);
  writeFields(view, 0, EHDR32, {
    e_type: ET.EXEC, e_machine: EM.I386, e_version: EV_CURRENT, e_entry: I386_CODE_ADDRESS + entryOffset,
    e_phoff: EHDR32.size, e_shoff: shOff, e_flags: 0, e_ehsize: EHDR32.size, e_phentsize: PHDR32.size,
    e_phnum: hasBss ? 2 : 1, e_shentsize: SHDR32.size, e_shnum: shnum, e_shstrndx: shnum - 1,
  });

  const phdr = (i: number, type: number, off: number, vaddr: number, filesz: number, memsz: number, flags: number) =>
    writeFields(view, EHDR32.size + i * PHDR32.size, PHDR32, { p_type: type, p_offset: off, p_vaddr: vaddr, p_paddr: vaddr, p_filesz: filesz, p_memsz: memsz, p_flags: flags, p_align: PAGE });
  // The headers are mapped along with the code, as in any ET_EXEC: one page-aligned mapping from offset 0.
  phdr(0, PT.LOAD, 0, I386_LOAD_ADDRESS, codeEnd, codeEnd, PF.R | PF.X);
  // No file bytes: the kernel maps anonymous zeroed pages (the classic .bss).
  if (hasBss) phdr(1, PT.LOAD, 0, I386_BSS_ADDRESS, 0, bssSize, PF.R | PF.W);

  out.set(code, CODE_OFFSET);
  for (const n of names) out.set(Buffer.from(n, 'latin1'), strOff + (nameOff.get(n) ?? 0));

  const shdr = (i: number, name: string, type: number, flags: number, addr: number, off: number, size: number, alignment: number) =>
    writeFields(view, shOff + i * SHDR32.size, SHDR32, { sh_name: nameOff.get(name) ?? 0, sh_type: type, sh_flags: flags, sh_addr: addr, sh_offset: off, sh_size: size, sh_addralign: alignment });
  // Section 0 stays all zeros (SHN_UNDEF).
  shdr(1, '.text', SHT.PROGBITS, SHF.ALLOC | SHF.EXECINSTR, I386_CODE_ADDRESS, CODE_OFFSET, code.length, 16);
  if (hasBss) shdr(2, '.bss', SHT.NOBITS, SHF.ALLOC | SHF.WRITE, I386_BSS_ADDRESS, codeEnd, bssSize, 16);
  shdr(shnum - 1, '.shstrtab', SHT.STRTAB, 0, 0, strOff, strSize, 1);
  return out;
}
