// Images are checked, not believed (issue 23, item 3): every blob against its descriptor's size and
// sha256, every layer against its config's diff_id, an archive with a member twice refused. Each lie
// is an error for its image alone (exit 3), while a good image of the same run is still reported;
// the same through a real registry serving a blob that is not what its digest says; --no-verify
// trusts the image and says so.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runVsys } from '../helpers.js';
import { type AnyLayerSpec, appendMember, appendRawMember, buildDockerArchive, buildOciLayout, replaceBytes, rewriteOciLayout } from '../support/images.js';
import { pushImage, registryUnavailable, startFakeRegistry, startRegistry, type Registry } from '../support/registry.js';
import { scanImageRefs } from '../../src/image/scan-image.js';
import { hashRange } from '../../src/image/hash-range.js';
import { layerInFile } from '../../src/image/sources.js';
import type { VsysError } from '../../src/errors.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-verify-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

const MARK = 'vsys-verify-marker-AAAA';
const TAMPERED = 'vsys-verify-marker-BBBB';

/** A small layer: a real ELF file (this node binary's neighbour /bin/true) and a text holding MARK. */
function layerDir(): string {
  const dir = path.join(work, 'layer');
  if (fs.existsSync(dir)) return dir;
  fs.mkdirSync(path.join(dir, 'usr', 'bin'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'etc'), { recursive: true });
  fs.copyFileSync('/bin/true', path.join(dir, 'usr', 'bin', 'true'));
  fs.writeFileSync(path.join(dir, 'etc', 'motd'), `${MARK}\n`);
  return dir;
}

let n = 0;
const fresh = (name: string) => path.join(work, `${n++}-${name}`);

/** A good docker-archive to scan beside each bad one. */
let good: string;
before(() => {
  good = fresh('good.tar');
  buildDockerArchive(good, [{ dir: layerDir() }], { repoTag: 'good:1' });
});

/** The bad image gives `code`, the good one is reported, and the CLI exits 3 with the counts agreeing. */
async function expectError(bad: string, code: string, message: RegExp): Promise<void> {
  const { images, errors } = await scanImageRefs([bad, good], { concurrency: 1 });
  assert.deepEqual(errors.map((e) => [e.ref, e.code]), [[bad, code]], JSON.stringify(errors));
  assert.match(errors[0]!.message, message);
  assert.deepEqual(images.map((i) => i.ref), ['good:1']);
  assert.ok(images[0]!.elfFiles >= 1);

  const text = runVsys(['scan', '--mode', 'none', bad, good]);
  assert.equal(text.status, 3, text.stderr);
  assert.match(text.stdout, /^1 image\(s\), 1 error\(s\)/m);
  assert.match(text.stdout, new RegExp(`! ${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ${code}`));
  const json = runVsys(['scan', '--mode', 'none', '--json', bad, good]);
  assert.equal(json.status, 3, json.stderr);
  const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const errorRecords = lines.filter((l) => l.record === 'error');
  assert.deepEqual(errorRecords.map((e) => [e.image, e.code]), [[bad, code]]);
  const summary = lines.at(-1);
  assert.equal(summary.record, 'summary');
  assert.equal(summary.images, 1);
  assert.equal(summary.errors, 1, 'the JSON counts the error the text counts');
  assert.equal(summary.unjudged, 1);
  assert.equal(summary.exit, 3);
}

describe('images that lie about their blobs', () => {
  test('a layer descriptor declaring four times its blob\'s size: IMAGE_SIZE_MISMATCH', async () => {
    const dir = fresh('oci-size');
    buildOciLayout(dir, [{ dir: layerDir(), compress: 'gzip' }], { repoTag: 'size:1' });
    rewriteOciLayout(dir, { manifest: (m) => (m.layers[0].size *= 4) });
    await expectError(`oci:${dir}`, 'IMAGE_SIZE_MISMATCH', /bytes where its descriptor says/);
  });

  test('a layer whose bytes changed after the manifest was written (docker-archive): IMAGE_DIGEST_MISMATCH', async () => {
    const bad = fresh('changed.tar');
    buildDockerArchive(bad, [{ dir: layerDir() }], { repoTag: 'changed:1' });
    replaceBytes(bad, MARK, TAMPERED);
    await expectError(bad, 'IMAGE_DIGEST_MISMATCH', /hash to sha256:[0-9a-f]{64} where sha256:[0-9a-f]{64} is claimed/);
  });

  test('a layer whose bytes changed, in an OCI layout directory (read by position): IMAGE_DIGEST_MISMATCH', async () => {
    const dir = fresh('oci-changed');
    const built = buildOciLayout(dir, [{ dir: layerDir() }], { repoTag: 'changed:2' });
    replaceBytes(built.layerPaths[0]!, MARK, TAMPERED);
    await expectError(`oci:${dir}`, 'IMAGE_DIGEST_MISMATCH', /is claimed/);
  });

  test('a config whose diff_id is not the sha256 of the layer\'s uncompressed tar: IMAGE_DIGEST_MISMATCH', async () => {
    const dir = fresh('oci-diffid');
    buildOciLayout(dir, [{ dir: layerDir(), compress: 'gzip' }], { repoTag: 'diffid:1' });
    rewriteOciLayout(dir, { config: (c) => (c.rootfs.diff_ids[0] = `sha256:${'ab'.repeat(32)}`) });
    await expectError(`oci:${dir}`, 'IMAGE_DIGEST_MISMATCH', /diff_id is sha256:(ab){32}/);
  });

  test('two manifest.json members, the second []: IMAGE_DUPLICATE_MEMBER (not "0 image(s), 0 error(s)")', async () => {
    const bad = fresh('two-manifests.tar');
    buildDockerArchive(bad, [{ dir: layerDir() }], { repoTag: 'twice:1' });
    appendMember(bad, 'manifest.json', '[]');
    await expectError(bad, 'IMAGE_DUPLICATE_MEMBER', /two members named manifest\.json/);
  });

  // tar xf and docker load take the last of two members of one name, whatever its spelling or type;
  // vsys would read the first.
  for (const [how, member, bytes] of [
    ['as /manifest.json', { name: '/manifest.json' }, '[]'],
    ['as .//manifest.json', { name: './/manifest.json' }, '[]'],
    ['as a/../manifest.json', { name: 'a/../manifest.json' }, '[]'],
    ['as a hard link', { name: 'manifest.json', type: 'link', linkname: 'repositories' }, ''],
    ['as a symlink', { name: 'manifest.json', type: 'symlink', linkname: 'repositories' }, ''],
  ] as const) {
    test(`a second manifest.json ${how}: IMAGE_DUPLICATE_MEMBER`, async () => {
      const bad = fresh('two-manifests-spelt.tar');
      buildDockerArchive(bad, [{ dir: layerDir() }], { repoTag: 'twice:3' });
      appendRawMember(bad, member, bytes);
      // The oracle: GNU tar extracts the appended member over the first (a name with '..' it skips
      // with an error, where docker's loader, joining and cleaning the name, writes manifest.json).
      if (!member.name.includes('..')) {
        const out = fs.mkdtempSync(path.join(work, 'x-'));
        assert.equal(spawnSync('tar', ['-xf', bad, '-C', out]).status, 0);
        if (bytes !== '') assert.equal(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'), bytes);
        else assert.equal(fs.lstatSync(path.join(out, 'manifest.json')).isSymbolicLink(), 'type' in member && member.type === 'symlink');
      }
      await expectError(bad, 'IMAGE_DUPLICATE_MEMBER', /two members named manifest\.json/);
    });
  }

  test('a duplicate blob member: IMAGE_DUPLICATE_MEMBER', async () => {
    const bad = fresh('two-blobs.tar');
    const built = buildDockerArchive(bad, [{ dir: layerDir() }], { repoTag: 'twice:2' });
    appendMember(bad, `blobs/sha256/${built.configDigest.slice(7)}`, '{}');
    await expectError(bad, 'IMAGE_DUPLICATE_MEMBER', /two members named blobs\/sha256\//);
  });

  test('unmodified images of every layout scan clean verified, and --no-verify trusts a changed one with a warning', async () => {
    const dir = fresh('oci-good');
    buildOciLayout(dir, [{ dir: layerDir(), compress: 'zstd' }, { dir: layerDir(), compress: 'none' }], { repoTag: 'good:2' });
    const t0 = performance.now();
    const { images, errors } = await scanImageRefs([good, `oci:${dir}`]);
    const verified = performance.now() - t0;
    assert.deepEqual(errors, []);
    assert.deepEqual(images.map((i) => i.ref).sort(), ['2', 'good:1']);
    assert.ok(verified < 10_000, `${verified} ms`);

    const bad = fresh('changed-trusted.tar');
    buildDockerArchive(bad, [{ dir: layerDir() }], { repoTag: 'trusted:1' });
    replaceBytes(bad, MARK, TAMPERED);
    const r = runVsys(['scan', '--mode', 'none', '--json', '--no-verify', bad]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.filter((l) => l.record === 'image').map((l) => l.ref), ['trusted:1']);
    assert.match(lines.at(-1).warnings.join('\n'), /--no-verify: image blobs were not checked/);
    assert.match(r.stderr, /vsys: warning: --no-verify/);
  });
});

const skipRegistry = registryUnavailable('none') || false;

describe('a registry serving a blob that is not what its digest says', { skip: skipRegistry }, () => {
  let reg: Registry | undefined;
  after(async () => reg?.stop());

  test('IMAGE_DIGEST_MISMATCH for that image, the good one of the same run still reported', { timeout: 120_000 }, async () => {
    const dir = fresh('oci-push');
    // A layer of its own: a blob of the same digest verified from `good` would vouch for this one
    // (a verified blob is its digest's bytes wherever that digest is claimed), and not be fetched.
    const own = fresh('pushed-layer');
    fs.cpSync(layerDir(), own, { recursive: true });
    fs.writeFileSync(path.join(own, 'etc', 'pushed'), 'pushed\n');
    const built = buildOciLayout(dir, [{ dir: own }], { repoTag: 'pushed:1' });
    reg = await startRegistry();
    await pushImage(reg, 'test/liar', '1', { configPath: built.configPath, layerPaths: built.layerPaths });
    await pushImage(reg, 'test/honest', '1', { configPath: built.configPath, layerPaths: built.layerPaths });
    const ok = await scanImageRefs([`registry://${reg.host}/test/liar:1`]);
    assert.deepEqual(ok.errors, [], 'clean before the blob is changed');
    // The registry's own copy of the layer, changed behind its back (same length).
    const hex = built.layerDigests[0]!.slice(7);
    const data = path.join(path.dirname(reg.logFile), 'storage', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    replaceBytes(data, MARK, TAMPERED);
    const bad = `registry://${reg.host}/test/liar:1`;
    const { images, errors } = await scanImageRefs([bad, good], { concurrency: 1 });
    assert.deepEqual(errors.map((e) => [e.ref, e.code]), [[bad, 'IMAGE_DIGEST_MISMATCH']], JSON.stringify(errors));
    assert.deepEqual(images.map((i) => i.ref), ['good:1']);
    const r = runVsys(['scan', '--mode', 'none', '--json', bad, good]);
    assert.equal(r.status, 3, r.stderr);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.deepEqual([summary.images, summary.errors, summary.unjudged], [1, 1, 1]);
  });
});

describe('a layer that fails stops its hash', () => {
  test('IMAGE_TOO_LARGE on a 3 GB layer returns without hashing the 3 GB (the hashing thread is cancelled)', { timeout: 60_000 }, async () => {
    const file = fresh('big-layer.tar');
    const size = 3 * 1024 ** 3;
    fs.writeFileSync(file, '');
    fs.truncateSync(file, size); // sparse: zeros read from the page cache's zero page, no disk
    const fd = fs.openSync(file, 'r');
    try {
      let t0 = performance.now();
      await assert.rejects(layerInFile(file, fd, 0, size, 'big', { maxLayerBytes: 1024 ** 2, maxFileBytes: 1024 ** 2, verify: true }), (e: VsysError) => e.code === 'IMAGE_TOO_LARGE');
      const failMs = performance.now() - t0;
      // The oracle, measured after (so the failed read is not the one that found the pages cold):
      // what hashing the whole range costs on this host.
      t0 = performance.now();
      const whole = await hashRange(fd, 0, size);
      const hashMs = performance.now() - t0;
      assert.equal(whole.bytes, size);
      assert.ok(failMs < hashMs / 4, `failed after ${failMs.toFixed(0)} ms; hashing the layer takes ${hashMs.toFixed(0)} ms`);
      // The hashing thread is free again at once: a new job completes.
      assert.equal((await hashRange(fd, 0, 4096)).bytes, 4096);
    } finally {
      fs.closeSync(fd);
      fs.rmSync(file);
    }
  });
});

describe('an OCI layout directory that names files outside itself', () => {
  /** A layout to spoil, its config and first layer blob paths, and its index. */
  function layout(name: string) {
    const dir = fresh(name);
    const built = buildOciLayout(dir, [{ dir: layerDir(), compress: 'gzip' }], { repoTag: `${name}:1` });
    const indexFile = path.join(dir, 'index.json');
    return { dir, built, indexFile, index: JSON.parse(fs.readFileSync(indexFile, 'utf8')) };
  }
  /** The CLI in a child first (a hang or a read of /dev/zero is killed there, not here), then in-process. */
  async function refused(ref: string, code: string, message: RegExp): Promise<void> {
    const t0 = performance.now();
    const r = runVsys(['scan', '--mode', 'none', '--json', ref], { timeout: 20_000 });
    assert.equal(r.signal, null, `killed after ${(performance.now() - t0).toFixed(0)} ms (a hang or a runaway read)`);
    assert.equal(r.status, 3, r.stderr);
    const errs = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.record === 'error');
    assert.deepEqual(errs.map((e) => e.code), [code], r.stdout);
    await expectError(ref, code, message);
  }

  test('a config blob that is a symlink to /dev/zero: IMAGE_BLOB_OUTSIDE, nothing read', async () => {
    const { dir, built } = layout('oci-devzero');
    fs.rmSync(built.configPath);
    fs.symlinkSync('/dev/zero', built.configPath);
    await refused(`oci:${dir}`, 'IMAGE_BLOB_OUTSIDE', /resolves to \/dev\/zero, outside the layout/);
  });

  test('a config blob that is a FIFO: IMAGE_BLOB_NOT_FILE, no hang', async () => {
    const { dir, built } = layout('oci-fifo');
    fs.rmSync(built.configPath);
    assert.equal(spawnSync('mkfifo', [built.configPath]).status, 0);
    await refused(`oci:${dir}`, 'IMAGE_BLOB_NOT_FILE', /not a regular file \(a FIFO\)/);
  });

  test('a layer blob that is a symlink to a copy of itself outside the layout: IMAGE_BLOB_OUTSIDE', async () => {
    const { dir, built } = layout('oci-layer-outside');
    const copy = fresh('layer-outside.tar.gz');
    fs.copyFileSync(built.layerPaths[0]!, copy);
    fs.rmSync(built.layerPaths[0]!);
    fs.symlinkSync(copy, built.layerPaths[0]!);
    await refused(`oci:${dir}`, 'IMAGE_BLOB_OUTSIDE', /outside the layout/);
  });

  test('a blob symlinked to another file inside the layout is read', async () => {
    const { dir, built } = layout('oci-layer-inside');
    const moved = path.join(dir, 'moved.tar.gz');
    fs.renameSync(built.layerPaths[0]!, moved);
    fs.symlinkSync('../../moved.tar.gz', built.layerPaths[0]!);
    const { images, errors } = await scanImageRefs([`oci:${dir}`]);
    assert.deepEqual(errors, []);
    assert.ok(images[0]!.elfFiles >= 1);
  });

  test('index.json naming "sha256:../../…/etc/passwd": IMAGE_BAD_DIGEST, /etc/passwd not read', async () => {
    const { dir, indexFile, index } = layout('oci-passwd');
    index.manifests[0].digest = `sha256:${'../'.repeat(16)}etc/passwd`;
    fs.writeFileSync(indexFile, JSON.stringify(index));
    await refused(`oci:${dir}`, 'IMAGE_BAD_DIGEST', /is not a sha256 digest/);
  });

  test('a manifest digest of another algorithm (sha512): IMAGE_UNSUPPORTED_DIGEST', async () => {
    const { dir, indexFile, index } = layout('oci-sha512');
    index.manifests[0].digest = `sha512:${'ab'.repeat(64)}`;
    fs.writeFileSync(indexFile, JSON.stringify(index));
    await refused(`oci:${dir}`, 'IMAGE_UNSUPPORTED_DIGEST', /only sha256/);
  });
});

describe('a registry that sends more than a descriptor says', () => {
  /** An image to serve: its manifest, config and layer bytes. */
  function image(name: string, layers: AnyLayerSpec[]) {
    const built = buildOciLayout(fresh(name), layers, { repoTag: `${name}:1` });
    return { built, manifest: fs.readFileSync(built.manifestPath), config: fs.readFileSync(built.configPath), layers: built.layerPaths.map((p) => fs.readFileSync(p)) };
  }

  /** The scan's errors, or a failure once `ms` pass (the scan is left to the registry's stop). */
  async function scanWithin(ref: string, ms: number): Promise<{ code: string; message: string }[]> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the scan of ${ref} did not end within ${ms} ms`)), ms);
    });
    try {
      const { errors } = await Promise.race([scanImageRefs([ref], { concurrency: 1 }), late]);
      return errors;
    } finally {
      clearTimeout(timer);
    }
  }

  for (const [what, extra, pick] of [
    ['the layer, then 64 GB of zeros', 64 * 1024 ** 3, (i: ReturnType<typeof image>) => i.built.layerDigests[0]!],
    ['the config, then 64 MB of zeros', 64 * 1024 ** 2, (i: ReturnType<typeof image>) => i.built.configDigest],
  ] as const) {
    test(`${what}: IMAGE_SIZE_MISMATCH within seconds`, { timeout: 60_000 }, async () => {
      const img = image('trailing', [{ dir: layerDir(), compress: 'gzip' }]);
      const reg = await startFakeRegistry({ manifests: { 'test/trailing:1': img.manifest }, blobs: [img.config, ...img.layers], trailing: { [pick(img)]: extra } });
      try {
        const t0 = performance.now();
        const errors = await scanWithin(`registry://${reg.host}/test/trailing:1`, 10_000);
        assert.deepEqual(errors.map((e) => e.code), ['IMAGE_SIZE_MISMATCH'], JSON.stringify(errors));
        assert.match(errors[0]!.message, /more than the \d+ bytes its descriptor says; stopped there/);
        assert.ok(performance.now() - t0 < 5_000, `${(performance.now() - t0).toFixed(0)} ms`);
      } finally {
        await reg.stop();
      }
    });
  }

  test('the same image without the extra bytes scans clean (the fake registry is a registry)', async () => {
    const img = image('honest', [{ dir: layerDir(), compress: 'gzip' }]);
    const reg = await startFakeRegistry({ manifests: { 'test/honest:1': img.manifest }, blobs: [img.config, ...img.layers] });
    try {
      const { images, errors } = await scanImageRefs([`registry://${reg.host}/test/honest:1`]);
      assert.deepEqual(errors, []);
      assert.ok(images[0]!.elfFiles >= 1);
    } finally {
      await reg.stop();
    }
  });
});

describe('a registry layer shared by several refs', () => {
  test('verified, it is downloaded once: three refs sharing two layers make 5 blob GETs (3 configs, 2 layers), not 9', async () => {
    const built = buildOciLayout(fresh('shared'), [{ dir: layerDir(), compress: 'gzip' }, { dir: layerDir(), compress: 'none' }], { repoTag: 'shared:1' });
    const manifest = JSON.parse(fs.readFileSync(built.manifestPath, 'utf8'));
    const config = JSON.parse(fs.readFileSync(built.configPath, 'utf8'));
    const blobs: Buffer[] = built.layerPaths.map((p) => fs.readFileSync(p));
    const manifests: Record<string, Buffer> = {};
    for (const i of [1, 2, 3]) {
      // Three images: one config each, the same two layers.
      const c = Buffer.from(JSON.stringify({ ...config, author: `image ${i}` }));
      blobs.push(c);
      manifests[`test/shared${i}:1`] = Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, digest: `sha256:${createHash('sha256').update(c).digest('hex')}`, size: c.length } }));
    }
    const reg = await startFakeRegistry({ manifests, blobs });
    try {
      const refs = [1, 2, 3].map((i) => `registry://${reg.host}/test/shared${i}:1`);
      const { images, errors } = await scanImageRefs(refs, { concurrency: 1 });
      assert.deepEqual(errors, []);
      assert.equal(images.length, 3);
      assert.ok(images.every((i) => i.elfFiles >= 1));
      const layerGets = reg.blobGets.filter((d) => built.layerDigests.includes(d));
      assert.deepEqual(layerGets.sort(), [...built.layerDigests].sort(), 'each shared layer fetched once');
      assert.equal(reg.blobGets.length, 5, reg.blobGets.join('\n'));
    } finally {
      await reg.stop();
    }
  });

  test('a ref claiming the shared digest with another size does not get the cached analysis', async () => {
    const built = buildOciLayout(fresh('shared-size'), [{ dir: layerDir(), compress: 'gzip' }], { repoTag: 'shared:2' });
    const manifest = JSON.parse(fs.readFileSync(built.manifestPath, 'utf8'));
    const liar = Buffer.from(JSON.stringify({ ...manifest, layers: [{ ...manifest.layers[0], size: manifest.layers[0].size + 1 }] }));
    const reg = await startFakeRegistry({ manifests: { 'test/honest:1': fs.readFileSync(built.manifestPath), 'test/liar:1': liar }, blobs: [fs.readFileSync(built.configPath), fs.readFileSync(built.layerPaths[0]!)] });
    try {
      const { images, errors } = await scanImageRefs([`registry://${reg.host}/test/honest:1`, `registry://${reg.host}/test/liar:1`], { concurrency: 1 });
      assert.deepEqual(images.map((i) => i.ref), [`${reg.host}/test/honest:1`]);
      assert.deepEqual(errors.map((e) => e.code), ['IMAGE_SIZE_MISMATCH']);
    } finally {
      await reg.stop();
    }
  });
});
