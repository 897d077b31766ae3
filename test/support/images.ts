// Container images built from directories for the image scanner's tests: layer tars made by the `tar`
// CLI, OCI image layouts (OCI image-spec v1.1 image-layout.md) and `docker save` archives (docker 25+).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

export { pathTraversalLayer, symlinkLoopLayer, decompressionBomb, truncatedTar } from './hostile-layers.js';

export type Compression = 'gzip' | 'zstd' | 'none';

export interface LayerSpec {
  /** Directory whose contents become the layer (entries are `./usr/bin/x`, …). */
  dir: string;
  compress?: Compression;
  /**
   * 'pax' (default) writes plain ustar headers and a PAX header only where ustar cannot hold a field,
   * as Go's archive/tar in docker and buildkit does; 'gnu' is GNU tar's own format (././@LongLink).
   */
  format?: 'pax' | 'gnu';
}

/** A ready-made, uncompressed layer tar (for example a hostile one from hostile-layers.ts). */
export interface TarLayerSpec {
  tar: string;
  compress?: Compression;
}

export type AnyLayerSpec = LayerSpec | TarLayerSpec;

export interface ImageOptions {
  /** `name:tag`; default `vsys-test:latest`. In an OCI layout the tag becomes the ref.name annotation. */
  repoTag?: string;
  os?: string;
  architecture?: string;
  variant?: string;
  /** The config's `config` member (Env, Entrypoint, Cmd, WorkingDir, User …). */
  config?: Record<string, unknown>;
  /**
   * Leave one blob out while the manifests still name it: a digest (`sha256:<hex>` or `<hex>`), or by
   * role, `'config'`, `'manifest'` or `'layer:N'` (0-based), since digests are only known after building.
   */
  dropBlob?: string;
}

export const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  layer: { none: 'application/vnd.oci.image.layer.v1.tar', gzip: 'application/vnd.oci.image.layer.v1.tar+gzip', zstd: 'application/vnd.oci.image.layer.v1.tar+zstd' },
} as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string; variant?: string };
}

/** One layer as built: its blob (compressed or not) and the digest of the uncompressed tar. */
export interface BuiltLayer {
  blobPath: string;
  digest: string;
  diffId: string;
  size: number;
  mediaType: string;
}

export interface OciLayoutResult {
  indexDigest: string;
  manifestDigest: string;
  configDigest: string;
  layerDigests: string[];
  diffIds: string[];
  manifestPath: string;
  configPath: string;
  /** Blob files in manifest order (absent when dropped with `dropBlob`). */
  layerPaths: string[];
  layerMediaTypes: string[];
}

export interface DockerArchiveResult {
  manifest: object;
  configDigest: string;
  layerDigests: string[];
  diffIds: string[];
  manifestDigest: string;
}

/** sha256 of a file in hex, read in 1 MiB pieces so multi-GB blobs never sit in memory. */
export function sha256File(file: string): string {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    for (let n = fs.readSync(fd, buf, 0, buf.length, null); n > 0; n = fs.readSync(fd, buf, 0, buf.length, null)) hash.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function hexOf(digest: string): string {
  return digest.startsWith('sha256:') ? digest.slice(7) : digest;
}

function run(cmd: string, args: string[], stdoutFile?: string): void {
  const fd = stdoutFile === undefined ? undefined : fs.openSync(stdoutFile, 'w');
  try {
    const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', fd ?? 'pipe', 'pipe'], maxBuffer: 64 << 20 });
    if (r.error) throw new Error(`${cmd}: ${r.error.message} (is ${cmd} installed?)`);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr.trim()}`);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Packs `dir` into `outTar` with GNU tar: names sorted, numeric owners, `./`-relative paths; symlinks
 * and hard links stay links. Owners, modes and mtimes are the files' own (run as root to keep owners).
 */
export function packTar(dir: string, outTar: string, format: 'pax' | 'gnu' = 'pax'): void {
  const fmt = format === 'pax' ? ['--format=pax', '--pax-option=delete=atime,delete=ctime,delete=mtime'] : ['--format=gnu'];
  fs.mkdirSync(path.dirname(outTar), { recursive: true });
  run('tar', ['--create', `--file=${outTar}`, '--numeric-owner', '--sort=name', ...fmt, '-C', dir, '.']);
}

/** Marks `innerPath` (e.g. `etc/motd`) deleted from lower layers: an empty `.wh.motd` in the layer dir. */
export function whiteout(layerDir: string, innerPath: string): string {
  const rel = innerPath.replace(/^\/+/, '');
  const file = path.join(layerDir, path.dirname(rel), `.wh.${path.basename(rel)}`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, '');
  return file;
}

/** Makes `innerDir` opaque (lower layers' contents hidden): an empty `.wh..wh..opq` inside it. */
export function opaque(layerDir: string, innerDir: string): string {
  const dir = path.join(layerDir, innerDir.replace(/^\/+/, ''));
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, '.wh..wh..opq');
  fs.writeFileSync(file, '');
  return file;
}

/** Packs and compresses one layer into `blobsDir/<hex>`; the uncompressed tar is removed unless it is the blob. */
export function buildLayer(spec: AnyLayerSpec, blobsDir: string): BuiltLayer {
  const compress = spec.compress ?? 'none';
  fs.mkdirSync(blobsDir, { recursive: true });
  const work = fs.mkdtempSync(path.join(blobsDir, '.layer-'));
  try {
    const tarFile = path.join(work, 'layer.tar');
    if ('tar' in spec) fs.copyFileSync(spec.tar, tarFile);
    else packTar(spec.dir, tarFile, spec.format);
    const diffId = `sha256:${sha256File(tarFile)}`;
    let blob = tarFile;
    if (compress === 'gzip') {
      blob = `${tarFile}.gz`;
      run('gzip', ['-n', '-6', '-c', tarFile], blob);
    } else if (compress === 'zstd') {
      blob = `${tarFile}.zst`;
      run('zstd', ['-q', '-3', '-c', tarFile], blob);
    }
    const hex = sha256File(blob);
    const blobPath = path.join(blobsDir, hex);
    fs.renameSync(blob, blobPath);
    return { blobPath, digest: `sha256:${hex}`, diffId, size: fs.statSync(blobPath).size, mediaType: MEDIA.layer[compress] };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** Writes a JSON blob as compact bytes named by their sha256; returns its descriptor. */
export function writeJsonBlob(blobsDir: string, value: unknown, mediaType: string): Descriptor & { path: string } {
  const bytes = Buffer.from(JSON.stringify(value));
  const hex = sha256(bytes);
  const file = path.join(blobsDir, hex);
  fs.writeFileSync(file, bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length, path: file };
}

/** The image config (OCI image-spec config.md) for layers with these diff_ids. */
export function imageConfig(diffIds: string[], opts: ImageOptions = {}): Record<string, unknown> {
  const created = '2024-01-01T00:00:00Z';
  return {
    architecture: opts.architecture ?? 'amd64',
    os: opts.os ?? 'linux',
    ...(opts.variant ? { variant: opts.variant } : {}),
    created,
    config: opts.config ?? { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: diffIds.map((_, i) => ({ created, created_by: `vsys test layer ${i}` })),
  };
}

function splitRepoTag(repoTag: string): { name: string; tag: string } {
  const colon = repoTag.lastIndexOf(':');
  if (colon > repoTag.lastIndexOf('/')) return { name: repoTag.slice(0, colon), tag: repoTag.slice(colon + 1) };
  return { name: repoTag, tag: 'latest' };
}

/** docker.io/library/NAME the way the docker CLI normalises a short reference. */
function fullName(name: string): string {
  const first = name.split('/')[0] ?? '';
  if (name.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) return name;
  return name.includes('/') ? `docker.io/${name}` : `docker.io/library/${name}`;
}

interface Built {
  layers: BuiltLayer[];
  config: Descriptor & { path: string };
  manifest: Descriptor & { path: string };
  tag: string;
  name: string;
}

/** Writes layer, config and image-manifest blobs into `blobsDir`, then drops `opts.dropBlob` if asked. */
function buildBlobs(blobsDir: string, layers: AnyLayerSpec[], opts: ImageOptions): Built {
  const built = layers.map((spec) => buildLayer(spec, blobsDir));
  const config = writeJsonBlob(blobsDir, imageConfig(built.map((l) => l.diffId), opts), MEDIA.ociConfig);
  const manifestDoc = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    layers: built.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  const manifest = writeJsonBlob(blobsDir, manifestDoc, MEDIA.ociManifest);
  const { name, tag } = splitRepoTag(opts.repoTag ?? 'vsys-test:latest');
  return { layers: built, config, manifest, tag, name };
}

function dropIfAsked(blobsDir: string, b: Built, dropBlob: string | undefined): void {
  if (dropBlob === undefined) return;
  const layer = /^layer:(\d+)$/.exec(dropBlob);
  const digest = dropBlob === 'config' ? b.config.digest : dropBlob === 'manifest' ? b.manifest.digest : layer ? b.layers[Number(layer[1])]?.digest : dropBlob;
  const file = digest === undefined ? undefined : path.join(blobsDir, hexOf(digest));
  if (file === undefined || !fs.existsSync(file)) throw new Error(`dropBlob: ${dropBlob} is not a blob of this image`);
  fs.rmSync(file);
}

function writeLayoutFiles(root: string, b: Built, annotations: Record<string, string>): string {
  fs.writeFileSync(path.join(root, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA.ociIndex,
    manifests: [{ mediaType: MEDIA.ociManifest, digest: b.manifest.digest, size: b.manifest.size, annotations }],
  };
  const bytes = Buffer.from(JSON.stringify(index));
  fs.writeFileSync(path.join(root, 'index.json'), bytes);
  return `sha256:${sha256(bytes)}`;
}

/**
 * An OCI image layout directory: `oci-layout`, `index.json` → one image manifest (ref.name = tag),
 * `blobs/sha256/<hex>` for the manifest, config and layers (media type …tar, …tar+gzip, …tar+zstd).
 * `outDir` is replaced. `indexDigest` is the sha256 of index.json (which is not itself a blob).
 */
export function buildOciLayout(outDir: string, layers: AnyLayerSpec[], opts: ImageOptions = {}): OciLayoutResult {
  fs.rmSync(outDir, { recursive: true, force: true });
  const blobsDir = path.join(outDir, 'blobs', 'sha256');
  fs.mkdirSync(blobsDir, { recursive: true });
  const b = buildBlobs(blobsDir, layers, opts);
  const indexDigest = writeLayoutFiles(outDir, b, { 'org.opencontainers.image.ref.name': b.tag });
  dropIfAsked(blobsDir, b, opts.dropBlob);
  return {
    indexDigest,
    manifestDigest: b.manifest.digest,
    configDigest: b.config.digest,
    layerDigests: b.layers.map((l) => l.digest),
    diffIds: b.layers.map((l) => l.diffId),
    manifestPath: b.manifest.path,
    configPath: b.config.path,
    layerPaths: b.layers.map((l) => l.blobPath),
    layerMediaTypes: b.layers.map((l) => l.mediaType),
  };
}

/**
 * A `docker save` archive in the docker 25+ layout, which is at once an OCI image layout and the
 * legacy format: `blobs/sha256/<hex>` (layers, config, OCI manifest), `index.json` (annotated with
 * io.containerd.image.name and ref.name), `manifest.json` ([{Config, RepoTags, Layers, LayerSources}]
 * with paths into blobs/), `oci-layout` and `repositories`. Layers are uncompressed tars unless a spec
 * asks otherwise (docker never does; OCI readers must cope). Entries have no `./` prefix, as docker's.
 */
export function buildDockerArchive(outTar: string, layers: AnyLayerSpec[], opts: ImageOptions = {}): DockerArchiveResult {
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-docker-archive-'));
  try {
    const blobsDir = path.join(stage, 'blobs', 'sha256');
    fs.mkdirSync(blobsDir, { recursive: true });
    const b = buildBlobs(blobsDir, layers, opts);
    const repoTag = `${b.name}:${b.tag}`;
    writeLayoutFiles(stage, b, { 'io.containerd.image.name': `${fullName(b.name)}:${b.tag}`, 'org.opencontainers.image.ref.name': b.tag });
    const manifest = [
      {
        Config: `blobs/sha256/${hexOf(b.config.digest)}`,
        RepoTags: [repoTag],
        Layers: b.layers.map((l) => `blobs/sha256/${hexOf(l.digest)}`),
        LayerSources: Object.fromEntries(b.layers.map((l) => [l.diffId, { mediaType: l.mediaType, size: l.size, digest: l.digest }])),
      },
    ];
    fs.writeFileSync(path.join(stage, 'manifest.json'), JSON.stringify(manifest));
    const top = b.layers.at(-1);
    fs.writeFileSync(path.join(stage, 'repositories'), JSON.stringify(top ? { [b.name]: { [b.tag]: hexOf(top.digest) } } : {}));
    dropIfAsked(blobsDir, b, opts.dropBlob);
    fs.mkdirSync(path.dirname(path.resolve(outTar)), { recursive: true });
    run('tar', ['--create', `--file=${path.resolve(outTar)}`, '--numeric-owner', '--owner=0', '--group=0', '--sort=name', '--format=pax', '--pax-option=delete=atime,delete=ctime,delete=mtime', '-C', stage, 'blobs', 'index.json', 'manifest.json', 'oci-layout', 'repositories']);
    return {
      manifest,
      configDigest: b.config.digest,
      layerDigests: b.layers.map((l) => l.digest),
      diffIds: b.layers.map((l) => l.diffId),
      manifestDigest: b.manifest.digest,
    };
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

// Images that lie (issue 23, item 3): blobs changed after their manifest was written, descriptors
// and configs rewritten to claim something else, archives with a member twice.

/** Replaces the first `from` in a file with `to` (same length: a tar stays a valid tar). */
export function replaceBytes(file: string, from: string, to: string): void {
  if (from.length !== to.length) throw new Error('replaceBytes: same length only');
  const b = fs.readFileSync(file);
  const at = b.indexOf(from);
  if (at < 0) throw new Error(`replaceBytes: '${from}' not in ${file}`);
  b.write(to, at, 'latin1');
  fs.writeFileSync(file, b);
}

/** Appends a member to an uncompressed tar (GNU tar --append): the archive then has two of that name. */
export function appendMember(tarFile: string, name: string, bytes: string | Buffer): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-append-'));
  try {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), bytes);
    run('tar', ['--append', `--file=${path.resolve(tarFile)}`, '--format=pax', '-C', dir, name]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Appends a member with exactly the header given (GNU tar would normalise the name: '/manifest.json'
 * loses its '/', './/' its './'): a file, a hard link or a symlink, before the end-of-archive marker.
 */
export function appendRawMember(tarFile: string, member: { name: string; type?: 'file' | 'link' | 'symlink'; linkname?: string }, bytes: string | Buffer = ''): void {
  const require = createRequire(import.meta.url);
  const headers = require(path.join(path.dirname(require.resolve('tar-stream')), 'headers.js')) as { encode: (h: object) => Buffer | null };
  const body = member.type === undefined || member.type === 'file' ? Buffer.from(bytes) : Buffer.alloc(0);
  const header = headers.encode({ name: member.name, type: member.type ?? 'file', linkname: member.linkname ?? null, size: body.length, mode: 0o644, uid: 0, gid: 0, mtime: new Date(0), uname: '', gname: '' });
  if (!header) throw new Error(`appendRawMember: cannot encode ${member.name}`);
  const tar = fs.readFileSync(tarFile);
  // The end-of-archive marker: the first all-zero header block.
  let at = 0;
  while (at + 512 <= tar.length && tar.subarray(at, at + 512).some((b) => b !== 0)) {
    const size = Number.parseInt(tar.subarray(at + 124, at + 136).toString('latin1').replace(/\0.*$/, '').trim() || '0', 8);
    at += 512 + Math.ceil(size / 512) * 512;
  }
  const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
  fs.writeFileSync(tarFile, Buffer.concat([tar.subarray(0, at), header, body, pad, Buffer.alloc(1024)]));
}

/**
 * Rewrites an OCI layout's image manifest (and its config first, when `editConfig` is given) as a
 * producer that lies would: each blob rewritten under its new digest, the descriptors above it and
 * index.json updated, so only the claims edited are false.
 */
export function rewriteOciLayout(layoutDir: string, edit: { manifest?: (m: Record<string, any>) => void; config?: (c: Record<string, any>) => void }): void {
  const blobs = path.join(layoutDir, 'blobs', 'sha256');
  const indexFile = path.join(layoutDir, 'index.json');
  const index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  const top = index.manifests[0];
  const manifest = JSON.parse(fs.readFileSync(path.join(blobs, hexOf(top.digest)), 'utf8'));
  if (edit.config) {
    const config = JSON.parse(fs.readFileSync(path.join(blobs, hexOf(manifest.config.digest)), 'utf8'));
    edit.config(config);
    const d = writeJsonBlob(blobs, config, manifest.config.mediaType);
    manifest.config.digest = d.digest;
    manifest.config.size = d.size;
  }
  edit.manifest?.(manifest);
  const m = writeJsonBlob(blobs, manifest, MEDIA.ociManifest);
  top.digest = m.digest;
  top.size = m.size;
  fs.writeFileSync(indexFile, JSON.stringify(index));
}
