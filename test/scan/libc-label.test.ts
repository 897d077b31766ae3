// The glibc release a file is labelled with, against real files: the corpus' glibc 2.13 libraries
// from the 2011 Gentoo initramfs (libpthread-2.13.so defines nothing newer than GLIBC_2.12, which was
// its label), the wheezy and 2.16 libcs and RHEL 6's libpthread. Oracles: the release in the file's
// own name and in `readelf -p .gnu_debuglink`, and `strings`' glibc banner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CORPUS, hasCommand } from '../helpers.js';
import { analyseBytes } from '../../src/scan/analyse-file.js';
import { describeIdentity } from '../../src/scan/identify.js';
import { scanPaths } from '../../src/scan/scan.js';
import type { FileReport } from '../../src/scan/types.js';

const GENTOO = path.join(CORPUS, 'gentoo-initfs-2011', 'lib64');
const skip = !fs.existsSync(GENTOO) && 'corpus not present';

function analyse(p: string, as = p): FileReport {
  const r = analyseBytes(fs.readFileSync(p), as);
  assert.ok(r, `${p} is ELF`);
  assert.equal(r.error, undefined, `${p}: ${r.error?.message}`);
  return r;
}

/** The release readelf shows in the file's .gnu_debuglink ("libpthread-2.13.so.debug" → 2.13). */
function debuglinkRelease(p: string): string | undefined {
  const r = spawnSync('readelf', ['-p', '.gnu_debuglink', p], { encoding: 'utf8' });
  return /\]\s+\S+-(\d+\.\d+(?:\.\d+)?)\.so(?:\.debug)?\s*$/m.exec(r.stdout)?.[1];
}

/** The release `strings` finds in glibc's banner ("… release version 2.13, by …"). */
function bannerRelease(p: string): string | undefined {
  const r = spawnSync('strings', ['-a', p], { encoding: 'utf8', maxBuffer: 1 << 28 });
  return /GNU C Library.*version (\d+\.\d+(?:\.\d+)?)/.exec(r.stdout)?.[1];
}

for (const name of ['libpthread-2.13.so', 'librt-2.13.so', 'ld-2.13.so']) {
  test(`gentoo-initfs-2011 ${name}: labelled glibc 2.13, as its name and its debug link say`, { skip }, () => {
    const p = path.join(GENTOO, name);
    const r = analyse(p);
    assert.equal(/-(\d+\.\d+)\.so$/.exec(name)?.[1], '2.13');
    if (hasCommand('readelf')) assert.equal(debuglinkRelease(p), '2.13');
    assert.equal(r.identity?.libc?.name, 'glibc');
    assert.equal(r.identity?.libc?.version, '2.13');
    assert.equal(r.identity?.libc?.source, 'debuglink');
    assert.match(describeIdentity(r.identity!), /glibc 2\.13\b/);
  });
}

test('libpthread-2.13.so reached as libpthread.so.0 (the soname link): still 2.13 from its debug link', { skip }, () => {
  const r = analyse(path.join(GENTOO, 'libpthread-2.13.so'), '/lib64/libpthread.so.0');
  assert.equal(r.identity?.libc?.version, '2.13');
});

test('without its debug link, libpthread-2.13.so is labelled from its file name; renamed, only a lower bound is claimed', { skip: skip || (!hasCommand('objcopy') && 'objcopy not installed') }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-label-'));
  try {
    const bare = path.join(dir, 'libpthread-2.13.so');
    const x = spawnSync('objcopy', ['--remove-section', '.gnu_debuglink', path.join(GENTOO, 'libpthread-2.13.so'), bare], { encoding: 'utf8' });
    assert.equal(x.status, 0, x.stderr);
    assert.equal(debuglinkRelease(bare), undefined, 'objcopy removed the link');
    const named = analyse(bare);
    assert.deepEqual(named.identity?.libc, { name: 'glibc', version: '2.13', source: 'file-name' });
    // The soname link's name carries no release: the newest version the file defines is a floor.
    const renamed = analyse(bare, path.join(dir, 'libpthread.so.0'));
    assert.deepEqual(renamed.identity?.libc, { name: 'glibc', version: '2.12', source: 'version-definitions' });
    assert.match(describeIdentity(renamed.identity!), /glibc ≥ 2\.12/);
    // A name older than what the file defines is not its release (GLIBC_2.12 exists in it).
    assert.equal(analyse(bare, path.join(dir, 'libpthread-2.3.so')).identity?.libc?.version, '2.12');
    // Another library's name is not this one's release.
    assert.equal(analyse(bare, path.join(dir, 'librt-2.13.so')).identity?.libc?.source, 'version-definitions');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const BANNERED: [string, string, string][] = [
  ['gentoo-initfs-2011/lib64/libc-2.13.so', 'glibc', '2.13'],
  ['debian-wheezy-libc-2.13/libc-2.13.so', 'eglibc', '2.13'],
  ['fb-glibc-2.16-libc/libc.so.6', 'glibc', '2.16'],
];
for (const [rel, libc, version] of BANNERED) {
  test(`${rel}: the banner decides (${libc} ${version})`, { skip: !fs.existsSync(path.join(CORPUS, rel)) && 'corpus not present' }, () => {
    const p = path.join(CORPUS, rel);
    const r = analyse(p);
    if (hasCommand('strings')) assert.equal(bannerRelease(p), version);
    assert.deepEqual(r.identity?.libc, { name: libc, source: 'banner', version });
  });
}

test('RHEL 6 libpthread.so.0 (no release in its name): 2.12 from its debug link', { skip: !fs.existsSync(path.join(CORPUS, 'rhel6-glibc-2.12-libpthread')) && 'corpus not present' }, () => {
  const p = path.join(CORPUS, 'rhel6-glibc-2.12-libpthread', 'libpthread.so.0');
  if (hasCommand('readelf')) assert.equal(debuglinkRelease(p), '2.12');
  assert.deepEqual(analyse(p).identity?.libc, { name: 'glibc', version: '2.12', source: 'debuglink' });
});

test('a directory scan of the Gentoo root labels every glibc 2.13 library 2.13', { skip }, async () => {
  const res = await scanPaths({ paths: [GENTOO], workers: 0 });
  const labels = res.files.filter((f) => /^(ld|lib(c|pthread|rt))-2\.13\.so$/.test(path.basename(f.path))).map((f) => [path.basename(f.path), f.identity?.libc?.version]);
  assert.equal(labels.length, 4);
  for (const [name, v] of labels) assert.equal(v, '2.13', name);
});
