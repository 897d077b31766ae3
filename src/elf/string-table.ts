// Lookups in an ELF string table (gABI "String Table"): NUL-terminated strings addressed by byte
// index. Every lookup is bounded by the table, so a table without a final NUL cannot run on.
import { VsysError } from '../errors.js';
import type { ByteReader } from './bytes.js';

/** Bytes of a name looked at one by one before a native search. */
const NEAR = 48;

export class StringTable {
  private readonly buf: Buffer;
  /** Built once lookups have scanned more than the table's size: sorted NUL positions and the table decoded once. */
  private index: { nuls: Int32Array; text: string } | undefined;
  /** Bytes scanned name by name so far; past the table's size, names become slices of one decoding. */
  private decoded = 0;

  constructor(
    private readonly r: ByteReader,
    readonly offset: number,
    readonly size: number,
    readonly what: string,
  ) {
    r.need(offset, size, what, 'ELF_BAD_OFFSET');
    this.buf = Buffer.from(r.bytes.buffer, r.bytes.byteOffset + offset, size);
  }

  /**
   * The string at `index`. A real name's NUL is a few bytes on, and only the name is decoded (a
   * file's analysis asks for a few hundred names out of tables of tens of thousands). A hostile
   * table (one NUL at the very end, every symbol pointing before it) would make that quadratic, so
   * once the searches have scanned the table's size the table is indexed and names become slices.
   */
  get(index: number): string {
    const end = this.end(index);
    return this.index ? this.index.text.slice(index, end) : this.buf.toString('latin1', index, end);
  }

  /** Where the string at `index` ends: the index of its NUL. Checked, and bounded, as `get`. */
  end(index: number): number {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.size) {
      throw new VsysError('ELF_BAD_OFFSET', `${this.r.source}: string index ${index} lies outside ${this.what} (${this.size} bytes)`, { path: this.r.source });
    }
    if (!this.index) {
      // Searched in place (no view allocated per name); what the searches scan is counted, so a
      // hostile table costs at most its size before the index takes over. A name's first bytes
      // are looked at here: a native search costs more than the dozen bytes of most names.
      const buf = this.buf;
      const near = Math.min(this.size, index + NEAR);
      for (let i = index; i < near; i++) {
        if (buf[i] !== 0) continue;
        this.decoded += i - index;
        if (this.decoded <= this.size) return i;
        break;
      }
      const nul = this.decoded > this.size ? -1 : buf.indexOf(0, index);
      this.decoded += (nul < 0 ? this.size : nul) - index;
      if (nul >= 0 && this.decoded <= this.size) return nul;
      this.index = this.buildIndex();
    }
    const { nuls } = this.index;
    let lo = 0;
    let hi = nuls.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((nuls[mid] as number) < index) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= nuls.length) {
      throw new VsysError('ELF_MALFORMED', `${this.r.source}: the string at ${this.what}+${index} has no NUL before the table ends`, { path: this.r.source });
    }
    return nuls[lo] as number;
  }

  private buildIndex(): { nuls: Int32Array; text: string } {
    const found: number[] = [];
    for (let i = this.buf.indexOf(0); i >= 0; i = this.buf.indexOf(0, i + 1)) found.push(i);
    return { nuls: Int32Array.from(found), text: this.buf.toString('latin1') };
  }
}
