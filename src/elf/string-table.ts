// Lookups in an ELF string table (gABI "String Table"): NUL-terminated strings addressed by byte
// index. Every lookup is bounded by the table, so a table without a final NUL cannot run on.
import { VsysError } from '../errors.js';
import type { ByteReader } from './bytes.js';

export class StringTable {
  private readonly buf: Buffer;

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
   * The string at `index`. Each lookup finds its own NUL (memchr speed) and decodes only that
   * string: a file's analysis asks for a few hundred names out of tables of tens of thousands, so
   * indexing or decoding the whole table up front cost more than it saved.
   */
  get(index: number): string {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.size) {
      throw new VsysError('ELF_BAD_OFFSET', `${this.r.source}: string index ${index} lies outside ${this.what} (${this.size} bytes)`, { path: this.r.source });
    }
    const end = this.buf.indexOf(0, index);
    if (end < 0) {
      throw new VsysError('ELF_MALFORMED', `${this.r.source}: the string at ${this.what}+${index} has no NUL before the table ends`, { path: this.r.source });
    }
    return this.buf.toString('latin1', index, end);
  }
}
