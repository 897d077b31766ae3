// The digest a tag names now, as a resumed scan checks it (RegistryClient.tagDigest), against a
// registry served by the test: the Docker-Content-Digest of a HEAD where the registry sends it; the
// sha256 of the manifest's bytes (computed here with node:crypto) where it does not, as the
// distribution spec allows; one token per repository behind a bearer challenge; an error for a
// registry that fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RegistryClient, parseRegistryRef, tagDigestOf } from '../../src/image/registry.js';

const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: {}, layers: [] }));
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function serve(handler: http.RequestListener): Promise<{ host: string; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { host: `127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}

test('tagDigest: the registry\'s header when it sends one, else the sha256 of the manifest a GET serves', async () => {
  const said = `sha256:${'ab'.repeat(32)}`;
  const seen: string[] = [];
  const s = await serve((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const withHeader = req.url?.includes('/with/');
    if (req.method === 'HEAD' && req.url?.includes('/nohead/')) {
      // A proxy that does not answer HEAD on manifests.
      res.writeHead(405);
      return res.end();
    }
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', ...(withHeader ? { 'docker-content-digest': said } : {}) });
    res.end(req.method === 'HEAD' ? undefined : manifest);
  });
  try {
    assert.equal(await new RegistryClient(parseRegistryRef(`registry://${s.host}/with/header:1`)).tagDigest('1'), said);
    assert.deepEqual(seen.splice(0), ['HEAD /v2/with/header/manifests/1']);
    assert.equal(await new RegistryClient(parseRegistryRef(`registry://${s.host}/no/header:1`)).tagDigest('1'), sha(manifest));
    assert.deepEqual(seen.splice(0), ['HEAD /v2/no/header/manifests/1', 'GET /v2/no/header/manifests/1']);
    assert.equal(await new RegistryClient(parseRegistryRef(`registry://${s.host}/nohead/app:1`)).tagDigest('1'), sha(manifest));
    assert.deepEqual(seen.splice(0), ['HEAD /v2/nohead/app/manifests/1', 'GET /v2/nohead/app/manifests/1']);
    // The digest recorded when the image was read follows the same rule.
    assert.equal(tagDigestOf({ digest: said, served: sha(manifest) }), said);
    assert.equal(tagDigestOf({ digest: undefined, served: sha(manifest) }), sha(manifest));
    assert.equal(tagDigestOf({ digest: 'sha256:short', served: sha(manifest) }), sha(manifest));
  } finally {
    await s.close();
  }
});

test('tagDigest: behind a bearer challenge, one token for the repository serves every tag, asked one after another or all at once; a failing registry is an error; a token server that never answers is cut off', async () => {
  let tokens = 0;
  const s = await serve((req, res) => {
    const url = new URL(req.url!, 'http://x');
    if (url.pathname === '/silent-token') return; // never answers
    if (url.pathname.startsWith('/v2/slow/') && req.headers.authorization === undefined) {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${req.headers.host}/silent-token",service="test"` });
      return res.end();
    }
    if (url.pathname === '/token') {
      tokens++;
      assert.equal(url.searchParams.get('scope'), 'repository:team/app:pull');
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ token: 'T' }));
    }
    if (url.pathname.startsWith('/v2/broken/')) {
      res.writeHead(500);
      return res.end();
    }
    if (req.headers.authorization !== 'Bearer T') {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${req.headers.host}/token",service="test",scope="repository:team/app:pull"` });
      return res.end();
    }
    res.writeHead(200, { 'docker-content-digest': sha(Buffer.from(url.pathname)) });
    res.end();
  });
  try {
    const client = new RegistryClient(parseRegistryRef(`registry://${s.host}/team/app:1`));
    for (const tag of ['1', '2', 'latest']) assert.equal(await client.tagDigest(tag), sha(Buffer.from(`/v2/team/app/manifests/${tag}`)));
    assert.equal(tokens, 1, 'one token for three tags of one repository');
    const together = new RegistryClient(parseRegistryRef(`registry://${s.host}/team/app:1`));
    const all = await Promise.all(['1', '2', '3', '4'].map((tag) => together.tagDigest(tag)));
    assert.deepEqual(all, ['1', '2', '3', '4'].map((tag) => sha(Buffer.from(`/v2/team/app/manifests/${tag}`))));
    assert.equal(tokens, 2, 'four checks at once shared one more token');
    // The check's time limit covers the token server too.
    const t0 = Date.now();
    await assert.rejects(new RegistryClient(parseRegistryRef(`registry://${s.host}/slow/app:1`)).tagDigest('1', AbortSignal.timeout(500)));
    assert.ok(Date.now() - t0 < 10_000, `cut off after ${Date.now() - t0} ms`);
    await assert.rejects(new RegistryClient(parseRegistryRef(`registry://${s.host}/broken/app:1`)).tagDigest('1'), /HTTP 500/);
  } finally {
    await s.close();
  }
});
