// Reading a tar that sits in a file (a docker-archive, an OCI blob, a layer stored uncompressed
// inside either) by position instead of as a stream: headers are read where they are, bodies only
// when wanted, so a file nobody needs is skipped without being read and an ELF file is read once,
// by the analysis itself, at its offset. Headers are decoded by tar-stream's own codec (ustar, GNU,
// pax; the same rules its streaming extract applies for long names and pax overrides), so both
// ways of reading an image agree on every name.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { VsysError } from '../errors.js';
import { alignedBuffer } from '../native/memory.js';

export interface TarHeader {
  name: string;
  type: string | null;
  size: number;
  linkname: string | null;
}

interface HeaderCodec {
  decode(buf: Buffer, encoding: string, allowUnknownFormat: boolean): (TarHeader & { pax: unknown }) | null;
  decodePax(buf: Buffer): Record<string, string>;
  decodeLongPath(buf: Buffer, encoding: string): string;
}

let codec: HeaderCodec | undefined;

/** tar-stream's header codec (headers.js, beside its entry point; not in its exports map). */
function headerCodec(): HeaderCodec {
  if (!codec) {
    const require = createRequire(import.meta.url);
    codec = require(path.join(path.dirname(require.resolve('tar-stream')), 'headers.js')) as HeaderCodec;
  }
  return codec;
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
 * 64 KiB of what follows; a big body's magic is `peek`ed without moving the window.
 */
export class TarWindow {
  private buf = alignedBuffer(0);
  private start = 0;
  private length = 0;
  /** Bytes the next refill reads: 64 KiB after a jump, doubling while reads follow on. */
  private ramp = RAMP_MIN;
  private readonly small = Buffer.alloc(64);
  /** Bytes read from the file so far (the window's reads and peeks). */
  bytesRead = 0;

  constructor(readonly fd: number, readonly end: number, private readonly size = WINDOW) {}

  /** Bytes [pos, pos + n) (n ≤ the window's size), shorter only where the region ends. */
  at(pos: number, n: number): Buffer {
    if (pos < this.start || pos + n > this.start + this.length) {
      // Follows on: starts inside the window or within a block of its end (a body's padding).
      const follows = this.length > 0 && pos >= this.start && pos <= this.start + this.length + BLOCK;
      this.ramp = Math.min(this.size, follows ? this.ramp * 2 : RAMP_MIN);
      const want = Math.min(Math.max(this.ramp, n), this.end - pos);
      if (want > this.buf.length) this.buf = alignedBuffer(Math.max(want, Math.min(this.size, this.buf.length * 2)));
      let got = 0;
      while (got < want) {
        const r = fs.readSync(this.fd, this.buf, got, want - got, pos + got);
        if (r === 0) break;
        got += r;
      }
      this.bytesRead += got;
      this.start = pos;
      this.length = got;
    }
    const from = pos - this.start;
    return this.buf.subarray(from, Math.min(from + n, this.length));
  }

  /** A few bytes (n ≤ 64) at pos without moving the window: the magic of a big body. */
  peek(pos: number, n: number): Buffer {
    if (pos >= this.start && pos + n <= this.start + this.length) return this.at(pos, n);
    const got = fs.readSync(this.fd, this.small, 0, Math.min(n, this.small.length, Math.max(0, this.end - pos)), pos);
    this.bytesRead += got;
    return this.small.subarray(0, got);
  }
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
export async function walkTar(fd: number, start: number, end: number, what: string, visit: (e: TarEntry, w: TarWindow) => void | Promise<void>, window = WINDOW): Promise<TarWindow> {
  const h = headerCodec();
  const w = new TarWindow(fd, end, window);
  const bad = (at: number, why: string) => new VsysError('IMAGE_BAD_LAYER', `${what}: ${why} at byte ${at - start} (truncated or not a tar?)`);
  let pax: Record<string, string> | null = null;
  let paxGlobal: Record<string, string> | null = null;
  let longPath: string | null = null;
  let longLink: string | null = null;
  let zeros = 0;
  for (let pos = start; pos < end; ) {
    const block = w.at(pos, BLOCK);
    if (block.length < BLOCK) throw bad(pos, 'a header cut short');
    let header: ReturnType<HeaderCodec['decode']>;
    try {
      header = h.decode(block, 'utf-8', false);
    } catch (e) {
      throw bad(pos, (e as Error).message);
    }
    pos += BLOCK;
    if (!header) {
      if (++zeros === 2) break; // end of archive
      continue;
    }
    zeros = 0;
    const size = header.size;
    if (!(size >= 0) || !Number.isSafeInteger(size)) throw bad(pos - BLOCK, 'an entry with an invalid size');
    const dataAt = pos;
    if (header.type === 'gnu-long-path' || header.type === 'gnu-long-link-path' || header.type === 'pax-header' || header.type === 'pax-global-header') {
      if (size > MAX_LONG_HEADER) throw bad(dataAt - BLOCK, `a ${header.type} record of ${size} bytes`);
      const body = Buffer.from(w.at(dataAt, size)); // copied: the window moves
      if (body.length < size) throw bad(dataAt, 'a long-name record cut short');
      try {
        if (header.type === 'gnu-long-path') longPath = h.decodeLongPath(body, 'utf-8');
        else if (header.type === 'gnu-long-link-path') longLink = h.decodeLongPath(body, 'utf-8');
        else if (header.type === 'pax-global-header') paxGlobal = h.decodePax(body);
        else pax = paxGlobal === null ? h.decodePax(body) : { ...paxGlobal, ...h.decodePax(body) };
      } catch (e) {
        throw bad(dataAt, (e as Error).message);
      }
      pos = dataAt + Math.ceil(size / BLOCK) * BLOCK;
      continue;
    }
    const entry: TarEntry = { name: header.name, type: header.type, size, linkname: header.linkname, dataAt };
    if (longPath !== null) entry.name = longPath;
    if (longLink !== null) entry.linkname = longLink;
    if (pax) {
      if (pax.path) entry.name = pax.path;
      if (pax.linkpath) entry.linkname = pax.linkpath;
      if (pax.size) {
        const s = Number.parseInt(pax.size, 10);
        if (!(s >= 0) || !Number.isSafeInteger(s)) throw bad(dataAt - BLOCK, `a pax size '${pax.size}'`);
        entry.size = s;
      }
    }
    longPath = longLink = null;
    pax = null;
    // Directories carry no data in a tar whatever their size field says (as tar-stream reads them).
    const body = entry.type === 'directory' ? 0 : entry.size;
    const next = dataAt + Math.ceil(body / BLOCK) * BLOCK;
    // A body, padding included, that runs past the end: cut short (GNU tar: "Unexpected EOF").
    if (next > end) throw bad(dataAt - BLOCK, `${entry.name}: ${body} bytes of data (padded to ${next - dataAt}) past the end`);
    await visit(entry, w);
    pos = next;
  }
  return w;
}
