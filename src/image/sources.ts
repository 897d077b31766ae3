// Where images come from: a `docker save` archive or an OCI layout packed in a tar (read in one
// streaming pass: layers are analysed as they pass, manifests kept, the order applied after), an
// OCI layout directory, or a registry. Each yields images as (manifest, config, layer results).
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { VsysError } from '../errors.js';
import { readLayer, type LayerLimits, type LayerResult } from './read-layer.js';
import { configPlatform, isIndex, parseDockerSaveManifest, parseJson, parseManifest, pickAmd64, platformName, type Descriptor, type ImageManifest } from './manifests.js';

export interface ResolvedImage {
  ref: string;
  source: 'docker-archive' | 'oci-archive' | 'oci-dir' | 'registry';
  digest?: string;
  platform: string;
  skippedPlatforms: string[];
  /** Layer digests (or archive names) in order, with their results. */
  layers: { key: string; result: LayerResult; cached: boolean }[];
}

export interface SourceOptions {
  limits: LayerLimits;
  /** Cap on the decompressed bytes of all layers of one image. */
  maxImageBytes: number;
  /** Layer results shared across images: identical layers (same digest) are analysed once. */
  cache: Map<string, Promise<LayerResult>>;
  onLayer?: (key: string, bytes: number) => void;
}

const JSON_MAX = 4 * 1024 * 1024;

function blobName(digest: string): string {
  return `blobs/${digest.replace(':', '/')}`;
}

function checkTotal(layers: { result: LayerResult }[], max: number, what: string): void {
  const total = layers.reduce((a, l) => a + l.result.bytes, 0);
  if (total > max) throw new VsysError('IMAGE_TOO_LARGE', `${what}: layers expand to ${total} bytes, over the ${max}-byte image limit (--max-image-size)`);
}

/**
 * The layers a manifest names, in order, each read and analysed once per run (a digest already in
 * the cache is not read again); `open` gives a layer blob's bytes as a stream.
 */
export async function collectLayers(digests: string[], open: (digest: string) => Readable | Promise<Readable>, what: string, o: SourceOptions): Promise<ResolvedImage['layers']> {
  const out: ResolvedImage['layers'] = [];
  for (const d of digests) {
    const cached = o.cache.has(d);
    if (!cached) o.cache.set(d, Promise.resolve().then(() => open(d)).then((src) => readLayer(src, `${what} ${d.slice(0, 19)}`, o.limits)));
    const result = await (o.cache.get(d) as Promise<LayerResult>);
    o.onLayer?.(d, result.bytes);
    out.push({ key: d, result, cached });
  }
  checkTotal(out, o.maxImageBytes, what);
  return out;
}

/** A manifest, or an index resolved to its linux/amd64 manifest, with the platforms skipped. */
export async function pickManifest(doc: unknown, digest: string | undefined, read: (digest: string, what: string) => unknown, where: string): Promise<{ manifest: ImageManifest; digest: string | undefined; platform: string | undefined; skipped: string[] }> {
  let platform: string | undefined;
  let skipped: string[] = [];
  if (isIndex(doc)) {
    const pick = pickAmd64(doc, where);
    skipped = pick.skipped;
    platform = platformName(pick.chosen.platform);
    digest = pick.chosen.digest;
    doc = await read(pick.chosen.digest, 'the index');
  }
  return { manifest: parseManifest(doc, where), digest, platform, skipped };
}

/** A docker-archive or OCI-archive tar: one pass. */
export async function readArchive(file: string, o: SourceOptions): Promise<ResolvedImage[]> {
  const jsons = new Map<string, string>();
  const layers = new Map<string, LayerResult>();
  const cachedNames = new Set<string>();
  const extract = tar.extract();
  let total = 0;
  extract.on('entry', (header, body, next) => {
    const name = header.name.replace(/^\.\//, '');
    const size = header.size ?? 0;
    if (header.type !== 'file' && header.type !== 'contiguous-file') {
      body.resume();
      body.on('end', () => next());
      return;
    }
    const node = Readable.from(body as AsyncIterable<Buffer>);
    const isJsonName = /(^|\/)(manifest|index)\.json$|^oci-layout$|^repositories$|\.json$/.test(name);
    const handle = async () => {
      // Configs and manifests are JSON ('{'); anything else in the archive is taken for a layer.
      const it = node[Symbol.asyncIterator]();
      const first = await it.next();
      const head: Buffer = first.done ? Buffer.alloc(0) : (first.value as Buffer);
      const rest = Readable.from((async function* () {
        if (!first.done) yield head;
        for (;;) {
          const n = await it.next();
          if (n.done) return;
          yield n.value as Buffer;
        }
      })());
      if (isJsonName || (size <= JSON_MAX && head[0] === 0x7b)) {
        const chunks: Buffer[] = [];
        for await (const c of rest) chunks.push(c as Buffer);
        jsons.set(name, Buffer.concat(chunks).toString('utf8'));
        return;
      }
      // A blob named by its digest that another image of this run already analysed: skip its data.
      const digest = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name)?.[1];
      const key = digest ? `sha256:${digest}` : undefined;
      if (key && o.cache.has(key)) {
        rest.resume();
        await new Promise((r) => rest.on('end', r));
        const r = await (o.cache.get(key) as Promise<LayerResult>);
        layers.set(name, r);
        cachedNames.add(name);
        return;
      }
      const p = readLayer(rest, `${file}:${name}`, { ...o.limits, maxLayerBytes: Math.min(o.limits.maxLayerBytes, Math.max(0, o.maxImageBytes - total)) });
      if (key) o.cache.set(key, p);
      const r = await p;
      total += r.bytes;
      layers.set(name, r);
      o.onLayer?.(name, r.bytes);
    };
    handle().then(() => next(), (e) => next(e as Error));
  });
  try {
    await pipeline(fs.createReadStream(file, { highWaterMark: 4 * 1024 * 1024 }), extract);
  } catch (e) {
    if (e instanceof VsysError) throw e;
    throw new VsysError('IMAGE_BAD_LAYER', `${file}: ${(e as Error).message} (truncated or not a tar?)`, { path: file, cause: e });
  }
  const getJson = (name: string, what: string): unknown => {
    const t = jsons.get(name);
    if (t === undefined) throw new VsysError('IMAGE_MISSING_BLOB', `${file}: ${what} names ${name}, which is not in the archive`, { path: file });
    return parseJson(t, `${file}:${name}`);
  };
  const getLayer = (name: string, what: string): LayerResult => {
    const l = layers.get(name);
    if (!l) throw new VsysError('IMAGE_MISSING_BLOB', `${file}: ${what} names layer ${name}, which is not in the archive`, { path: file });
    return l;
  };
  const out: ResolvedImage[] = [];
  if (jsons.has('manifest.json')) {
    for (const [i, m] of parseDockerSaveManifest(getJson('manifest.json', 'the archive')).entries()) {
      const cfg = getJson(m.config, 'manifest.json');
      const ls = m.layers.map((l) => ({ key: l, result: getLayer(l, 'manifest.json'), cached: cachedNames.has(l) }));
      checkTotal(ls, o.maxImageBytes, file);
      out.push({ ref: m.repoTags[0] ?? `${path.basename(file)}#${i}`, source: 'docker-archive', platform: configPlatform(cfg), skippedPlatforms: [], layers: ls });
    }
    return out;
  }
  if (!jsons.has('index.json')) throw new VsysError('IMAGE_BAD_MANIFEST', `${file}: neither manifest.json (docker save) nor index.json (OCI layout) in the archive`, { path: file });
  for (const img of await walkIndex(getJson('index.json', 'the archive'), (digest, what) => getJson(blobName(digest), what), file)) {
    const ls = img.manifest.layers.map((l) => ({ key: l.digest, result: getLayer(blobName(l.digest), 'the manifest'), cached: cachedNames.has(blobName(l.digest)) }));
    checkTotal(ls, o.maxImageBytes, file);
    out.push({ ref: img.ref, source: 'oci-archive', digest: img.digest, platform: img.platform, skippedPlatforms: img.skipped, layers: ls });
  }
  return out;
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
async function walkIndex(index: unknown, read: (digest: string, what: string) => unknown, where: string): Promise<IndexedImage[]> {
  const out: IndexedImage[] = [];
  for (const top of (index as { manifests?: Descriptor[] }).manifests ?? []) {
    const ref = top.annotations?.['org.opencontainers.image.ref.name'] ?? top.digest.slice(0, 19);
    const m = await pickManifest(read(top.digest, 'index.json'), top.digest, read, `${where}:${ref}`);
    const platform = m.platform ?? (top.platform ? platformName(top.platform) : configPlatform(read(m.manifest.config.digest, 'the manifest')));
    out.push({ ref, digest: m.digest ?? top.digest, platform, skipped: m.skipped, manifest: m.manifest });
  }
  return out;
}

/** An OCI image layout directory (`oci:DIR`). */
export async function readOciDir(dir: string, o: SourceOptions): Promise<ResolvedImage[]> {
  const read = (rel: string, what: string): unknown => {
    const p = path.join(dir, rel);
    let text: string;
    try {
      text = fs.readFileSync(p, 'utf8');
    } catch {
      throw new VsysError('IMAGE_MISSING_BLOB', `${dir}: ${what} names ${rel}, which is missing`, { path: p });
    }
    return parseJson(text, p);
  };
  if (!fs.existsSync(path.join(dir, 'oci-layout'))) throw new VsysError('IMAGE_BAD_MANIFEST', `${dir}: no oci-layout file; not an OCI image layout`, { path: dir });
  const out: ResolvedImage[] = [];
  for (const img of await walkIndex(read('index.json', 'the layout'), (digest, what) => read(blobName(digest), what), dir)) {
    for (const l of img.manifest.layers) {
      const p = path.join(dir, blobName(l.digest));
      if (!fs.existsSync(p)) throw new VsysError('IMAGE_MISSING_BLOB', `${dir}: the manifest names layer ${l.digest}, which is missing`, { path: p });
    }
    const ls = await collectLayers(img.manifest.layers.map((l) => l.digest), (d) => fs.createReadStream(path.join(dir, blobName(d)), { highWaterMark: 4 * 1024 * 1024 }), dir, o);
    out.push({ ref: img.ref, source: 'oci-dir', digest: img.digest, platform: img.platform, skippedPlatforms: img.skipped, layers: ls });
  }
  return out;
}
