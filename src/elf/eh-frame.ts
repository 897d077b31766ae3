// Function address ranges from the FDEs of .eh_frame (LSB 5.0 Core "Exception Frames", DWARF 4
// §6.4.1 for CIE/FDE layout). Without section headers, .eh_frame is found through PT_GNU_EH_FRAME
// and the .eh_frame_hdr search table. Each record moves the walk forward, so it ends in O(size).
import { VsysError } from '../errors.js';
import { toSafeNumber } from './bytes.js';
import { PT, SHT } from './constants.js';
import { Cursor, DW_EH_PE_omit, readFormat, readPointer, type PointerContext } from './dwarf-pointer.js';
import { findSection, vaddrToOffset, type ElfFile } from './read-elf.js';
import type { FunctionRange } from './types.js';

/** An area of the file holding .eh_frame records, and the address its first byte is loaded at. */
interface Area {
  offset: number;
  end: number;
  vaddr: bigint;
}

interface Cie {
  fdeEnc: number;
  /** The augmentation starts with 'z': FDEs carry an augmentation-data length. */
  z: boolean;
}

const DW_EH_PE_absptr = 0x00;

/** A CIE or FDE: where its id field is, its value (0 for a CIE) and where the record ends. */
interface FrameRecord {
  end: number;
  idAt: number;
  id: bigint;
  idSize: 4;
}

function malformed(elf: ElfFile, msg: string): never {
  throw new VsysError('ELF_MALFORMED', `${elf.path}: ${msg}`, { path: elf.path });
}

class FrameReader {
  private readonly cies = new Map<number, Cie>();
  readonly ctx: PointerContext;

  constructor(private readonly elf: ElfFile, private readonly area: Area, dataBase?: bigint) {
    const addrSize = elf.header.class === 64 ? 8 : 4;
    this.ctx = {
      addrSize,
      vaddrOf: (off) => area.vaddr + BigInt(off - area.offset),
      deref: (v) => {
        const off = vaddrToOffset(elf, v);
        if (off === undefined) malformed(elf, `indirect FDE pointer 0x${v.toString(16)} maps to no file bytes`);
        return addrSize === 8 ? elf.reader.u64(off) : BigInt(elf.reader.u32(off));
      },
    };
    if (dataBase !== undefined) this.ctx.dataBase = dataBase;
  }

  /** The record at `p`: its kind, where its body starts and ends. Undefined for a zero terminator. */
  record(p: number): FrameRecord | undefined {
    const r = this.elf.reader;
    if (p + 4 > this.area.end) malformed(this.elf, `.eh_frame record at offset ${p} is cut off by the end of its area`);
    let length = r.u32(p);
    if (length === 0) return undefined;
    let at = p + 4;
    // LSB: in .eh_frame the CIE id / CIE pointer is 4 bytes even after an 8-byte extended length
    // (unlike DWARF's 64-bit .debug_frame).
    const idSize = 4;
    if (length === 0xffffffff) {
      if (at + 8 > this.area.end) malformed(this.elf, `.eh_frame extended length at offset ${p} is cut off`);
      length = toSafeNumber(r.u64(at), '.eh_frame extended length');
      at += 8;
    }
    const end = at + length;
    if (end > this.area.end || length < idSize) malformed(this.elf, `.eh_frame record at offset ${p} claims ${length} bytes, past the end of its area`);
    const id = BigInt(r.u32(at));
    return { end, idAt: at, id, idSize };
  }

  cie(p: number): Cie {
    const hit = this.cies.get(p);
    if (hit) return hit;
    const rec = this.record(p);
    if (!rec || rec.id !== 0n) malformed(this.elf, `an FDE points to offset ${p}, which holds no CIE`);
    const c = new Cursor(this.elf.reader, rec.idAt + rec.idSize, rec.end, 'CIE');
    const version = c.u8();
    if (version !== 1 && version !== 3 && version !== 4) malformed(this.elf, `CIE at offset ${p} has version ${version}`);
    const aug = c.cstring();
    if (aug.includes('eh')) c.pos += this.ctx.addrSize; // GCC 2.x: an exception-table pointer follows
    if (version === 4) c.pos += 2; // address_size, segment_selector_size
    c.uleb(); // code alignment factor
    c.sleb(); // data alignment factor
    if (version === 1) c.u8(); else c.uleb(); // return address register
    const cie: Cie = { fdeEnc: DW_EH_PE_absptr, z: aug.startsWith('z') };
    if (cie.z) {
      const len = c.uleb();
      const dataEnd = c.pos + Number(len > BigInt(rec.end - c.pos) ? BigInt(rec.end - c.pos) : len);
      const aux = new Cursor(this.elf.reader, c.pos, dataEnd, 'CIE augmentation data');
      for (const ch of aug.slice(1)) {
        if (ch === 'R') cie.fdeEnc = aux.u8();
        else if (ch === 'L') aux.u8();
        else if (ch === 'P') readFormat(aux, aux.u8() & 0x7f & ~0x70, this.ctx.addrSize);
        else if (ch === 'S' || ch === 'B' || ch === 'G') continue;
        else break; // unknown letters: the length lets us skip the rest
      }
    }
    this.cies.set(p, cie);
    return cie;
  }

  /** The [start, end) an FDE covers; `rec` must be an FDE (id ≠ 0). */
  fde(rec: FrameRecord): FunctionRange {
    // The CIE pointer counts back from its own field.
    const back = toSafeNumber(rec.id, 'CIE pointer');
    const ciePos = rec.idAt - back;
    if (ciePos < this.area.offset) malformed(this.elf, `FDE at offset ${rec.idAt} points before .eh_frame (CIE pointer ${back})`);
    const cie = this.cie(ciePos);
    const c = new Cursor(this.elf.reader, rec.idAt + rec.idSize, rec.end, 'FDE');
    const start = readPointer(c, cie.fdeEnc, this.ctx);
    if (start === undefined) malformed(this.elf, `FDE at offset ${rec.idAt} uses the omit encoding for its start`);
    const range = BigInt.asUintN(this.ctx.addrSize * 8, readFormat(c, cie.fdeEnc, this.ctx.addrSize));
    return { start, end: start + range };
  }

  /** All FDEs from the area's start, stopping at a zero terminator unless `throughZeros`. */
  walk(throughZeros: boolean): FunctionRange[] {
    const out: FunctionRange[] = [];
    let p = this.area.offset;
    while (p + 4 <= this.area.end) {
      const rec = this.record(p);
      if (!rec) {
        if (!throughZeros) break;
        p += 4;
        continue;
      }
      if (rec.id !== 0n) out.push(this.fde(rec));
      p = rec.end;
    }
    return out;
  }
}

/** The end of the file bytes of the PT_LOAD segment holding this offset. */
function loadEnd(elf: ElfFile, offset: number): number | undefined {
  const p = elf.programHeaders.find((ph) => ph.type === PT.LOAD && offset >= ph.offset && offset < ph.offset + ph.filesz);
  return p && p.offset + p.filesz;
}

/** Ranges through PT_GNU_EH_FRAME: the hdr's search table if present, else a walk from eh_frame_ptr. */
function viaHeader(elf: ElfFile): FunctionRange[] {
  const ph = elf.programHeaders.find((p) => p.type === PT.GNU_EH_FRAME);
  if (!ph) return [];
  const r = elf.reader;
  const hdrEnd = ph.offset + ph.filesz;
  const hdrArea: Area = { offset: ph.offset, end: hdrEnd, vaddr: ph.vaddr };
  const probe = new FrameReader(elf, hdrArea, ph.vaddr);
  const c = new Cursor(r, ph.offset, hdrEnd, '.eh_frame_hdr');
  const version = c.u8();
  if (version !== 1) malformed(elf, `.eh_frame_hdr version ${version}, expected 1`);
  const ptrEnc = c.u8();
  const countEnc = c.u8();
  const tableEnc = c.u8();
  const framePtr = readPointer(c, ptrEnc, probe.ctx);
  if (framePtr === undefined) return [];
  const frameOff = vaddrToOffset(elf, framePtr);
  const end = frameOff === undefined ? undefined : loadEnd(elf, frameOff);
  if (frameOff === undefined || end === undefined) malformed(elf, `.eh_frame_hdr points to 0x${framePtr.toString(16)}, which maps to no file bytes`);
  const frames = new FrameReader(elf, { offset: frameOff, end, vaddr: framePtr }, ph.vaddr);
  const count = countEnc === DW_EH_PE_omit ? undefined : readPointer(c, countEnc, probe.ctx);
  if (count === undefined || tableEnc === DW_EH_PE_omit || count === 0n) return frames.walk(false);

  // Each table entry takes at least two bytes, so the count is checked against what is left.
  const left = BigInt(hdrEnd - c.pos);
  if (count * 2n > left) throw new VsysError('ELF_BAD_COUNT', `${elf.path}: .eh_frame_hdr claims ${count} FDEs, more than its ${left} bytes can hold`, { path: elf.path });
  const out: FunctionRange[] = [];
  for (let i = 0; i < Number(count); i++) {
    readPointer(c, tableEnc, probe.ctx); // initial location: the FDE itself says it too
    const fdeAddr = readPointer(c, tableEnc, probe.ctx)!;
    const at = vaddrToOffset(elf, fdeAddr);
    if (at === undefined || at < frameOff || at >= end) malformed(elf, `.eh_frame_hdr entry ${i} points to 0x${fdeAddr.toString(16)}, outside .eh_frame`);
    const rec = frames.record(at);
    if (!rec || rec.id === 0n) malformed(elf, `.eh_frame_hdr entry ${i} points to 0x${fdeAddr.toString(16)}, which holds no FDE`);
    out.push(frames.fde(rec));
  }
  return out;
}

/** Sorted by start then end; duplicates and empty ranges dropped. */
function normalise(ranges: FunctionRange[]): FunctionRange[] {
  const cmp = (a: FunctionRange, b: FunctionRange) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.end < b.end ? -1 : a.end > b.end ? 1 : 0);
  const sorted = ranges.filter((x) => x.end > x.start);
  // Linkers usually emit FDEs in address order already; sorting bigints is the costly part.
  if (sorted.some((x, i) => i > 0 && cmp(sorted[i - 1]!, x) > 0)) sorted.sort(cmp);
  return sorted.filter((x, i) => i === 0 || x.start !== sorted[i - 1]!.start || x.end !== sorted[i - 1]!.end);
}

export function readFunctionRanges(elf: ElfFile): FunctionRange[] {
  const sec = findSection(elf, '.eh_frame');
  if (!sec || sec.type === SHT.NOBITS /* a debug-only file */) {
    return sec ? [] : normalise(viaHeader(elf));
  }
  const hdr = findSection(elf, '.eh_frame_hdr');
  const frames = new FrameReader(elf, { offset: sec.offset, end: sec.offset + sec.size, vaddr: sec.addr }, hdr?.addr);
  return normalise(frames.walk(true));
}
