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

/**
 * Walks the notes packed in [offset, offset+size), giving each one's name (bytes [nameAt, nameEnd),
 * its NULs stripped), type and descriptor range. Each costs at least 12 bytes, so this ends.
 */
function walkNotes(elf: ElfFile, offset: number, size: number, alignment: 4 | 8, source: string, visit: (nameAt: number, nameEnd: number, type: number, descAt: number, descsz: number) => void): void {
  const r = elf.reader;
  r.need(offset, size, source, 'ELF_BAD_OFFSET');
  const end = offset + size;
  const h = NHDR.f;
  const bytes = r.bytes;
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
    while (nameEnd > nameAt && bytes[nameEnd - 1] === 0) nameEnd--;
    visit(nameAt, nameEnd, type, descAt, descsz);
    p = next;
  }
}

/** 8-byte alignment only where the producer asked for it (e.g. .note.gnu.property); else 4. */
function noteAlign(a: bigint): 4 | 8 {
  return a === 8n ? 8 : 4;
}

/** Every note area of the file in order: its SHT_NOTE sections, or its PT_NOTE segments when it has none. */
function eachNote(elf: ElfFile, visit: (nameAt: number, nameEnd: number, type: number, descAt: number, descsz: number, source: string) => void): void {
  let sections = false;
  for (const s of elf.sections) {
    if (s.type !== SHT.NOTE) continue;
    sections = true;
    const source = s.name || `section ${s.index}`;
    walkNotes(elf, s.offset, s.size, noteAlign(s.addralign), source, (a, b, t, d, n) => visit(a, b, t, d, n, source));
  }
  if (sections) return;
  for (const p of elf.programHeaders) {
    if (p.type === PT.NOTE) walkNotes(elf, p.offset, p.filesz, noteAlign(p.align), 'PT_NOTE', (a, b, t, d, n) => visit(a, b, t, d, n, 'PT_NOTE'));
  }
}

export function readNotes(elf: ElfFile): ElfNote[] {
  const out: ElfNote[] = [];
  const bytes = elf.reader.bytes;
  eachNote(elf, (nameAt, nameEnd, type, descAt, descsz, source) => {
    const name = Buffer.from(bytes.subarray(nameAt, nameEnd)).toString('latin1');
    out.push({ name, type, desc: bytes.slice(descAt, descAt + descsz), source });
  });
  return out;
}

/** Whether bytes [at, end) are "GNU". */
function isGnu(bytes: Uint8Array, at: number, end: number): boolean {
  return end - at === 3 && bytes[at] === 0x47 && bytes[at + 1] === 0x4e && bytes[at + 2] === 0x55;
}

/** The GNU build ID as lowercase hex: as readNotes finds it (every note checked), without an object per note. */
export function readBuildId(elf: ElfFile): string | undefined {
  const bytes = elf.reader.bytes;
  let id: string | undefined;
  eachNote(elf, (nameAt, nameEnd, type, descAt, descsz) => {
    if (id === undefined && type === NT_GNU_BUILD_ID && isGnu(bytes, nameAt, nameEnd)) id = Buffer.from(bytes.buffer, bytes.byteOffset + descAt, descsz).toString('hex');
  });
  return id;
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
