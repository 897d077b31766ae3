// Whole tar headers, both ways: read back the complete header of chosen entries of a layer (mode,
// owners, times, names, pax records such as xattrs) with their bodies, and write entries with such
// headers (POSIX ustar, pax extended headers where ustar cannot hold a field; POSIX.1-2008 pax).
// The fix copies a file's header into its added layer, so only the size may change.
import fs from 'node:fs';
import { copyFileRange } from '../native/libc.js';
import path from 'node:path';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { VsysError } from '../errors.js';
import { readUpTo } from '../native/file-read.js';
import { normalisePath } from './image-fs.js';
import { headerCodec, padded, walkTar } from './tar-index.js';

export type TarType = 'file' | 'link' | 'symlink' | 'directory';

/** One entry's header as written: the fields of a ustar header, and the pax records beside them. */
export interface FullHeader {
  name: string;
  type: TarType;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch (a pax `mtime` record keeps any fraction). */
  mtime: number;
  uname: string;
  gname: string;
  linkname?: string;
  /** pax records other than the ones derived from the fields above (path, linkpath, size). */
  pax?: Record<string, string>;
}

/** An entry read out of a layer: its header as stored and its bytes (files only). */
export interface ReadEntry {
  header: FullHeader;
  bytes: Buffer;
}

const BLOCK = 512;
const DERIVED = new Set(['path', 'linkpath', 'size']);


function asType(t: string | null | undefined): TarType | undefined {
  return t === 'file' || t === 'contiguous-file' ? 'file' : t === 'link' || t === 'symlink' || t === 'directory' ? t : undefined;
}

/** A header decoded by tar-stream, with its pax records (those not derived from the fields kept apart). */
function fromDecoded(h: { name: string; type: string | null; mode?: number | null; uid?: number | null; gid?: number | null; size?: number | null; mtime?: Date | null; linkname?: string | null; uname?: string | null; gname?: string | null }, pax: Record<string, string> | null | undefined): FullHeader | undefined {
  const type = asType(h.type);
  if (!type) return undefined;
  const out: FullHeader = {
    name: pax?.path ?? h.name, type, size: h.size ?? 0, mode: h.mode ?? 0o644, uid: h.uid ?? 0, gid: h.gid ?? 0,
    mtime: Math.floor((h.mtime?.getTime() ?? 0) / 1000), uname: h.uname ?? '', gname: h.gname ?? '',
  };
  const link = pax?.linkpath ?? h.linkname;
  if (link) out.linkname = link;
  const kept = Object.entries(pax ?? {}).filter(([k]) => !DERIVED.has(k));
  if (kept.length > 0) out.pax = Object.fromEntries(kept);
  return out;
}

/**
 * The header blocks in [from, dataAt) of a plain tar in a file: the pax and long-name records an
 * entry has before its own header block, which is the last one.
 */
function headerAt(fd: number, from: number, dataAt: number, what: string): FullHeader | undefined {
  const c = headerCodec();
  const buf = Buffer.alloc(dataAt - from);
  if (readUpTo(fd, buf, 0, buf.length, from) !== buf.length) throw new VsysError('IMAGE_BAD_LAYER', `${what}: a header cut short`);
  let pax: Record<string, string> | null = null;
  let longPath: string | null = null;
  let longLink: string | null = null;
  for (let at = 0; at + BLOCK <= buf.length; ) {
    const h = c.decode(buf.subarray(at, at + BLOCK), 'utf-8', true);
    at += BLOCK;
    if (!h) continue;
    const body = buf.subarray(at, at + h.size);
    if (h.type === 'pax-header') pax = { ...(pax ?? {}), ...c.decodePax(body) };
    else if (h.type === 'gnu-long-path') longPath = c.decodeLongPath(body, 'utf-8');
    else if (h.type === 'gnu-long-link-path') longLink = c.decodeLongPath(body, 'utf-8');
    else if (at === buf.length) return fromDecoded({ ...h, name: longPath ?? h.name, linkname: longLink ?? h.linkname }, pax);
    if (h.type === 'pax-header' || h.type === 'pax-global-header' || h.type?.startsWith('gnu-long')) at += padded(h.size);
  }
  return undefined;
}

/**
 * The entries of a plain tar at [start, start + size) of a file whose paths (normalised, '/usr/x')
 * are wanted, with whole headers and bodies; the rest is skipped by position, never read.
 */
export async function readEntriesAt(fd: number, start: number, size: number, wanted: ReadonlySet<string>, what: string): Promise<Map<string, ReadEntry>> {
  const out = new Map<string, ReadEntry>();
  let from = start;
  await walkTar(fd, start, start + size, what, (e) => {
    const name = normalisePath(e.name);
    if (name !== undefined && wanted.has(name)) {
      const header = headerAt(fd, from, e.dataAt, what);
      if (header) {
        const bytes = Buffer.alloc(header.type === 'file' ? e.size : 0);
        if (readUpTo(fd, bytes, 0, bytes.length, e.dataAt) !== bytes.length) throw new VsysError('IMAGE_BAD_LAYER', `${what}: ${name} is cut short`);
        out.set(name, { header: { ...header, size: e.size }, bytes });
      }
    }
    from = e.dataAt + padded(e.type === 'directory' ? 0 : e.size);
  }, 64 * 1024);
  return out;
}

/** The same from a stream of a tar (decompressed already): every byte passes, wanted bodies are kept. */
export async function readEntriesStream(src: Readable, wanted: ReadonlySet<string>, what: string): Promise<Map<string, ReadEntry>> {
  const out = new Map<string, ReadEntry>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (h, body, next) => {
      const name = normalisePath(h.name);
      const keep = name !== undefined && wanted.has(name);
      const chunks: Buffer[] = [];
      body.on('data', (c: unknown) => {
        if (keep) chunks.push(c as Buffer);
      });
      body.on('end', () => {
        if (keep) {
          const header = fromDecoded(h as never, (h as { pax?: Record<string, string> }).pax);
          if (header) out.set(name, { header, bytes: Buffer.concat(chunks) });
        }
        next();
      });
      body.on('error', next);
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
    src.on('error', reject);
  });
  src.pipe(extract);
  try {
    await done;
  } catch (e) {
    if (e instanceof VsysError) throw e;
    throw new VsysError('IMAGE_BAD_LAYER', `${what}: ${(e as Error).message} (truncated or not a tar?)`, { cause: e });
  }
  return out;
}

const TYPEFLAG: Record<TarType, number> = { file: 0x30, link: 0x31, symlink: 0x32, directory: 0x35 };

function octal(buf: Buffer, at: number, len: number, v: number): boolean {
  const s = Math.trunc(v).toString(8);
  if (v < 0 || s.length > len - 1) return false;
  buf.write(s.padStart(len - 1, '0'), at, 'latin1');
  buf[at + len - 1] = 0;
  return true;
}

/** ustar's name/prefix split of a name, or undefined when it cannot hold it. */
function splitName(name: string): { name: string; prefix: string } | undefined {
  if (Buffer.byteLength(name) <= 100) return { name, prefix: '' };
  for (let i = name.indexOf('/'); i >= 0; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '') return { name: rest, prefix };
  }
  return undefined;
}

function block(h: { name: string; prefix: string; type: number; size: number; mode: number; uid: number; gid: number; mtime: number; uname: string; gname: string; linkname: string }): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(h.name, 0, 100, 'utf8');
  octal(b, 100, 8, h.mode & 0o7777);
  octal(b, 108, 8, h.uid);
  octal(b, 116, 8, h.gid);
  octal(b, 124, 12, h.size);
  octal(b, 136, 12, h.mtime);
  b.fill(0x20, 148, 156);
  b[156] = h.type;
  b.write(h.linkname, 157, 100, 'utf8');
  b.write('ustar\x0000', 257, 'latin1');
  b.write(h.uname, 265, 32, 'utf8');
  b.write(h.gname, 297, 32, 'utf8');
  b.write(h.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

/** A pax record: "LEN key=value\n", LEN counting itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const n = Buffer.byteLength(body);
  let len = n + 1;
  while (len !== n + String(len).length) len = n + String(len).length;
  return `${len}${body}`;
}

/** The header blocks of one entry: a pax header when ustar cannot hold a field or records are kept, then the ustar header. */
export function encodeHeader(h: FullHeader): Buffer {
  const pax: Record<string, string> = { ...(h.pax ?? {}) };
  const split = splitName(h.type === 'directory' && !h.name.endsWith('/') ? `${h.name}/` : h.name);
  if (!split) pax.path = h.name;
  const link = h.linkname ?? '';
  if (Buffer.byteLength(link) > 100) pax.linkpath = link;
  const fits = (v: number, len: number) => v >= 0 && Number.isInteger(v) && v.toString(8).length <= len - 1;
  if (!fits(h.size, 12)) pax.size = String(h.size);
  if (!fits(h.uid, 8)) pax.uid = String(h.uid);
  if (!fits(h.gid, 8)) pax.gid = String(h.gid);
  if (!fits(h.mtime, 12)) pax.mtime = String(h.mtime);
  if (Buffer.byteLength(h.uname) > 32) pax.uname = h.uname;
  if (Buffer.byteLength(h.gname) > 32) pax.gname = h.gname;
  const clamp = (v: number, len: number) => (fits(v, len) ? v : 0);
  const main = block({
    name: split?.name ?? h.name.slice(-100), prefix: split?.prefix ?? '', type: TYPEFLAG[h.type], size: clamp(h.size, 12), mode: h.mode,
    uid: clamp(h.uid, 8), gid: clamp(h.gid, 8), mtime: clamp(h.mtime, 12), uname: Buffer.byteLength(h.uname) > 32 ? '' : h.uname,
    gname: Buffer.byteLength(h.gname) > 32 ? '' : h.gname, linkname: Buffer.byteLength(link) > 100 ? '' : link,
  });
  const keys = Object.keys(pax);
  if (keys.length === 0) return main;
  const body = Buffer.from(keys.map((k) => paxRecord(k, pax[k] as string)).join(''), 'utf8');
  const base = (split?.name ?? path.posix.basename(h.name)).slice(0, 80);
  const xh = block({ name: `PaxHeaders/${base}`.slice(0, 100), prefix: '', type: 0x78, size: body.length, mode: 0o644, uid: 0, gid: 0, mtime: clamp(h.mtime, 12), uname: '', gname: '', linkname: '' });
  return Buffer.concat([xh, body, Buffer.alloc(padded(body.length) - body.length), main]);
}

/** Zero bytes that pad a body of `n` bytes to its block. */
export function padding(n: number): Buffer {
  return Buffer.alloc(padded(n) - n);
}

/** The end-of-archive marker: two zero blocks. */
export const TAR_END = Buffer.alloc(2 * BLOCK);

/**
 * A tar written as it goes, to a file descriptor or to memory (`chunks`), with a running size; a
 * body may be copied from another file by range.
 */
export class TarWriter {
  written = 0;
  /** What was written, when there is no file descriptor. */
  readonly chunks: Buffer[] = [];
  private buf: Buffer | undefined;
  constructor(private readonly fd?: number) {}

  private put(b: Uint8Array): void {
    if (this.fd === undefined) this.chunks.push(Buffer.from(b));
    else for (let at = 0; at < b.length; ) at += fs.writeSync(this.fd, b, at, b.length - at);
    this.written += b.length;
  }

  /** An entry with its body in memory. */
  add(h: FullHeader, body: Uint8Array = new Uint8Array(0)): void {
    this.put(encodeHeader({ ...h, size: body.length }));
    this.put(body);
    this.put(padding(body.length));
  }

  /** A file entry whose body is [start, start + size) of another open file, copied in pieces. */
  addRange(h: FullHeader, fd: number, start: number, size: number): void {
    this.put(encodeHeader({ ...h, size }));
    // In the kernel where it can (no bytes through this process); what it leaves is copied here.
    let done = this.fd === undefined ? 0 : copyFileRange(fd, start, this.fd, size);
    this.written += done;
    const buf = (this.buf ??= Buffer.allocUnsafe(4 * 1024 * 1024));
    for (; done < size; ) {
      const n = readUpTo(fd, buf, 0, Math.min(buf.length, size - done), start + done);
      if (n <= 0) throw new VsysError('IO_FAILED', `a blob is shorter than its ${size} bytes`);
      this.put(buf.subarray(0, n));
      done += n;
    }
    this.put(padding(size));
  }

  end(): void {
    this.put(TAR_END);
  }
}
