// Pushing an image to a registry (distribution-spec v1.1, "Push"): each blob the registry does not
// have (HEAD) uploaded whole (POST, then PUT ?digest=), then the manifest under its tag. Auth and
// the http/https rule are the scan's registry client's.
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { VsysError } from '../errors.js';
import { parseRegistryRef, RegistryClient, type RegistryOptions } from './registry.js';
import type { Blob, ImageToWrite } from './write-image.js';

export interface PushResult {
  ref: string;
  digest: string;
  /** Blobs sent, and the ones the registry had already. */
  uploaded: string[];
  present: string[];
}

async function failed(r: Response, what: string): Promise<never> {
  const text = (await r.text().catch(() => '')).slice(0, 300);
  throw new VsysError('REGISTRY_FAILED', `${what}: HTTP ${r.status}${text ? ` ${text.trim()}` : ''}`);
}

function body(b: Blob): () => { body: unknown; length: number } {
  if ('bytes' in b) return () => ({ body: b.bytes, length: b.size });
  return () => ({ body: Readable.toWeb(fs.createReadStream(b.at.file, b.at.size > 0 ? { start: b.at.start, end: b.at.start + b.at.size - 1 } : { start: 0, end: -1 })), length: b.size });
}

async function uploadBlob(client: RegistryClient, b: Blob, where: string): Promise<boolean> {
  const head = await client.send('HEAD', `/blobs/${b.digest}`);
  if (head.ok) return false;
  const start = await client.send('POST', '/blobs/uploads/', { 'content-length': '0' });
  if (start.status !== 202) await failed(start, `${where}: starting the upload of ${b.digest}`);
  const location = start.headers.get('location');
  if (!location) throw new VsysError('REGISTRY_FAILED', `${where}: the registry gave no upload location for ${b.digest}`);
  const url = new URL(location, registryOrigin(client));
  url.searchParams.set('digest', b.digest);
  const put = await client.send('PUT', url.toString(), { 'content-type': 'application/octet-stream' }, body(b));
  if (put.status !== 201) await failed(put, `${where}: uploading ${b.digest}`);
  return true;
}

function registryOrigin(client: RegistryClient): string {
  const base = client.baseUrl;
  return new URL(base).origin;
}

/** Pushes `img` to registry://HOST/REPO:TAG: blobs first (those missing), then the manifest. */
export async function pushImage(refText: string, img: ImageToWrite, o: RegistryOptions = {}): Promise<PushResult> {
  const ref = parseRegistryRef(refText);
  if (ref.digest) throw new VsysError('USAGE', `--push ${refText}: push to a tag, not a digest`);
  const client = new RegistryClient(ref, o);
  const where = `${ref.host}/${ref.repo}`;
  const out: PushResult = { ref: `${where}:${ref.tag}`, digest: img.manifest.digest, uploaded: [], present: [] };
  for (const b of [...img.layers, img.config] as Blob[]) {
    if (out.uploaded.includes(b.digest) || out.present.includes(b.digest)) continue;
    (await uploadBlob(client, b, where) ? out.uploaded : out.present).push(b.digest);
  }
  const r = await client.send('PUT', `/manifests/${ref.tag as string}`, { 'content-type': img.manifest.mediaType }, () => ({ body: img.manifest.bytes, length: img.manifest.size }));
  if (r.status !== 201) await failed(r, `${where}: putting the manifest`);
  const said = r.headers.get('docker-content-digest');
  if (said && said !== img.manifest.digest) throw new VsysError('REGISTRY_FAILED', `${where}: the registry stored the manifest as ${said}, not ${img.manifest.digest}`);
  return out;
}
