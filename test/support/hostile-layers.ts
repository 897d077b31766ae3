// Malformed and hostile layer tars for negative tests, written header by header (POSIX ustar,
// pax Extended Headers for sizes past 8 GiB) so they can break rules the `tar` CLI would never break.
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';

const BLOCK = 512;

/** ustar header fields: [offset, length] (POSIX.1-2001 pax, "ustar Interchange Format"). */
const USTAR = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'pax';
const TYPEFLAG: Record<EntryType, string> = { file: '0', dir: '5', symlink: '2', hardlink: '1', pax: 'x' };

export interface RawEntry {
  name: string;
  type: EntryType;
  /** Size written into the header; the data actually written may differ (truncation tests). */
  size?: number;
  linkname?: string;
  mode?: number;
}

function put(h: Buffer, field: keyof typeof USTAR, text: string): void {
  const [off, len] = USTAR[field];
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > len) throw new Error(`tar header: ${field} "${text}" longer than ${len} bytes`);
  bytes.copy(h, off);
}

function octal(value: number, len: number): string {
  return value.toString(8).padStart(len - 1, '0');
}

/** One 512-byte ustar header; sizes of 8 GiB and more need a pax header in front (see paxSize). */
export function tarHeader(e: RawEntry): Buffer {
  const h = Buffer.alloc(BLOCK);
  const size = e.size ?? 0;
  put(h, 'name', e.name);
  put(h, 'mode', octal(e.mode ?? (e.type === 'dir' ? 0o755 : e.type === 'symlink' ? 0o777 : 0o644), 8));
  put(h, 'uid', octal(0, 8));
  put(h, 'gid', octal(0, 8));
  put(h, 'size', octal(size < 8 ** 11 ? size : 0, 12));
  put(h, 'mtime', octal(1_704_067_200, 12));
  put(h, 'typeflag', TYPEFLAG[e.type]);
  if (e.linkname !== undefined) put(h, 'linkname', e.linkname);
  put(h, 'magic', 'ustar\0');
  put(h, 'version', '00');
  put(h, 'uname', 'root');
  put(h, 'gname', 'root');
  h.fill(0x20, USTAR.chksum[0], USTAR.chksum[0] + USTAR.chksum[1]);
  let sum = 0;
  for (const b of h) sum += b;
  put(h, 'chksum', `${octal(sum, 7)}\0 `);
  return h;
}

function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** A complete entry: header, data, padding to the block size. */
export function tarEntry(e: RawEntry, data: Buffer | string = ''): Buffer {
  const body = Buffer.from(data);
  return Buffer.concat([tarHeader({ ...e, size: e.size ?? body.length }), body, padding(body.length)]);
}

/** A pax extended header carrying `size` (records are "LEN size=N\n", LEN counting itself). */
function paxSize(name: string, size: number): Buffer {
  const tail = ` size=${size}\n`;
  let len = tail.length + 1;
  while (`${len}${tail}`.length !== len) len = `${len}${tail}`.length;
  return tarEntry({ name: `PaxHeaders/${name.replace(/^\.\//, '')}`.slice(0, 100), type: 'pax' }, `${len}${tail}`);
}

const END = Buffer.alloc(2 * BLOCK);

/**
 * Entries that climb out of the extraction root: `../../etc/evil`, `/abs/path`, `./usr/../../escape`
 * and a hard link whose target is `../../etc/shadow`. Returns the entry names in order.
 */
export function pathTraversalLayer(out: string): string[] {
  const entries: [RawEntry, string][] = [
    [{ name: './', type: 'dir' }, ''],
    [{ name: './usr/', type: 'dir' }, ''],
    [{ name: '../../etc/evil', type: 'file' }, 'evil: written above the root\n'],
    [{ name: '/abs/path', type: 'file' }, 'evil: absolute path\n'],
    [{ name: './usr/../../escape', type: 'file' }, 'evil: dot-dot in the middle\n'],
    [{ name: './hardlink-out', type: 'hardlink', linkname: '../../etc/shadow' }, ''],
  ];
  fs.writeFileSync(out, Buffer.concat([...entries.map(([e, d]) => tarEntry(e, d)), END]));
  return entries.map(([e]) => e.name);
}

/**
 * Symlinks that loop (`a → b`, `b → a`, `self → self`), escape (`lib64 → /`, `up → ../../..`) and a
 * regular file written through the escaping link (`./lib64/etc/vsys-evil`). Returns name → target.
 */
export function symlinkLoopLayer(out: string): Record<string, string> {
  const links: Record<string, string> = { './a': 'b', './b': 'a', './self': 'self', './lib64': '/', './up': '../../..', './usr/lib/deep': '../../../../../../etc' };
  const parts = [tarEntry({ name: './', type: 'dir' }), tarEntry({ name: './usr/', type: 'dir' }), tarEntry({ name: './usr/lib/', type: 'dir' })];
  for (const [name, target] of Object.entries(links)) parts.push(tarEntry({ name, type: 'symlink', linkname: target }));
  parts.push(tarEntry({ name: './lib64/etc/vsys-evil', type: 'file' }, 'evil: through a symlink\n'), END);
  fs.writeFileSync(out, Buffer.concat(parts));
  return links;
}

/**
 * A .tar.gz holding one file `./zeros` of `gigabytes` GiB (fractions allowed) of zeros.
 * Zeros are streamed through zlib, so memory stays at a few MiB; about 1 MiB of output per GiB.
 * Sizes of 8 GiB and more are carried by a pax header, as a real tar would. Level 9 (default) makes
 * ~1 MiB per GiB at ~4 s/GiB here; level 1 makes ~4.5 MiB per GiB at ~1 s/GiB.
 */
export async function decompressionBomb(out: string, gigabytes: number, level = 9): Promise<{ expandedBytes: number; compressedBytes: number; fileBytes: number }> {
  const fileBytes = Math.round(gigabytes * 2 ** 30);
  if (!Number.isSafeInteger(fileBytes) || fileBytes < 0) throw new Error(`decompressionBomb: bad size ${gigabytes} GiB`);
  const head = Buffer.concat([...(fileBytes >= 8 ** 11 ? [paxSize('./zeros', fileBytes)] : []), tarHeader({ name: './zeros', type: 'file', size: fileBytes })]);
  const tail = Buffer.concat([padding(fileBytes), END]);
  const chunk = Buffer.alloc(1 << 20);
  async function* body(): AsyncGenerator<Buffer> {
    yield head;
    let left = fileBytes;
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      yield n === chunk.length ? chunk : chunk.subarray(0, n);
      left -= n;
    }
    yield tail;
  }
  await pipeline(Readable.from(body()), zlib.createGzip({ level }), fs.createWriteStream(out));
  return { expandedBytes: head.length + fileBytes + tail.length, compressedBytes: fs.statSync(out).size, fileBytes };
}

/**
 * A tar cut short. 'data' (default): `./ok` is whole, then `./big` declares 10,000 bytes but only 700
 * follow and the end-of-archive blocks are missing. 'header': the second header stops after 200 bytes.
 */
export function truncatedTar(out: string, at: 'data' | 'header' = 'data'): { declaredSize: number; presentBytes: number } {
  const ok = tarEntry({ name: './ok', type: 'file' }, 'complete\n');
  const declaredSize = 10_000;
  const header = tarHeader({ name: './big', type: 'file', size: declaredSize });
  const presentBytes = at === 'data' ? 700 : 0;
  const rest = at === 'data' ? Buffer.concat([header, Buffer.alloc(presentBytes, 0x41)]) : header.subarray(0, 200);
  fs.writeFileSync(out, Buffer.concat([ok, rest]));
  return { declaredSize, presentBytes };
}
