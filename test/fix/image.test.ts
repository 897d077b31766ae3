// vsys fix IMAGE: images made from the corpus' 2011 Gentoo initramfs (glibc 2.13, static busybox,
// mdadm, cryptsetup), fixed, then read back by independent tools: skopeo inspects and copies the
// result, umoci unpacks it, cmp -l compares each rewritten file with its original, and vsys scan
// judges the output (archives and a real docker-registry) under vsyscall=none.
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CORPUS, runVsys } from '../helpers.js';
import { bookwormRootfs } from '../support/rootfs.js';
import { INITFS, materialiseInitfs } from '../support/initfs.js';
import { buildDockerArchive, buildOciLayout, sha256File } from '../support/images.js';
import { differingOffsets, ociToolsUnavailable, skopeoInspect, tool, unpackWithUmoci } from '../support/oci-tools.js';
import { registryUnavailable, startRegistry } from '../support/registry.js';

const skip = (!fs.existsSync(INITFS) && 'corpus not present') || ociToolsUnavailable() || false;

interface Edit { offset: number; before: string; after: string }
interface Run {
  exit: number;
  files: { path: string; patched: number; refused: number; sites: { status: string; edits?: Edit[] }[] }[];
  added: { path: string; mode: number }[];
  links: { path: string; target: string }[];
  stillCrash: unknown[];
  changes: { path: string; before: string; after: string; how: string }[];
  result: { layers: string[]; diffIds: string[]; configDigest: string; manifestDigest: string; layer?: { digest: string } };
  pushed?: { uploaded: string[]; present: string[]; digest: string };
}

function fix(args: string[]): Run {
  const r = runVsys(['fix', ...args, '--json'], { timeout: 180_000 });
  assert.ok(r.stdout, `vsys fix ${args.join(' ')}: no output (exit ${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Run;
}

/** Scan records (--json) of an image under none. */
function scanNone(ref: string): { record: string; path?: string; outcome?: string; kind?: string }[] {
  const r = runVsys(['scan', '--mode', 'none', '--json', ref], { timeout: 180_000 });
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { record: string; path?: string; outcome?: string });
}

/** The byte offsets each patched file may differ at: its planned edits. */
function planned(run: Run, p: string): Set<number> {
  const f = run.files.find((x) => x.path === p);
  assert.ok(f, `${p} is in the report`);
  const out = new Set<number>();
  for (const s of f.sites) for (const e of s.edits ?? []) for (let i = 0; i < e.after.split(' ').length; i++) out.add(e.offset + i);
  return out;
}

/** The unpacked rootfs against the input tree: rewritten files differ only at planned bytes and keep their modes; others are identical. */
function checkRootfs(run: Run, rootfs: string, input: string): void {
  const patched = new Set(run.added.map((a) => a.path));
  for (const p of patched) {
    const diff = differingOffsets(path.join(input, p), path.join(rootfs, p));
    const plan = planned(run, p);
    assert.ok(diff.length > 0, `${p} was rewritten`);
    for (const d of diff) assert.ok(plan.has(d), `${p}: byte 0x${d.toString(16)} changed outside the plan`);
    assert.equal(fs.statSync(path.join(rootfs, p)).mode & 0o7777, fs.statSync(path.join(input, p)).mode & 0o7777, `${p} keeps its mode`);
  }
  for (const p of ['/bin/e2fsck', '/lib64/ld-2.13.so', '/init']) {
    assert.deepEqual(differingOffsets(path.join(input, p), path.join(rootfs, p)), [], `${p} is untouched`);
  }
}

function assertNoCrash(ref: string): void {
  const recs = scanNone(ref);
  const image = recs.find((r) => r.record === 'image');
  assert.ok(image, `${ref} was scanned: ${JSON.stringify(recs.slice(-2))}`);
  const crashes = recs.filter((r) => r.record === 'file' && r.outcome === 'crash');
  assert.deepEqual(crashes.map((r) => r.path), [], `${ref}: nothing crashes under none`);
  assert.notEqual(image.outcome, 'crash');
}

describe('vsys fix IMAGE', { skip }, () => {
  let work: string;
  let tree: string;
  before(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-fix-image-'));
    tree = materialiseInitfs(path.join(work, 'initfs'));
    // A second name for the libc, a hard link: it must be rewritten too (the added layer links it).
    fs.linkSync(path.join(tree, 'lib64', 'libc-2.13.so'), path.join(tree, 'lib64', 'libc-hardlink.so'));
    fs.chmodSync(path.join(tree, 'bin', 'mdadm'), 0o4750);
  });

  test('docker-archive → docker-archive: skopeo reads it, original layers kept, one layer added, umoci unpacks the planned bytes, scan sees no crash', { timeout: 300_000 }, () => {
    const top = path.join(work, 'top');
    fs.mkdirSync(path.join(top, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(top, 'etc', 'motd'), 'fixed by vsys\n');
    const input = path.join(work, 'in.tar');
    const built = buildDockerArchive(input, [{ dir: tree }, { dir: top }], { repoTag: 'initfs:2011' });
    const before = scanNone(input).filter((r) => r.record === 'file' && r.outcome === 'crash');
    assert.ok(before.some((r) => r.path === '/lib64/libc-2.13.so') && before.some((r) => r.path === '/bin/busybox'), 'the input crashes under none (libc, busybox)');
    const inputDigest = sha256File(input);

    const out = path.join(work, 'out.tar');
    const run = fix([input, '-o', out, '--tag', 'initfs:fixed']);
    assert.equal(run.exit, 0);
    assert.equal(sha256File(input), inputDigest, 'the input is not modified');
    assert.deepEqual(run.added.map((a) => a.path).sort(), ['/bin/busybox', '/bin/cryptsetup', '/bin/mdadm', '/lib64/libc-2.13.so', '/lib64/libpthread-2.13.so']);
    assert.deepEqual(run.links, [{ path: '/lib64/libc-hardlink.so', target: '/lib64/libc-2.13.so' }]);
    assert.ok(run.changes.some((c) => c.path === '/bin/e2fsck' && c.before === 'crash' && c.how === 'through-library'), 'e2fsck is fixed through the libc');

    const info = skopeoInspect(`docker-archive:${out}`);
    const layers = info.Layers as string[];
    assert.equal(layers.length, built.layerDigests.length + 1, 'one layer added');
    assert.deepEqual(layers.slice(0, -1), built.layerDigests, 'the original layers keep their digests');
    // skopeo finds the image by the name given with --tag (and not by another).
    assert.equal(skopeoInspect(`docker-archive:${out}:initfs:fixed`).Digest, info.Digest);
    assert.throws(() => skopeoInspect(`docker-archive:${out}:initfs:2011`));
    const cfg = skopeoInspect(`docker-archive:${out}`, true) as { rootfs: { diff_ids: string[] }; history: { created_by?: string }[] };
    assert.deepEqual(cfg.rootfs.diff_ids.slice(0, -1), built.diffIds);
    assert.equal(cfg.rootfs.diff_ids.length, 3);
    assert.match(cfg.history.at(-1)?.created_by ?? '', /^vsys fix: patched 5 files \(\/bin\/busybox, /);
    assert.equal(cfg.history.length, 3);

    const rootfs = unpackWithUmoci(`docker-archive:${out}`);
    checkRootfs(run, rootfs, tree);
    assert.equal(fs.statSync(path.join(rootfs, 'bin/mdadm')).mode & 0o7777, 0o4750, 'a setuid mode survives');
    assert.deepEqual(differingOffsets(path.join(rootfs, 'lib64/libc-2.13.so'), path.join(rootfs, 'lib64/libc-hardlink.so')), [], 'the hard link names the rewritten libc');
    assert.equal(fs.readFileSync(path.join(rootfs, 'etc/motd'), 'utf8'), 'fixed by vsys\n');
    assertNoCrash(out);
  });

  test('OCI tar (gzip layer) and oci:DIR → OCI tar with --format oci', { timeout: 300_000 }, () => {
    const layout = path.join(work, 'oci-in');
    const built = buildOciLayout(layout, [{ dir: tree, compress: 'gzip' }], { repoTag: 'initfs:oci' });
    const ociTar = path.join(work, 'oci-in.tar');
    tool('tar', ['--create', `--file=${ociTar}`, '-C', layout, 'oci-layout', 'index.json', 'blobs']);
    for (const input of [ociTar, `oci:${layout}`]) {
      const out = path.join(work, `oci-out-${input.startsWith('oci:') ? 'dir' : 'tar'}.tar`);
      const run = fix([input, '-o', out, '--format', 'oci']);
      assert.equal(run.exit, 0, input);
      const info = skopeoInspect(`oci-archive:${out}`);
      assert.deepEqual((info.Layers as string[]).slice(0, -1), built.layerDigests, `${input}: the gzip layer keeps its digest`);
      assert.equal((info.Layers as string[]).length, 2);
      // The manifest describes the original blob as gzip and the added one as a plain tar.
      const manifest = JSON.parse(tool('skopeo', ['inspect', '--raw', `oci-archive:${out}`])) as { layers: { mediaType: string }[] };
      assert.deepEqual(manifest.layers.map((l) => l.mediaType), ['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar']);
      checkRootfs(run, unpackWithUmoci(`oci-archive:${out}`), tree);
      assertNoCrash(out);
    }
  });

  test('nothing is written when the input cannot be read; a usage error without -o', () => {
    const bad = path.join(work, 'bad.tar');
    const good = fs.readFileSync(path.join(work, 'in.tar'));
    fs.writeFileSync(bad, good.subarray(0, 4096));
    const dir = fs.mkdtempSync(path.join(work, 'empty-'));
    const r = runVsys(['fix', bad, '-o', path.join(dir, 'out.tar')]);
    assert.equal(r.status, 3, r.stderr);
    assert.deepEqual(fs.readdirSync(dir), [], 'no output, no temporary file');
    assert.equal(runVsys(['fix', path.join(work, 'in.tar')]).status, 2);
    assert.equal(runVsys(['fix', path.join(work, 'in.tar'), '-o', path.join(dir, 'x.tar'), '--format', 'zip']).status, 2);
  });

  test('registry: fixed from registry://, pushed back (blobs it has are not sent again), scanned from the registry: no crash', { timeout: 300_000, skip: registryUnavailable('none') }, async () => {
    const reg = await startRegistry();
    try {
      const input = path.join(work, 'in.tar');
      tool('skopeo', ['copy', '--dest-tls-verify=false', `docker-archive:${input}`, `docker://${reg.host}/initfs:2011`]);
      const before = scanNone(`registry://${reg.host}/initfs:2011`).filter((r) => r.record === 'file' && r.outcome === 'crash');
      assert.ok(before.length > 0, 'the pushed original crashes under none');
      const out = path.join(work, 'from-registry.tar');
      const run = fix([`registry://${reg.host}/initfs:2011`, '--push', `registry://${reg.host}/initfs:fixed`, '-o', out]);
      assert.equal(run.exit, 0);
      assert.ok(run.pushed, 'pushed');
      const original = skopeoInspect(`docker://${reg.host}/initfs:2011`).Layers as string[];
      assert.deepEqual(run.pushed.present.sort(), [...original].sort(), 'the original layers were in the registry already (HEAD), not uploaded');
      assert.equal(run.pushed.uploaded.length, 2, 'the added layer and the config were uploaded');
      const pushedInfo = skopeoInspect(`docker://${reg.host}/initfs:fixed`);
      assert.deepEqual((pushedInfo.Layers as string[]).slice(0, -1), original);
      assert.equal(pushedInfo.Digest, run.pushed.digest);
      assertNoCrash(`registry://${reg.host}/initfs:fixed`);
      checkRootfs(run, unpackWithUmoci(`docker://${reg.host}/initfs:fixed`), tree);
      // The archive written beside the push is the same image (an OCI tar: the input was not a docker-archive).
      assert.deepEqual(skopeoInspect(`oci-archive:${out}`).Layers, pushedInfo.Layers);
    } finally {
      await reg.stop();
    }
  });
});

describe('vsys fix IMAGE on a debootstrap rootfs with the corpus\' wheezy libc swapped in', { skip }, () => {
  test('bookworm + wheezy libc-2.13.so: apt & co crash under none before, nothing after; skopeo reads the output; only libc is rewritten', { timeout: 600_000 }, (t) => {
    const rootfs = bookwormRootfs();
    if (!rootfs) return t.skip('debootstrap bookworm failed here');
    const wheezy = path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-fix-bookworm-'));
    try {
      const swap = path.join(dir, 'swap', 'usr', 'lib', 'x86_64-linux-gnu');
      fs.mkdirSync(swap, { recursive: true });
      fs.copyFileSync(wheezy, path.join(swap, 'libc.so.6'));
      const input = path.join(dir, 'bookworm-wheezy.tar');
      buildDockerArchive(input, [{ dir: rootfs }, { dir: path.join(dir, 'swap') }], { repoTag: 'bookworm:wheezy-libc' });
      const before = runVsys(['scan', '--mode', 'none', '--fail-on', 'crash', input], { timeout: 300_000 });
      assert.equal(before.status, 1, 'the input crashes under none');
      const out = path.join(dir, 'fixed.tar');
      const r = runVsys(['fix', '--json', input, '-o', out], { timeout: 300_000 });
      assert.equal(r.status, 0, r.stderr);
      const doc = JSON.parse(r.stdout);
      assert.deepEqual(doc.added.map((a: { path: string }) => a.path), ['/usr/lib/x86_64-linux-gnu/libc.so.6']);
      assert.ok(doc.changes.some((c: { path: string; how: string }) => c.path === '/usr/bin/apt' && c.how === 'through-library'), JSON.stringify(doc.changes.slice(0, 5)));
      const info = skopeoInspect(`docker-archive:${out}`) as { Layers: string[] };
      assert.equal(info.Layers.length, 3);
      const after = runVsys(['scan', '--mode', 'none', '--fail-on', 'crash', out], { timeout: 300_000 });
      assert.equal(after.status, 0, after.stdout.slice(0, 2000));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
