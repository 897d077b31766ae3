// Finds the Go toolchain version (and module info) of a Go binary, as Go's debug/buildinfo
// documents the .go.buildinfo blob: a 32-byte header "\xff Go buildinf:", pointer size, flags, then
// either two pointers to string headers (go < 1.18) or two varint-prefixed strings (flags bit 2).
import { VsysError } from '../errors.js';
import { NT_GO_BUILD_ID, PF, PT, SHT } from './constants.js';
import { Cursor } from './dwarf-pointer.js';
import { findSection, vaddrToOffset, type ElfFile } from './read-elf.js';
import { readNotes } from './notes.js';
import { readSymbols } from './symbols.js';
import type { GoBuildInfo } from './types.js';

const MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');
const HEADER_SIZE = 32;
const FLAG_BIG_ENDIAN = 1;
const FLAG_INLINE = 2;
/** Longer than any real version or module list; a cap so a hostile length cannot make us copy much. */
const MAX_STRING = 1 << 20;

/** The header's file offset and the end of the bytes it may refer to inline. */
function locate(elf: ElfFile): { at: number; end: number } | undefined {
  const r = elf.reader;
  const sec = findSection(elf, '.go.buildinfo');
  if (sec && sec.size >= HEADER_SIZE && r.has(sec.offset, HEADER_SIZE) && MAGIC.equals(r.bytes.subarray(sec.offset, sec.offset + MAGIC.length))) {
    return { at: sec.offset, end: sec.offset + sec.size };
  }
  // No section header: the linker puts the blob at a 16-aligned address in the writable data segment.
  for (const p of elf.programHeaders) {
    if (p.type !== PT.LOAD || (p.flags & PF.W) === 0) continue;
    const seg = Buffer.from(r.bytes.buffer, r.bytes.byteOffset + p.offset, p.filesz);
    for (let i = seg.indexOf(MAGIC); i >= 0; i = seg.indexOf(MAGIC, i + 1)) {
      if ((p.vaddr + BigInt(i)) % 16n === 0n && i + HEADER_SIZE <= p.filesz) return { at: p.offset + i, end: p.offset + p.filesz };
    }
  }
  return undefined;
}

function malformed(elf: ElfFile, msg: string): never {
  throw new VsysError('ELF_MALFORMED', `${elf.path}: ${msg}`, { path: elf.path });
}

/** Reads a Go string header {data pointer, length} at `vaddr` and the bytes it points to. */
function goString(elf: ElfFile, vaddr: bigint, ptrSize: 4 | 8, what: string): string {
  const r = elf.reader;
  const word = (off: number): bigint => (ptrSize === 8 ? r.u64(off) : BigInt(r.u32(off)));
  const hdr = vaddrToOffset(elf, vaddr);
  if (hdr === undefined) malformed(elf, `${what}: string header at 0x${vaddr.toString(16)} maps to no file bytes`);
  const data = word(hdr);
  const len = word(hdr + ptrSize);
  if (len === 0n) return '';
  if (len > BigInt(MAX_STRING)) malformed(elf, `${what}: string length ${len} is implausible`);
  const off = vaddrToOffset(elf, data);
  if (off === undefined) malformed(elf, `${what}: string data at 0x${data.toString(16)} maps to no file bytes`);
  return Buffer.from(r.slice(off, Number(len), what)).toString('utf8');
}

function varintString(c: Cursor): string {
  const len = c.uleb();
  if (len > BigInt(c.end - c.pos)) {
    throw new VsysError('ELF_MALFORMED', `${c.r.source}: a .go.buildinfo string claims ${len} bytes, past the blob's end`, { path: c.r.source });
  }
  const at = c.pos;
  c.pos += Number(len);
  return Buffer.from(c.r.bytes.subarray(at, c.pos)).toString('utf8');
}

/** Go wraps modinfo in two 16-byte sentinels; the text between them is what `go version -m` prints. */
function withModinfo(info: GoBuildInfo, raw: string): GoBuildInfo {
  let mod = raw;
  if (mod.length >= 33 && mod[mod.length - 17] === '\n') mod = mod.slice(16, -16);
  if (mod === '') return info;
  info.modinfo = mod;
  const path = /^path\t(.*)$/m.exec(mod)?.[1];
  if (path !== undefined) info.path = path;
  return info;
}

function fromBlob(elf: ElfFile): GoBuildInfo | undefined {
  const where = locate(elf);
  if (!where) return undefined;
  const r = elf.reader;
  const ptrSize = r.u8(where.at + 14);
  const flags = r.u8(where.at + 15);
  if (flags & FLAG_INLINE) {
    const c = new Cursor(r, where.at + HEADER_SIZE, where.end, '.go.buildinfo');
    const version = varintString(c);
    const mod = varintString(c);
    return version === '' ? undefined : withModinfo({ version, source: 'buildinfo' }, mod);
  }
  if (flags & FLAG_BIG_ENDIAN) {
    throw new VsysError('ELF_UNSUPPORTED', `${elf.path}: .go.buildinfo is big-endian in a little-endian file`, { path: elf.path });
  }
  if (ptrSize !== 4 && ptrSize !== 8) malformed(elf, `.go.buildinfo pointer size ${ptrSize}`);
  const word = (off: number): bigint => (ptrSize === 8 ? r.u64(off) : BigInt(r.u32(off)));
  const version = goString(elf, word(where.at + 16), ptrSize, '.go.buildinfo version');
  const mod = goString(elf, word(where.at + 16 + ptrSize), ptrSize, '.go.buildinfo modinfo');
  return version === '' ? undefined : withModinfo({ version, source: 'buildinfo' }, mod);
}

/** go ≤ 1.12: the runtime.buildVersion string variable. */
function fromSymbol(elf: ElfFile): GoBuildInfo | undefined {
  const sym = readSymbols(elf, '.symtab').find((s) => s.name === 'runtime.buildVersion');
  if (!sym) return undefined;
  const version = goString(elf, sym.value, elf.header.class === 64 ? 8 : 4, 'runtime.buildVersion');
  return version === '' ? undefined : { version, source: 'symbol' };
}

/** Last resort for stripped old binaries: Go strings have no NUL, so take the longest go1.N[.M] run. */
function fromRodata(elf: ElfFile): GoBuildInfo | undefined {
  const sec = findSection(elf, '.rodata');
  if (!sec || sec.type === SHT.NOBITS) return undefined;
  const text = Buffer.from(elf.reader.slice(sec.offset, sec.size, '.rodata')).toString('latin1');
  const m = /go1\.\d{1,3}(?:\.\d{1,3})?(?:(?:beta|rc)\d{1,2})?/.exec(text);
  return m ? { version: m[0], source: 'rodata' } : undefined;
}

export function readGoBuildInfo(elf: ElfFile): GoBuildInfo | undefined {
  return fromBlob(elf) ?? fromSymbol(elf) ?? fromRodata(elf);
}

export function isGoBinary(elf: ElfFile): boolean {
  if (elf.sections.some((s) => s.name === '.go.buildinfo' || s.name === '.gopclntab' || s.name === '.note.go.buildid')) return true;
  // With section headers, Go's note has its own section (above); without, look for it in PT_NOTE.
  return elf.sections.length === 0 && readNotes(elf).some((n) => n.name === 'Go' && n.type === NT_GO_BUILD_ID);
}
