// Reachability on a small root filesystem assembled here: the corpus' wheezy libc-2.13.so as the
// root's libc.so.6 (reached through a symlink, as on Debian), programs built with gcc that import
// time() or only puts(), and a library that imports time() used by a third program.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CORPUS } from '../helpers.js';
import { scanPaths, type ScannedFile } from '../../src/scan/scan.js';
import { buildC, hasGcc } from '../support/fixtures.js';
import { resolveInRoot } from '../../src/scan/root-path.js';

const LIBC = path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so');
const skip = (!hasGcc() && 'gcc not installed') || (!fs.existsSync(LIBC) && 'corpus not present');

function makeRoot(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-root-'));
  const lib = path.join(root, 'lib', 'x86_64-linux-gnu');
  fs.mkdirSync(lib, { recursive: true });
  fs.mkdirSync(path.join(root, 'usr', 'bin'), { recursive: true });
  fs.mkdirSync(path.join(root, 'usr', 'lib'), { recursive: true });
  fs.copyFileSync(LIBC, path.join(lib, 'libc-2.13.so'));
  fs.symlinkSync('libc-2.13.so', path.join(lib, 'libc.so.6'));
  // An absolute symlink must resolve inside the root, not on the host.
  fs.mkdirSync(path.join(root, 'lib64'));
  fs.symlinkSync('/lib/x86_64-linux-gnu/libc-2.13.so', path.join(root, 'lib64', 'libc-abs.so'));
  // The libc needs its loader: a program whose libraries are not all in its root is not judged.
  fs.copyFileSync(path.join(CORPUS, 'gentoo-initfs-2011', 'lib64', 'ld-2.13.so'), path.join(lib, 'ld-2.13.so'));
  fs.symlinkSync('/lib/x86_64-linux-gnu/ld-2.13.so', path.join(root, 'lib64', 'ld-linux-x86-64.so.2'));
  fs.copyFileSync(buildC('imports-time', 'imports-time', []), path.join(root, 'usr', 'bin', 'imports-time'));
  fs.copyFileSync(buildC('imports-none', 'imports-none', []), path.join(root, 'usr', 'bin', 'imports-none'));
  fs.copyFileSync(buildC('lib-dep', 'libvsysdep.so', ['-shared', '-fPIC']), path.join(root, 'usr', 'lib', 'libvsysdep.so'));
  const libdep = path.join(path.dirname(buildC('lib-dep', 'libvsysdep.so', ['-shared', '-fPIC'])));
  fs.copyFileSync(
    buildC('uses-lib', 'uses-lib', [`-L${libdep}`, '-l:libvsysdep.so', '-Wl,-rpath,$ORIGIN/../lib', '-Wl,--enable-new-dtags']),
    path.join(root, 'usr', 'bin', 'uses-lib'),
  );
  return root;
}

test('programs in a rootfs with the wheezy libc: importing time crashes under none, importing only puts does not', { skip }, async () => {
  const root = makeRoot();
  try {
    const res = await scanPaths({ paths: [path.join(root, 'usr', 'bin')], root, workers: 0 });
    const by = new Map<string, ScannedFile>(res.files.map((f) => [path.basename(f.path), f]));
    const time = by.get('imports-time')!;
    assert.equal(time.findings.length, 0, 'the program itself has no site');
    assert.equal(time.through?.[0]?.symbol, 'time');
    assert.equal(time.through?.[0]?.version, 'GLIBC_2.2.5');
    assert.equal(time.through?.[0]?.library, 'libc-2.13.so');
    assert.equal(time.verdicts.none.outcome, 'crash');
    // Worded as a condition since issue 17 item 6: "crashes if time() (imported from …) is called: SIGSEGV at …".
    assert.match(time.verdicts.none.why, /time\(\) \(imported from libc-2\.13\.so\) is called: SIGSEGV at 0xffffffffff600400/);
    assert.equal(time.verdicts.xonly.outcome, 'slow');
    assert.equal(time.verdicts.emulate.outcome, 'slow');
    assert.equal(time.verdicts.native.outcome, 'ok');

    const none = by.get('imports-none')!;
    assert.deepEqual(none.through ?? [], []);
    assert.equal(none.verdicts.none.outcome, 'ok');
    // libc-2.13.so itself needs ld-linux-x86-64.so.2, found through /lib64's absolute link inside the root.
    assert.deepEqual(none.libraries?.map((l) => [l.name, l.path && path.relative(root, l.path)]), [['libc.so.6', 'lib/x86_64-linux-gnu/libc-2.13.so'], ['ld-linux-x86-64.so.2', 'lib/x86_64-linux-gnu/ld-2.13.so']]);
    assert.equal(none.missingLibraries, undefined);
    assert.equal(fs.realpathSync(none.libraries?.[0]?.path ?? ''), fs.realpathSync(path.join(root, 'lib', 'x86_64-linux-gnu', 'libc-2.13.so')));

    const uses = by.get('uses-lib')!;
    assert.deepEqual(uses.libraries?.map((l) => l.name).slice(0, 2), ['libvsysdep.so', 'libc.so.6'], 'RUNPATH $ORIGIN/../lib, then libc');
    assert.equal(uses.through?.[0]?.how, 'library-import');
    assert.equal(uses.through?.[0]?.importer, 'libvsysdep.so');
    assert.equal(uses.verdicts.none.outcome, 'crash');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('the same programs against this host\'s libc are not affected', { skip: !hasGcc() && 'gcc not installed' }, async () => {
  const p = buildC('imports-time', 'imports-time', []);
  const res = await scanPaths({ paths: [p], root: '/', workers: 0 });
  assert.equal(res.files[0]?.verdicts.none.outcome, 'ok');
  assert.ok((res.files[0]?.libraries ?? []).some((l) => l.name === 'libc.so.6' && l.path));
});

test('resolveInRoot keeps absolute symlinks and .. inside the root, and stops symlink loops', { skip }, () => {
  const root = makeRoot();
  try {
    assert.equal(resolveInRoot(root, '/lib64/libc-abs.so'), path.join(root, 'lib', 'x86_64-linux-gnu', 'libc-2.13.so'));
    assert.equal(resolveInRoot(root, '/../../../lib/x86_64-linux-gnu/libc.so.6'), path.join(root, 'lib', 'x86_64-linux-gnu', 'libc-2.13.so'));
    fs.symlinkSync('loop-b', path.join(root, 'loop-a'));
    fs.symlinkSync('loop-a', path.join(root, 'loop-b'));
    assert.equal(resolveInRoot(root, '/loop-a'), undefined);
    fs.symlinkSync('/etc/passwd', path.join(root, 'escape'));
    assert.equal(resolveInRoot(root, '/escape'), undefined, 'resolves to ROOT/etc/passwd, which does not exist');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
