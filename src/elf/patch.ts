// The write side of ELF handling: byte edits applied to a copy of a file, each checked to lie
// inside what the kernel maps executable (a PT_LOAD with PF_X, by its file range), never
// overlapping another edit. Nothing else of the file changes: headers, tables and sizes stay.
import { VsysError } from '../errors.js';
import { PF, PT } from './constants.js';
import type { ElfFile } from './read-elf.js';

export interface ByteEdit {
  offset: number;
  before: Uint8Array;
  after: Uint8Array;
}

/** The executable PT_LOAD holding [offset, offset+length), or undefined. */
function executableSegment(elf: ElfFile, offset: number, length: number): boolean {
  return elf.programHeaders.some((p) => p.type === PT.LOAD && (p.flags & PF.X) !== 0 && offset >= p.offset && offset + length <= p.offset + p.filesz);
}

/** A copy of `elf.bytes` with `edits` applied; throws ELF_PATCH_REFUSED when one is out of place or stale. */
export function applyEdits(elf: ElfFile, edits: readonly ByteEdit[]): Uint8Array {
  const sorted = [...edits].sort((a, b) => a.offset - b.offset);
  for (const [i, e] of sorted.entries()) {
    const where = `${elf.path}: edit at file offset 0x${e.offset.toString(16)}`;
    if (e.before.length !== e.after.length) throw new VsysError('ELF_PATCH_REFUSED', `${where} changes the length (${e.before.length} → ${e.after.length})`, { path: elf.path });
    if (!executableSegment(elf, e.offset, e.before.length)) throw new VsysError('ELF_PATCH_REFUSED', `${where} is not inside an executable PT_LOAD`, { path: elf.path });
    const prev = sorted[i - 1];
    if (prev && prev.offset + prev.before.length > e.offset) throw new VsysError('ELF_PATCH_REFUSED', `${where} overlaps the edit at 0x${prev.offset.toString(16)}`, { path: elf.path });
    const now = elf.bytes.subarray(e.offset, e.offset + e.before.length);
    if (!Buffer.from(now).equals(Buffer.from(e.before))) throw new VsysError('ELF_PATCH_REFUSED', `${where}: the file does not hold the bytes the plan decoded`, { path: elf.path });
  }
  const out = Uint8Array.from(elf.bytes);
  for (const e of sorted) out.set(e.after, e.offset);
  return out;
}
