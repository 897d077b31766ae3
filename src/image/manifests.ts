// Docker and OCI manifests, configs and indexes (OCI image-spec v1.1; Docker image manifest v2
// schema 2 and `docker save`'s manifest.json), and picking linux/amd64 out of a multi-arch index.
import { VsysError } from '../errors.js';

export const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface ImageManifest {
  config: Descriptor;
  layers: Descriptor[];
}

export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new VsysError('IMAGE_BAD_MANIFEST', `${what} is not valid JSON: ${(e as Error).message}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A digest vsys can use: `sha256:` and 64 lowercase hex digits (image-spec descriptor.md). Another
 * well-formed algorithm (sha512, blake3) is IMAGE_UNSUPPORTED_DIGEST; anything else (a path such
 * as 'sha256:../../etc/passwd', which would name a file outside the layout) IMAGE_BAD_DIGEST.
 */
export function checkDigest(digest: unknown, what: string): string {
  if (typeof digest === 'string' && /^sha256:[0-9a-f]{64}$/.test(digest)) return digest;
  const shown = typeof digest === 'string' ? `'${digest.slice(0, 100)}'` : String(digest);
  if (typeof digest === 'string' && /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(digest) && !digest.startsWith('sha256:')) {
    throw new VsysError('IMAGE_UNSUPPORTED_DIGEST', `${what}: digest ${shown} uses an algorithm vsys does not check (only sha256)`);
  }
  throw new VsysError('IMAGE_BAD_DIGEST', `${what}: ${shown} is not a sha256 digest (sha256: and 64 lowercase hex digits)`);
}

function descriptor(v: unknown, what: string): Descriptor {
  if (!isObject(v)) throw new VsysError('IMAGE_BAD_MANIFEST', `${what}: a descriptor that is not an object`);
  checkDigest(v.digest, what);
  return v as unknown as Descriptor;
}

/** The descriptors an OCI index lists (index.json's `manifests`), each with a sha256 digest. */
export function indexEntries(doc: unknown, what: string): Descriptor[] {
  if (!isObject(doc) || !Array.isArray(doc.manifests)) throw new VsysError('IMAGE_BAD_MANIFEST', `${what}: not an index (no manifests)`);
  return doc.manifests.map((m, i) => descriptor(m, `${what} entry ${i}`));
}

export function isIndex(doc: unknown): boolean {
  return isObject(doc) && Array.isArray(doc.manifests);
}

export function parseManifest(doc: unknown, what: string): ImageManifest {
  if (!isObject(doc) || !Array.isArray(doc.layers)) throw new VsysError('IMAGE_BAD_MANIFEST', `${what}: not an image manifest (no layers)`);
  return { config: descriptor(doc.config, `${what} config`), layers: doc.layers.map((l, i) => descriptor(l, `${what} layer ${i}`)) };
}

export function platformName(p: Descriptor['platform']): string {
  if (!p) return 'unknown';
  return `${p.os ?? '?'}/${p.architecture ?? '?'}${p.variant ? `/${p.variant}` : ''}`;
}

/** The linux/amd64 entry of an index, and the platforms left out. */
export function pickAmd64(doc: unknown, what: string): { chosen: Descriptor; skipped: string[] } {
  const all = indexEntries(doc, what);
  // Attestation manifests (buildkit's unknown/unknown) are not platforms.
  const real = all.filter((m) => !(m.platform?.os === 'unknown' && m.platform.architecture === 'unknown'));
  const chosen = real.find((m) => m.platform?.os === 'linux' && m.platform.architecture === 'amd64') ?? (real.length === 1 && !real[0]?.platform ? real[0] : undefined);
  if (!chosen) {
    throw new VsysError('IMAGE_NO_PLATFORM', `${what} has no linux/amd64 image (platforms: ${real.map((m) => platformName(m.platform)).join(', ') || 'none'}); vsyscall matters only on x86-64`);
  }
  return { chosen, skipped: real.filter((m) => m !== chosen).map((m) => platformName(m.platform)) };
}

/** `docker save`'s manifest.json: [{ Config, RepoTags, Layers }]. */
export function parseDockerSaveManifest(doc: unknown): { config: string; repoTags: string[]; layers: string[] }[] {
  if (!Array.isArray(doc)) throw new VsysError('IMAGE_BAD_MANIFEST', 'manifest.json: not a list of images');
  return doc.map((e, i) => {
    if (!isObject(e) || typeof e.Config !== 'string' || !Array.isArray(e.Layers) || !e.Layers.every((l) => typeof l === 'string')) {
      throw new VsysError('IMAGE_BAD_MANIFEST', `manifest.json entry ${i}: needs Config and Layers`);
    }
    return { config: e.Config, repoTags: Array.isArray(e.RepoTags) ? (e.RepoTags as string[]) : [], layers: e.Layers as string[] };
  });
}

/** What the image runs (config.Entrypoint + config.Cmd) and the PATH it runs it with; the image-spec's config fields. */
export interface ImageRun {
  entrypoint: string[];
  cmd: string[];
  path?: string;
}

const strings = (v: unknown): string[] => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : []);

export function configRun(doc: unknown): ImageRun | undefined {
  if (!isObject(doc) || !isObject(doc.config)) return undefined;
  const c = doc.config;
  const env = strings(c.Env).find((e) => e.startsWith('PATH='));
  const run: ImageRun = { entrypoint: strings(c.Entrypoint), cmd: strings(c.Cmd) };
  if (env) run.path = env.slice(5);
  return run.entrypoint.length + run.cmd.length > 0 ? run : undefined;
}

export function configPlatform(doc: unknown): string {
  if (!isObject(doc)) return 'unknown';
  return `${String(doc.os ?? '?')}/${String(doc.architecture ?? '?')}`;
}

/** The config's rootfs.diff_ids (the sha256 of each layer's uncompressed tar, in order), when well formed. */
export function configDiffIds(doc: unknown): string[] | undefined {
  if (!isObject(doc) || !isObject(doc.rootfs) || !Array.isArray(doc.rootfs.diff_ids)) return undefined;
  const ids = doc.rootfs.diff_ids;
  return ids.every((d) => typeof d === 'string' && /^sha256:[0-9a-f]{64}$/.test(d)) ? (ids as string[]) : undefined;
}
