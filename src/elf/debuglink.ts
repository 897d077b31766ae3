// Reads .gnu_debuglink (GDB manual, "Debugging Information in Separate Files"): the name of the file
// holding the stripped debug information, NUL-terminated, then padding and a CRC32. Distribution
// builds of glibc name it after the installed file ("libpthread-2.13.so.debug").
import { SHT } from './constants.js';
import type { ElfFile } from './read-elf.js';

/** Longest name read; real ones are a few dozen bytes. */
const MAX_NAME = 4096;

/** The debug file's name, or undefined when the file has no (non-empty) .gnu_debuglink section. */
export function readDebugLink(elf: ElfFile): string | undefined {
  const sec = elf.sections.find((s) => s.name === '.gnu_debuglink' && s.type !== SHT.NOBITS && s.size > 0);
  if (!sec) return undefined;
  elf.reader.need(sec.offset, sec.size, '.gnu_debuglink', 'ELF_BAD_OFFSET');
  const name = elf.reader.cstring(sec.offset, Math.min(sec.size, MAX_NAME));
  return name.length > 0 ? name : undefined;
}
