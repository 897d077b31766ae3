// A client for the OCI distribution API (distribution-spec v1.1): manifests and blobs, anonymous,
// basic and bearer-token auth (the WWW-Authenticate challenge), plain http only for localhost
// unless --insecure, linux/amd64 chosen from multi-arch indexes. Layers are streamed, never stored.
import { Readable } from 'node:stream';
import { VsysError } from '../errors.js';
import { checkDigest, configDiffIds, configPlatform, configRun, MEDIA, parseJson } from './manifests.js';
import { collectLayers, pickManifest, streamedLayers, type ResolvedImage, type SourceOptions } from './sources.js';
import { checkBlob, pastSize, sha256Of, type BlobClaim } from './verify-blob.js';

export interface RegistryRef {
  host: string;
  repo: string;
  tag?: string;
  digest?: string;
}

export interface RegistryOptions {
  insecure?: boolean;
  /** user:password for basic auth or for the token realm. */
  creds?: string;
}

/** A repository name as the distribution spec allows it. */
export const REPO_NAME = /^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/;

/** registry://HOST[:PORT]/REPO[:TAG|@DIGEST] */
export function parseRegistryRef(s: string): RegistryRef {
  const m = /^registry:\/\/([^/]+)\/(.+)$/.exec(s);
  if (!m?.[1] || !m[2]) throw new VsysError('USAGE', `'${s}' is not registry://HOST[:PORT]/REPO[:TAG|@DIGEST]`);
  let rest = m[2];
  const ref: RegistryRef = { host: m[1], repo: '' };
  const at = rest.indexOf('@');
  if (at >= 0) {
    ref.digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon > rest.lastIndexOf('/')) {
      ref.tag = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  if (!REPO_NAME.test(rest)) throw new VsysError('USAGE', `'${rest}' is not a valid repository name`);
  ref.repo = rest;
  if (!ref.tag && !ref.digest) ref.tag = 'latest';
  return ref;
}

function isLocal(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '127.0.0.1' || h === '::1';
}

/** https, except plain http for localhost, or anywhere with --insecure. */
export function registryBase(ref: RegistryRef, insecure = false): string {
  const plain = isLocal(ref.host) || insecure;
  return `${plain ? 'http' : 'https'}://${ref.host}/v2/${ref.repo}`;
}

export class RegistryClient {
  private token: string | undefined;
  /** The registry asked for basic auth once: every later request carries it at once. */
  private basicWanted = false;
  /** An authentication under way, shared by the requests that met a 401 meanwhile (one token, not one each). */
  private authing: Promise<void> | undefined;
  private readonly base: string;

  constructor(readonly ref: RegistryRef, private readonly o: RegistryOptions = {}) {
    this.base = registryBase(ref, o.insecure);
  }

  /** http(s)://HOST/v2/REPO */
  get baseUrl(): string {
    return this.base;
  }

  private basic(): string | undefined {
    return this.o.creds ? `Basic ${Buffer.from(this.o.creds).toString('base64')}` : undefined;
  }

  private async authenticate(challenge: string, signal?: AbortSignal): Promise<void> {
    const scheme = /^(\w+)\s/.exec(challenge)?.[1]?.toLowerCase();
    if (scheme === 'basic') {
      if (!this.o.creds) throw new VsysError('REGISTRY_AUTH', `${this.ref.host} wants a user and password (--creds USER:PASSWORD or VSYS_REGISTRY_CREDS)`);
      this.token = undefined;
      this.basicWanted = true;
      return;
    }
    if (scheme !== 'bearer') throw new VsysError('REGISTRY_AUTH', `${this.ref.host}: unsupported auth challenge '${challenge}'`);
    const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!params.realm) throw new VsysError('REGISTRY_AUTH', `${this.ref.host}: bearer challenge without a realm`);
    const url = new URL(params.realm);
    if (params.service) url.searchParams.set('service', params.service);
    url.searchParams.set('scope', params.scope ?? (this.ref.repo ? `repository:${this.ref.repo}:pull` : 'registry:catalog:*'));
    const headers: Record<string, string> = {};
    const b = this.basic();
    if (b) headers.authorization = b;
    const r = await fetch(url, { headers, ...(signal ? { signal } : {}) });
    if (!r.ok) throw new VsysError('REGISTRY_AUTH', `${this.ref.host}: the token server at ${url.origin} answered ${r.status}${r.status === 401 ? ' (wrong or missing --creds)' : ''}`);
    const body = (await r.json()) as { token?: string; access_token?: string };
    this.token = body.token ?? body.access_token;
    if (!this.token) throw new VsysError('REGISTRY_AUTH', `${this.ref.host}: the token server gave no token`);
  }

  private async get(pathAndQuery: string, accept?: string): Promise<Response> {
    const r = await this.send('GET', pathAndQuery, accept ? { accept } : {});
    if (r.status === 404) throw new VsysError('IMAGE_MISSING_BLOB', `${this.ref.host}/${this.ref.repo}${pathAndQuery}: not found`);
    if (!r.ok) throw new VsysError('REGISTRY_FAILED', `${this.ref.host}/${this.ref.repo}${pathAndQuery}: HTTP ${r.status}`);
    return r;
  }

  /**
   * A request with the registry's auth (a 401 answered once by authenticating, then retried, so
   * `body` is made per attempt). `where` is a path under the repository or a whole URL (an upload's
   * Location). Any status but 401/403 is returned for the caller to judge.
   */
  async send(method: string, where: string, headers: Record<string, string> = {}, body?: () => { body: unknown; length?: number }, signal?: AbortSignal): Promise<Response> {
    const url = /^https?:/.test(where) ? where : `${this.base}${where}`;
    for (let attempt = 0; attempt < 2; attempt++) {
      const h: Record<string, string> = { ...headers };
      if (this.token) h.authorization = `Bearer ${this.token}`;
      else if (this.o.creds && (attempt > 0 || this.basicWanted)) h.authorization = this.basic() as string;
      const sentWith = this.token;
      const b = body?.();
      if (b?.length !== undefined) h['content-length'] = String(b.length);
      let r: Response;
      try {
        r = await fetch(url, { method, headers: h, redirect: 'follow', ...(b ? { body: b.body as never, duplex: 'half' } : {}), ...(signal ? { signal } : {}) } as RequestInit);
      } catch (e) {
        const cause = (e as { cause?: { code?: string; message?: string } }).cause;
        throw new VsysError('REGISTRY_FAILED', `${this.ref.host}: ${cause?.code ?? ''} ${cause?.message ?? (e as Error).message}`.trim(), { cause: e });
      }
      if (r.status === 401 && attempt === 0) {
        await r.body?.cancel();
        // A token got meanwhile by another request of this client is tried first; else one
        // authentication, shared by every request waiting for it.
        if (this.token === sentWith) {
          this.authing ??= this.authenticate(r.headers.get('www-authenticate') ?? '', signal).finally(() => { this.authing = undefined; });
          await this.authing;
        }
        continue;
      }
      if (r.status === 401 || r.status === 403) throw new VsysError('REGISTRY_AUTH', `${this.ref.host}/${this.ref.repo}: access denied (${r.status})`);
      return r;
    }
    throw new VsysError('REGISTRY_AUTH', `${this.ref.host}: authentication did not succeed`);
  }

  /**
   * A manifest or index; fetched by digest, or with `claim`, checked against it when `verify`.
   * `served`: the sha256 of the bytes as served (a manifest's digest by the distribution spec).
   */
  async manifest(reference: string, verify = false, claim: BlobClaim = {}): Promise<{ doc: unknown; digest: string | undefined; served: string }> {
    const r = await this.get(`/manifests/${reference}`, MANIFEST_TYPES);
    const bytes = await readBody(r, `${this.ref.host}/${this.ref.repo} manifest ${reference}`, verify ? claim.size : undefined);
    // Asked for by digest, that digest; by tag, the one the registry says it served.
    const said = r.headers.get('docker-content-digest') ?? undefined;
    const digest = DIGEST.test(reference) ? reference : said !== undefined && DIGEST.test(said) ? said : undefined;
    const served = sha256Of(bytes);
    if (verify) checkBlob(`${this.ref.host}/${this.ref.repo} manifest ${reference}`, { ...claim, ...(digest ? { digest } : {}) }, { digest: served, bytes: bytes.length });
    return { doc: parseJson(bytes.toString('utf8'), `manifest ${reference}`), digest: digest ?? said, served };
  }

  /**
   * The digest `tag` names now: the registry's Docker-Content-Digest on a HEAD of its manifest, or,
   * where it sends none (the spec makes it optional) or refuses HEAD, the sha256 of the manifest as
   * a GET serves it.
   * What a resumed scan compares with the digest it judged (the same rule as `tagDigestOf`).
   */
  async tagDigest(tag: string, signal?: AbortSignal): Promise<string> {
    const head = await this.send('HEAD', `/manifests/${tag}`, { accept: MANIFEST_TYPES }, undefined, signal);
    await head.body?.cancel();
    const said = head.headers.get('docker-content-digest');
    if (head.ok && said !== null && DIGEST.test(said)) return said;
    // No header, or a registry (a proxy) that does not answer HEAD: the manifest itself.
    const r = await this.send('GET', `/manifests/${tag}`, { accept: MANIFEST_TYPES }, undefined, signal);
    if (!r.ok) throw new VsysError('REGISTRY_FAILED', `${this.ref.host}/${this.ref.repo}:${tag}: HTTP ${r.status}`);
    return sha256Of(await readBody(r, `${this.ref.host}/${this.ref.repo} manifest ${tag}`));
  }

  /** A JSON blob (a config), checked against its digest and descriptor's size when `verify`. */
  async blobJson(digest: string, verify = false, size?: number): Promise<unknown> {
    const r = await this.get(`/blobs/${checkDigest(digest, `${this.ref.host}/${this.ref.repo}`)}`);
    const bytes = await readBody(r, `${this.ref.host}/${this.ref.repo} blob ${digest}`, verify ? size : undefined);
    if (verify) checkBlob(`${this.ref.host}/${this.ref.repo} blob ${digest}`, { digest, ...(size !== undefined ? { size } : {}) }, { digest: sha256Of(bytes), bytes: bytes.length });
    return parseJson(bytes.toString('utf8'), `blob ${digest}`);
  }

  /** A small blob (a config) whole. */
  async blobBytes(digest: string): Promise<Buffer> {
    const r = await this.get(`/blobs/${checkDigest(digest, `${this.ref.host}/${this.ref.repo}`)}`);
    return readBody(r, `${this.ref.host}/${this.ref.repo} blob ${digest}`);
  }

  async blobStream(digest: string): Promise<Readable> {
    const r = await this.get(`/blobs/${checkDigest(digest, `${this.ref.host}/${this.ref.repo}`)}`);
    if (!r.body) throw new VsysError('REGISTRY_FAILED', `blob ${digest}: empty body`);
    return Readable.fromWeb(r.body as never);
  }
}

const MANIFEST_TYPES = [MEDIA.ociIndex, MEDIA.ociManifest, MEDIA.dockerList, MEDIA.dockerManifest].join(', ');
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * The digest a tag named when its image was read: the registry's own (Docker-Content-Digest), or
 * the sha256 of the manifest's bytes where it sent none.
 */
export function tagDigestOf(top: { digest: string | undefined; served: string }): string {
  return top.digest !== undefined && DIGEST.test(top.digest) ? top.digest : top.served;
}

const JSON_MAX = 4 * 1024 * 1024;

/**
 * A manifest's or config's body, read only up to JSON_MAX bytes, and with `declared` (its
 * descriptor's size, when verifying) not one byte past it: a registry that sends more is cut off.
 */
export async function readBody(r: Response, what: string, declared?: number, max = JSON_MAX): Promise<Buffer> {
  const reader = r.body?.getReader();
  if (!reader) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.length;
      if (declared !== undefined && n > declared) throw pastSize(what, declared);
      if (n > max) throw new VsysError(max === JSON_MAX ? 'IMAGE_BAD_MANIFEST' : 'REGISTRY_FAILED', `${what}: over ${max} bytes, too large for ${max === JSON_MAX ? 'a manifest or config' : 'a page of names'}`);
      chunks.push(Buffer.from(value.buffer, value.byteOffset, value.length));
    }
  } catch (e) {
    await reader.cancel().catch(() => undefined);
    throw e;
  }
  return Buffer.concat(chunks, n);
}

export async function readRegistry(refText: string, o: SourceOptions & RegistryOptions): Promise<ResolvedImage[]> {
  const ref = parseRegistryRef(refText);
  if (!isLocal(ref.host) && o.insecure !== true && /^http:/.test(refText)) throw new VsysError('REGISTRY_INSECURE', 'plain http is allowed only for localhost (or with --insecure)');
  const client = new RegistryClient(ref, o);
  const verify = o.limits.verify === true;
  const top = await client.manifest(ref.digest ?? (ref.tag as string), verify);
  const { manifest, digest, platform, skipped } = await pickManifest(top.doc, top.digest, async (d, _what, size) => (await client.manifest(d, verify, size !== undefined ? { size } : {})).doc, refText);
  const cfg = await client.blobJson(manifest.config.digest, verify, manifest.config.size);
  const ids = verify ? configDiffIds(cfg) : [];
  if (verify && ids?.length !== manifest.layers.length) throw new VsysError('IMAGE_BAD_MANIFEST', `${refText}: the config lists ${ids?.length ?? 'no'} diff_ids for ${manifest.layers.length} layers (rootfs.diff_ids); the layers cannot be verified (--no-verify skips this check)`);
  const claims = manifest.layers.map((l, i) => ({ digest: l.digest, ...(typeof l.size === 'number' ? { size: l.size } : {}), ...(ids?.[i] ? { diffId: ids[i] } : {}) }));
  const layers = await collectLayers(manifest.layers.map((l) => l.digest), streamedLayers((d) => client.blobStream(d)), refText, o, o.cache, claims);
  const run = configRun(cfg);
  const tagDigest = ref.digest === undefined ? tagDigestOf(top) : undefined;
  return [{ ref: refText.replace(/^registry:\/\//, ''), source: 'registry', ...(digest ? { digest } : {}), ...(tagDigest ? { tagDigest } : {}), platform: platform ?? configPlatform(cfg), skippedPlatforms: skipped, ...(run ? { run } : {}), layers }];
}
