// The image unpacker against umoci: images built here (the corpus' Gentoo 2011 initramfs under layers
// that white out, make directories opaque, replace files by directories and links by files, link hard
// within and across layers, set owners and odd modes), compressed with gzip and zstd, as an OCI layout,
// a docker-archive and from a registry, unpacked by vsys and by umoci (through skopeo for the
// archive), and the two trees compared path by path: type, mode, owner, time, link target, content,
// hard-link groups. Hostile layers each give their coded error and leave everything outside alone.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildDockerArchive, buildOciLayout, opaque, replaceBytes, whiteout, type AnyLayerSpec, type ImageOptions } from '../support/images.js';
import { tarEntry, type RawEntry } from '../support/hostile-layers.js';
import { INITFS, materialiseInitfs } from '../support/initfs.js';
import { ociToolsUnavailable, skopeoInspect, tool } from '../support/oci-tools.js';
import { pushFromOciLayout, registryUnavailable, startRegistry } from '../support/registry.js';
import { unpackImage, type UnpackOptions } from '../../src/run/unpack.js';
import { VsysError } from '../../src/errors.js';

const root = process.getuid?.() === 0;
const skip = (!fs.existsSync(INITFS) && 'corpus not present') || ociToolsUnavailable() || false;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-unpack-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

let n = 0;
const fresh = (name: string): string => path.join(work, `${name}-${++n}`);

/**
 * Every path under `dir` as a line: type, mode, owner (with `owners`), mtime, and the link target,
 * the content's size and sha256, the device number, or the first path of its hard-link group.
 */
function tree(dir: string, owners: boolean): string[] {
  const all: [string, fs.Stats][] = [];
  const walk = (rel: string): void => {
    const st = fs.lstatSync(path.join(dir, rel));
    all.push([rel, st]);
    if (st.isDirectory()) for (const name of fs.readdirSync(path.join(dir, rel)).sort()) walk(rel === '.' ? name : `${rel}/${name}`);
  };
  walk('.');
  const group = new Map<number, string>();
  for (const [rel, st] of all) if (st.isFile() && st.nlink > 1 && !group.has(st.ino)) group.set(st.ino, rel);
  return all.map(([rel, st]) => {
    const p = path.join(dir, rel);
    const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'other';
    const detail = st.isSymbolicLink() ? `-> ${fs.readlinkSync(p)}`
      : st.isFile() ? `${st.size} ${createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16)}${st.nlink > 1 ? ` =${group.get(st.ino)}` : ''}`
      : st.isCharacterDevice() || st.isBlockDevice() ? `rdev ${st.rdev}` : '';
    // A symlink's mode is always 0777 on Linux; its time is compared like any other.
    return `${rel} ${type} ${(st.mode & 0o7777).toString(8)}${owners ? ` ${st.uid}:${st.gid}` : ''} t${Math.floor(st.mtimeMs / 1000)} ${detail}`.trimEnd();
  });
}

/**
 * umoci's rootfs of an image skopeo can read (rootless: no owners, no devices). skopeo copies it to a
 * layout with gzip layers first: umoci 0.4.7 reads no zstd.
 */
function umoci(ref: string, rootless: boolean): string {
  const layout = fresh('gzip-layout');
  tool('skopeo', ['copy', '--dest-compress', '--dest-compress-format', 'gzip', ref, `oci:${layout}:img`]);
  const bundle = fresh('bundle');
  tool('umoci', ['unpack', ...(rootless ? ['--rootless'] : []), '--image', `${layout}:img`, bundle]);
  return path.join(bundle, 'rootfs');
}

async function vsys(ref: string, o: UnpackOptions = {}): Promise<{ dir: string; result: Awaited<ReturnType<typeof unpackImage>> }> {
  const dir = fresh('out');
  fs.mkdirSync(dir);
  return { dir, result: await unpackImage(ref, dir, o) };
}

/** A layer tar written entry by entry (names, links and whiteouts the tar CLI would not write). */
function rawLayer(entries: [RawEntry, string?][]): AnyLayerSpec {
  const file = fresh('raw.tar');
  fs.writeFileSync(file, Buffer.concat([...entries.map(([e, d]) => tarEntry(e, d ?? '')), Buffer.alloc(1024)]));
  return { tar: file };
}

const put = (dir: string, rel: string, text: string, mode = 0o644): string => {
  const p = path.join(dir, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text);
  fs.chmodSync(p, mode);
  return p;
};

const RUN = { Entrypoint: ['/init'], Cmd: ['--verbose', 'x'], Env: ['PATH=/bin:/sbin', 'LANG=C'], WorkingDir: '/etc', User: '1234:5678' };

/**
 * Three layers over the initramfs: the initramfs itself (gzip); a layer (zstd) that whites out a
 * library and the sbin symlink, makes /etc opaque with a file of its own, turns the lib symlink into
 * a directory and /tmp into a file, adds hard links, a set-uid file, read-only files, a read-only
 * directory with contents and files owned by 1234:5678 (as root); and a hand-written layer (plain)
 * with a hard link to a lower layer's file, a file in the read-only directory, a whiteout of a
 * directory and a file where a symlink was.
 */
function layers(): AnyLayerSpec[] {
  const base = materialiseInitfs(fresh('initfs'));
  const up = fresh('upper');
  fs.mkdirSync(up);
  whiteout(up, 'lib64/libuuid.so.1.3.0');
  whiteout(up, 'sbin');
  opaque(up, 'etc');
  put(up, 'etc/only.conf', 'opaque etc\n');
  put(up, 'lib/real-dir-now', 'lib was a symlink\n');
  put(up, 'tmp', 'tmp was a directory\n', 0o600);
  put(up, 'bin/tool', '#!/bin/sh\necho tool\n', 0o4755);
  fs.linkSync(path.join(up, 'bin/tool'), path.join(up, 'bin/tool-again'));
  put(up, 'bin/read-only', 'r\n', 0o444);
  put(up, 'locked/inside', 'in a 0555 directory\n', 0o640);
  put(up, 'opt/gone/deep/file', 'whited out by the next layer\n');
  put(up, 'opt/stays', 'kept\n');
  fs.symlinkSync('../bin/tool', path.join(up, 'opt/link'));
  fs.symlinkSync('/etc/vsys-final-target', path.join(up, 'opt/was-link'));
  if (root) {
    fs.lchownSync(path.join(up, 'opt/stays'), 1234, 5678);
    fs.lchownSync(path.join(up, 'opt/link'), 4321, 8765);
  }
  fs.chmodSync(path.join(up, 'locked'), 0o555);
  const third = rawLayer([
    [{ name: 'bin/busybox-hard', type: 'hardlink', linkname: 'bin/busybox' }],
    [{ name: 'locked/later', type: 'file', mode: 0o600 }, 'written into a 0555 directory\n'],
    [{ name: 'opt/.wh.gone', type: 'file' }],
    [{ name: 'opt/was-link', type: 'file', mode: 0o644 }, 'a file where a symlink was\n'],
  ]);
  return [{ dir: base, compress: 'gzip' }, { dir: up, compress: 'zstd' }, { ...third, compress: 'none' }];
}

describe('unpack: the same tree as umoci', { skip }, () => {
  let specs: AnyLayerSpec[];
  let layout: string;
  const opts: ImageOptions = { repoTag: 'vsys-unpack:layers', config: RUN };
  before(() => {
    specs = layers();
    layout = fresh('layout');
    buildOciLayout(layout, specs, opts);
  });

  test('OCI layout, gzip + zstd + plain layers: whiteouts, opaque directory, replacements, hard links, modes and owners as umoci makes them', async () => {
    const { dir, result } = await vsys(`oci:${layout}`);
    const want = umoci(`oci:${layout}:layers`, !root);
    assert.deepEqual(tree(dir, root), tree(want, root));
    // What the comparison stands on: the layers did what they say (else both could agree on nothing).
    const lines = tree(dir, false);
    assert.ok(lines.some((l) => /^etc\/only\.conf file /.test(l)) && !lines.some((l) => /^etc\/neo\.map /.test(l)), 'etc is opaque');
    assert.ok(!lines.some((l) => /^lib64\/libuuid\.so\.1\.3\.0 /.test(l)) && !lines.some((l) => /^sbin /.test(l)) && !lines.some((l) => /^opt\/gone/.test(l)));
    assert.match(lines.find((l) => l.startsWith('lib '))!, /^lib dir 755 /);
    assert.match(lines.find((l) => l.startsWith('bin/busybox-hard '))!, / =bin\/busybox$/);
    assert.match(lines.find((l) => l.startsWith('bin/tool-again '))!, /^bin\/tool-again file 4755 .* =bin\/tool$/);
    assert.match(lines.find((l) => l.startsWith('locked '))!, /^locked dir 555 /);
    assert.match(lines.find((l) => l.startsWith('opt/was-link '))!, /^opt\/was-link file 644 /);
    assert.equal(fs.existsSync('/etc/vsys-final-target'), false);
    assert.deepEqual(result.config, { entrypoint: ['/init'], cmd: ['--verbose', 'x'], env: ['PATH=/bin:/sbin', 'LANG=C'], workingDir: '/etc', user: '1234:5678' });
    assert.equal(result.layers, 3);
    assert.equal(result.source, 'oci-dir');
    assert.equal(result.platform, 'linux/amd64');
    assert.deepEqual(result.skipped, { devices: 0, fifos: 0, owners: 0, xattrs: 0, other: 0 });
  });

  test('unprivileged (no owners set): the same tree as umoci --rootless, owners aside', async () => {
    const { dir } = await vsys(`oci:${layout}`, { privileged: false });
    assert.deepEqual(tree(dir, false), tree(umoci(`oci:${layout}:layers`, true), false));
    if (root) assert.equal(fs.lstatSync(path.join(dir, 'opt/stays')).uid, 0, 'not chowned when unprivileged');
  });

  test('docker-archive of the same layers: the same tree as umoci after skopeo; the config as skopeo reads it', async () => {
    const archive = fresh('image.tar');
    buildDockerArchive(archive, specs, opts);
    const { dir, result } = await vsys(archive);
    assert.deepEqual(tree(dir, root), tree(umoci(`docker-archive:${archive}`, !root), root));
    const cfg = (skopeoInspect(`docker-archive:${archive}`, true) as { config: typeof RUN }).config;
    assert.deepEqual(result.config, { entrypoint: cfg.Entrypoint, cmd: cfg.Cmd, env: cfg.Env, workingDir: cfg.WorkingDir, user: cfg.User });
    assert.equal(result.source, 'docker-archive');
  });

  test('registry:// (docker-registry): the same tree as umoci of the layout pushed', { skip: registryUnavailable('none') }, async () => {
    const reg = await startRegistry();
    try {
      await pushFromOciLayout(reg, 'test/unpack', 'v1', layout);
      const { dir, result } = await vsys(`registry://${reg.host}/test/unpack:v1`);
      assert.deepEqual(tree(dir, root), tree(umoci(`oci:${layout}:layers`, !root), root));
      assert.equal(result.source, 'registry');
      assert.equal(result.config.user, '1234:5678');
    } finally {
      await reg.stop();
    }
  });

  test('device nodes and FIFOs: made as umoci makes them when privileged, skipped and counted when not', { skip: !root && 'needs root to make the device nodes' }, async () => {
    const devs = fresh('devs');
    fs.mkdirSync(path.join(devs, 'dev'), { recursive: true });
    assert.equal(spawnSync('mknod', ['-m', '666', path.join(devs, 'dev/null'), 'c', '1', '3']).status, 0);
    assert.equal(spawnSync('mknod', ['-m', '620', path.join(devs, 'dev/fifo'), 'p']).status, 0);
    put(devs, 'dev/plain', 'plain\n');
    const l = fresh('dev-layout');
    buildOciLayout(l, [{ dir: devs }], { repoTag: 'd:1' });
    const priv = await vsys(`oci:${l}`);
    assert.deepEqual(tree(priv.dir, true), tree(umoci(`oci:${l}:1`, false), true));
    assert.ok(tree(priv.dir, true).includes(tree(devs, true).find((x) => x.startsWith('dev/null '))!));
    const unpriv = await vsys(`oci:${l}`, { privileged: false });
    assert.deepEqual(unpriv.result.skipped, { devices: 1, fifos: 1, owners: 0, xattrs: 0, other: 0 });
    assert.deepEqual(fs.readdirSync(path.join(unpriv.dir, 'dev')), ['plain']);
  });
});

describe('unpack: hostile and broken images', { skip: (!fs.existsSync(INITFS) && 'corpus not present') || false }, () => {
  /**
   * Unpacks `layerSpecs` into box/out and expects `code`; everything in `box` outside out, and the
   * paths named in `outside`, are as they were.
   */
  async function refused(layerSpecs: AnyLayerSpec[], code: string, outside: string[] = [], o: UnpackOptions = {}): Promise<VsysError> {
    const box = fresh('box');
    const out = path.join(box, 'a', 'b', 'out');
    fs.mkdirSync(out, { recursive: true });
    put(box, 'a/sentinel', 'outside\n');
    const l = fresh('hostile-layout');
    buildOciLayout(l, layerSpecs, { repoTag: 'h:1' });
    const before = tree(box, true).filter((x) => !x.startsWith('a/b/out'));
    const err = await unpackImage(`oci:${l}`, out, o).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof VsysError, `expected ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.deepEqual(tree(box, true).filter((x) => !x.startsWith('a/b/out')), before);
    for (const p of outside) assert.equal(fs.existsSync(p), false, `${p} was written`);
    return err;
  }

  test("'..' in a name: IMAGE_BAD_PATH naming the entry, nothing written above", async () => {
    const e = await refused([rawLayer([[{ name: './ok', type: 'file' }, 'ok'], [{ name: '../../vsys-evil', type: 'file' }, 'evil']])], 'IMAGE_BAD_PATH');
    assert.match(e.message, /'\.\.\/\.\.\/vsys-evil'/);
  });

  test('a file through a symlink to /etc made by the same layer: IMAGE_BAD_PATH, /etc untouched', async () => {
    const e = await refused([rawLayer([[{ name: 'a', type: 'symlink', linkname: '/etc' }], [{ name: 'a/vsys-evil-passwd', type: 'file' }, 'root::0:0::/:/bin/sh\n']])], 'IMAGE_BAD_PATH', ['/etc/vsys-evil-passwd']);
    assert.match(e.message, /'a\/vsys-evil-passwd' lies under \/a, a symlink \(to \/etc\)/);
  });

  test('a relative symlink made by a lower layer, written through by an upper one: IMAGE_BAD_PATH, the box untouched', async () => {
    await refused([
      rawLayer([[{ name: 'up', type: 'symlink', linkname: '../..' }]]),
      rawLayer([[{ name: 'up/sentinel', type: 'file' }, 'overwritten'], [{ name: 'up/new', type: 'file' }, 'new']]),
    ], 'IMAGE_BAD_PATH');
  });

  test('a directory entry and a whiteout under a symlink: IMAGE_BAD_PATH (no mkdir, no delete outside)', async () => {
    await refused([rawLayer([[{ name: 'up', type: 'symlink', linkname: '../..' }], [{ name: 'up/newdir/', type: 'dir' }]])], 'IMAGE_BAD_PATH');
    await refused([rawLayer([[{ name: 'up', type: 'symlink', linkname: '../..' }], [{ name: 'up/.wh.sentinel', type: 'file' }]])], 'IMAGE_BAD_PATH');
  });

  test("hard links out: '..' is IMAGE_BAD_PATH; through a symlinked parent IMAGE_BAD_PATH; an absolute name is the image's own (IMAGE_BAD_LAYER when absent), never the host's", async () => {
    await refused([rawLayer([[{ name: 'stolen', type: 'hardlink', linkname: '../../sentinel' }]])], 'IMAGE_BAD_PATH');
    await refused([rawLayer([[{ name: 'e', type: 'symlink', linkname: '/etc' }], [{ name: 'stolen', type: 'hardlink', linkname: 'e/passwd' }]])], 'IMAGE_BAD_PATH');
    const e = await refused([rawLayer([[{ name: 'stolen', type: 'hardlink', linkname: '/etc/passwd' }]])], 'IMAGE_BAD_LAYER');
    assert.match(e.message, /names \/etc\/passwd, which no earlier entry made/);
  });

  test("a whiteout of '..' (which would delete the directory above): IMAGE_BAD_PATH", async () => {
    await refused([rawLayer([[{ name: 'd/', type: 'dir' }, ''], [{ name: 'd/.wh..', type: 'file' }]])], 'IMAGE_BAD_PATH');
  });

  test('a layer changed after its manifest was written: IMAGE_DIGEST_MISMATCH; unpacked with verify off', async () => {
    const l = fresh('altered');
    const r = buildOciLayout(l, [rawLayer([[{ name: 'f', type: 'file' }, 'original']])], { repoTag: 'h:1' });
    replaceBytes(r.layerPaths[0]!, 'original', 'altered!');
    const out = fresh('out');
    fs.mkdirSync(out);
    await assert.rejects(unpackImage(`oci:${l}`, out, {}), (e: VsysError) => e.code === 'IMAGE_DIGEST_MISMATCH');
    const out2 = fresh('out');
    fs.mkdirSync(out2);
    await unpackImage(`oci:${l}`, out2, { verify: false });
    assert.equal(fs.readFileSync(path.join(out2, 'f'), 'utf8'), 'altered!');
  });

  test('caps: a layer over maxLayerBytes or maxLayerEntries is IMAGE_TOO_LARGE', async () => {
    const big = rawLayer([[{ name: 'big', type: 'file' }, 'x'.repeat(64 * 1024)]]);
    await refused([{ ...big, compress: 'gzip' }], 'IMAGE_TOO_LARGE', [], { maxLayerBytes: 16 * 1024 });
    await refused([rawLayer([[{ name: 'a', type: 'file' }, '1'], [{ name: 'b', type: 'file' }, '2'], [{ name: 'c', type: 'file' }, '3']])], 'IMAGE_TOO_LARGE', [], { maxLayerEntries: 2 });
  });

  test('a directory that is not empty is refused (USAGE); an aborted signal stops before any layer', async () => {
    const l = fresh('small');
    buildOciLayout(l, [rawLayer([[{ name: 'f', type: 'file' }, 'x']])], { repoTag: 'h:1' });
    const full = fresh('full');
    put(full, 'mine', 'keep\n');
    await assert.rejects(unpackImage(`oci:${l}`, full), (e: VsysError) => e.code === 'USAGE');
    assert.deepEqual(fs.readdirSync(full), ['mine']);
    const out = fresh('out');
    fs.mkdirSync(out);
    const c = new AbortController();
    c.abort();
    await assert.rejects(unpackImage(`oci:${l}`, out, { signal: c.signal }), (e: Error) => e.name === 'AbortError');
    assert.deepEqual(fs.readdirSync(out), []);
  });

  test('a signal aborted during the first layer: AbortError, the second layer never written', async () => {
    const l = fresh('two');
    buildOciLayout(l, [rawLayer([[{ name: 'first', type: 'file' }, '1']]), rawLayer([[{ name: 'second', type: 'file' }, '2']])], { repoTag: 'h:1' });
    const out = fresh('out');
    fs.mkdirSync(out);
    const c = new AbortController();
    const seen: number[] = [];
    await assert.rejects(unpackImage(`oci:${l}`, out, { signal: c.signal, onProgress: (p) => (seen.push(p.layer), c.abort()) }), (e: Error) => e.name === 'AbortError');
    assert.deepEqual(seen, [0]);
    assert.deepEqual(fs.readdirSync(out), ['first']);
  });
});
