// Reads an x86-64 file's dynamic relocations (gABI "Relocation", x86-64 psABI): the allocated
// SHT_RELA sections (.rela.dyn, .rela.plt; a static binary's IRELATIVE entries), or, when the
// section headers are gone, the tables DT_RELA/DT_RELASZ and DT_JMPREL/DT_PLTRELSZ point at.
// Entries are visited, not returned: a large library has a hundred thousand of them.
import { VsysError } from '../errors.js';
import { DT, SHF, SHT } from './constants.js';
import { readDynamic } from './dynamic.js';
import { RELA64 } from './layouts.js';
import { vaddrToOffset, type ElfFile } from './read-elf.js';

/** Where each table lies in the file. */
function tables(elf: ElfFile): { offset: number; size: number; what: string }[] {
  const secs = elf.sections.filter((s) => s.type === SHT.RELA && (s.flags & BigInt(SHF.ALLOC)) !== 0n && s.size > 0);
  if (secs.length > 0) {
    for (const s of secs) {
      if (s.entsize !== 0 && s.entsize !== RELA64.size) {
        throw new VsysError('ELF_BAD_COUNT', `${elf.path}: ${s.name} entry size ${s.entsize}, expected ${RELA64.size}`, { path: elf.path });
      }
    }
    return secs.map((s) => ({ offset: s.offset, size: s.size, what: s.name || `section ${s.index}` }));
  }
  if (elf.sections.length > 0) return [];
  const dyn = readDynamic(elf);
  if (!dyn) return [];
  const tag = (t: number) => dyn.entries.find((e) => e.tag === BigInt(t))?.value;
  const out: { offset: number; size: number; what: string }[] = [];
  for (const [at, size, what] of [[DT.RELA, DT.RELASZ, 'DT_RELA'], [DT.JMPREL, DT.PLTRELSZ, 'DT_JMPREL']] as const) {
    const a = tag(at);
    const n = tag(size);
    if (a === undefined || n === undefined || n === 0n) continue;
    const offset = vaddrToOffset(elf, a);
    if (offset === undefined) throw new VsysError('ELF_BAD_OFFSET', `${elf.path}: ${what} 0x${a.toString(16)} maps to no file bytes`, { path: elf.path });
    if (n > BigInt(elf.bytes.length)) throw new VsysError('ELF_BAD_COUNT', `${elf.path}: ${what} claims ${n} bytes, more than the file`, { path: elf.path });
    out.push({ offset, size: Number(n), what });
  }
  return out;
}

/**
 * Calls `visit(offset, type, sym, addend)` for each relocation of a 64-bit file: r_offset (the
 * virtual address patched), the type and symbol index from r_info, and r_addend as a number
 * (exact below 2^53, which every address of a real file is).
 */
export function visitRelocations(elf: ElfFile, visit: (offset: number, type: number, sym: number, addend: number) => void): void {
  if (elf.header.class !== 64) return;
  const f = RELA64.f;
  for (const t of tables(elf)) {
    const count = Math.floor(t.size / RELA64.size);
    elf.reader.need(t.offset, count * RELA64.size, t.what, 'ELF_BAD_OFFSET');
    // The table's range is checked: its fields are read straight from the view.
    const dv = elf.reader.view;
    for (let i = 0; i < count; i++) {
      const b = t.offset + i * RELA64.size;
      const offset = dv.getUint32(b + f.r_offset.offset + 4, true) * 0x100000000 + dv.getUint32(b + f.r_offset.offset, true);
      const type = dv.getUint32(b + f.r_info.offset, true);
      const sym = dv.getUint32(b + f.r_info.offset + 4, true);
      const addend = dv.getInt32(b + f.r_addend.offset + 4, true) * 0x100000000 + dv.getUint32(b + f.r_addend.offset, true);
      visit(offset, type, sym, addend);
    }
  }
}
