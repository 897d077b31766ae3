// A bounds-checked little-endian reader over a byte buffer. Every file-supplied offset and count
// passes through here; 64-bit fields come back as bigint and become numbers only via toSafeNumber
// (or, in layouts.ts `num`, from their two halves when under 2^53).
import { VsysError, type ErrorCode } from '../errors.js';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export function toSafeNumber(v: bigint, what: string): number {
  if (v < 0n || v > MAX_SAFE) {
    throw new VsysError('NUMBER_UNSAFE', `${what} = 0x${BigInt.asUintN(64, v).toString(16)} is too large to use as an offset`);
  }
  return Number(v);
}

/**
 * Thrown by a reader over a sparse buffer (see scan/sparse-read.ts) when a read touches bytes that
 * were never read from the file. Not a VsysError: nothing in the ELF readers catches it, so it
 * reaches the caller, which then reads the file whole.
 */
export class HoleRead extends Error {
  constructor(readonly offset: number) {
    super(`read of unread bytes at offset ${offset}`);
  }
}

export class ByteReader {
  readonly bytes: Uint8Array;
  /**
   * The bytes as a DataView with no checks of its own: only for loops over a range that `need` has
   * checked already (a symbol table's entries), where a check per field would cost more than the read.
   */
  readonly view: DataView;
  /** Name used in error messages (a path, or "vDSO"). */
  readonly source: string;
  /** Sorted, disjoint [start, end) ranges of `bytes` that hold no file data (a sparse read). */
  readonly holes: readonly (readonly [number, number])[];

  constructor(bytes: Uint8Array, source = 'buffer', holes: readonly (readonly [number, number])[] = []) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.source = source;
    this.holes = holes;
  }

  /** Throws HoleRead when [off, off+len) meets a hole. */
  private checkHoles(off: number, len: number): void {
    if (this.inHole(off, len)) throw new HoleRead(off);
  }

  /** True when [off, off+len) meets a hole (the holes are sorted: a binary search for the first that ends after `off`). */
  inHole(off: number, len: number): boolean {
    const h = this.holes;
    if (len <= 0 || h.length === 0) return false;
    let lo = 0;
    let hi = h.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((h[mid] as readonly [number, number])[1] <= off) lo = mid + 1;
      else hi = mid;
    }
    return lo < h.length && (h[lo] as readonly [number, number])[0] < off + len;
  }

  get length(): number {
    return this.bytes.length;
  }

  /**
   * Before reading [off, off+len): throws ELF_TRUNCATED (or `code`) unless it lies inside the buffer,
   * and HoleRead when part of it was never read from the file.
   */
  need(off: number, len: number, what: string, code: ErrorCode = 'ELF_TRUNCATED'): void {
    this.within(off, len, what, code);
    if (this.holes.length > 0) this.checkHoles(off, len);
  }

  /** Bounds only (a section or segment the file claims, not yet read): throws unless inside the buffer. */
  within(off: number, len: number, what: string, code: ErrorCode = 'ELF_TRUNCATED'): void {
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < 0 || len < 0 || off + len > this.bytes.length) {
      throw new VsysError(code, `${this.source}: ${what} at offset ${off} (+${len} bytes) lies outside the ${this.bytes.length}-byte file`, { path: this.source });
    }
  }

  has(off: number, len: number): boolean {
    return Number.isSafeInteger(off) && Number.isSafeInteger(len) && off >= 0 && len >= 0 && off + len <= this.bytes.length;
  }

  u8(off: number): number { this.need(off, 1, 'u8'); return this.view.getUint8(off); }
  u16(off: number): number { this.need(off, 2, 'u16'); return this.view.getUint16(off, true); }
  u32(off: number): number { this.need(off, 4, 'u32'); return this.view.getUint32(off, true); }
  i32(off: number): number { this.need(off, 4, 'i32'); return this.view.getInt32(off, true); }
  u64(off: number): bigint { this.need(off, 8, 'u64'); return this.view.getBigUint64(off, true); }
  i64(off: number): bigint { this.need(off, 8, 'i64'); return this.view.getBigInt64(off, true); }

  /** A sub-range, checked. */
  slice(off: number, len: number, what = 'range'): Uint8Array {
    this.need(off, len, what);
    return this.bytes.subarray(off, off + len);
  }

  /** A NUL-terminated string starting at `off`, at most `max` bytes; stops at the buffer's end. */
  cstring(off: number, max = 4096): string {
    this.need(off, 0, 'string');
    const end = Math.min(this.bytes.length, off + max);
    let i = off;
    while (i < end && this.bytes[i] !== 0) i++;
    if (this.holes.length > 0) this.checkHoles(off, Math.min(i + 1, end) - off);
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + off, i - off).toString('latin1');
  }
}
