// Where images come from: a `docker save` archive or an OCI layout packed in a tar (its entries
// indexed by position first, then the manifests read and the layers they name analysed), an OCI
// layout directory, or a registry. Each yields images as (manifest, config, layer results). A layer
// stored uncompressed in a local file is read by position (readLayerAt); a compressed one, or one
// from a registry, is streamed (readLayer).
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { VsysError } from '../errors.js';
import { readLayer } from './read-layer.js';
import { readLayerAt } from './read-layer-at.js';
import type { LayerLimits, LayerResult } from './layer-builder.js';
import type { LayerCache } from './layer-cache.js';
import { walkTar, type TarEntry } from './tar-index.js';
import { readUpTo } from '../native/file-read.js';
import { checkDigest, indexEntries, configDiffIds, configPlatform, configRun, isIndex, type ImageRun, parseDockerSaveManifest, parseJson, parseManifest, pickAmd64, platformName, type ImageManifest } from './manifests.js';
import { openLayoutFile, readLayoutJson } from './layout-file.js';
import { cancelHash, hashCancelFlag, hashRange } from './hash-range.js';
import { checkBlob, checkDiffId, sha256Of, type BlobClaim } from './verify-blob.js';

/** Entries of all layers of one image, at ~170 bytes each besides the process: a scan stays under ~512 MB. */
export const MAX_IMAGE_ENTRIES = 1_000_000;

export interface ResolvedImage {
  ref: string;
  source: 'docker-archive' | 'oci-archive' | 'oci-dir' | 'registry';
  digest?: string;
  /** A registry image read by tag: the digest the tag named (the index's, for a multi-platform image). */
  tagDigest?: string;
  platform: string;
  skippedPlatforms: string[];
  /** What the image runs, from its config. */
  run?: ImageRun;
  /** Layer digests (or archive names) in order, with their results. */
  layers: { key: string; result: LayerResult; cached: boolean }[];
}

export interface SourceOptions {
  limits: LayerLimits;
  /** Cap on the decompressed bytes of all layers of one image. */
  maxImageBytes: number;
  /** Cap on the entries of all layers of one image (default MAX_IMAGE_ENTRIES). */
  maxImageEntries?: number;
  /** Layer results shared across images: identical layers (same digest) are analysed once. */
  cache: LayerCache;
  onLayer?: (key: string, bytes: number) => void;
  /** Progress within the layers of one image (see LayerProgress). */
  onProgress?: (p: LayerProgress) => void;
}

const JSON_MAX = 4 * 1024 * 1024;

/** A blob's path in a layout; only for a sha256 digest (another string could name any path). */
function blobName(digest: string): string {
  return `blobs/${checkDigest(digest, 'a blob').replace(':', '/')}`;
}

function checkTotal(layers: { result: LayerResult }[], max: number, what: string): void {
  const total = layers.reduce((a, l) => a + l.result.bytes, 0);
  if (total > max) throw new VsysError('IMAGE_TOO_LARGE', `${what}: layers expand to ${total} bytes, over the ${max}-byte image limit (--max-image-size)`);
}

/** Where a scan is inside an image: layer `index` (from 0) of `layers`, `done` of its `total` bytes (undefined: compressed). */
export interface LayerProgress {
  key: string;
  index: number;
  layers: number;
  done: number;
  total: number | undefined;
}

/**
 * Reads one layer under the given limits (the image's remaining budget folded in). `size`: what the
 * image's descriptor says its blob is, when it says (verified, no more is read).
 */
export type LayerReader = (key: string, what: string, limits: LayerLimits, size?: number) => Promise<LayerResult>;

/** A registry blob (or any stream) as a layer reader. */
export function streamedLayers(open: (digest: string) => Readable | Promise<Readable>): LayerReader {
  return async (key, what, limits, size) => readLayer(await open(key), what, limits, size);
}

/** What an image says layer i is: its blob's digest and size (a manifest's descriptor), its diff_id (the config). */
export interface LayerClaim extends BlobClaim {
  diffId?: string;
}

/**
 * The layers a manifest names, in order, each read and analysed once per run (a key already in the
 * cache is not read again). Each layer may expand only to what is left of the image's budget. With
 * `limits.verify`, each layer's bytes are checked against what `claims` says of it (a layer shared
 * with another image is hashed once, and checked against each image's own claims).
 */
export async function collectLayers(keys: string[], read: LayerReader, what: string, o: SourceOptions, cache: LayerCache = o.cache, claims: LayerClaim[] = [], rehash?: Rehash): Promise<ResolvedImage['layers']> {
  const out: ResolvedImage['layers'] = [];
  let total = 0;
  // Entries are held until the image is judged: a bound over all of its layers as well as each one.
  const imageEntries = o.maxImageEntries ?? MAX_IMAGE_ENTRIES;
  let entries = 0;
  for (const [index, k] of keys.entries()) {
    let cached = cache.has(k);
    const onProgress = o.onProgress;
    const limits: LayerLimits = {
      ...o.limits,
      maxLayerBytes: Math.min(o.limits.maxLayerBytes, Math.max(0, o.maxImageBytes - total)),
      ...(onProgress ? { onBytes: (done: number, size: number | undefined) => onProgress({ key: k, index, layers: keys.length, done, total: size }) } : {}),
    };
    const size = claims[index]?.size;
    if (!cached) cache.set(k, read(k, `${what} ${k.slice(0, 19)}`, limits, size));
    let result = cached && o.limits.verify ? await (cache.get(k) as Promise<LayerResult>).catch(() => undefined) : await (cache.get(k) as Promise<LayerResult>);
    // A result another reference gave, checked against this one's claims: a verified blob of digest
    // D and its size is D's bytes wherever D is claimed, so it is used as it is when the key is a
    // digest (a registry's layer shared by several refs is downloaded once). A local blob is still
    // hashed (cheap beside the analysis), so that a file changed on disk is caught; a key that is
    // only a name (docker save's <id>/layer.tar) vouches for nothing: that reference's own is read.
    if (o.limits.verify && cached && (!result || !layerMatches(claims[index] ?? {}, result) || !(await sameBlob(k, result, rehash)))) {
      result = await read(k, `${what} ${k.slice(0, 19)}`, limits, size);
      cached = false;
    }
    if (!result) throw new VsysError('INTERNAL_ERROR', `${what}: layer ${k} has no result`);
    if (o.limits.verify) checkLayer(`${what} layer ${index} (${k})`, claims[index] ?? {}, result);
    total += result.bytes;
    entries += result.ops.length;
    if (entries > imageEntries) throw new VsysError('IMAGE_TOO_LARGE', `${what}: its layers hold more than ${imageEntries} entries in all (${entries} up to layer ${index}), the cap that keeps a scan's memory bounded; stopped there (raise it with --max-image-entries N)`);
    o.onLayer?.(k, result.bytes);
    out.push({ key: k, result, cached });
  }
  checkTotal(out, o.maxImageBytes, what);
  return out;
}

/** The sha256 and size of this reference's own blob under `key` (a local one, hashed on the hashing thread). */
export type Rehash = (key: string) => Promise<{ digest: string; bytes: number } | undefined>;

async function sameBlob(key: string, r: LayerResult, rehash: Rehash | undefined): Promise<boolean> {
  if (!rehash) return /^sha256:[0-9a-f]{64}$/.test(key) && key === r.digests?.blob.digest;
  const own = await rehash(key);
  return own !== undefined && own.digest === r.digests?.blob.digest && own.bytes === r.digests.blob.bytes;
}

function layerMatches(claim: LayerClaim, r: LayerResult): boolean {
  try {
    checkLayer('', claim, r);
    return true;
  } catch {
    return false;
  }
}

/** A layer's digests against an image's claims; a layer read without hashing is an internal error when verifying. */
function checkLayer(what: string, claim: LayerClaim, r: LayerResult): void {
  if (!r.digests) throw new VsysError('INTERNAL_ERROR', `${what}: read without its digests while verifying`);
  checkBlob(what, claim, r.digests.blob);
  if (claim.diffId !== undefined) checkDiffId(what, claim.diffId, r.digests.diffId);
}

/**
 * The diff_ids an image's config lists, one per layer, when verifying (undefined when not). A config
 * that lists another number of layers than its manifest does describes some other image.
 */
function diffIdsFor(cfg: unknown, layers: number, what: string, o: SourceOptions): (string | undefined)[] {
  if (!o.limits.verify) return [];
  const ids = configDiffIds(cfg);
  if (ids?.length !== layers) throw new VsysError('IMAGE_BAD_MANIFEST', `${what}: the config lists ${ids?.length ?? 'no'} diff_ids for ${layers} layers (rootfs.diff_ids); the layers cannot be verified (--no-verify skips this check)`);
  return ids;
}

const GZIP = [0x1f, 0x8b];
const ZSTD = [0x28, 0xb5, 0x2f, 0xfd];

/**
 * A layer blob at [at, at + size) of a local file: read by position when it is a plain tar, else
 * streamed through its decompressor. Verified, a blob of another size than `declared` (its
 * descriptor's) is refused before it is read.
 */
export async function layerInFile(file: string, fd: number, at: number, size: number, what: string, limits: LayerLimits, declared?: number): Promise<LayerResult> {
  if (limits.verify && declared !== undefined) checkBlob(what, { size: declared }, { digest: '', bytes: size });
  const head = Buffer.alloc(4);
  const n = readUpTo(fd, head, 0, Math.min(4, size), at);
  const starts = (magic: number[]) => n >= magic.length && magic.every((b, i) => head[i] === b);
  if (starts(GZIP) || starts(ZSTD)) {
    // Through the descriptor already open (not the path again), left open for the caller to close.
    return readLayer(fs.createReadStream(file, { fd, autoClose: false, start: at, end: at + size - 1, highWaterMark: 4 * 1024 * 1024 }), what, limits, declared);
  }
  // Verified: the same range hashed on another thread while this one walks it (the analysis reads
  // only what it needs; the hash reads all of it, from the page cache the walk fills or warms).
  const cancel = hashCancelFlag();
  const hashed = limits.verify ? hashRange(fd, at, size, cancel) : undefined;
  try {
    const r = await readLayerAt({ fd, path: file, start: at, size }, what, limits);
    if (hashed) {
      const blob = await hashed;
      r.digests = { blob, diffId: blob.digest };
    }
    return r;
  } catch (e) {
    // The layer failed: its hash is of no use, and stops at its next read rather than at the end.
    cancelHash(cancel);
    if (e instanceof VsysError) throw e;
    throw new VsysError('IMAGE_BAD_LAYER', `${what}: ${(e as Error).message}`, { path: file, cause: e });
  } finally {
    // The hashing thread reads through `fd`, which the caller closes once this returns.
    if (hashed) await hashed.catch(() => undefined);
  }
}

/** What a manifest's layer descriptors and its config's diff_ids say of each layer. */
function layerClaims(m: ImageManifest, diffIds: (string | undefined)[]): LayerClaim[] {
  return m.layers.map((l, i) => ({ digest: l.digest, ...(typeof l.size === 'number' ? { size: l.size } : {}), ...(diffIds[i] ? { diffId: diffIds[i] } : {}) }));
}

/** A docker save (before docker 25) config, `<hex>.json`: named by its sha256. */
function legacyConfigKey(name: string): string | undefined {
  const hex = /^([0-9a-f]{64})\.json$/.exec(name)?.[1];
  return hex ? `sha256:${hex}` : undefined;
}

/** `sha256:…` for an archive entry named by its digest (blobs/sha256/…); undefined for other names. */
function digestKey(name: string): string | undefined {
  const hex = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name)?.[1];
  return hex ? `sha256:${hex}` : undefined;
}

/**
 * An archive member's name as tar and docker extract it: leading '/' off, '//' and '.' collapsed,
 * '..' resolved (never above the top), so '/manifest.json', './/manifest.json' and
 * 'a/../manifest.json' are all manifest.json.
 */
export function memberName(name: string): string {
  return path.posix.normalize(`/${name}`).slice(1).replace(/\/$/, '');
}

/** Opens a local image file or fails with a coded error naming it. */
function openImageFile(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new VsysError(err.code === 'ENOENT' ? 'FILE_NOT_FOUND' : 'IO_FAILED', `${file}: ${err.message}`, { path: file, cause: e });
  }
}

/** A manifest, or an index resolved to its linux/amd64 manifest, with the platforms skipped. */
export async function pickManifest(doc: unknown, digest: string | undefined, read: (digest: string, what: string, size?: number) => unknown, where: string): Promise<{ manifest: ImageManifest; digest: string | undefined; platform: string | undefined; skipped: string[] }> {
  let platform: string | undefined;
  let skipped: string[] = [];
  if (isIndex(doc)) {
    const pick = pickAmd64(doc, where);
    skipped = pick.skipped;
    platform = platformName(pick.chosen.platform);
    digest = pick.chosen.digest;
    doc = await read(pick.chosen.digest, 'the index', pick.chosen.size);
  }
  return { manifest: parseManifest(doc, where), digest, platform, skipped };
}

/**
 * A docker-archive or OCI-archive tar: its entries indexed by position (headers only), the manifests
 * read, then each layer they name analysed where it lies. A layer no manifest names is not read.
 */
export async function readArchive(file: string, o: SourceOptions): Promise<ResolvedImage[]> {
  const fd = openImageFile(file);
  try {
    const head = Buffer.alloc(4);
    fs.readSync(fd, head, 0, 4, 0);
    const packed = head[0] === 0x1f && head[1] === 0x8b ? 'gzip' : head.equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])) ? 'zstd' : undefined;
    if (packed) throw new VsysError('IMAGE_COMPRESSED_ARCHIVE', `${file}: a ${packed}-compressed archive; vsys reads image archives as docker save writes them: decompress it first (${packed === 'gzip' ? 'gunzip' : 'unzstd'} -k ${file})`, { path: file });
    const entries = new Map<string, TarEntry>();
    const members = new Set<string>();
    await walkTar(fd, 0, fs.fstatSync(fd).size, file, (e) => {
      if (e.type === 'directory') return;
      const name = memberName(e.name);
      // tar keeps the last of two members of one name, whatever their spellings and types (a link
      // replaces a file); vsys would read the first: which one a reader means is anyone's guess.
      if (members.has(name)) throw new VsysError('IMAGE_DUPLICATE_MEMBER', `${file}: two members named ${name}; an image archive has one of each (which one would docker load?)`, { path: file });
      members.add(name);
      if (e.type === 'file' || e.type === 'contiguous-file') entries.set(name, e);
    });
    const entry = (name: string, what: string, kind: string): TarEntry => {
      const e = entries.get(memberName(name));
      if (!e) throw new VsysError('IMAGE_MISSING_BLOB', `${file}: ${what} names ${kind}${name}, which is not in the archive`, { path: file });
      return e;
    };
    // A JSON member; verified against `claim`, and against its own name when that is a digest.
    const getJson = (name: string, what: string, claim: BlobClaim = {}): unknown => {
      const e = entry(name, what, '');
      if (e.size > JSON_MAX) throw new VsysError('IMAGE_BAD_MANIFEST', `${file}:${name} is ${e.size} bytes, too large for a manifest or config`, { path: file });
      const b = Buffer.alloc(e.size);
      if (readUpTo(fd, b, 0, e.size, e.dataAt) !== e.size) throw new VsysError('IMAGE_BAD_LAYER', `${file}:${name} is cut short`, { path: file });
      if (o.limits.verify) checkBlob(`${file}:${name}`, { digest: claim.digest ?? digestKey(name) ?? legacyConfigKey(name), ...(claim.size !== undefined ? { size: claim.size } : {}) }, { digest: sha256Of(b), bytes: b.length });
      return parseJson(b.toString('utf8'), `${file}:${name}`);
    };
    // Layers by archive name, read once per archive however many images name them; a blob named by
    // its digest is also shared with the other sources of this run.
    const byName = new Map<string, Promise<LayerResult>>();
    const layers = (names: string[], what: string, claims: LayerClaim[]) => {
      for (const n of names) {
        entry(n, what, 'layer ');
        // Analysed already by another source of this run: taken from there (and said to be cached).
        const key = digestKey(n);
        const shared = key ? o.cache.get(key) : undefined;
        if (shared && !byName.has(n)) byName.set(n, shared);
      }
      return collectLayers(names, (name, _what, limits, size) => {
        const e = entries.get(memberName(name)) as TarEntry;
        const p = layerInFile(file, fd, e.dataAt, e.size, `${file}:${name}`, limits, size);
        const key = digestKey(name);
        if (key) o.cache.set(key, p);
        return p;
      }, file, o, byName, claims, async (name) => {
        const e = entries.get(memberName(name));
        return e ? hashRange(fd, e.dataAt, e.size) : undefined;
      });
    };
    const out: ResolvedImage[] = [];
    if (entries.has('manifest.json')) {
      for (const [i, m] of parseDockerSaveManifest(getJson('manifest.json', 'the archive')).entries()) {
        const cfg = getJson(m.config, 'manifest.json');
        const run = configRun(cfg);
        const ref = m.repoTags[0] ?? `${path.basename(file)}#${i}`;
        // docker 25+ names each layer by its digest (blobs/sha256/…): checked too. The config's
        // diff_ids check every layout's layers.
        const ids = diffIdsFor(cfg, m.layers.length, `${file}:${m.config}`, o);
        const claims = m.layers.map((n, j) => ({ ...(digestKey(n) ? { digest: digestKey(n) } : {}), ...(ids[j] ? { diffId: ids[j] } : {}) }));
        out.push({ ref, source: 'docker-archive', platform: configPlatform(cfg), skippedPlatforms: [], ...(run ? { run } : {}), layers: await layers(m.layers, 'manifest.json', claims) });
      }
      return out;
    }
    if (!entries.has('index.json')) throw new VsysError('IMAGE_BAD_MANIFEST', `${file}: neither manifest.json (docker save) nor index.json (OCI layout) in the archive`, { path: file });
    for (const img of await walkIndex(getJson('index.json', 'the archive'), (digest, what, size) => getJson(blobName(digest), what, { digest, ...(size !== undefined ? { size } : {}) }), file)) {
      const cfg = getJson(blobName(img.manifest.config.digest), 'the manifest', img.manifest.config);
      const ls = await layers(img.manifest.layers.map((l) => blobName(l.digest)), 'the manifest', layerClaims(img.manifest, diffIdsFor(cfg, img.manifest.layers.length, `${file}:${img.ref}`, o)));
      const run = configRun(cfg);
      out.push({ ref: img.ref, source: 'oci-archive', digest: img.digest, platform: img.platform, skippedPlatforms: img.skipped, ...(run ? { run } : {}), layers: ls.map((l) => ({ ...l, key: `sha256:${l.key.slice('blobs/sha256/'.length)}` })) });
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

/** An image an OCI index names: its manifest (linux/amd64 chosen from a nested index) and platform. */
interface IndexedImage {
  ref: string;
  digest: string;
  platform: string;
  skipped: string[];
  manifest: ImageManifest;
}

/**
 * The images of an OCI index.json, in order, following nested indexes to linux/amd64. `read` gets a
 * JSON blob by digest (from an archive's entries or a layout directory's files).
 */
async function walkIndex(index: unknown, read: (digest: string, what: string, size?: number) => unknown, where: string): Promise<IndexedImage[]> {
  const out: IndexedImage[] = [];
  for (const top of indexEntries(index, `${where}:index.json`)) {
    const ref = top.annotations?.['org.opencontainers.image.ref.name'] ?? top.digest.slice(0, 19);
    const m = await pickManifest(read(top.digest, 'index.json', top.size), top.digest, read, `${where}:${ref}`);
    const platform = m.platform ?? (top.platform ? platformName(top.platform) : configPlatform(read(m.manifest.config.digest, 'the manifest', m.manifest.config.size)));
    out.push({ ref, digest: m.digest ?? top.digest, platform, skipped: m.skipped, manifest: m.manifest });
  }
  return out;
}

/** An OCI image layout directory (`oci:DIR`): every file read through layout-file.ts, so never one outside it. */
export async function readOciDir(dir: string, o: SourceOptions): Promise<ResolvedImage[]> {
  const read = (rel: string, what: string, claim: BlobClaim = {}): unknown => {
    const bytes = readLayoutJson(dir, rel, what, JSON_MAX);
    const p = path.join(dir, rel);
    if (o.limits.verify && claim.digest) checkBlob(p, claim, { digest: sha256Of(bytes), bytes: bytes.length });
    return parseJson(bytes.toString('utf8'), p);
  };
  /** A layer blob's descriptor open for `use`, closed after. */
  const withBlob = async <T>(d: string, use: (file: string, fd: number) => Promise<T>): Promise<T> => {
    const fd = openLayoutFile(dir, blobName(d), 'the manifest');
    try {
      return await use(path.join(dir, blobName(d)), fd);
    } finally {
      fs.closeSync(fd);
    }
  };
  if (!fs.existsSync(path.join(dir, 'oci-layout'))) throw new VsysError('IMAGE_BAD_MANIFEST', `${dir}: no oci-layout file; not an OCI image layout`, { path: dir });
  const out: ResolvedImage[] = [];
  for (const img of await walkIndex(read('index.json', 'the layout'), (digest, what, size) => read(blobName(digest), what, { digest, ...(size !== undefined ? { size } : {}) }), dir)) {
    const cfg = read(blobName(img.manifest.config.digest), 'the manifest', img.manifest.config);
    // Every layer there (and a file inside the layout) before any is read.
    for (const l of img.manifest.layers) fs.closeSync(openLayoutFile(dir, blobName(l.digest), `the manifest (layer ${l.digest})`));
    const ls = await collectLayers(img.manifest.layers.map((l) => l.digest), (d, what, limits, size) => withBlob(d, (file, fd) => layerInFile(file, fd, 0, fs.fstatSync(fd).size, what, limits, size)), dir, o, o.cache, layerClaims(img.manifest, diffIdsFor(cfg, img.manifest.layers.length, `${dir}:${img.ref}`, o)), (d) => withBlob(d, (_file, fd) => hashRange(fd, 0, fs.fstatSync(fd).size)));
    const run = configRun(cfg);
    out.push({ ref: img.ref, source: 'oci-dir', digest: img.digest, platform: img.platform, skippedPlatforms: img.skipped, ...(run ? { run } : {}), layers: ls });
  }
  return out;
}
