// Image scanning on images built here from real files: a Debian bookworm rootfs (debootstrap) as the
// clean control; the same with the corpus' wheezy libc-2.13.so as its libc and programs that import
// time() (crash under none); later layers that delete (whiteout) or replace the affected files
// (clean again); every compression and layout; and hostile archives (coded errors, bounded memory).
import { before, after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CORPUS, runVsys } from '../helpers.js';
import { buildC, hasGcc } from '../support/fixtures.js';
import { bookwormRootfs } from '../support/rootfs.js';
import { buildDockerArchive, buildOciLayout, packTar, whiteout, opaque, pathTraversalLayer, symlinkLoopLayer, decompressionBomb, truncatedTar } from '../support/images.js';
import { scanImageRefs } from '../../src/image/scan-image.js';

const WHEEZY = path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-images-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** A layer directory with the wheezy libc as /lib/x86_64-linux-gnu/libc.so.6 and two programs. */
function wheezyLayer(): string {
  const dir = path.join(work, 'wheezy-layer');
  if (fs.existsSync(dir)) return dir;
  fs.mkdirSync(path.join(dir, 'lib', 'x86_64-linux-gnu'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'usr', 'local', 'bin'), { recursive: true });
  fs.copyFileSync(WHEEZY, path.join(dir, 'lib', 'x86_64-linux-gnu', 'libc-2.13.so'));
  fs.symlinkSync('libc-2.13.so', path.join(dir, 'lib', 'x86_64-linux-gnu', 'libc.so.6'));
  fs.copyFileSync(buildC('imports-time', 'imports-time', []), path.join(dir, 'usr', 'local', 'bin', 'uses-time'));
  fs.copyFileSync(buildC('imports-none', 'imports-none', []), path.join(dir, 'usr', 'local', 'bin', 'uses-puts'));
  return dir;
}

const skipSmall = (!hasGcc() && 'gcc not installed') || (!fs.existsSync(WHEEZY) && 'corpus not present');

describe('images built from a bookworm rootfs', { skip: skipSmall }, () => {
  let rootfs: string | undefined;
  before(() => {
    rootfs = bookwormRootfs();
  });

  test('bookworm alone is clean; with the wheezy libc it crashes under none, naming the program and the function', { timeout: 300_000 }, async (t) => {
    if (!rootfs) return t.skip('debootstrap bookworm failed here');
    const clean = path.join(work, 'bookworm.tar');
    const bad = path.join(work, 'bookworm-wheezy.tar');
    buildDockerArchive(clean, [{ dir: rootfs }], { repoTag: 'bookworm:control' });
    buildDockerArchive(bad, [{ dir: rootfs }, { dir: wheezyLayer(), compress: 'gzip' }], { repoTag: 'bookworm:wheezy-libc' });
    const { images, errors } = await scanImageRefs([clean, bad], { concurrency: 1 });
    assert.deepEqual(errors, []);
    const c = images.find((i) => i.ref === 'bookworm:control')!;
    assert.equal(c.os?.id, 'debian');
    assert.equal(c.os?.versionId, '12');
    assert.equal(c.libc?.name, 'glibc');
    assert.equal(c.libc?.version, '2.36');
    assert.ok(c.elfFiles > 100, `${c.elfFiles} ELF files`);
    assert.equal(c.verdicts.none.outcome, 'ok');
    assert.deepEqual(c.files, []);
    const b = images.find((i) => i.ref === 'bookworm:wheezy-libc')!;
    assert.equal(b.libc?.version, '2.13');
    assert.equal(b.libc?.name, 'eglibc');
    assert.equal(b.verdicts.none.outcome, 'crash');
    assert.equal(b.verdicts.xonly.outcome, 'slow');
    const ut = b.files.find((f) => f.path === '/usr/local/bin/uses-time');
    assert.equal(ut?.verdicts.none.outcome, 'crash');
    assert.equal(ut?.through?.[0]?.symbol, 'time');
    assert.ok(!b.files.some((f) => f.path === '/usr/local/bin/uses-puts'), 'a program importing only puts is not affected');
    // The bookworm layer is the same blob in both archives: analysed once.
    assert.equal(b.layers[0]?.digest, c.layers[0]?.digest);
    assert.ok(b.layers[0]?.cached || c.layers[0]?.cached, 'the shared layer was analysed once');
  });
});

describe('layers, whiteouts and layouts (small images)', { skip: skipSmall }, () => {
  test('a later layer that deletes the affected files (whiteout) or hides them (opaque) leaves a clean image', async () => {
    const del = path.join(work, 'delete-layer');
    whiteout(del, '/usr/local/bin/uses-time');
    whiteout(del, '/lib/x86_64-linux-gnu/libc-2.13.so');
    const opq = path.join(work, 'opaque-layer');
    opaque(opq, '/usr/local/bin');
    opaque(opq, '/lib/x86_64-linux-gnu');
    fs.mkdirSync(path.join(opq, 'usr', 'local', 'bin'), { recursive: true });
    fs.copyFileSync(buildC('imports-none', 'imports-none', []), path.join(opq, 'usr', 'local', 'bin', 'fresh'));
    buildOciLayout(path.join(work, 'oci-affected'), [{ dir: wheezyLayer(), compress: 'zstd' }], { repoTag: 'w:affected' });
    buildOciLayout(path.join(work, 'oci-deleted'), [{ dir: wheezyLayer(), compress: 'zstd' }, { dir: del, compress: 'gzip' }], { repoTag: 'w:deleted' });
    buildOciLayout(path.join(work, 'oci-opaque'), [{ dir: wheezyLayer(), compress: 'none' }, { dir: opq, compress: 'zstd' }], { repoTag: 'w:opaque' });
    packTar(path.join(work, 'oci-deleted'), path.join(work, 'oci-deleted.tar'));
    const { images, errors } = await scanImageRefs([`oci:${path.join(work, 'oci-affected')}`, `oci:${path.join(work, 'oci-deleted')}`, `oci:${path.join(work, 'oci-opaque')}`, path.join(work, 'oci-deleted.tar')]);
    assert.deepEqual(errors, []);
    const by = (src: string, ref: string) => images.find((i) => i.source === src && i.ref.includes(ref))!;
    assert.equal(by('oci-dir', 'affected').verdicts.none.outcome, 'crash');
    assert.equal(by('oci-dir', 'deleted').verdicts.none.outcome, 'ok', JSON.stringify(by('oci-dir', 'deleted').files.map((f) => f.path)));
    assert.equal(by('oci-dir', 'opaque').verdicts.none.outcome, 'ok');
    assert.equal(by('oci-dir', 'opaque').elfFiles, 1, 'only the fresh program is left');
    assert.equal(by('oci-archive', 'deleted').verdicts.none.outcome, 'ok');
    // ELF analysis on worker threads gives the same reports as in this thread.
    const threaded = await scanImageRefs([`oci:${path.join(work, 'oci-affected')}`], { workers: 2 });
    const here = await scanImageRefs([`oci:${path.join(work, 'oci-affected')}`], { workers: 0 });
    assert.deepEqual(threaded.images[0]?.files.map((f) => [f.path, f.class, f.verdicts.none.outcome]), here.images[0]?.files.map((f) => [f.path, f.class, f.verdicts.none.outcome]));
    assert.ok((here.images[0]?.files.length ?? 0) >= 2);
  });

  test('CLI: --fail-on crash exits 1 for the affected image and 0 for the cleaned one; --json has one object per image', () => {
    const affected = runVsys(['scan', '--mode', 'none', '--fail-on', 'crash', `oci:${path.join(work, 'oci-affected')}`]);
    assert.equal(affected.status, 1, affected.stderr);
    assert.match(affected.stdout, /✗ image .* — .*eglibc 2\.13/);
    assert.match(affected.stdout, /crashes under vsyscall=none: \/usr\/local\/bin\/uses-time → libc-2\.13\.so time\(\)/);
    assert.equal(runVsys(['scan', '--mode', 'none', '--fail-on', 'crash', `oci:${path.join(work, 'oci-deleted')}`]).status, 0);
    const j = runVsys(['scan', '--json', '--mode', 'none', `oci:${path.join(work, 'oci-affected')}`, path.join(work, 'oci-deleted.tar')]);
    const lines = j.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.filter((l) => l.record === 'image').length, 2);
    assert.ok(lines.filter((l) => l.record === 'file').every((l) => typeof l.image === 'string' && typeof l.layer?.digest === 'string'));
  });
});

describe('hostile archives', { skip: skipSmall }, () => {
  test('path traversal and escaping links: refused with IMAGE_BAD_PATH, nothing written', async () => {
    const t = path.join(work, 'traversal.tar');
    pathTraversalLayer(t);
    const s = path.join(work, 'loops.tar');
    symlinkLoopLayer(s);
    buildOciLayout(path.join(work, 'oci-hostile'), [{ tar: t }, { tar: s }, { dir: wheezyLayer() }], { repoTag: 'h:1' });
    const before = fs.existsSync('/etc/evil') || fs.existsSync('/escape');
    const { images, errors } = await scanImageRefs([`oci:${path.join(work, 'oci-hostile')}`]);
    assert.deepEqual(errors, []);
    const img = images[0]!;
    assert.ok(img.problems.some((p) => p.code === 'IMAGE_BAD_PATH' && p.path.includes('../../etc/evil')));
    assert.ok(img.problems.some((p) => p.code === 'IMAGE_BAD_PATH' && p.path.includes('hardlink-out')));
    assert.equal(fs.existsSync('/etc/evil') || fs.existsSync('/escape'), before, 'nothing written outside');
    assert.equal(img.verdicts.none.outcome, 'crash', 'the rest of the image is still analysed');
  });

  test('a decompression bomb stops at the layer cap with IMAGE_TOO_LARGE, memory stays bounded', { timeout: 180_000 }, async () => {
    const bomb = path.join(work, 'bomb.tar.gz');
    await decompressionBomb(bomb, 2);
    buildOciLayout(path.join(work, 'oci-bomb'), [{ tar: bomb, compress: 'none' }], { repoTag: 'b:1' });
    const rss0 = process.memoryUsage().rss;
    const { images, errors } = await scanImageRefs([`oci:${path.join(work, 'oci-bomb')}`], { maxLayerBytes: 256 * 1024 * 1024 });
    assert.equal(images.length, 0);
    assert.equal(errors[0]?.code, 'IMAGE_TOO_LARGE', JSON.stringify(errors));
    assert.ok(process.memoryUsage().rss - rss0 < 400 * 1024 * 1024, 'no unbounded buffering');
  });

  test('truncated layers and manifests naming missing blobs: coded errors, the next image still scanned', async () => {
    const tr = path.join(work, 'trunc.tar');
    truncatedTar(tr);
    buildOciLayout(path.join(work, 'oci-trunc'), [{ tar: tr }], { repoTag: 't:1' });
    const missing = buildOciLayout(path.join(work, 'oci-missing'), [{ dir: wheezyLayer(), compress: 'gzip' }], { repoTag: 'm:1' });
    fs.rmSync(path.join(work, 'oci-missing', 'blobs', 'sha256', missing.layerDigests[0]!.replace('sha256:', '')));
    const good = path.join(work, 'good.tar');
    const built = buildDockerArchive(good, [{ dir: wheezyLayer() }], { repoTag: 'd:1' });
    const dropped = path.join(work, 'dropped.tar');
    buildDockerArchive(dropped, [{ dir: wheezyLayer() }], { repoTag: 'd:2', dropBlob: built.layerDigests[0] });
    const { images, errors } = await scanImageRefs([`oci:${path.join(work, 'oci-trunc')}`, `oci:${path.join(work, 'oci-missing')}`, dropped, good, path.join(work, 'not-there.tar')]);
    const codes = new Map(errors.map((e) => [e.ref, e.code]));
    assert.equal(codes.get(`oci:${path.join(work, 'oci-trunc')}`), 'IMAGE_BAD_LAYER');
    assert.equal(codes.get(`oci:${path.join(work, 'oci-missing')}`), 'IMAGE_MISSING_BLOB');
    assert.equal(codes.get(dropped), 'IMAGE_MISSING_BLOB');
    assert.ok(codes.has(path.join(work, 'not-there.tar')));
    assert.equal(images.length, 1, 'the good archive is still scanned');
  });
});
