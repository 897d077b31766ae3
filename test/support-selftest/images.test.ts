// Self-test of test/support's image helpers against independent readers: GNU tar, gzip, zstd,
// sha256sum, skopeo (containers/image) and a real docker-registry. Skips with a reason when a tool is missing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hasCommand } from '../helpers.js';
import {
  buildDockerArchive,
  buildOciLayout,
  decompressionBomb,
  MEDIA,
  opaque,
  packTar,
  pathTraversalLayer,
  symlinkLoopLayer,
  truncatedTar,
  whiteout,
  type LayerSpec,
  type OciLayoutResult,
} from '../support/images.js';
import { pushFromOciLayout, pushImage, registryUnavailable, startRegistry, type Registry } from '../support/registry.js';
import { bookwormRootfs } from '../support/rootfs.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-support-selftest-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function sh(cmd: string, args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20, timeout: 120_000, ...(input === undefined ? {} : { input }) });
  return { status: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

function shell(script: string): string {
  const r = spawnSync('sh', ['-c', script], { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120_000 });
  assert.equal(r.status, 0, `${script}: ${r.stderr}`);
  return r.stdout;
}

function json<T = Record<string, unknown>>(cmd: string, args: string[]): T {
  const r = sh(cmd, args);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

const noSkopeo = hasCommand('skopeo') ? false : 'skopeo is not installed (apt-get install skopeo)';
const noZstd = hasCommand('zstd') ? false : 'zstd is not installed (apt-get install zstd)';

/** A small tree with every entry kind a layer carries, owned by 1234:0 with a setuid binary. */
function sampleTree(root: string): string {
  fs.mkdirSync(path.join(root, 'usr', 'bin'), { recursive: true });
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(root, 'usr', 'bin', 'x'), '#!/bin/sh\necho x\n');
  // chown clears set-user-ID, so it comes first.
  fs.chownSync(path.join(root, 'usr', 'bin', 'x'), 1234, 0);
  fs.chmodSync(path.join(root, 'usr', 'bin', 'x'), 0o4755);
  fs.symlinkSync('x', path.join(root, 'usr', 'bin', 'y'));
  fs.linkSync(path.join(root, 'usr', 'bin', 'x'), path.join(root, 'usr', 'bin', 'z'));
  fs.writeFileSync(path.join(root, 'etc', 'os-release'), 'ID=vsys\n');
  whiteout(root, '/etc/motd');
  opaque(root, 'var/cache');
  return root;
}

describe('layer tars made with the tar CLI', () => {
  test('packTar keeps owners, modes, links and whiteouts; names are ./-relative and sorted', () => {
    const dir = sampleTree(path.join(tmp, 'tree'));
    const out = path.join(tmp, 'tree.tar');
    packTar(dir, out);
    const lines = sh('tar', ['--numeric-owner', '-tvf', out]).stdout.trim().split('\n');
    const names = sh('tar', ['-tf', out]).stdout.trim().split('\n');
    assert.deepEqual(names, ['./', './etc/', './etc/.wh.motd', './etc/os-release', './usr/', './usr/bin/', './usr/bin/x', './usr/bin/y', './usr/bin/z', './var/', './var/cache/', './var/cache/.wh..wh..opq']);
    const line = (name: string): string => lines.find((l) => l.endsWith(` ${name}`) || l.includes(` ${name} `)) ?? '';
    assert.match(line('./usr/bin/x'), /^-rwsr-xr-x 1234\/0 /);
    assert.match(line('./usr/bin/y'), /^l.* \.\/usr\/bin\/y -> x$/);
    assert.match(line('./usr/bin/z'), /^h.* \.\/usr\/bin\/z link to \.\/usr\/bin\/x$/);
    assert.match(line('./etc/.wh.motd'), /^-rw-r--r-- 0\/0 +0 /);
    assert.match(line('./var/cache/.wh..wh..opq'), /^-.* 0\/0 +0 /);
  });

  test("'pax' adds a pax header only for a name ustar cannot hold; 'gnu' uses ././@LongLink", () => {
    const dir = path.join(tmp, 'long');
    const long = `${'d'.repeat(60)}/${'f'.repeat(80)}`;
    fs.mkdirSync(path.join(dir, path.dirname(long)), { recursive: true });
    fs.writeFileSync(path.join(dir, long), 'long\n');
    fs.writeFileSync(path.join(dir, 'short'), 'short\n');
    for (const format of ['pax', 'gnu'] as const) {
      const out = path.join(tmp, `long-${format}.tar`);
      packTar(dir, out, format);
      assert.ok(sh('tar', ['-tf', out]).stdout.split('\n').includes(`./${long}`), format);
      const raw = fs.readFileSync(out).toString('latin1');
      assert.equal((raw.match(/PaxHeaders/g) ?? []).length, format === 'pax' ? 1 : 0, format);
      assert.equal(raw.includes('././@LongLink'), format === 'gnu', format);
    }
  });
});

/** sha256 of a blob's uncompressed tar, computed by the CLI tools. */
function diffIdByCli(blob: string, mediaType: string): string {
  const cat = mediaType.endsWith('+gzip') ? 'gzip -dc' : mediaType.endsWith('+zstd') ? 'zstd -dc' : 'cat';
  return `sha256:${shell(`${cat} '${blob}' | sha256sum`).split(' ')[0]}`;
}

function threeLayers(base: string): LayerSpec[] {
  const a = path.join(base, 'a');
  const b = path.join(base, 'b');
  const c = path.join(base, 'c');
  sampleTree(a);
  fs.mkdirSync(path.join(b, 'opt'), { recursive: true });
  fs.writeFileSync(path.join(b, 'opt', 'app'), 'app v1\n');
  whiteout(b, 'usr/bin/y');
  fs.mkdirSync(path.join(c, 'opt'), { recursive: true });
  fs.writeFileSync(path.join(c, 'opt', 'app'), 'app v2\n');
  return [{ dir: a, compress: 'none' }, { dir: b, compress: 'gzip' }, { dir: c, compress: 'zstd' }];
}

describe('OCI image layout', { skip: noSkopeo || noZstd }, () => {
  let layout: OciLayoutResult;
  const dir = path.join(tmp, 'oci');
  before(() => {
    layout = buildOciLayout(dir, threeLayers(path.join(tmp, 'oci-src')), { repoTag: 'vsys/three:v1', architecture: 'arm64', variant: 'v8' });
  });

  test('skopeo reads the manifest, layers and platform; every blob is named by its sha256', () => {
    const info = json<{ Digest: string; Layers: string[]; Architecture: string; Os: string }>('skopeo', ['inspect', `oci:${dir}:v1`]);
    assert.equal(info.Digest, layout.manifestDigest);
    assert.deepEqual(info.Layers, layout.layerDigests);
    assert.equal(info.Architecture, 'arm64');
    assert.equal(info.Os, 'linux');
    const blobs = path.join(dir, 'blobs', 'sha256');
    for (const f of fs.readdirSync(blobs)) assert.equal(shell(`sha256sum '${path.join(blobs, f)}'`).split(' ')[0], f);
    assert.equal(fs.readdirSync(blobs).length, 5);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  });

  test('media types follow the compression and diff_ids are the uncompressed tars', () => {
    const raw = json<{ mediaType: string; layers: { mediaType: string; digest: string }[] }>('skopeo', ['inspect', '--raw', `oci:${dir}:v1`]);
    assert.equal(raw.mediaType, MEDIA.ociManifest);
    assert.deepEqual(raw.layers.map((l) => l.mediaType), [MEDIA.layer.none, MEDIA.layer.gzip, MEDIA.layer.zstd]);
    const config = json<{ rootfs: { diff_ids: string[] }; variant?: string }>('skopeo', ['inspect', '--config', `oci:${dir}:v1`]);
    assert.deepEqual(config.rootfs.diff_ids, layout.diffIds);
    assert.equal(config.variant, 'v8');
    layout.layerPaths.forEach((p, i) => assert.equal(diffIdByCli(p, raw.layers[i]!.mediaType), layout.diffIds[i]));
    assert.equal(layout.diffIds[0], layout.layerDigests[0]);
    assert.notEqual(layout.diffIds[1], layout.layerDigests[1]);
  });

  test('dropBlob leaves a layout whose manifest names a blob that is not there', () => {
    const broken = path.join(tmp, 'oci-broken');
    const r = buildOciLayout(broken, threeLayers(path.join(tmp, 'oci-broken-src')), { dropBlob: 'layer:1' });
    assert.equal(fs.existsSync(r.layerPaths[1]!), false);
    assert.equal(json<{ Digest: string }>('skopeo', ['inspect', `oci:${broken}`]).Digest, r.manifestDigest);
    const copy = sh('skopeo', ['copy', `oci:${broken}`, `oci:${path.join(tmp, 'oci-broken-copy')}:x`]);
    assert.notEqual(copy.status, 0);
    assert.match(copy.stderr, new RegExp(r.layerDigests[1]!.slice(7)));
  });
});

describe('docker save archive (docker 25+ layout)', { skip: noSkopeo }, () => {
  const file = path.join(tmp, 'image.tar');
  let built: ReturnType<typeof buildDockerArchive>;
  before(() => {
    const src = path.join(tmp, 'docker-src');
    const layers = threeLayers(src).map((l) => ({ dir: l.dir }));
    built = buildDockerArchive(file, layers, { repoTag: 'vsys/saved:1.0' });
  });

  test('entries and manifest.json are those of docker save', () => {
    const names = sh('tar', ['-tf', file]).stdout.trim().split('\n');
    const blobs = [built.configDigest, built.manifestDigest, ...built.layerDigests].map((d) => `blobs/sha256/${d.slice(7)}`).sort();
    assert.deepEqual(names, ['blobs/', 'blobs/sha256/', ...blobs, 'index.json', 'manifest.json', 'oci-layout', 'repositories']);
    const manifest = JSON.parse(sh('tar', ['-xOf', file, 'manifest.json']).stdout) as { Config: string; RepoTags: string[]; Layers: string[] }[];
    assert.deepEqual(manifest, built.manifest);
    assert.deepEqual(manifest[0]?.RepoTags, ['vsys/saved:1.0']);
    const index = JSON.parse(sh('tar', ['-xOf', file, 'index.json']).stdout) as { manifests: { annotations: Record<string, string> }[] };
    assert.equal(index.manifests[0]?.annotations['io.containerd.image.name'], 'docker.io/vsys/saved:1.0');
  });

  test('skopeo reads it both as docker-archive and as oci-archive, and copies it', () => {
    const asDocker = json<{ Layers: string[] }>('skopeo', ['inspect', `docker-archive:${file}`]);
    assert.deepEqual(asDocker.Layers, built.diffIds);
    const asOci = json<{ Digest: string; Layers: string[] }>('skopeo', ['inspect', `oci-archive:${file}`]);
    assert.equal(asOci.Digest, built.manifestDigest);
    assert.deepEqual(asOci.Layers, built.layerDigests);
    const out = path.join(tmp, 'docker-copy');
    const copy = sh('skopeo', ['copy', `docker-archive:${file}`, `oci:${out}:copied`]);
    assert.equal(copy.status, 0, copy.stderr);
    assert.deepEqual(json<{ rootfs: { diff_ids: string[] } }>('skopeo', ['inspect', '--config', `oci:${out}:copied`]).rootfs.diff_ids, built.diffIds);
  });

  test('dropBlob: the archive lacks the layer its manifest.json names and skopeo copy fails', () => {
    const broken = path.join(tmp, 'broken.tar');
    const src = path.join(tmp, 'docker-broken-src');
    const b = buildDockerArchive(broken, threeLayers(src).map((l) => ({ dir: l.dir })), { dropBlob: 'layer:2' });
    const missing = b.layerDigests[2]!.slice(7);
    const names = sh('tar', ['-tf', broken]).stdout;
    assert.ok(!names.includes(missing));
    assert.ok(names.includes(b.configDigest.slice(7)));
    assert.ok(JSON.stringify(b.manifest).includes(missing));
    assert.notEqual(sh('skopeo', ['copy', `docker-archive:${broken}`, `oci:${path.join(tmp, 'broken-copy')}:x`]).status, 0);
  });
});

describe('hostile layers written header by header', () => {
  test('path traversal: GNU tar sees every escaping name and strips it', () => {
    const out = path.join(tmp, 'traversal.tar');
    const names = pathTraversalLayer(out);
    const r = sh('tar', ['-tvf', out]);
    assert.equal(r.status, 0, r.stderr);
    for (const n of names) assert.ok(r.stdout.includes(n), n);
    assert.match(r.stderr, /Removing leading `\.\.\/\.\.\/' from member names/);
    assert.match(r.stderr, /Removing leading `\/' from member names/);
    assert.match(r.stderr, /Removing leading `\.\/usr\/\.\.\/\.\.\/' from member names/);
    assert.match(r.stderr, /from hard link targets/);
  });

  test('symlink loops and escapes are listed as links, plus a file written through one', () => {
    const out = path.join(tmp, 'symlinks.tar');
    const links = symlinkLoopLayer(out);
    const listing = sh('tar', ['-tvf', out]).stdout;
    for (const [name, target] of Object.entries(links)) assert.match(listing, new RegExp(`^l.* ${name.replace(/\./g, '\\.')} -> ${target.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(listing, /^-.* \.\/lib64\/etc\/vsys-evil$/m);
    assert.deepEqual(links['./lib64'], '/');
  });

  test('decompression bomb: 1 GiB of zeros from about 1 MiB, as gzip -l and tar agree', async () => {
    const out = path.join(tmp, 'bomb.tar.gz');
    const r = await decompressionBomb(out, 1);
    assert.equal(r.fileBytes, 2 ** 30);
    assert.equal(fs.statSync(out).size, r.compressedBytes);
    assert.ok(r.compressedBytes < 2 << 20, `${r.compressedBytes} bytes`);
    const gz = shell(`gzip -l '${out}'`).trim().split('\n')[1]!.trim().split(/\s+/);
    assert.equal(Number(gz[1]), r.expandedBytes);
    assert.match(shell(`gzip -dc '${out}' | tar -tvf -`), /^-rw-r--r-- root\/root 1073741824 .* \.\/zeros$/m);
  });

  test('a bomb past 8 GiB carries its size in a pax header', async () => {
    const out = path.join(tmp, 'bomb9.tar.gz');
    const r = await decompressionBomb(out, 8.25, 1);
    // Only the headers are read: head closes the pipe long before 8 GiB.
    const listing = sh('sh', ['-c', `gzip -dc '${out}' 2>/dev/null | head -c 4096 | tar -tvf - 2>/dev/null`]).stdout;
    assert.match(listing, new RegExp(`^-rw-r--r-- root/root ${r.fileBytes} .* \\./zeros$`, 'm'));
    assert.ok(r.fileBytes >= 8 ** 11);
  });

  test('truncated tars: GNU tar reports the missing data; a cut header is not block-aligned', () => {
    const data = path.join(tmp, 'truncated.tar');
    const d = truncatedTar(data);
    const r = sh('tar', ['-tvf', data]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /Unexpected EOF/);
    assert.match(r.stdout, new RegExp(` ${d.declaredSize} .* \\./big$`, 'm'));
    assert.equal(fs.statSync(data).size, 512 + 512 + 512 + d.presentBytes);
    const head = path.join(tmp, 'truncated-header.tar');
    truncatedTar(head, 'header');
    assert.equal(fs.statSync(head).size % 512, 200);
    assert.deepEqual(sh('tar', ['-tf', head]).stdout.trim().split('\n'), ['./ok']);
  });
});

describe('registry', { skip: noSkopeo || registryUnavailable('none') || false }, () => {
  let layout: OciLayoutResult;
  const dir = path.join(tmp, 'push-oci');
  before(() => {
    layout = buildOciLayout(dir, threeLayers(path.join(tmp, 'push-src')), { repoTag: 'vsys/push:v1' });
  });

  const credsFor = (reg: Registry): string[] => (reg.user === undefined ? [] : ['--creds', `${reg.user}:${reg.password}`]);

  test("auth 'none': skopeo reads what pushFromOciLayout and pushImage (as an index) pushed; stop() cleans up", async () => {
    const reg = await startRegistry();
    const logDir = path.dirname(reg.logFile);
    try {
      const pushed = await pushFromOciLayout(reg, 'vsys/push', 'v1', dir);
      assert.equal(pushed.digest, layout.manifestDigest);
      const info = json<{ Digest: string; Layers: string[] }>('skopeo', ['inspect', '--tls-verify=false', `docker://${pushed.reference}`]);
      assert.equal(info.Digest, layout.manifestDigest);
      assert.deepEqual(info.Layers, layout.layerDigests);
      const raw = sh('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${pushed.reference}`]).stdout;
      assert.equal(raw, fs.readFileSync(layout.manifestPath, 'utf8'));

      const multi = await pushImage(reg, 'vsys/multi', 'latest', layout, { asIndex: { platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }] } });
      const index = json<{ mediaType: string; manifests: { digest: string; platform: { architecture: string } }[] }>('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${multi.reference}`]);
      assert.equal(index.mediaType, MEDIA.ociIndex);
      assert.deepEqual(index.manifests.map((m) => m.platform.architecture), ['amd64', 'arm64']);
      assert.notEqual(index.manifests[0]?.digest, index.manifests[1]?.digest);
      const arm = json<{ architecture: string; variant: string }>('skopeo', ['inspect', '--config', '--tls-verify=false', '--override-arch', 'arm64', '--override-variant', 'v8', `docker://${multi.reference}`]);
      assert.equal(arm.architecture, 'arm64');
      assert.equal(arm.variant, 'v8');
      const amdInfo = json<{ Layers: string[] }>('skopeo', ['inspect', '--tls-verify=false', '--override-arch', 'amd64', `docker://${reg.host}/vsys/multi@${multi.platforms?.[0]?.manifestDigest}`]);
      assert.deepEqual(amdInfo.Layers, layout.layerDigests);
    } finally {
      await reg.stop();
    }
    assert.equal(fs.existsSync(logDir), false);
    await assert.rejects(fetch(`${reg.url}/v2/`));
  });

  for (const auth of ['basic', 'token'] as const) {
    test(`auth '${auth}': anonymous access gets 401, pushes and skopeo --creds work, skopeo without creds fails`, { skip: registryUnavailable(auth) ?? false }, async () => {
      const reg = await startRegistry({ auth });
      try {
        assert.ok(reg.user && reg.password);
        const anon = await fetch(`${reg.url}/v2/`);
        assert.equal(anon.status, 401);
        assert.match(anon.headers.get('www-authenticate') ?? '', auth === 'basic' ? /^Basic realm=/ : /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/token"/);
        if (auth === 'basic') {
          const wrong = await fetch(`${reg.url}/v2/`, { headers: { Authorization: `Basic ${Buffer.from(`${reg.user}:wrong`).toString('base64')}` } });
          assert.equal(wrong.status, 401);
        }
        const pushed = await pushFromOciLayout(reg, 'vsys/private', 'v1', dir);
        const info = json<{ Digest: string; Layers: string[] }>('skopeo', ['inspect', '--tls-verify=false', ...credsFor(reg), `docker://${pushed.reference}`]);
        assert.equal(info.Digest, layout.manifestDigest);
        assert.deepEqual(info.Layers, layout.layerDigests);
        const denied = sh('skopeo', ['inspect', '--tls-verify=false', '--no-creds', `docker://${pushed.reference}`]);
        assert.notEqual(denied.status, 0);
        assert.match(denied.stderr, /unauthorized|authentication required|401/i);
      } finally {
        await reg.stop();
      }
    });
  }
});

describe('debootstrap rootfs', () => {
  test('bookworm minbase has os-release and the x86-64 libc, and packs into an image skopeo reads', (t) => {
    const root = bookwormRootfs();
    if (!root) return t.skip('debootstrap unavailable or failed (reason on stderr)');
    assert.match(fs.readFileSync(path.join(root, 'etc', 'os-release'), 'utf8'), /^VERSION_CODENAME=bookworm$/m);
    const libc = path.join(root, 'usr', 'lib', 'x86_64-linux-gnu', 'libc.so.6');
    assert.deepEqual([...fs.readFileSync(libc).subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]);
    if (noSkopeo) return;
    const out = path.join(tmp, 'bookworm-oci');
    const img = buildOciLayout(out, [{ dir: root, compress: 'none' }]);
    const entries = Number(shell(`tar -tf '${img.layerPaths[0]}' | wc -l`));
    assert.equal(entries, Number(shell(`find '${root}' | wc -l`)));
    assert.deepEqual(json<{ Layers: string[] }>('skopeo', ['inspect', `oci:${out}`]).Layers, img.layerDigests);
    fs.rmSync(out, { recursive: true, force: true });
  });
});
