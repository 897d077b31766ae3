// Lookups in an ELF string table (gABI "String Table"): NUL-terminated strings addressed by byte
// index. Every lookup is bounded by the table, so a table without a final NUL cannot run on.
import { VsysError } from '../errors.js';
import type { ByteReader } from './bytes.js';

export class StringTable {
  /** Sorted positions of the NUL bytes inside the table, found once in one linear pass. */
  private nuls: Int32Array | undefined;
  /** The whole table decoded once; each name is then a cheap substring. */
  private text: string | undefined;

  constructor(
    private readonly r: ByteReader,
    readonly offset: number,
    readonly size: number,
    readonly what: string,
  ) {
    r.need(offset, size, what, 'ELF_BAD_OFFSET');
  }

  get(index: number): string {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.size) {
      throw new VsysError('ELF_BAD_OFFSET', `${this.r.source}: string index ${index} lies outside ${this.what} (${this.size} bytes)`, { path: this.r.source });
    }
    const end = this.nulAtOrAfter(index);
    if (end < 0) {
      throw new VsysError('ELF_MALFORMED', `${this.r.source}: the string at ${this.what}+${index} has no NUL before the table ends`, { path: this.r.source });
    }
    this.text ??= Buffer.from(this.r.bytes.buffer, this.r.bytes.byteOffset + this.offset, this.size).toString('latin1');
    return this.text.slice(index, end);
  }

  /** Index of the first NUL at or after `index`, or -1. Binary search, so n lookups cost O(n log k). */
  private nulAtOrAfter(index: number): number {
    if (!this.nuls) this.nuls = this.findNuls();
    const nuls = this.nuls;
    let lo = 0;
    let hi = nuls.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (nuls[mid]! < index) lo = mid + 1;
      else hi = mid;
    }
    return lo < nuls.length ? nuls[lo]! : -1;
  }

  private findNuls(): Int32Array {
    const table = this.r.bytes.subarray(this.offset, this.offset + this.size);
    const found: number[] = [];
    for (let i = table.indexOf(0); i >= 0; i = table.indexOf(0, i + 1)) found.push(i);
    return Int32Array.from(found);
  }
}
