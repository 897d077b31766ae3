// Cursor reads for .eh_frame and .eh_frame_hdr: LEB128 numbers (DWARF 4 §7.6) and DW_EH_PE_*
// encoded pointers (LSB 5.0 Core "Exception Frames"). Every read stays inside the cursor's [pos, end).
import { VsysError } from '../errors.js';
import type { ByteReader } from './bytes.js';

export const DW_EH_PE_omit = 0xff;
const FORMAT = { absptr: 0x00, uleb128: 0x01, udata2: 0x02, udata4: 0x03, udata8: 0x04, sleb128: 0x09, sdata2: 0x0a, sdata4: 0x0b, sdata8: 0x0c } as const;
const APPLY = { none: 0x00, pcrel: 0x10, textrel: 0x20, datarel: 0x30, funcrel: 0x40, aligned: 0x50 } as const;
const INDIRECT = 0x80;

/** What a relative pointer is relative to. `vaddrOf` maps a file offset in the area to its address. */
export interface PointerContext {
  addrSize: 4 | 8;
  vaddrOf: (offset: number) => bigint;
  /** DW_EH_PE_datarel base: the start of .eh_frame_hdr. */
  dataBase?: bigint;
  /** Reads an address-sized word at a virtual address, for DW_EH_PE_indirect. */
  deref?: (vaddr: bigint) => bigint;
}

export class Cursor {
  constructor(readonly r: ByteReader, public pos: number, readonly end: number, readonly what: string) {}

  private take(n: number): number {
    if (this.pos + n > this.end) {
      throw new VsysError('ELF_MALFORMED', `${this.r.source}: ${this.what} at offset ${this.pos} needs ${n} more bytes than its record holds`, { path: this.r.source });
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(): number { return this.r.u8(this.take(1)); }
  u16(): number { return this.r.u16(this.take(2)); }
  u32(): number { return this.r.u32(this.take(4)); }
  u64(): bigint { return this.r.u64(this.take(8)); }

  /** Bits past the 64th are dropped; the bytes are still consumed, so the walk stays in step. */
  uleb(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.u8();
      if (shift < 64n) result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if ((b & 0x80) === 0) return BigInt.asUintN(64, result);
    }
  }

  sleb(): bigint {
    let result = 0n;
    let shift = 0n;
    let b: number;
    do {
      b = this.u8();
      if (shift < 64n) result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
    } while (b & 0x80);
    if (shift < 64n && b & 0x40) result -= 1n << shift;
    return BigInt.asIntN(64, result);
  }

  /** A NUL-terminated string inside the record. */
  cstring(): string {
    const rel = this.r.bytes.subarray(this.pos, this.end).indexOf(0);
    if (rel < 0) throw new VsysError('ELF_MALFORMED', `${this.r.source}: unterminated string in ${this.what} at offset ${this.pos}`, { path: this.r.source });
    const s = Buffer.from(this.r.bytes.subarray(this.pos, this.pos + rel)).toString('latin1');
    this.pos += rel + 1;
    return s;
  }
}

function malformed(c: Cursor, msg: string): never {
  throw new VsysError('ELF_MALFORMED', `${c.r.source}: ${msg} in ${c.what} at offset ${c.pos}`, { path: c.r.source });
}

/** The value of the encoding's format alone, sign-extended for the sdata forms (used for lengths too). */
export function readFormat(c: Cursor, enc: number, addrSize: 4 | 8): bigint {
  switch (enc & 0x0f) {
    case FORMAT.absptr: return addrSize === 8 ? c.u64() : BigInt(c.u32());
    case FORMAT.uleb128: return c.uleb();
    case FORMAT.udata2: return BigInt(c.u16());
    case FORMAT.udata4: return BigInt(c.u32());
    case FORMAT.udata8: return c.u64();
    case FORMAT.sleb128: return c.sleb();
    case FORMAT.sdata2: return BigInt.asIntN(16, BigInt(c.u16()));
    case FORMAT.sdata4: return BigInt.asIntN(32, BigInt(c.u32()));
    case FORMAT.sdata8: return BigInt.asIntN(64, c.u64());
    default: return malformed(c, `unknown pointer format 0x${enc.toString(16)}`);
  }
}

/** Reads an encoded pointer and applies pcrel/datarel/aligned and indirect; undefined for omit. */
export function readPointer(c: Cursor, enc: number, ctx: PointerContext): bigint | undefined {
  if (enc === DW_EH_PE_omit) return undefined;
  const fieldAt = c.pos;
  let base = 0n;
  switch (enc & 0x70) {
    case APPLY.none: break;
    case APPLY.pcrel: base = ctx.vaddrOf(fieldAt); break;
    case APPLY.datarel:
      if (ctx.dataBase === undefined) malformed(c, 'DW_EH_PE_datarel pointer with no .eh_frame_hdr base');
      base = ctx.dataBase;
      break;
    case APPLY.aligned: {
      const skip = (ctx.addrSize - (Number(ctx.vaddrOf(fieldAt) % BigInt(ctx.addrSize)))) % ctx.addrSize;
      c.pos = fieldAt + skip;
      break;
    }
    default: return malformed(c, `unsupported pointer application 0x${(enc & 0x70).toString(16)}`);
  }
  const bits = ctx.addrSize * 8;
  let v = BigInt.asUintN(bits, base + readFormat(c, (enc & 0x70) === APPLY.aligned ? FORMAT.absptr : enc, ctx.addrSize));
  if (enc & INDIRECT) {
    if (!ctx.deref) malformed(c, 'indirect pointer with no way to read memory');
    v = BigInt.asUintN(bits, ctx.deref(v));
  }
  return v;
}
