// One image as it is stored, for rewriting it: its config (raw bytes), the manifest's layer
// descriptors and where each layer blob's bytes lie (a range of an archive, a layout's blob file,
// or a registry blob downloaded to a temporary file and checked against its digest). The sources
// are the scan's (sources.ts): docker-archive or OCI tar, oci:DIR, registry://.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { VsysError } from '../errors.js';
import { readUpTo } from '../native/file-read.js';
import { configPlatform, parseDockerSaveManifest, parseJson, type Descriptor, type ImageManifest } from './manifests.js';
import { parseRegistryRef, RegistryClient, type RegistryOptions } from './registry.js';
import { pickManifest, type ResolvedImage } from './sources.js';
import { walkTar, type TarEntry } from './tar-index.js';

/** Bytes [start, start + size) of a file. */
export interface BlobAt {
  file: string;
  start: number;
  size: number;
}

export interface SourceLayer {
  /** The blob's digest (compressed or not, as stored) and media type. */
  digest: string;
  mediaType: string;
  size: number;
  /** The digest of the uncompressed tar (config rootfs.diff_ids). */
  diffId: string;
  annotations?: Record<string, string>;
  blob: BlobAt;
}

export type ManifestFamily = 'oci' | 'docker';

export interface SourceImage {
  ref: string;
  source: ResolvedImage['source'];
  /** The manifest's media types: OCI, or Docker's schema 2 (kept when pushed back). */
  family: ManifestFamily;
  /** Names the image carries: RepoTags of a docker save, the ref.name of an OCI layout, the registry's repo:tag. */
  names: string[];
  config: { bytes: Buffer; digest: string; doc: Record<string, unknown> };
  layers: SourceLayer[];
  platform: string;
  /** Downloaded blobs live here; remove with `dispose`. */
  tempDir?: string;
}

export const LAYER_MEDIA = {
  oci: { none: 'application/vnd.oci.image.layer.v1.tar', gzip: 'application/vnd.oci.image.layer.v1.tar+gzip', zstd: 'application/vnd.oci.image.layer.v1.tar+zstd' },
  docker: { none: 'application/vnd.docker.image.rootfs.diff.tar', gzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip', zstd: 'application/vnd.oci.image.layer.v1.tar+zstd' },
} as const;

export const CONFIG_MEDIA = { oci: 'application/vnd.oci.image.config.v1+json', docker: 'application/vnd.docker.container.image.v1+json' } as const;

const JSON_MAX = 4 * 1024 * 1024;

export function dispose(img: SourceImage): void {
  if (img.tempDir) fs.rmSync(img.tempDir, { recursive: true, force: true });
}

function blobName(digest: string): string {
  return `blobs/${digest.replace(':', '/')}`;
}

function sha256Range(b: BlobAt): string {
  const fd = fs.openSync(b.file, 'r');
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
    for (let done = 0; done < b.size; ) {
      const n = readUpTo(fd, buf, 0, Math.min(buf.length, b.size - done), b.start + done);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
      done += n;
    }
    return `sha256:${h.digest('hex')}`;
  } finally {
    fs.closeSync(fd);
  }
}

/** A layer blob's compression, from its first bytes. */
export function compressionOf(b: BlobAt): 'gzip' | 'zstd' | 'none' {
  const head = Buffer.alloc(4);
  const fd = fs.openSync(b.file, 'r');
  try {
    readUpTo(fd, head, 0, Math.min(4, b.size), b.start);
  } finally {
    fs.closeSync(fd);
  }
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return 'zstd';
  return 'none';
}

function configDoc(bytes: Buffer, where: string): Record<string, unknown> {
  const doc = parseJson(bytes.toString('utf8'), where);
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new VsysError('IMAGE_BAD_MANIFEST', `${where}: the config is not a JSON object`);
  return doc as Record<string, unknown>;
}

function diffIdsOf(cfg: Record<string, unknown>, layers: number, where: string): string[] {
  const ids = (cfg.rootfs as { diff_ids?: unknown } | undefined)?.diff_ids;
  if (!Array.isArray(ids) || ids.length !== layers || !ids.every((d) => typeof d === 'string')) {
    throw new VsysError('IMAGE_BAD_MANIFEST', `${where}: the config's rootfs.diff_ids do not name the manifest's ${layers} layers`);
  }
  return ids as string[];
}

function familyOf(manifest: ImageManifest & { mediaType?: string }): ManifestFamily {
  return manifest.config.mediaType === CONFIG_MEDIA.docker || manifest.mediaType === 'application/vnd.docker.distribution.manifest.v2+json' ? 'docker' : 'oci';
}

/** One image of an OCI layout (archive or directory): `json` reads a JSON file, `blob` locates a blob. */
async function fromLayout(where: string, source: SourceImage['source'], json: (name: string) => Buffer, blob: (digest: string) => BlobAt): Promise<SourceImage> {
  const index = parseJson(json('index.json').toString('utf8'), `${where}:index.json`) as { manifests?: Descriptor[] };
  const tops = index.manifests ?? [];
  if (tops.length !== 1) throw new VsysError('IMAGE_BAD_MANIFEST', `${where}: index.json names ${tops.length} images; vsys fix and vsys run take one image (save or copy just that one)`);
  const top = tops[0] as Descriptor;
  const read = (d: string) => parseJson(json(blobName(d)).toString('utf8'), `${where}:${blobName(d)}`);
  const picked = await pickManifest(read(top.digest), top.digest, read, where);
  const manifest = picked.manifest as ImageManifest & { mediaType?: string };
  const cfgBytes = json(blobName(manifest.config.digest));
  const cfg = configDoc(cfgBytes, where);
  const diffIds = diffIdsOf(cfg, manifest.layers.length, where);
  const name = top.annotations?.['io.containerd.image.name'] ?? top.annotations?.['org.opencontainers.image.ref.name'];
  return {
    ref: where, source, family: familyOf(manifest), names: name ? [name] : [],
    config: { bytes: cfgBytes, digest: manifest.config.digest, doc: cfg },
    layers: manifest.layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType ?? LAYER_MEDIA.oci.none, size: l.size ?? blob(l.digest).size, diffId: diffIds[i] as string, ...(l.annotations ? { annotations: l.annotations } : {}), blob: blob(l.digest) })),
    platform: picked.platform ?? configPlatform(cfg),
  };
}

/** A docker-archive (docker save: manifest.json) or an OCI layout packed in a tar. */
async function fromArchive(file: string): Promise<SourceImage> {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new VsysError(err.code === 'ENOENT' ? 'FILE_NOT_FOUND' : 'IO_FAILED', `${file}: ${err.message}`, { path: file, cause: e });
  }
  const entries = new Map<string, TarEntry>();
  try {
    await walkTar(fd, 0, fs.fstatSync(fd).size, file, (e) => {
      if (e.type === 'file' || e.type === 'contiguous-file') entries.set(e.name.replace(/^(\.\/)+/, ''), e);
    }, 64 * 1024);
    const at = (name: string): BlobAt => {
      const e = entries.get(name);
      if (!e) throw new VsysError('IMAGE_MISSING_BLOB', `${file}: names ${name}, which is not in the archive`, { path: file });
      return { file, start: e.dataAt, size: e.size };
    };
    const json = (name: string): Buffer => {
      const b = at(name);
      if (b.size > JSON_MAX) throw new VsysError('IMAGE_BAD_MANIFEST', `${file}:${name} is ${b.size} bytes, too large for a manifest or config`, { path: file });
      const buf = Buffer.alloc(b.size);
      if (readUpTo(fd, buf, 0, b.size, b.start) !== b.size) throw new VsysError('IMAGE_BAD_LAYER', `${file}:${name} is cut short`, { path: file });
      return buf;
    };
    if (!entries.has('manifest.json')) {
      if (!entries.has('index.json')) throw new VsysError('IMAGE_BAD_MANIFEST', `${file}: neither manifest.json (docker save) nor index.json (OCI layout) in the archive`, { path: file });
      return await fromLayout(file, 'oci-archive', json, (d) => at(blobName(d)));
    }
    const saved = parseDockerSaveManifest(parseJson(json('manifest.json').toString('utf8'), `${file}:manifest.json`));
    if (saved.length !== 1) throw new VsysError('IMAGE_BAD_MANIFEST', `${file}: holds ${saved.length} images; vsys fix and vsys run take one image (docker save just that one)`, { path: file });
    const m = saved[0] as (typeof saved)[number];
    const cfgBytes = json(m.config);
    const cfg = configDoc(cfgBytes, `${file}:${m.config}`);
    const diffIds = diffIdsOf(cfg, m.layers.length, `${file}:${m.config}`);
    const layers = m.layers.map((name, i): SourceLayer => {
      const blob = at(name);
      const hex = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name)?.[1];
      return { digest: hex ? `sha256:${hex}` : sha256Range(blob), mediaType: LAYER_MEDIA.oci[compressionOf(blob)], size: blob.size, diffId: diffIds[i] as string, blob };
    });
    const cfgHex = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(m.config)?.[1];
    return {
      ref: file, source: 'docker-archive', family: 'oci', names: m.repoTags,
      config: { bytes: cfgBytes, digest: cfgHex ? `sha256:${cfgHex}` : `sha256:${createHash('sha256').update(cfgBytes).digest('hex')}`, doc: cfg },
      layers, platform: configPlatform(cfg),
    };
  } finally {
    fs.closeSync(fd);
  }
}

function fromOciDir(dir: string): Promise<SourceImage> {
  if (!fs.existsSync(path.join(dir, 'oci-layout'))) throw new VsysError('IMAGE_BAD_MANIFEST', `${dir}: no oci-layout file; not an OCI image layout`, { path: dir });
  const file = (name: string): string => {
    const p = path.join(dir, name);
    if (!fs.existsSync(p)) throw new VsysError('IMAGE_MISSING_BLOB', `${dir}: names ${name}, which is missing`, { path: p });
    return p;
  };
  return fromLayout(dir, 'oci-dir', (name) => fs.readFileSync(file(name)), (d) => {
    const p = file(blobName(d));
    return { file: p, start: 0, size: fs.statSync(p).size };
  });
}

/** Streams a registry blob into `dest`, checking its digest; fails on a mismatch. */
async function download(client: RegistryClient, digest: string, dest: string): Promise<number> {
  const h = createHash('sha256');
  let size = 0;
  const out = fs.createWriteStream(dest);
  await pipeline(await client.blobStream(digest), new Writable({
    write(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      size += chunk.length;
      out.write(chunk, cb);
    },
    final(cb) {
      out.end(cb);
    },
  }));
  const got = `sha256:${h.digest('hex')}`;
  if (got !== digest) throw new VsysError('REGISTRY_FAILED', `blob ${digest}: the registry sent bytes whose digest is ${got}`);
  return size;
}

async function fromRegistry(refText: string, o: RegistryOptions): Promise<SourceImage> {
  const ref = parseRegistryRef(refText);
  const client = new RegistryClient(ref, o);
  const top = await client.manifest(ref.digest ?? (ref.tag as string));
  const picked = await pickManifest(top.doc, top.digest, async (d) => (await client.manifest(d)).doc, refText);
  const manifest = picked.manifest as ImageManifest & { mediaType?: string };
  const cfgBytes = await client.blobBytes(manifest.config.digest);
  const cfg = configDoc(cfgBytes, `${refText} config`);
  const diffIds = diffIdsOf(cfg, manifest.layers.length, refText);
  const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-fix-blobs-'));
  try {
    const layers: SourceLayer[] = [];
    for (const [i, l] of manifest.layers.entries()) {
      const file = path.join(tempDir, l.digest.replace(':', '-'));
      const size = await download(client, l.digest, file);
      layers.push({ digest: l.digest, mediaType: l.mediaType ?? LAYER_MEDIA.oci.gzip, size, diffId: diffIds[i] as string, ...(l.annotations ? { annotations: l.annotations } : {}), blob: { file, start: 0, size } });
    }
    return {
      ref: refText.replace(/^registry:\/\//, ''), source: 'registry', family: familyOf(manifest), names: [`${ref.host}/${ref.repo}${ref.tag ? `:${ref.tag}` : ''}`],
      config: { bytes: cfgBytes, digest: manifest.config.digest, doc: cfg }, layers, platform: picked.platform ?? configPlatform(cfg), tempDir,
    };
  } catch (e) {
    fs.rmSync(tempDir, { recursive: true, force: true });
    throw e;
  }
}

/** The image a reference names, as stored. One image only: an archive or index holding several is refused. */
export async function readSourceImage(ref: string, o: RegistryOptions = {}): Promise<SourceImage> {
  if (ref.startsWith('registry://')) return fromRegistry(ref, o);
  if (ref.startsWith('oci:')) return fromOciDir(ref.slice(4));
  const head = Buffer.alloc(4);
  try {
    const fd = fs.openSync(ref, 'r');
    fs.readSync(fd, head, 0, 4, 0);
    fs.closeSync(fd);
  } catch {
    // fromArchive says what is wrong
  }
  if ((head[0] === 0x1f && head[1] === 0x8b) || head.equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) {
    throw new VsysError('IMAGE_COMPRESSED_ARCHIVE', `${ref}: a compressed archive; decompress it first`, { path: ref });
  }
  return fromArchive(ref);
}
