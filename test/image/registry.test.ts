// Image scanning from a real registry: Debian's docker-registry (the distribution registry) started
// on 127.0.0.1 by the test, images pushed with the registry's HTTP API; anonymous, basic and token
// auth; a multi-arch index resolved to linux/amd64 with the other platforms named.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CORPUS } from '../helpers.js';
import { buildC, hasGcc } from '../support/fixtures.js';
import { buildOciLayout } from '../support/images.js';
import { pushImage, registryUnavailable, startRegistry, type Registry } from '../support/registry.js';
import { scanImageRefs } from '../../src/image/scan-image.js';
import { parseRegistryRef, registryBase } from '../../src/image/registry.js';

const WHEEZY = path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so');
const skip = (!hasGcc() && 'gcc not installed') || (!fs.existsSync(WHEEZY) && 'corpus not present') || registryUnavailable('none') || false;

describe('registry', { skip }, () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-reg-'));
  let layout: ReturnType<typeof buildOciLayout>;
  const regs: Registry[] = [];
  before(() => {
    const dir = path.join(work, 'layer');
    fs.mkdirSync(path.join(dir, 'lib', 'x86_64-linux-gnu'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'usr', 'bin'), { recursive: true });
    fs.copyFileSync(WHEEZY, path.join(dir, 'lib', 'x86_64-linux-gnu', 'libc.so.6'));
    fs.copyFileSync(buildC('imports-time', 'imports-time', []), path.join(dir, 'usr', 'bin', 'uses-time'));
    layout = buildOciLayout(path.join(work, 'oci'), [{ dir, compress: 'gzip' }], { repoTag: 'wheezy:1' });
  });
  after(async () => {
    for (const r of regs) await r.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('anonymous pull: the pushed image is scanned through the registry API', { timeout: 120_000 }, async () => {
    const reg = await startRegistry();
    regs.push(reg);
    await pushImage(reg, 'test/wheezy', '1', { configPath: layout.configPath, layerPaths: layout.layerPaths });
    const { images, errors } = await scanImageRefs([`registry://${reg.host}/test/wheezy:1`]);
    assert.deepEqual(errors, []);
    assert.equal(images[0]?.source, 'registry');
    assert.equal(images[0]?.verdicts.none.outcome, 'crash');
    assert.ok(images[0]?.files.some((f) => f.path === '/usr/bin/uses-time'));
    const missing = await scanImageRefs([`registry://${reg.host}/test/wheezy:nope`]);
    assert.equal(missing.errors[0]?.code, 'IMAGE_MISSING_BLOB');
  });

  test('a multi-arch index: linux/amd64 is scanned, the other platforms are named', { timeout: 120_000 }, async () => {
    const reg = regs[0] ?? (await startRegistry());
    await pushImage(reg, 'test/multi', '1', { configPath: layout.configPath, layerPaths: layout.layerPaths }, { asIndex: { platforms: [{ os: 'linux', architecture: 'arm64', variant: 'v8' }, { os: 'linux', architecture: 'amd64' }] } });
    const { images, errors } = await scanImageRefs([`registry://${reg.host}/test/multi:1`]);
    assert.deepEqual(errors, []);
    assert.equal(images[0]?.platform, 'linux/amd64');
    assert.deepEqual(images[0]?.skippedPlatforms, ['linux/arm64/v8']);
  });

  test('basic auth: refused without credentials (REGISTRY_AUTH), scanned with them', { timeout: 120_000, skip: registryUnavailable('basic') }, async () => {
    const reg = await startRegistry({ auth: 'basic' });
    regs.push(reg);
    await pushImage(reg, 'test/private', '1', { configPath: layout.configPath, layerPaths: layout.layerPaths });
    const denied = await scanImageRefs([`registry://${reg.host}/test/private:1`]);
    assert.equal(denied.errors[0]?.code, 'REGISTRY_AUTH');
    const ok = await scanImageRefs([`registry://${reg.host}/test/private:1`], { creds: `${reg.user}:${reg.password}` });
    assert.deepEqual(ok.errors, []);
    assert.equal(ok.images[0]?.verdicts.none.outcome, 'crash');
  });

  test('bearer token auth through the realm the challenge names', { timeout: 120_000, skip: registryUnavailable('token') }, async (t) => {
    let reg: Registry;
    try {
      reg = await startRegistry({ auth: 'token' });
    } catch (e) {
      return t.skip(`token registry could not start: ${(e as Error).message}`);
    }
    regs.push(reg);
    await pushImage(reg, 'test/token', '1', { configPath: layout.configPath, layerPaths: layout.layerPaths });
    const { images, errors } = await scanImageRefs([`registry://${reg.host}/test/token:1`], { creds: `${reg.user}:${reg.password}` });
    assert.deepEqual(errors, []);
    assert.equal(images[0]?.verdicts.none.outcome, 'crash');
  });
});

test('references: tag, digest, default tag; https unless localhost or --insecure', () => {
  assert.deepEqual(parseRegistryRef('registry://localhost:5000/a/b:2.8'), { host: 'localhost:5000', repo: 'a/b', tag: '2.8' });
  assert.deepEqual(parseRegistryRef(`registry://r.example/x@sha256:${'a'.repeat(64)}`), { host: 'r.example', repo: 'x', digest: `sha256:${'a'.repeat(64)}` });
  assert.equal(parseRegistryRef('registry://r.example/redis').tag, 'latest');
  assert.throws(() => parseRegistryRef('registry://r.example/UPPER'), /not a valid repository name/);
  assert.equal(registryBase(parseRegistryRef('registry://r.example/x')), 'https://r.example/v2/x');
  assert.equal(registryBase(parseRegistryRef('registry://r.example/x'), true), 'http://r.example/v2/x');
  assert.equal(registryBase(parseRegistryRef('registry://127.0.0.1:5000/x')), 'http://127.0.0.1:5000/v2/x');
});
