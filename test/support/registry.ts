// A throwaway OCI registry for image tests (Debian's docker-registry, distribution 2.8) with no auth,
// htpasswd Basic auth or Bearer tokens from an in-process token server (distribution docs/spec/auth/token.md, jwt.md).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ensureCommand } from './rootfs.js';
import { startTokenServer, TOKEN_ISSUER, TOKEN_SERVICE, type TokenServer } from './token-server.js';
import { MEDIA, sha256File } from './images.js';

export type RegistryAuth = 'none' | 'basic' | 'token';

export interface Registry {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT, the form image references use. */
  host: string;
  port: number;
  auth: RegistryAuth;
  user?: string;
  password?: string;
  /** The registry's own log (stdout and stderr). */
  logFile: string;
  stop(): Promise<void>;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Why a registry cannot be started here, or undefined when it can (installs docker-registry if root). */
export function registryUnavailable(auth: RegistryAuth = 'none'): string | undefined {
  if (!ensureCommand('docker-registry', 'docker-registry')) return 'docker-registry is not installed (apt-get install docker-registry)';
  if (auth === 'basic' && !ensureCommand('htpasswd', 'apache2-utils')) return 'htpasswd is not installed (apt-get install apache2-utils)';
  if (auth === 'token' && !ensureCommand('openssl', 'openssl')) return 'openssl is not installed (apt-get install openssl)';
  return undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-5).join('\n');
  } catch {
    return '';
  }
}

async function waitReady(url: string, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`docker-registry exited (${child.exitCode ?? child.signalCode}):\n${tail(logFile)}`);
    try {
      const r = await fetch(`${url}/v2/`);
      if (r.status === 200 || r.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`docker-registry did not answer GET /v2/ within 20 s:\n${tail(logFile)}`);
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * Starts docker-registry on 127.0.0.1 at a free port with temporary storage and config (deletes
 * enabled) and resolves once GET /v2/ answers. 'basic' and 'token' generate a user and password.
 */
export async function startRegistry(opts: { auth?: RegistryAuth } = {}): Promise<Registry> {
  const auth = opts.auth ?? 'none';
  const why = registryUnavailable(auth);
  if (why) throw new Error(why);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-registry-'));
  const storage = path.join(dir, 'storage');
  fs.mkdirSync(storage);
  const user = auth === 'none' ? undefined : 'vsys';
  const password = auth === 'none' ? undefined : randomBytes(9).toString('base64url');
  let tokenServer: TokenServer | undefined;
  let authConfig: Record<string, unknown> | undefined;
  try {
    if (auth === 'basic') {
      const h = spawnSync('htpasswd', ['-Bbn', user!, password!], { encoding: 'utf8' });
      if (h.status !== 0) throw new Error(`htpasswd -Bbn failed: ${h.stderr}`);
      fs.writeFileSync(path.join(dir, 'htpasswd'), h.stdout.trim() + '\n');
      authConfig = { htpasswd: { realm: 'vsys-test', path: path.join(dir, 'htpasswd') } };
    } else if (auth === 'token') {
      tokenServer = await startTokenServer(dir, user!, password!);
      authConfig = { token: { realm: tokenServer.realm, service: TOKEN_SERVICE, issuer: TOKEN_ISSUER, rootcertbundle: tokenServer.certFile } };
    }
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  const logFile = path.join(dir, 'registry.log');
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    // distribution reads YAML, and JSON is YAML.
    const config = {
      version: '0.1',
      log: { level: 'warn', accesslog: { disabled: true } },
      storage: { filesystem: { rootdirectory: storage }, delete: { enabled: true }, maintenance: { uploadpurging: { enabled: false } } },
      http: { addr: `127.0.0.1:${port}`, secret: randomBytes(16).toString('hex'), headers: { 'X-Content-Type-Options': ['nosniff'] } },
      ...(authConfig ? { auth: authConfig } : {}),
    };
    const configFile = path.join(dir, 'config.yml');
    fs.writeFileSync(configFile, JSON.stringify(config, null, 2));
    const log = fs.openSync(logFile, 'w');
    const child = spawn('docker-registry', ['serve', configFile], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    live.add(child);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const url = `http://127.0.0.1:${port}`;
    const stop = async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      live.delete(child);
    };
    try {
      await waitReady(url, child, logFile);
    } catch (e) {
      await stop();
      // Another process may have taken the port between freePort() and the registry's bind.
      if (attempt < 2 && /address already in use/.test(tail(logFile))) continue;
      await tokenServer?.close();
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    return {
      url,
      host: `127.0.0.1:${port}`,
      port,
      auth,
      ...(user !== undefined ? { user, password } : {}),
      logFile,
      async stop() {
        await stop();
        await tokenServer?.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}

// ---- push client: the distribution HTTP API (OCI distribution-spec "Push"), monolithic uploads.

type Body = Buffer | { file: string };

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function request(method: string, url: string, headers: Record<string, string>, body?: Body): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const size = body === undefined ? 0 : Buffer.isBuffer(body) ? body.length : fs.statSync(body.file).size;
    const req = http.request(url, { method, headers: { ...headers, 'Content-Length': String(size) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else fs.createReadStream(body.file).on('error', reject).pipe(req);
  });
}

/** Speaks to one registry, answering Basic and Bearer challenges with the registry's credentials. */
export class RegistryClient {
  private authorization: string | undefined;

  constructor(private readonly reg: Pick<Registry, 'url' | 'user' | 'password'>) {}

  private basic(): string {
    if (this.reg.user === undefined) throw new Error('registry asks for credentials but none were given');
    return `Basic ${Buffer.from(`${this.reg.user}:${this.reg.password ?? ''}`).toString('base64')}`;
  }

  private async answer(challenge: string | undefined): Promise<void> {
    const scheme = (challenge ?? '').split(' ')[0]?.toLowerCase();
    const params = Object.fromEntries([...(challenge ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (scheme === 'basic') {
      this.authorization = this.basic();
    } else if (scheme === 'bearer' && params.realm) {
      const u = new URL(params.realm);
      if (params.service) u.searchParams.set('service', params.service);
      if (params.scope) for (const s of params.scope.split(' ')) u.searchParams.append('scope', s);
      const r = await request('GET', u.href, this.reg.user === undefined ? {} : { Authorization: this.basic() });
      if (r.status !== 200) throw new Error(`token server ${u.origin}: ${r.status} ${r.body.toString()}`);
      const doc = JSON.parse(r.body.toString()) as { token?: string; access_token?: string };
      this.authorization = `Bearer ${doc.token ?? doc.access_token}`;
    } else {
      throw new Error(`unsupported auth challenge: ${challenge}`);
    }
  }

  /** One API call; on 401 answers the challenge and tries once more. */
  async call(method: string, pathOrUrl: string, headers: Record<string, string> = {}, body?: Body): Promise<Reply> {
    const url = new URL(pathOrUrl, this.reg.url).href;
    const withAuth = (): Record<string, string> => (this.authorization ? { ...headers, Authorization: this.authorization } : headers);
    let r = await request(method, url, withAuth(), body);
    if (r.status === 401) {
      await this.answer(r.headers['www-authenticate']);
      r = await request(method, url, withAuth(), body);
    }
    return r;
  }

  private async expect(what: string, r: Reply, ...ok: number[]): Promise<Reply> {
    if (!ok.includes(r.status)) throw new Error(`${what}: HTTP ${r.status} ${r.body.toString().slice(0, 500)}`);
    return r;
  }

  /** Uploads a blob (file or bytes) unless the registry already has it; returns its digest. */
  async pushBlob(repo: string, blob: Body): Promise<{ digest: string; size: number }> {
    const digest = `sha256:${Buffer.isBuffer(blob) ? createHash('sha256').update(blob).digest('hex') : sha256File(blob.file)}`;
    const size = Buffer.isBuffer(blob) ? blob.length : fs.statSync(blob.file).size;
    const head = await this.call('HEAD', `/v2/${repo}/blobs/${digest}`);
    if (head.status === 200) return { digest, size };
    const start = await this.expect(`POST /v2/${repo}/blobs/uploads/`, await this.call('POST', `/v2/${repo}/blobs/uploads/`), 202);
    const location = new URL(String(start.headers.location), this.reg.url);
    location.searchParams.set('digest', digest);
    await this.expect(`PUT blob ${digest}`, await this.call('PUT', location.href, { 'Content-Type': 'application/octet-stream' }, blob), 201);
    return { digest, size };
  }

  /** PUTs manifest bytes at a tag or digest; returns the digest the registry reports. */
  async pushManifest(repo: string, reference: string, bytes: Buffer, mediaType: string): Promise<string> {
    const r = await this.expect(`PUT /v2/${repo}/manifests/${reference}`, await this.call('PUT', `/v2/${repo}/manifests/${reference}`, { 'Content-Type': mediaType }, bytes), 201);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const reported = r.headers['docker-content-digest'];
    if (reported !== undefined && reported !== digest) throw new Error(`registry stored manifest as ${String(reported)}, expected ${digest}`);
    return digest;
  }
}

/** OCI layer media type from a blob's first bytes: gzip (1f 8b), zstd (28 b5 2f fd) or plain tar. */
export function layerMediaType(file: string): string {
  const fd = fs.openSync(file, 'r');
  const magic = Buffer.alloc(4);
  try {
    fs.readSync(fd, magic, 0, 4, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (magic[0] === 0x1f && magic[1] === 0x8b) return MEDIA.layer.gzip;
  if (magic.readUInt32BE(0) === 0x28b52ffd) return MEDIA.layer.zstd;
  return MEDIA.layer.none;
}

export interface PushLayout {
  configPath: string;
  /** Blob files exactly as they are to be stored (compressed or not), in layer order. */
  layerPaths: string[];
  /** Defaults: OCI config; layer types guessed from each blob's magic bytes. */
  mediaTypes?: { config?: string; layers?: string[] };
}

export interface PushResult {
  /** `127.0.0.1:PORT/repo:tag` for skopeo's docker:// and the scanner. */
  reference: string;
  /** What the tag points at: the image manifest, or the index with asIndex. */
  digest: string;
  mediaType: string;
  /** The single image manifest, or the first platform's. */
  manifestDigest: string;
  configDigest: string;
  layerDigests: string[];
  platforms?: (Platform & { manifestDigest: string; configDigest: string })[];
}

function manifestFor(config: { digest: string; size: number; mediaType: string }, layers: { digest: string; size: number; mediaType: string }[]): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociManifest, config, layers }));
}

/**
 * Pushes blobs and an OCI image manifest tagged `tag`. With `asIndex`, one manifest per platform
 * (each with its own config whose os/architecture/variant are rewritten, sharing the layers) is
 * pushed by digest and `tag` names an OCI image index listing them.
 */
export async function pushImage(reg: Registry, repo: string, tag: string, layout: PushLayout, opts: { asIndex?: { platforms: Platform[] } } = {}): Promise<PushResult> {
  const client = new RegistryClient(reg);
  const layers = [];
  for (const [i, file] of layout.layerPaths.entries()) {
    const { digest, size } = await client.pushBlob(repo, { file });
    layers.push({ mediaType: layout.mediaTypes?.layers?.[i] ?? layerMediaType(file), digest, size });
  }
  const configType = layout.mediaTypes?.config ?? MEDIA.ociConfig;
  const reference = `${reg.host}/${repo}:${tag}`;
  const layerDigests = layers.map((l) => l.digest);
  if (!opts.asIndex) {
    const config = { mediaType: configType, ...(await client.pushBlob(repo, { file: layout.configPath })) };
    const digest = await client.pushManifest(repo, tag, manifestFor(config, layers), MEDIA.ociManifest);
    return { reference, digest, mediaType: MEDIA.ociManifest, manifestDigest: digest, configDigest: config.digest, layerDigests };
  }
  const base = JSON.parse(fs.readFileSync(layout.configPath, 'utf8')) as Record<string, unknown>;
  const platforms: NonNullable<PushResult['platforms']> = [];
  const entries = [];
  for (const p of opts.asIndex.platforms) {
    const { variant: _drop, ...rest } = base;
    const bytes = Buffer.from(JSON.stringify({ ...rest, os: p.os, architecture: p.architecture, ...(p.variant ? { variant: p.variant } : {}) }));
    const config = { mediaType: configType, ...(await client.pushBlob(repo, bytes)) };
    const manifest = manifestFor(config, layers);
    const manifestDigest = await client.pushManifest(repo, `sha256:${createHash('sha256').update(manifest).digest('hex')}`, manifest, MEDIA.ociManifest);
    platforms.push({ ...p, manifestDigest, configDigest: config.digest });
    entries.push({ mediaType: MEDIA.ociManifest, digest: manifestDigest, size: manifest.length, platform: { architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}) } });
  }
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: entries }));
  const digest = await client.pushManifest(repo, tag, index, MEDIA.ociIndex);
  const first = platforms[0];
  return { reference, digest, mediaType: MEDIA.ociIndex, manifestDigest: first?.manifestDigest ?? '', configDigest: first?.configDigest ?? '', layerDigests, platforms };
}

interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/**
 * Pushes the image (or index, recursively) that `ociDir/index.json` names first — or the one whose
 * ref.name annotation equals `ref` — byte for byte, so the registry's digests equal the layout's.
 */
export async function pushFromOciLayout(reg: Registry, repo: string, tag: string, ociDir: string, ref?: string): Promise<PushResult> {
  const client = new RegistryClient(reg);
  const blob = (d: { digest: string }): string => path.join(ociDir, 'blobs', ...d.digest.split(':'));
  const top = JSON.parse(fs.readFileSync(path.join(ociDir, 'index.json'), 'utf8')) as { manifests: (OciDescriptor & { annotations?: Record<string, string> })[] };
  const chosen = ref === undefined ? top.manifests[0] : top.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === ref);
  if (!chosen) throw new Error(`${ociDir}/index.json names no manifest${ref === undefined ? '' : ` with ref.name ${ref}`}`);
  const result: Omit<PushResult, 'reference' | 'digest' | 'mediaType'> = { manifestDigest: '', configDigest: '', layerDigests: [] };

  const pushTree = async (d: OciDescriptor, reference: string): Promise<{ digest: string; configDigest: string }> => {
    const bytes = fs.readFileSync(blob(d));
    const doc = JSON.parse(bytes.toString()) as { mediaType?: string; config?: OciDescriptor; layers?: OciDescriptor[]; manifests?: (OciDescriptor & { platform?: Platform })[] };
    const mediaType = doc.mediaType ?? d.mediaType;
    let configDigest = '';
    if (doc.manifests) {
      for (const m of doc.manifests) {
        const sub = await pushTree(m, m.digest);
        if (m.platform) (result.platforms ??= []).push({ ...m.platform, manifestDigest: sub.digest, configDigest: sub.configDigest });
      }
    } else if (doc.config && doc.layers) {
      for (const l of doc.layers) await client.pushBlob(repo, { file: blob(l) });
      await client.pushBlob(repo, { file: blob(doc.config) });
      configDigest = doc.config.digest;
      if (!result.manifestDigest) Object.assign(result, { manifestDigest: d.digest, configDigest, layerDigests: doc.layers.map((l) => l.digest) });
    } else {
      throw new Error(`${blob(d)}: neither an image manifest nor an index`);
    }
    return { digest: await client.pushManifest(repo, reference, bytes, mediaType), configDigest };
  };

  const { digest } = await pushTree(chosen, tag);
  return { reference: `${reg.host}/${repo}:${tag}`, digest, mediaType: chosen.mediaType, ...result };
}

/**
 * A registry of fixed bytes in this process (node:http; distribution-spec GETs only, no auth), for
 * what a real one will not do: send more than a blob is (`trailing`: that many zero bytes after a
 * blob's or manifest's own, sent as the client takes them, without a length) and count requests.
 */
export interface FakeRegistry {
  host: string;
  /** The digest of each blob GET, in order. */
  blobGets: string[];
  stop(): Promise<void>;
}

export async function startFakeRegistry(o: {
  /** 'repo:tag' → manifest bytes (also served by their digest). */
  manifests: Record<string, Buffer>;
  blobs: Buffer[];
  /** digest → zero bytes sent after it. */
  trailing?: Record<string, number>;
}): Promise<FakeRegistry> {
  const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const blobs = new Map(o.blobs.map((b) => [digestOf(b), b]));
  const manifests = new Map<string, Buffer>();
  for (const [ref, b] of Object.entries(o.manifests)) {
    manifests.set(ref, b);
    manifests.set(`${ref.slice(0, ref.lastIndexOf(':'))}:${digestOf(b)}`, b);
  }
  const blobGets: string[] = [];
  const zeros = Buffer.alloc(1024 * 1024);
  const send = (res: http.ServerResponse, body: Buffer, extra: number) => {
    res.write(body);
    let left = extra;
    const more = () => {
      while (left > 0 && !res.destroyed) {
        const n = Math.min(left, zeros.length);
        left -= n;
        if (!res.write(n === zeros.length ? zeros : zeros.subarray(0, n))) {
          res.once('drain', more);
          return;
        }
      }
      if (!res.destroyed) res.end();
    };
    more();
  };
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    if (url === '/v2/') return void res.writeHead(200).end('{}');
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url);
    const body = m ? (m[2] === 'manifests' ? manifests.get(`${m[1]}:${m[3]}`) : blobs.get(m[3] as string)) : undefined;
    if (!m || !body) return void res.writeHead(404).end();
    if (m[2] === 'blobs') blobGets.push(m[3] as string);
    const digest = digestOf(body);
    res.writeHead(200, { 'content-type': m[2] === 'manifests' ? MEDIA.ociManifest : 'application/octet-stream', 'docker-content-digest': digest });
    send(res, body, o.trailing?.[digest] ?? 0);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    blobGets,
    stop: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
