// The image unpacker of `vsys run --image`: an image from any source `vsys scan` reads (docker-archive,
// oci:DIR, registry://), its layers streamed in order into a directory with the OCI whiteouts applied
// (image-spec layer.md, "Whiteouts"), and its config's Entrypoint, Cmd, Env, WorkingDir and User.
// Nothing is written outside the directory: every parent is checked with lstat (a symlink an image
// made is never followed), and names or hard links that climb out ('..') are refused.
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { VsysError } from '../errors.js';
import { MAX_ENTRIES } from '../image/layer-builder.js';
import { openLayoutFile } from '../image/layout-file.js';
import { configDiffIds, configPlatform } from '../image/manifests.js';
import { dispose, readSourceImage, type BlobAt } from '../image/read-image.js';
import { ByteCap, decompressor } from '../image/read-layer.js';
import { parseRegistryRef, RegistryClient, type RegistryOptions } from '../image/registry.js';
import { MAX_IMAGE_ENTRIES, pickManifest, type ResolvedImage } from '../image/sources.js';
import { TarEndGuard } from '../image/tar-index.js';
import { checkBlob, checkDiffId, DigestStream, sha256Of } from '../image/verify-blob.js';
import { TreeWriter, type UnpackSkipped } from './tree-writer.js';

export type { UnpackSkipped };

/** What the image runs and how (image-spec config.md: config.Entrypoint, Cmd, Env, WorkingDir, User). */
export interface ImageRunConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir?: string;
  user?: string;
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
