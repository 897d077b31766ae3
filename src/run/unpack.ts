// The image unpacker of `vsys run --image`: an image from any source `vsys scan` reads (docker-archive,
// oci:DIR, registry://), its layers streamed in order into a directory with the OCI whiteouts applied
// (image-spec layer.md, "Whiteouts"), and its config's Entrypoint, Cmd, Env, WorkingDir and User.
// Nothing is written outside the directory: every parent is checked with lstat (a symlink an image
// made is never followed), and names or hard links that climb out ('..') are refused.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { VsysError } from '../errors.js';
import { normalisePath } from '../image/image-fs.js';
import { MAX_ENTRIES } from '../image/layer-builder.js';
import { openLayoutFile } from '../image/layout-file.js';
import { configDiffIds, configPlatform } from '../image/manifests.js';
import { dispose, readSourceImage, type BlobAt } from '../image/read-image.js';
import { ByteCap, decompressor } from '../image/read-layer.js';
import { parseRegistryRef, RegistryClient, type RegistryOptions } from '../image/registry.js';
import { MAX_IMAGE_ENTRIES, pickManifest, type ResolvedImage } from '../image/sources.js';
import { TarEndGuard } from '../image/tar-index.js';
import { checkBlob, checkDiffId, DigestStream, sha256Of } from '../image/verify-blob.js';

/** What the image runs and how (image-spec config.md: config.Entrypoint, Cmd, Env, WorkingDir, User). */
export interface ImageRunConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir?: string;
  user?: string;
}

/** Entries written without something, or not at all. */
export interface UnpackSkipped {
  /** Character and block devices not created (unprivileged, or mknod refused). */
  devices: number;
  fifos: number;
  /** Entries whose owner could not be set (privileged, but in a user namespace that does not map it). */
  owners: number;
  /** Entries written without their extended attributes (pax SCHILY.xattr.*). */
  xattrs: number;
  /** Entries of a type vsys does not create (GNU sparse files, unknown typeflags). */
  other: number;
}

export interface UnpackedImage {
  dir: string;
  ref: string;
  source: ResolvedImage['source'];
  platform: string;
  config: ImageRunConfig;
  layers: number;
  /** Regular files written, over all layers (a file a later layer replaces counts twice). */
  files: number;
  /** Uncompressed bytes of all layers. */
  bytes: number;
  skipped: UnpackSkipped;
}

/** Where an unpack is: layer `layer` (from 0) of `layers`, `done` of the blob's `size` bytes read (size undefined: not declared). */
export interface UnpackProgress {
  layer: number;
  layers: number;
  digest: string;
  done: number;
  size: number | undefined;
}

export interface UnpackOptions extends RegistryOptions {
  onProgress?: (p: UnpackProgress) => void;
  signal?: AbortSignal;
  /** Check every blob against its digest and size and every layer against its diff_id (default true). */
  verify?: boolean;
  /** Create device nodes and set owners (default: when running as root). */
  privileged?: boolean;
  /** The caps `vsys scan` applies: decompressed bytes of a layer and of the image, entries of a layer and of the image. */
  maxLayerBytes?: number;
  maxImageBytes?: number;
  maxLayerEntries?: number;
  maxImageEntries?: number;
}

const strings = (v: unknown): string[] => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : []);

/** The run fields of an image config (empty when absent or malformed, as a runtime treats them). */
export function runConfig(doc: unknown): ImageRunConfig {
  const c = (doc as { config?: Record<string, unknown> } | null)?.config;
  const out: ImageRunConfig = { entrypoint: strings(c?.Entrypoint), cmd: strings(c?.Cmd), env: strings(c?.Env) };
  if (typeof c?.WorkingDir === 'string' && c.WorkingDir !== '') out.workingDir = c.WorkingDir;
  if (typeof c?.User === 'string' && c.User !== '') out.user = c.User;
  return out;
}

/**
 * Unpacks the image `ref` into `dir`, an empty directory the caller made (and removes, also when this
 * throws: it may then hold part of the image). Throws a coded VsysError for a bad image or layer.
 */
export async function unpackImage(ref: string, dir: string, o: UnpackOptions = {}): Promise<UnpackedImage> {
  const verify = o.verify !== false;
  const root = emptyDir(dir);
  const img = await openImage(ref, o, verify);
  try {
    const w = new TreeWriter(root, o.privileged ?? process.getuid?.() === 0, o.maxLayerEntries ?? MAX_ENTRIES, o.maxImageEntries ?? MAX_IMAGE_ENTRIES);
    const maxImage = o.maxImageBytes ?? 32 * 1024 ** 3;
    let bytes = 0;
    for (const [i, layer] of img.layers.entries()) {
      o.signal?.throwIfAborted();
      w.startLayer(`${ref} layer ${i} (${layer.digest.slice(0, 19)})`);
      bytes += await unpackLayer(layer, w, { ...o, verify, maxLayerBytes: Math.min(o.maxLayerBytes ?? 8 * 1024 ** 3, Math.max(0, maxImage - bytes)) }, (done) => o.onProgress?.({ layer: i, layers: img.layers.length, digest: layer.digest, done, size: layer.size }));
    }
    w.finish();
    return { dir: root, ref, source: img.source, platform: img.platform, config: runConfig(img.config), layers: img.layers.length, files: w.files, bytes, skipped: w.skipped };
  } finally {
    img.close();
  }
}

function emptyDir(dir: string): string {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    throw new VsysError('IO_FAILED', `${dir}: ${(e as Error).message} (unpack needs an empty directory)`, { path: dir, cause: e });
  }
  if (names.length > 0) throw new VsysError('USAGE', `${dir} is not empty; an image is unpacked into an empty directory`, { path: dir });
  return fs.realpathSync(dir);
}

/** A layer blob: what the image claims of it, and how to read it. */
interface LayerBlob {
  digest: string;
  size: number | undefined;
  diffId: string | undefined;
  open(): Promise<Readable>;
}

interface OpenedImage {
  source: ResolvedImage['source'];
  platform: string;
  config: unknown;
  layers: LayerBlob[];
  close(): void;
}

function openImage(ref: string, o: RegistryOptions, verify: boolean): Promise<OpenedImage> {
  return ref.startsWith('registry://') ? openRegistry(ref, o, verify) : openLocal(ref, verify);
}

/** An archive or layout, read as `vsys fix` reads it (read-image.ts): its config and where each layer blob lies. */
async function openLocal(ref: string, verify: boolean): Promise<OpenedImage> {
  const img = await readSourceImage(ref);
  if (verify) checkBlob(`${ref} config`, { digest: img.config.digest }, { digest: sha256Of(img.config.bytes), bytes: img.config.bytes.length });
  // A layout's blobs are opened as scan opens them: never a file outside the layout.
  const layout = img.source === 'oci-dir' ? ref.slice(4) : undefined;
  return {
    source: img.source, platform: img.platform, config: img.config.doc,
    layers: img.layers.map((l) => ({ digest: l.digest, size: l.size, diffId: l.diffId, open: async () => blobStream(l.blob, layout) })),
    close: () => dispose(img),
  };
}

function blobStream(b: BlobAt, layout: string | undefined): Readable {
  if (b.size === 0) return Readable.from([]);
  const fd = layout ? openLayoutFile(layout, path.relative(layout, b.file), 'the manifest') : fs.openSync(b.file, 'r');
  return fs.createReadStream('', { fd, start: b.start, end: b.start + b.size - 1, highWaterMark: 1024 * 1024 });
}

/** A registry image through the scan's client: manifests and config checked, layers streamed (never stored). */
async function openRegistry(ref: string, o: RegistryOptions, verify: boolean): Promise<OpenedImage> {
  const r = parseRegistryRef(ref);
  const client = new RegistryClient(r, o);
  const top = await client.manifest(r.digest ?? (r.tag as string), verify);
  const { manifest, platform } = await pickManifest(top.doc, top.digest, async (d, _what, size) => (await client.manifest(d, verify, size !== undefined ? { size } : {})).doc, ref);
  const cfg = await client.blobJson(manifest.config.digest, verify, manifest.config.size);
  const ids = configDiffIds(cfg);
  if (verify && ids?.length !== manifest.layers.length) throw new VsysError('IMAGE_BAD_MANIFEST', `${ref}: the config lists ${ids?.length ?? 'no'} diff_ids for ${manifest.layers.length} layers (rootfs.diff_ids); the layers cannot be verified (--no-verify skips this check)`);
  return {
    source: 'registry', platform: platform ?? configPlatform(cfg), config: cfg,
    layers: manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, diffId: ids?.[i], open: () => client.blobStream(l.digest) })),
    close: () => undefined,
  };
}

/** Counts a blob's bytes as they pass and says so now and then. */
class Meter extends Transform {
  done = 0;
  private said = 0;
  constructor(private readonly tell: (done: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.done += chunk.length;
    if (this.done - this.said >= 16 * 1024 * 1024) {
      this.said = this.done;
      this.tell(this.done);
    }
    cb(null, chunk);
  }
}

/** `src` piped into `t`, a failure on either side ending the other (the source is this module's own). */
function chain(src: Readable, t: Transform): Readable {
  src.once('error', (e) => t.destroy(e));
  t.once('close', () => {
    if (!src.readableEnded) src.destroy();
  });
  return src.pipe(t);
}

/** One layer streamed into the tree: its blob hashed, decompressed, capped and extracted. Returns its uncompressed bytes. */
async function unpackLayer(blob: LayerBlob, w: TreeWriter, o: UnpackOptions & { verify: boolean; maxLayerBytes: number }, tell: (done: number) => void): Promise<number> {
  const what = w.what;
  const src = await blob.open();
  const abort = () => src.destroy(o.signal?.reason as Error);
  o.signal?.addEventListener('abort', abort, { once: true });
  const blobHash = o.verify ? new DigestStream(what, blob.size) : undefined;
  const meter = new Meter(tell);
  try {
    const { streams, kind } = await decompressor(chain(blobHash ? chain(src, blobHash) : src, meter));
    const tarHash = blobHash && kind !== 'none' ? new DigestStream(what) : undefined;
    const cap = new ByteCap(o.maxLayerBytes, what);
    const extract = tar.extract();
    extract.on('entry', (h, body, next) => w.entry(h, body, next, o.signal));
    await (pipeline as unknown as (s: unknown[]) => Promise<void>)([...streams, cap, ...(tarHash ? [tarHash] : []), new TarEndGuard(), extract]);
    tell(meter.done);
    if (blobHash) {
      checkBlob(what, { digest: blob.digest, ...(blob.size !== undefined ? { size: blob.size } : {}) }, blobHash.result());
      if (blob.diffId !== undefined) checkDiffId(what, blob.diffId, (tarHash ?? blobHash).result().digest);
    }
    return cap.bytes;
  } catch (e) {
    o.signal?.throwIfAborted();
    if (e instanceof VsysError) throw e;
    throw new VsysError('IMAGE_BAD_LAYER', `${what}: ${(e as Error).message} (truncated or not a tar?)`, { cause: e });
  } finally {
    o.signal?.removeEventListener('abort', abort);
    if (!src.destroyed) src.destroy();
  }
}

interface DirAttrs {
  mode: number;
  uid: number;
  gid: number;
  mtime?: Date;
}

const IMPLICIT: DirAttrs = { mode: 0o755, uid: 0, gid: 0 };
const NODE_KIND: Record<string, string> = { 'character-device': 'c', 'block-device': 'b', fifo: 'p' };

type EntryBody = tar.ExtractEvents['entry'][1];

function lstat(p: string): fs.Stats | undefined {
  return fs.lstatSync(p, { throwIfNoEntry: false });
}

function child(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/**
 * The tree being written, entry by entry. Paths are the image's ('/usr/bin/x'); `root` + path is the
 * host's. Directories are made 0700 and given their own mode, owner and time at the end, deepest
 * first, so that a read-only directory can still be filled by a later layer.
 */
class TreeWriter {
  readonly skipped: UnpackSkipped = { devices: 0, fifos: 0, owners: 0, xattrs: 0, other: 0 };
  files = 0;
  what = '';
  private readonly dirs = new Map<string, DirAttrs>();
  /** Paths checked to be real directories (cleared whenever a directory is removed). */
  private known = new Set<string>(['/']);
  /** Paths this layer wrote: its own whiteouts and opaque markers do not hide them (image-spec layer.md). */
  private readonly layer = new Set<string>();
  private entries = 0;
  private layerEntries = 0;

  constructor(private readonly root: string, private readonly privileged: boolean, private readonly maxLayerEntries: number, private readonly maxImageEntries: number) {}

  startLayer(what: string): void {
    this.what = what;
    this.layer.clear();
    this.layerEntries = 0;
  }

  private host(p: string): string {
    return p === '/' ? this.root : this.root + p;
  }

  /** tar-stream's entry handler: the entry applied, a file's body written as it streams. */
  entry(h: tar.Header, body: EntryBody, next: (e?: Error | null) => void, signal: AbortSignal | undefined): void {
    let fd: number | undefined;
    // A failure anywhere destroys the entry's stream with it; the pipeline reports it.
    body.on('error', () => undefined);
    try {
      signal?.throwIfAborted();
      fd = this.apply(h);
    } catch (e) {
      next(signal?.aborted ? (e as Error) : this.coded(e, h.name));
      return;
    }
    if (fd === undefined) {
      body.on('end', () => next());
      body.resume();
      return;
    }
    const file = fd;
    let open = true;
    const done = (e?: unknown) => {
      if (!open) return;
      open = false;
      try {
        if (!e) this.finishFile(file, h);
      } catch (err) {
        e = err;
      } finally {
        fs.closeSync(file);
      }
      next(e === undefined ? undefined : this.coded(e, h.name));
    };
    body.on('data', (data: unknown) => {
      const c = data as Buffer;
      try {
        for (let at = 0; at < c.length; ) at += fs.writeSync(file, c, at, c.length - at);
      } catch (e) {
        body.destroy(this.coded(e, h.name));
      }
    });
    body.on('end', () => done());
    body.on('error', (e) => done(e));
  }

  private coded(e: unknown, name: string): Error {
    if (e instanceof VsysError) return e;
    const err = e as NodeJS.ErrnoException;
    if (typeof err.code === 'string' && typeof err.syscall === 'string') return new VsysError('IO_FAILED', `${this.what}: entry '${name}': ${err.message}`, { syscall: err.syscall, ...(err.path ? { path: err.path } : {}), cause: e });
    return new VsysError('IMAGE_BAD_LAYER', `${this.what}: entry '${name}': ${err?.message ?? String(e)}`, { cause: e });
  }

  private bad(name: string, why: string): VsysError {
    return new VsysError('IMAGE_BAD_PATH', `${this.what}: entry '${name}' ${why}; refused (the layer is broken or hostile)`);
  }

  /** Applies one entry; for a regular file, the descriptor its body is written to. */
  private apply(h: tar.Header): number | undefined {
    if (++this.layerEntries > this.maxLayerEntries) throw new VsysError('IMAGE_TOO_LARGE', `${this.what} has more than ${this.maxLayerEntries} entries (--max-layer-entries); stopped there`);
    if (++this.entries > this.maxImageEntries) throw new VsysError('IMAGE_TOO_LARGE', `${this.what}: the image's layers hold more than ${this.maxImageEntries} entries (--max-image-entries); stopped there`);
    const p = normalisePath(h.name);
    if (p === undefined) throw this.bad(h.name, "climbs out of the image root ('..')");
    const base = path.posix.basename(p);
    if (base === '.wh..wh..opq') return void this.opaque(path.posix.dirname(p), h.name);
    if (base.startsWith('.wh.')) return void this.whiteout(path.posix.dirname(p), base.slice(4), h.name);
    if (p === '/' && h.type !== 'directory') throw this.bad(h.name, 'would replace the image root');
    if (h.pax && typeof h.pax === 'object' && Object.keys(h.pax).some((k) => k.startsWith('SCHILY.xattr.'))) this.skipped.xattrs++;
    switch (h.type) {
      case 'directory':
        this.dir(p, h);
        return undefined;
      case 'file':
      case 'contiguous-file':
        this.place(p, false, h.name);
        this.files++;
        return fs.openSync(this.host(p), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
      case 'symlink':
        this.symlink(p, h);
        return undefined;
      case 'link':
        this.hardlink(p, h);
        return undefined;
      case 'character-device':
      case 'block-device':
      case 'fifo':
        this.node(p, h);
        return undefined;
      default:
        this.skipped.other++;
        return undefined;
    }
  }

  /**
   * Makes sure every parent of `p` is a real directory inside the root: made when missing (`create`),
   * refused when it is a symlink or something else. False when one is missing and `create` is not set.
   */
  private parents(p: string, create: boolean, name: string): boolean {
    let at = '';
    const parts = p.split('/');
    for (let i = 1; i < parts.length - 1; i++) {
      at += `/${parts[i] as string}`;
      if (this.known.has(at)) continue;
      const st = lstat(this.host(at));
      if (!st) {
        if (!create) return false;
        fs.mkdirSync(this.host(at), 0o700);
        this.dirs.set(at, IMPLICIT);
        this.layer.add(at);
      } else if (st.isSymbolicLink()) {
        throw this.bad(name, `lies under ${at}, a symlink (to ${fs.readlinkSync(this.host(at))}) the image made; vsys does not write through an image's symlinks`);
      } else if (!st.isDirectory()) {
        throw new VsysError('IMAGE_BAD_LAYER', `${this.what}: entry '${name}' lies under ${at}, which is not a directory`);
      }
      this.known.add(at);
    }
    return true;
  }

  /** Clears the way for an entry at `p`: its parents made, what is there removed (a directory kept when `keepDir`). */
  private place(p: string, keepDir: boolean, name: string): boolean {
    this.parents(p, true, name);
    this.layer.add(p);
    const st = lstat(this.host(p));
    if (!st) return false;
    if (keepDir && st.isDirectory()) return true;
    this.remove(p, st);
    return false;
  }

  private remove(p: string, st: fs.Stats): void {
    // rm does not follow symlinks, at the top or below.
    fs.rmSync(this.host(p), { recursive: st.isDirectory(), force: true });
    if (st.isDirectory()) this.known = new Set(['/']);
  }

  private owner(p: string, h: { uid?: number | null; gid?: number | null }): void {
    if (!this.privileged) return;
    try {
      fs.lchownSync(this.host(p), h.uid ?? 0, h.gid ?? 0);
    } catch {
      this.skipped.owners++;
    }
  }

  private dir(p: string, h: tar.Header): void {
    if (p !== '/' && !this.place(p, true, h.name)) fs.mkdirSync(this.host(p), 0o700);
    this.known.add(p);
    this.dirs.set(p, { mode: (h.mode ?? 0o755) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0, ...(h.mtime ? { mtime: h.mtime } : {}) });
  }

  /** A file's owner, then its mode (chown clears set-id bits), then its time. */
  private finishFile(fd: number, h: tar.Header): void {
    if (this.privileged) {
      try {
        fs.fchownSync(fd, h.uid ?? 0, h.gid ?? 0);
      } catch {
        this.skipped.owners++;
      }
    }
    fs.fchmodSync(fd, (h.mode ?? 0o644) & 0o7777);
    if (h.mtime) fs.futimesSync(fd, h.mtime, h.mtime);
  }

  private symlink(p: string, h: tar.Header): void {
    if (!h.linkname) throw new VsysError('IMAGE_BAD_LAYER', `${this.what}: symlink '${h.name}' has no target`);
    this.place(p, false, h.name);
    fs.symlinkSync(h.linkname, this.host(p));
    this.owner(p, h);
    if (h.mtime) fs.lutimesSync(this.host(p), h.mtime, h.mtime);
  }

  /** A hard link to an entry this layer or a lower one wrote, found inside the root without following links. */
  private hardlink(p: string, h: tar.Header): void {
    const target = normalisePath(h.linkname ?? '');
    if (target === undefined || target === '/') throw this.bad(h.name, `is a hard link to '${h.linkname ?? ''}', outside the image root`);
    if (target === p) return;
    this.place(p, false, h.name);
    const st = this.parents(target, false, h.name) ? lstat(this.host(target)) : undefined;
    if (!st) throw new VsysError('IMAGE_BAD_LAYER', `${this.what}: hard link '${h.name}' names ${target}, which no earlier entry made`);
    if (st.isDirectory()) throw new VsysError('IMAGE_BAD_LAYER', `${this.what}: hard link '${h.name}' names ${target}, a directory`);
    fs.linkSync(this.host(target), this.host(p));
  }

  /** A device or FIFO: made with mknod(1) when privileged (Node has no mknod), else counted. */
  private node(p: string, h: tar.Header): void {
    const type = h.type as string;
    const count = () => (type === 'fifo' ? this.skipped.fifos++ : this.skipped.devices++);
    this.place(p, false, h.name);
    if (!this.privileged) return void count();
    const mode = (h.mode ?? 0o600) & 0o7777;
    try {
      execFileSync('mknod', ['-m', mode.toString(8), this.host(p), NODE_KIND[type] as string, ...(type === 'fifo' ? [] : [String(h.devmajor ?? 0), String(h.devminor ?? 0)])], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch {
      return void count();
    }
    this.owner(p, h);
    fs.chmodSync(this.host(p), mode);
    if (h.mtime) fs.lutimesSync(this.host(p), h.mtime, h.mtime);
  }

  /** `.wh.NAME`: NAME removed, as a lower layer left it. */
  private whiteout(dir: string, name: string, raw: string): void {
    if (name === '' || name === '.' || name === '..') throw this.bad(raw, 'is a whiteout of no entry');
    const p = child(dir, name);
    if (this.layer.has(p) || !this.parents(p, false, raw)) return;
    const st = lstat(this.host(p));
    if (st) this.remove(p, st);
  }

  /** `.wh..wh..opq`: what lower layers put in `dir` removed, what this layer put there kept. */
  private opaque(dir: string, raw: string): void {
    this.parents(child(dir, '.wh..wh..opq'), true, raw);
    const clear = (d: string): void => {
      for (const name of fs.readdirSync(this.host(d))) {
        const c = child(d, name);
        const st = fs.lstatSync(this.host(c));
        if (!this.layer.has(c)) this.remove(c, st);
        else if (st.isDirectory()) clear(c);
      }
    };
    clear(dir);
  }

  /** Whether `p` is still a real directory reached through real directories (a later layer may have replaced one). */
  private realDir(p: string): boolean {
    let at = '';
    for (const part of p.split('/').slice(1)) {
      if (part === '') continue;
      at += `/${part}`;
      if (!lstat(this.host(at))?.isDirectory()) return false;
    }
    return true;
  }

  /** Directories' owners, modes and times, deepest first. */
  finish(): void {
    const depth = (p: string) => (p === '/' ? 0 : p.split('/').length);
    for (const [p, a] of [...this.dirs].sort((x, y) => depth(y[0]) - depth(x[0]))) {
      if (!this.realDir(p)) continue;
      this.owner(p, a);
      fs.chmodSync(this.host(p), a.mode);
      if (a.mtime) fs.utimesSync(this.host(p), a.mtime, a.mtime);
    }
  }
}
