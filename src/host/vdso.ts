// The live vDSO of this process: found through getauxval(AT_SYSINFO_EHDR), copied out of memory,
// parsed by vdso-parse.ts. Its size comes from the [vdso] line of /proc/self/maps, else from the ELF.
import { readFileSync, writeFileSync } from 'node:fs';
import { VsysError } from '../errors.js';
import { AT_SYSINFO_EHDR } from '../model/syscalls.js';
import { getauxval } from '../native/libc.js';
import { pointerAt, readMemory } from '../native/memory.js';
import { parseMaps } from './maps.js';
import { parseVdsoImage, vdsoImageExtent, type VdsoSymbol } from './vdso-parse.js';

export type { VdsoSymbol } from './vdso-parse.js';

export interface VdsoImage {
  base: bigint;
  size: number;
  bytes: Uint8Array;
  symbols: VdsoSymbol[];
  hash: 'gnu' | 'sysv';
  soname: string | null;
  /** Where the size came from. */
  sizeSource: 'maps' | 'elf';
}

export function readVdso(): VdsoImage {
  const base = getauxval(AT_SYSINFO_EHDR);
  if (base === 0n) throw new VsysError('VDSO_NOT_FOUND', 'no vDSO: AT_SYSINFO_EHDR is absent from the auxiliary vector (vdso=0 on the kernel command line?)');
  let size = 0;
  let sizeSource: VdsoImage['sizeSource'] = 'elf';
  try {
    const line = parseMaps(readFileSync('/proc/self/maps', 'utf8')).find((m) => m.name === '[vdso]');
    if (line && line.start === base) {
      size = Number(line.end - line.start);
      sizeSource = 'maps';
    }
  } catch {
    // /proc may be absent; fall back to the ELF's own extent
  }
  const ptr = pointerAt(base);
  if (size === 0) {
    const head = readMemory(ptr, 64);
    const ext = vdsoImageExtent(head);
    size = Math.ceil(Math.max(ext.shEnd, 4096) / 4096) * 4096;
  }
  const bytes = readMemory(ptr, size);
  const parsed = parseVdsoImage(bytes, base);
  return { base, size, bytes, symbols: parsed.symbols, hash: parsed.hash, soname: parsed.soname, sizeSource };
}

export function findVdsoSymbol(image: VdsoImage, name: string, version?: string): VdsoSymbol | undefined {
  return image.symbols.find((s) => s.name === name && (version === undefined || s.version === version));
}

/** Writes the image as a file that readelf/objdump can read. */
export function dumpVdso(image: VdsoImage, path: string): void {
  try {
    writeFileSync(path, image.bytes);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new VsysError('IO_FAILED', `cannot write the vDSO image to ${path}: ${err.message}`, { path, syscall: 'open', ...(err.errno !== undefined ? { errno: -err.errno } : {}) });
  }
}
