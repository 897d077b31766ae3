// Reading a tar that sits in a file (a docker-archive, an OCI blob, a layer stored uncompressed
// inside either) by position instead of as a stream: headers are read where they are, bodies only
// when wanted, so a file nobody needs is skipped without being read and an ELF file is read once,
// by the analysis itself, at its offset. Headers are decoded by tar-stream's own codec (ustar, GNU,
// pax; the same rules its streaming extract applies for long names and pax overrides), so both
// ways of reading an image agree on every name.
import { createRequire } from 'node:module';
import { Transform, type TransformCallback } from 'node:stream';
import path from 'node:path';
import { VsysError } from '../errors.js';
import { alignedBuffer } from '../native/file-read.js';
import { readUpTo } from '../native/file-read.js';

export interface TarHeader {
  name: string;
  type: string | null;
  size: number;
  linkname: string | null;
}

/** A header as tar-stream's codec decodes it: the fields the index needs and those a writer keeps. */
export interface DecodedHeader extends TarHeader {
  pax: unknown;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
  uname: string;
  gname: string;
}

export interface HeaderCodec {
  decode(buf: Buffer, encoding: string, allowUnknownFormat: boolean): DecodedHeader | null;
  decodePax(buf: Buffer): Record<string, string>;
  decodeLongPath(buf: Buffer, encoding: string): string;
}

let codec: HeaderCodec | undefined;

/** tar-stream's header codec (headers.js, beside its entry point; not in its exports map). */
export function headerCodec(): HeaderCodec {
  if (!codec) {
    const require = createRequire(import.meta.url);
    codec = require(path.join(path.dirname(require.resolve('tar-stream')), 'headers.js')) as HeaderCodec;
  }
  return codec;
}

/** tar-stream's types by typeflag byte ('0'…'7', NUL, and the record types): what it calls them. */
const TYPES = new Map<number, string>([
  [0, 'file'], [0x30, 'file'], [0x31, 'link'], [0x32, 'symlink'], [0x33, 'character-device'], [0x34, 'block-device'], [0x35, 'directory'],
  [0x36, 'fifo'], [0x37, 'contiguous-file'], [0x78, 'pax-header'], [0x67, 'pax-global-header'], [0x4b, 'gnu-long-link-path'], [0x4c, 'gnu-long-path'], [0x4e, 'gnu-long-path'],
]);

/**
 * A plain octal field (digits, then NULs or spaces): its value; -1 for anything else (base-256,
 * leading spaces, signs, stray bytes), which the codec then reads.
 */
function plainOctal(b: Uint8Array, at: number, len: number): number {
  let v = 0;
  let i = at;
  const end = at + len;
  for (; i < end; i++) {
    const c = b[i] as number;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
  }
  if (i === at) return -1;
  // tar-stream stops at the first space and parses up to the first non-digit: both end here only
  // when what follows is NULs, or a space (and then anything).
  if (i < end && b[i] !== 0 && b[i] !== 0x20) return -1;
  if (b[i] === 0) for (let j = i; j < end && b[j] !== 0x20; j++) if (b[j] !== 0) return -1;
  return v;
}

function cString(b: Buffer, at: number, len: number): string {
  let end = at;
  const stop = at + len;
  while (end < stop && b[end] !== 0) end++;
  return b.toString('utf8', at, end);
}

/**
 * The common header (ustar or GNU magic, octal size and checksum, a known typeflag, the checksum
 * right) decoded as tar-stream's codec decodes it, several times faster (bench/README.md, "Figures behind
 * the code"): its decode makes a dozen buffer views and strings per header, for fields nobody here reads. Null for a zero block, as the codec.
 * Undefined for anything else (a bad checksum, an unknown format, base-256 numbers…): the codec
 * decodes it, and says what is wrong. Tested against the codec on every header of real archives
 * and on random corruptions.
 */
export function fastHeader(b: Buffer): TarHeader | null | undefined {
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += b[i] as number;
  for (let i = 156; i < 512; i++) sum += b[i] as number;
  if (sum === 8 * 32) return null;
  if (plainOctal(b, 148, 8) !== sum) return undefined;
  const ustar = b[257] === 0x75 && b[258] === 0x73 && b[259] === 0x74 && b[260] === 0x61 && b[261] === 0x72;
  const isUstar = ustar && b[262] === 0;
  const isGnu = ustar && b[262] === 0x20 && b[263] === 0x20 && b[264] === 0;
  if (!isUstar && !isGnu) return undefined;
  const type = TYPES.get(b[156] as number);
  if (type === undefined) return undefined;
  const size = plainOctal(b, 124, 12);
  if (size < 0) return undefined;
  let name = cString(b, 0, 100);
  if (isUstar && b[345] !== 0) name = `${cString(b, 345, 155)}/${name}`;
  // (tar-stream's codec has a rule for old tars' directories, a regular file named with a trailing
  // '/', but applies it after the type is set: the type stays 'file', here too.)
  return { name, type, size, linkname: b[157] === 0 ? null : cString(b, 157, 100) };
}

/** One entry: its header (long names and pax applied) and where its data starts in the file. */
export interface TarEntry extends TarHeader {
  /** File offset of the entry's first data byte. */
  dataAt: number;
}

/** As tar-stream's extract: a long name or pax record bigger than this is refused. */
const MAX_LONG_HEADER = 4 * 1024 * 1024;
/**
 * Bytes read at a time for headers and small bodies: a small file comes with the header before it.
 * Big enough for a body just under the size from which files are read sparsely (1 MiB) plus its header.
 */
export const WINDOW = 2 * 1024 * 1024;
const BLOCK = 512;
/** The window's first refill after a jump. */
const RAMP_MIN = 64 * 1024;

/**
 * Bytes of one file region through a reused window: a header and the small files after it come in
 * one read. The window grows (64 KiB, doubling to WINDOW) while reads follow on from it, and starts
 * small again after a jump (a body skipped), so a header after a big body skipped pulls in at most
 * 64 KiB of what follows; a big body's magic is `peek`ed without moving the window. A body that
 * runs past the window's end keeps the part the window holds (moved to the front) and only the rest
 * is read: nothing is read twice.
 */
export class TarWindow {
  private buf = alignedBuffer(0);
  /** Where the window's first byte is in `buf` (kept bytes end on a 64-byte boundary, where reads land). */
  private off = 0;
  private start = 0;
  private length = 0;
  /** Bytes the next refill reads: 64 KiB after a jump, doubling while reads follow on. */
  private ramp = RAMP_MIN;
  private readonly small = Buffer.alloc(64);
  /** Bytes read into the window so far (tests check that nothing is read twice). */
  read = 0;

  constructor(readonly fd: number, readonly end: number, private readonly size = WINDOW) {}

  /** Bytes [pos, pos + n) (n ≤ the window's size), shorter only where the region ends. */
  at(pos: number, n: number): Buffer {
    if (pos < this.start || pos + n > this.start + this.length) {
      // Follows on: starts inside the window or within a block of its end (a body's padding).
      const follows = this.length > 0 && pos >= this.start && pos <= this.start + this.length + BLOCK;
      this.ramp = Math.min(this.size, follows ? this.ramp * 2 : RAMP_MIN);
      const want = Math.min(Math.max(this.ramp, n), this.end - pos);
      // The bytes from pos that the window holds already.
      const kept = this.length > 0 && pos >= this.start ? Math.max(0, Math.min(this.start + this.length - pos, want)) : 0;
      const lead = (64 - (kept % 64)) % 64;
      if (lead + want > this.buf.length) {
        const grown = alignedBuffer(Math.max(lead + want, Math.min(this.size + 64, this.buf.length * 2)));
        if (kept > 0) this.buf.copy(grown, lead, this.off + pos - this.start, this.off + pos - this.start + kept);
        this.buf = grown;
      } else if (kept > 0) this.buf.copyWithin(lead, this.off + pos - this.start, this.off + pos - this.start + kept);
      const got = readUpTo(this.fd, this.buf, lead + kept, want - kept, pos + kept);
      this.read += got;
      this.off = lead;
      this.start = pos;
      this.length = kept + got;
    }
    const from = this.off + pos - this.start;
    return this.buf.subarray(from, Math.min(from + n, this.off + this.length));
  }

  /** A few bytes (n ≤ 64) at pos without moving the window: the magic of a big body. */
  peek(pos: number, n: number): Buffer {
    if (pos >= this.start && pos + n <= this.start + this.length) return this.at(pos, n);
    const got = readUpTo(this.fd, this.small, 0, Math.min(n, this.small.length, Math.max(0, this.end - pos)), pos);
    return this.small.subarray(0, got);
  }
}

/** A header block, read: the end of the archive, a zero block, a long-name or pax record, or an entry. */
export type Framed =
  | { kind: 'end' }
  | { kind: 'zero' }
  /** Its body (`size` bytes, padded to blocks) goes to `record()`. */
  | { kind: 'record'; size: number }
  /** `body`: the bytes of data that follow (0 for a directory, whatever its size field says). */
  | { kind: 'entry'; entry: TarHeader; body: number };

/**
 * The tar format's framing, block by block, with no I/O of its own: which blocks are headers, what
 * long-name and pax records change in the next entry, where the archive ends (two zero blocks, where
 * GNU tar and Go's archive/tar stop). Shared by the positional walk and the stream's end guard.
 */
export class TarFramer {
  private readonly h = headerCodec();
  private pax: Record<string, string> | null = null;
  private paxGlobal: Record<string, string> | null = null;
  private longPath: string | null = null;
  private longLink: string | null = null;
  private recordType: string | null = null;
  private zeros = 0;

  /** `bad(why)` makes the error for a malformed block (the caller knows where it is). */
  constructor(private readonly bad: (why: string) => Error) {}

  header(block: Buffer): Framed {
    let header: TarHeader | null | undefined = fastHeader(block);
    if (header === undefined) {
      try {
        header = this.h.decode(block, 'utf-8', false);
      } catch (e) {
        throw this.bad((e as Error).message);
      }
    }
    if (!header) return ++this.zeros === 2 ? { kind: 'end' } : { kind: 'zero' };
    this.zeros = 0;
    const size = header.size;
    if (!(size >= 0) || !Number.isSafeInteger(size)) throw this.bad('an entry with an invalid size');
    if (header.type === 'gnu-long-path' || header.type === 'gnu-long-link-path' || header.type === 'pax-header' || header.type === 'pax-global-header') {
      if (size > MAX_LONG_HEADER) throw this.bad(`a ${header.type} record of ${size} bytes`);
      this.recordType = header.type;
      return { kind: 'record', size };
    }
    const entry: TarHeader = { name: header.name, type: header.type, size, linkname: header.linkname };
    if (this.longPath !== null) entry.name = this.longPath;
    if (this.longLink !== null) entry.linkname = this.longLink;
    const pax = this.pax;
    if (pax) {
      if (pax.path) entry.name = pax.path;
      if (pax.linkpath) entry.linkname = pax.linkpath;
      if (pax.size) {
        const s = Number.parseInt(pax.size, 10);
        if (!(s >= 0) || !Number.isSafeInteger(s)) throw this.bad(`a pax size '${pax.size}'`);
        entry.size = s;
      }
    }
    this.longPath = this.longLink = null;
    this.pax = null;
    // Directories carry no data in a tar whatever their size field says (as tar-stream reads them).
    return { kind: 'entry', entry, body: entry.type === 'directory' ? 0 : entry.size };
  }

  /** The body of the record `header` last returned (its `size` bytes, no padding). */
  record(body: Buffer): void {
    const h = this.h;
    try {
      if (this.recordType === 'gnu-long-path') this.longPath = h.decodeLongPath(body, 'utf-8');
      else if (this.recordType === 'gnu-long-link-path') this.longLink = h.decodeLongPath(body, 'utf-8');
      else if (this.recordType === 'pax-global-header') this.paxGlobal = h.decodePax(body);
      else this.pax = this.paxGlobal === null ? h.decodePax(body) : { ...this.paxGlobal, ...h.decodePax(body) };
    } catch (e) {
      throw this.bad((e as Error).message);
    }
  }
}

/** Bytes from `at` to the end of the block holding the last of `n` bytes from it. */
export function padded(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}

/**
 * The entries of the tar in [start, end) of `fd`, in order. `visit` gets each entry (directories,
 * links, files…; long-name and pax records applied, never given themselves) and the window, to read
 * what it wants of the body; the walk then moves past the body whether it was read or not. Ends at
 * the end-of-archive marker (two zero blocks) or the region's end. A checksum error, a header past
 * the end or a body cut short: IMAGE_BAD_LAYER naming `what`. `visit` may return a promise (the walk
 * waits), so a caller can yield to the event loop as it goes. `window`: bytes read at a time (a
 * caller that reads no bodies through it wants a small one).
 */
export async function walkTar(fd: number, start: number, end: number, what: string, visit: (e: TarEntry, w: TarWindow) => void | Promise<void>, window = WINDOW): Promise<void> {
  const w = new TarWindow(fd, end, window);
  let at = start;
  const bad = (why: string) => new VsysError('IMAGE_BAD_LAYER', `${what}: ${why} at byte ${at - start} (truncated or not a tar?)`);
  const framer = new TarFramer(bad);
  for (let pos = start; pos < end; ) {
    at = pos;
    const block = w.at(pos, BLOCK);
    if (block.length < BLOCK) throw bad('a header cut short');
    const f = framer.header(block);
    pos += BLOCK;
    if (f.kind === 'end') break;
    if (f.kind === 'zero') continue;
    const dataAt = pos;
    if (f.kind === 'record') {
      const body = Buffer.from(w.at(dataAt, f.size)); // copied: the window moves
      at = dataAt;
      if (body.length < f.size) throw bad('a long-name record cut short');
      framer.record(body);
      pos = dataAt + padded(f.size);
      continue;
    }
    const next = dataAt + padded(f.body);
    // A body, padding included, that runs past the end: cut short (GNU tar: "Unexpected EOF").
    if (next > end) throw bad(`${f.entry.name}: ${f.body} bytes of data (padded to ${next - dataAt}) past the end`);
    // Awaited only when it is a promise: an await per entry would cost a turn of the microtask
    // queue for each of a layer's thousands of entries.
    const turn = visit({ ...f.entry, dataAt }, w);
    if (turn) await turn;
    pos = next;
  }
}

/**
 * A tar stream passed through up to its end-of-archive marker, and what follows it dropped: GNU tar
 * and Go's archive/tar (so Docker) stop there, tar-stream would read on and show entries no
 * container ever has. Malformed headers are passed on untouched, for tar-stream to report.
 */
export class TarEndGuard extends Transform {
  private readonly framer = new TarFramer((why) => new Error(why));
  /** Bytes of body still to pass before the next header. */
  private skip = 0;
  /** Bytes being gathered: a header (512) or a record's padded body. */
  private want = BLOCK;
  private recordSize = -1;
  private gathered: Buffer[] = [];
  private have = 0;
  private ended = false;
  private blind = false;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.ended) return cb();
    if (this.blind) return cb(null, chunk);
    let i = 0;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const n = Math.min(this.want - this.have, chunk.length - i);
      this.gathered.push(chunk.subarray(i, i + n));
      this.have += n;
      i += n;
      if (this.have < this.want) break;
      const bytes = this.gathered.length === 1 ? (this.gathered[0] as Buffer) : Buffer.concat(this.gathered);
      this.gathered = [];
      this.have = 0;
      try {
        if (this.recordSize >= 0) {
          this.framer.record(bytes.subarray(0, this.recordSize));
          this.recordSize = -1;
          this.want = BLOCK;
          continue;
        }
        const f = this.framer.header(bytes);
        if (f.kind === 'end') {
          this.ended = true;
          return cb(null, chunk.subarray(0, i));
        }
        if (f.kind === 'record') {
          this.recordSize = f.size;
          this.want = padded(f.size);
          if (this.want === 0) {
            this.framer.record(Buffer.alloc(0));
            this.recordSize = -1;
            this.want = BLOCK;
          }
        } else if (f.kind === 'entry') this.skip = padded(f.body);
      } catch {
        // Not a header this guard can read: from here on tar-stream decides (and reports it).
        this.blind = true;
        return cb(null, chunk);
      }
    }
    cb(null, chunk);
  }
}
