// Reads ELF notes (gABI "Note Section"; GNU build-id and ABI-tag notes as the LSB and glibc's
// elf.h define them) from SHT_NOTE sections, or from PT_NOTE segments when sections are gone.
import { VsysError } from '../errors.js';
import { NT_GNU_ABI_TAG, NT_GNU_BUILD_ID, PT, SHT } from './constants.js';
import { NHDR } from './layouts.js';
import type { ElfFile } from './read-elf.js';
import type { ElfNote } from './types.js';

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Parses the notes packed in [offset, offset+size). Each costs at least 12 bytes, so this ends. */
function parseNotes(elf: ElfFile, offset: number, size: number, alignment: 4 | 8, source: string): ElfNote[] {
  const r = elf.reader;
  r.need(offset, size, source, 'ELF_BAD_OFFSET');
  const end = offset + size;
  const h = NHDR.f;
  const out: ElfNote[] = [];
  let p = offset;
  while (p + NHDR.size <= end) {
    const namesz = r.u32(p + h.n_namesz.offset);
    const descsz = r.u32(p + h.n_descsz.offset);
    const type = r.u32(p + h.n_type.offset);
    const nameAt = p + NHDR.size;
    // Padding aligns positions within the area (so with 8-byte alignment the 12-byte header and a
    // 4-byte name "GNU\0" need none), not the sizes on their own.
    const descAt = offset + align(nameAt + namesz - offset, alignment);
    const next = offset + align(descAt + descsz - offset, alignment);
    if (descAt + descsz > end) {
      throw new VsysError('ELF_MALFORMED', `${elf.path}: a note in ${source} claims ${namesz}+${descsz} bytes, past the end of the ${size}-byte area`, { path: elf.path });
    }
    // The name counts its NUL; strip it (and any padding NULs a sloppy producer left).
    let nameEnd = nameAt + namesz;
    while (nameEnd > nameAt && r.bytes[nameEnd - 1] === 0) nameEnd--;
    const name = Buffer.from(r.bytes.subarray(nameAt, nameEnd)).toString('latin1');
    out.push({ name, type, desc: r.bytes.slice(descAt, descAt + descsz), source });
    p = next;
  }
  return out;
}

/** 8-byte alignment only where the producer asked for it (e.g. .note.gnu.property); else 4. */
function noteAlign(a: bigint): 4 | 8 {
  return a === 8n ? 8 : 4;
}

export function readNotes(elf: ElfFile): ElfNote[] {
  const secs = elf.sections.filter((s) => s.type === SHT.NOTE);
  if (secs.length > 0) return secs.flatMap((s) => parseNotes(elf, s.offset, s.size, noteAlign(s.addralign), s.name || `section ${s.index}`));
  return elf.programHeaders
    .filter((p) => p.type === PT.NOTE)
    .flatMap((p) => parseNotes(elf, p.offset, p.filesz, noteAlign(p.align), 'PT_NOTE'));
}

/** The GNU build ID as lowercase hex. */
export function readBuildId(elf: ElfFile): string | undefined {
  const n = readNotes(elf).find((x) => x.name === 'GNU' && x.type === NT_GNU_BUILD_ID);
  return n && Buffer.from(n.desc).toString('hex');
}

const ABI_OS = ['Linux', 'Hurd', 'Solaris', 'FreeBSD'] as const;

/** NT_GNU_ABI_TAG: the OS and the oldest kernel version the file runs on. */
export function readAbiTag(elf: ElfFile): { os: string; version: string } | undefined {
  const n = readNotes(elf).find((x) => x.name === 'GNU' && x.type === NT_GNU_ABI_TAG);
  if (!n) return undefined;
  if (n.desc.length < 16) {
    throw new VsysError('ELF_MALFORMED', `${elf.path}: the ABI tag note has ${n.desc.length} bytes, expected 16`, { path: elf.path });
  }
  const w = new DataView(n.desc.buffer, n.desc.byteOffset, 16);
  const os = w.getUint32(0, true);
  return { os: ABI_OS[os] ?? `unknown (${os})`, version: `${w.getUint32(4, true)}.${w.getUint32(8, true)}.${w.getUint32(12, true)}` };
}
