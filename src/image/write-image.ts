// A new image from an old one plus one layer (OCI image-spec: manifest.md, config.md rootfs and
// history, image-layout.md), and the archives it is written as: a docker-archive as docker 25+
// saves it (an OCI layout that also holds manifest.json and repositories) or an OCI layout in a tar.
// The original layers are copied byte for byte, so their digests stay; the config and manifest are
// new. Written to a temporary name beside the output and renamed: nothing is left on failure.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { VsysError } from '../errors.js';
import { CONFIG_MEDIA, LAYER_MEDIA, type BlobAt, type ManifestFamily, type SourceImage } from './read-image.js';
import { TarWriter, type FullHeader } from './tar-entries.js';

export const MANIFEST_MEDIA = { oci: 'application/vnd.oci.image.manifest.v1+json', docker: 'application/vnd.docker.distribution.manifest.v2+json' } as const;
const INDEX_MEDIA = 'application/vnd.oci.image.index.v1+json';

/** A blob of the new image: bytes in memory (config, manifest, the added layer) or a range of the source. */
export type Blob = { digest: string; size: number } & ({ bytes: Buffer } | { at: BlobAt });

export interface ImageToWrite {
  family: ManifestFamily;
  manifest: Blob & { bytes: Buffer; mediaType: string };
  config: Blob & { bytes: Buffer };
  layers: (Blob & { mediaType: string; diffId: string })[];
}

/** The layer added: an uncompressed tar, and the history line that says what it holds. */
export interface AddedLayer {
  tar: Buffer;
  createdBy: string;
  /** RFC 3339 time of the change (config `created` and the history entry). */
  created: string;
}

export function sha256(b: Uint8Array): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** Docker schema 2 layer media types as OCI ones, and back: the blobs stay, only their labels change. */
function layerMediaFor(mediaType: string, family: ManifestFamily): string {
  const kind = /gzip/.test(mediaType) ? 'gzip' : /zstd/.test(mediaType) ? 'zstd' : /tar$/.test(mediaType) ? 'none' : undefined;
  if (kind === undefined) return mediaType;
  if (/foreign|nondistributable/.test(mediaType)) return mediaType;
  return LAYER_MEDIA[family][kind];
}

/** The config with one more diff_id and history entry (placeholders first when it had no history). */
export function extendConfig(doc: Record<string, unknown>, diffId: string, layers: number, added: AddedLayer): Record<string, unknown> {
  const cfg = structuredClone(doc);
  const rootfs = cfg.rootfs as { diff_ids: string[] };
  rootfs.diff_ids = [...rootfs.diff_ids, diffId];
  const history = Array.isArray(cfg.history) ? (cfg.history as Record<string, unknown>[]) : Array.from({ length: layers }, () => ({ comment: 'history not recorded in the original image' }));
  cfg.history = [...history, { created: added.created, created_by: added.createdBy, comment: 'vsys fix' }];
  cfg.created = added.created;
  return cfg;
}

/**
 * The image to write: the source's layers, with `added` on top when given (config extended),
 * described in `family`'s media types.
 */
export function composeImage(src: SourceImage, added: AddedLayer | undefined, family: ManifestFamily): ImageToWrite {
  const layers: ImageToWrite['layers'] = src.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: layerMediaFor(l.mediaType, family), diffId: l.diffId, at: l.blob }));
  let configBytes = src.config.bytes;
  if (added) {
    const digest = sha256(added.tar);
    layers.push({ digest, size: added.tar.length, mediaType: LAYER_MEDIA[family].none, diffId: digest, bytes: added.tar });
    configBytes = Buffer.from(JSON.stringify(extendConfig(src.config.doc, digest, src.layers.length, added)));
  }
  const config = { digest: added ? sha256(configBytes) : src.config.digest, size: configBytes.length, bytes: configBytes };
  const annotations = (l: number) => src.layers[l]?.annotations;
  const manifestDoc = {
    schemaVersion: 2,
    mediaType: MANIFEST_MEDIA[family],
    config: { mediaType: CONFIG_MEDIA[family], digest: config.digest, size: config.size },
    layers: layers.map((l, i) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, ...(annotations(i) ? { annotations: annotations(i) } : {}) })),
  };
  const bytes = Buffer.from(JSON.stringify(manifestDoc));
  return { family, manifest: { digest: sha256(bytes), size: bytes.length, bytes, mediaType: MANIFEST_MEDIA[family] }, config, layers };
}

export type ArchiveFormat = 'docker' | 'oci';

/** NAME:TAG split, docker's way (a colon after the last slash). */
export function splitTag(name: string): { repo: string; tag: string } {
  const colon = name.lastIndexOf(':');
  return colon > name.lastIndexOf('/') ? { repo: name.slice(0, colon), tag: name.slice(colon + 1) } : { repo: name, tag: 'latest' };
}

/** docker.io/library/NAME, as the docker CLI normalises a short name. */
function fullName(repo: string): string {
  const first = repo.split('/')[0] ?? '';
  if (repo.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) return repo;
  return repo.includes('/') ? `docker.io/${repo}` : `docker.io/library/${repo}`;
}

const fileHeader = (name: string, size: number): FullHeader => ({ name, type: 'file', size, mode: 0o644, uid: 0, gid: 0, mtime: 0, uname: '', gname: '' });

function blobPath(digest: string): string {
  return `blobs/${digest.replace(':', '/')}`;
}

/** The blobs of an image into the tar: manifest, config, layers (each once). */
function writeBlobs(w: TarWriter, img: ImageToWrite, fds: Map<string, number>): void {
  const seen = new Set<string>();
  w.add({ ...fileHeader('blobs/', 0), type: 'directory', mode: 0o755 });
  w.add({ ...fileHeader('blobs/sha256/', 0), type: 'directory', mode: 0o755 });
  for (const b of [img.manifest, img.config, ...img.layers] as Blob[]) {
    if (seen.has(b.digest)) continue;
    seen.add(b.digest);
    if ('bytes' in b) w.add(fileHeader(blobPath(b.digest), b.size), b.bytes);
    else {
      let fd = fds.get(b.at.file);
      if (fd === undefined) fds.set(b.at.file, (fd = fs.openSync(b.at.file, 'r')));
      w.addRange(fileHeader(blobPath(b.digest), b.at.size), fd, b.at.start, b.at.size);
    }
  }
}

/**
 * Writes `img` to `out` as a docker-archive or an OCI layout tar, named `name` (NAME:TAG) when
 * given. Through `out`'s temporary sibling, renamed at the end.
 */
export function writeImageArchive(out: string, img: ImageToWrite, format: ArchiveFormat, name: string | undefined): void {
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.vsys-tmp-${process.pid}`);
  const fds = new Map<string, number>();
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
    const w = new TarWriter(fd);
    writeBlobs(w, img, fds);
    const tagged = name ? splitTag(name) : undefined;
    const annotations: Record<string, string> = {};
    if (tagged) {
      if (format === 'docker') annotations['io.containerd.image.name'] = `${fullName(tagged.repo)}:${tagged.tag}`;
      annotations['org.opencontainers.image.ref.name'] = tagged.tag;
    }
    const index = {
      schemaVersion: 2,
      mediaType: INDEX_MEDIA,
      manifests: [{ mediaType: img.manifest.mediaType, digest: img.manifest.digest, size: img.manifest.size, ...(tagged ? { annotations } : {}) }],
    };
    const put = (n: string, v: unknown) => {
      const b = Buffer.from(JSON.stringify(v));
      w.add(fileHeader(n, b.length), b);
    };
    put('index.json', index);
    if (format === 'docker') {
      put('manifest.json', [{ Config: blobPath(img.config.digest), RepoTags: tagged ? [`${tagged.repo}:${tagged.tag}`] : [], Layers: img.layers.map((l) => blobPath(l.digest)) }]);
    }
    put('oci-layout', { imageLayoutVersion: '1.0.0' });
    const top = img.layers.at(-1);
    if (format === 'docker' && tagged && top) put('repositories', { [tagged.repo]: { [tagged.tag]: top.digest.slice(7) } });
    w.end();
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, out);
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    if (e instanceof VsysError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new VsysError('IO_FAILED', `${out}: ${err.message}`, { path: out, cause: e, ...(err.syscall ? { syscall: err.syscall } : {}) });
  } finally {
    for (const f of fds.values()) fs.closeSync(f);
  }
}
