// identify() on its own: type, linkage, interpreter, DT_NEEDED/SONAME/RUNPATH/RPATH, build-id and
// strippedness against readelf (-h -l -d -n -S -V) on corpus files and programs gcc builds here in
// each shape (PIE, non-PIE with DT_RPATH, static, shared library with a soname and DT_RUNPATH); the
// C library and its version against the corpus README and the file's own bytes (banner, debuglink,
// version needs); describeIdentity's exact text; a corrupt e_machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { identify, describeIdentity, isProgram, type Identity } from '../../src/scan/identify.js';
import { readElf } from '../../src/elf/index.js';
import { CORPUS, hasCommand } from '../helpers.js';
import { buildC, hasGcc } from '../support/fixtures.js';
import { readelf } from '../elf/readelf-oracle.js';

const file = (p: string) => path.join(CORPUS, p);
const BUSYBOX = file('busybox-1.15.2-static/busybox');
const LIBC213 = file('debian-wheezy-libc-2.13/libc-2.13.so');
const LIBC216 = file('fb-glibc-2.16-libc/libc.so.6');
const PTHREAD212 = file('rhel6-glibc-2.12-libpthread/libpthread.so.0');
const CLEAN = file('ctl-busybox-1.22.1-static-glibc2.17/busybox');
const INITFS = file('gentoo-initfs-2011/lib64');
const noCorpus = !fs.existsSync(BUSYBOX) && 'corpus not found';
const noReadelf = !hasCommand('readelf') && 'readelf not installed';
const noGcc = !hasGcc() && 'gcc not installed';

function id(p: string, bytes: Uint8Array = fs.readFileSync(p)): Identity {
  return identify(readElf(bytes, p, undefined, { sectionsOptional: true }));
}

/** What readelf says of a file, in identify's terms. */
function oracle(p: string) {
  const h = readelf(['-h'], p);
  const type = /^ {2}Type:\s+(\w+)/m.exec(h)?.[1];
  const interp = /\[Requesting program interpreter: (.*)\]/.exec(readelf(['-l'], p))?.[1];
  const d = readelf(['-d'], p);
  const tag = (t: string) => [...d.matchAll(new RegExp(`\\(${t}\\)\\s+[^\\[]*\\[(.*)\\]`, 'g'))].map((m) => m[1]!);
  const buildId = /Build ID: ([0-9a-f]+)/.exec(readelf(['-n'], p))?.[1];
  const symtab = /\] \.symtab\s/.test(readelf(['-S'], p));
  const soname = tag('SONAME')[0];
  const out: Partial<Identity> & { elfType: string | undefined } = {
    elfType: type,
    type: type === 'EXEC' ? 'executable' : type === 'DYN' ? (soname !== undefined || interp === undefined ? 'shared-library' : 'pie') : 'other',
    linkage: interp !== undefined || tag('NEEDED').length > 0 ? 'dynamic' : 'static',
    needed: tag('NEEDED'),
    stripped: !symtab,
  };
  if (interp !== undefined) out.interpreter = interp;
  if (soname !== undefined) out.soname = soname;
  if (tag('RUNPATH')[0] !== undefined) out.runpath = tag('RUNPATH')[0]!;
  if (tag('RPATH')[0] !== undefined) out.rpath = tag('RPATH')[0]!;
  if (buildId !== undefined) out.buildId = buildId;
  return out;
}

function checkAgainstReadelf(p: string): Identity {
  const got = id(p);
  const { elfType, ...want } = oracle(p);
  assert.ok(elfType, `${p}: readelf -h printed a type`);
  for (const [k, v] of Object.entries(want)) assert.deepEqual(got[k as keyof Identity], v, `${path.basename(p)}: ${k}`);
  for (const k of ['interpreter', 'soname', 'runpath', 'rpath', 'buildId'] as const) if (!(k in want)) assert.equal(got[k], undefined, `${path.basename(p)}: no ${k}`);
  assert.equal(got.class, 64);
  assert.equal(got.machine, 'x86-64');
  assert.deepEqual(got.warnings, []);
  return got;
}

/** The highest GLIBC_x.y[.z] the file needs from libc.so.6, by readelf -V, compared numerically. */
function neededGlibc(p: string): string | undefined {
  const text = readelf(['-V'], p);
  const part = text.slice(text.indexOf('.gnu.version_r'));
  const versions = [...part.matchAll(/Name: GLIBC_(\d+(?:\.\d+)+)/g)].map((m) => m[1]!);
  const key = (v: string) => v.split('.').map(Number).reduce((a, n, i) => a + n * 10000 ** (2 - i), 0);
  return versions.sort((a, b) => key(a) - key(b)).at(-1);
}

test('corpus files: identity fields against readelf; libc and version as the corpus README says', { skip: noCorpus || noReadelf }, () => {
  const bb = checkAgainstReadelf(BUSYBOX);
  assert.equal(bb.type, 'executable');
  assert.equal(bb.linkage, 'static');
  assert.equal(bb.stripped, true, 'README: stripped (no symbols)');
  const l213 = checkAgainstReadelf(LIBC213);
  // README: Debian EGLIBC 2.13-38. The banner says so: "GNU C Library (Debian EGLIBC 2.13-38) stable release version 2.13".
  assert.match(fs.readFileSync(LIBC213).toString('latin1'), /GNU C Library \(Debian EGLIBC 2\.13-38\) stable release version 2\.13/);
  assert.deepEqual(l213.libc, { name: 'eglibc', version: '2.13', source: 'banner' });
  assert.equal(l213.type, 'shared-library', 'libc has PT_INTERP but a soname: a library');
  assert.equal(l213.interpreter, '/lib64/ld-linux-x86-64.so.2');
  assert.deepEqual(checkAgainstReadelf(LIBC216).libc, { name: 'glibc', version: '2.16', source: 'banner' });
  // RHEL 6 libpthread: named after its release only in its .gnu_debuglink.
  const p212 = checkAgainstReadelf(PTHREAD212);
  assert.match(readelf(['-p', '.gnu_debuglink'], PTHREAD212), /libpthread-2\.12\.so\.debug/);
  assert.deepEqual(p212.libc, { name: 'glibc', version: '2.12', source: 'debuglink' });
  assert.deepEqual(p212.needed, ['libc.so.6', 'ld-linux-x86-64.so.2']);
  const clean = checkAgainstReadelf(CLEAN);
  assert.equal(clean.linkage, 'static');
  assert.equal(clean.libc, undefined, 'a static busybox carries no glibc banner');
  assert.doesNotMatch(fs.readFileSync(CLEAN).toString('latin1'), /GNU C Library/);
});

test('Gentoo initramfs 2011: glibc 2.13 libraries named by their release (libpthread-2.13.so, ld-2.13.so)', { skip: (!fs.existsSync(INITFS) && 'initfs not in the corpus') || noReadelf }, () => {
  const lp = checkAgainstReadelf(path.join(INITFS, 'libpthread-2.13.so'));
  assert.match(readelf(['-p', '.gnu_debuglink'], path.join(INITFS, 'libpthread-2.13.so')), /libpthread-2\.13\.so\.debug/);
  assert.deepEqual(lp.libc, { name: 'glibc', version: '2.13', source: 'debuglink' });
  const ld = checkAgainstReadelf(path.join(INITFS, 'ld-2.13.so'));
  assert.equal(ld.soname, 'ld-linux-x86-64.so.2');
  assert.equal(ld.libc?.version, '2.13');
  assert.equal(describeIdentity(ld), 'shared library, glibc 2.13, stripped');
  // Renamed, it still knows its release: from its debuglink, not its file name.
  const renamed = identify(readElf(fs.readFileSync(path.join(INITFS, 'libpthread-2.13.so')), '/x/libpthread.so.0', undefined, { sectionsOptional: true }));
  assert.deepEqual(renamed.libc, { name: 'glibc', version: '2.13', source: 'debuglink' });
});

test('gcc-built: a PIE, a non-PIE with DT_RPATH, a static program and a shared library with a soname and DT_RUNPATH', { skip: noGcc || noReadelf }, () => {
  const pie = buildC('clean', 'identify-pie', ['-pie', '-fPIE']);
  assert.match(readelf(['-h'], pie), /Type:\s+DYN/);
  const p = checkAgainstReadelf(pie);
  assert.equal(p.type, 'pie');
  assert.equal(p.linkage, 'dynamic');
  assert.deepEqual(p.needed, ['libc.so.6']);
  assert.equal(p.stripped, false);
  assert.deepEqual(p.libc, { name: 'glibc', version: neededGlibc(pie), source: 'version-needs' });
  assert.equal(isProgram(p), true);
  assert.equal(describeIdentity(p), `dynamic PIE executable, needs glibc ≥ ${neededGlibc(pie)}`);

  const exe = buildC('clean', 'identify-nopie-rpath', ['-no-pie', '-Wl,--disable-new-dtags', '-Wl,-rpath,/opt/old/lib']);
  const e = checkAgainstReadelf(exe);
  assert.equal(e.type, 'executable');
  assert.equal(e.rpath, '/opt/old/lib');
  assert.equal(e.runpath, undefined);
  assert.equal(describeIdentity(e), `dynamic executable, needs glibc ≥ ${neededGlibc(exe)}`);

  const st = checkAgainstReadelf(buildC('clean', 'identify-static', ['-static']));
  assert.equal(st.type, 'executable');
  assert.equal(st.linkage, 'static');
  assert.deepEqual(st.needed, []);
  assert.equal(st.interpreter, undefined);

  const so = buildC('clean', 'identify-lib.so', ['-shared', '-fPIC', '-Wl,-soname,libvsysclean.so.1', '-Wl,--enable-new-dtags', '-Wl,-rpath,/opt/vsys/lib', '-s']);
  const s = checkAgainstReadelf(so);
  assert.equal(s.type, 'shared-library');
  assert.equal(s.soname, 'libvsysclean.so.1');
  assert.equal(s.runpath, '/opt/vsys/lib');
  assert.equal(s.stripped, true, 'built with -s');
  assert.equal(isProgram(s), false);
  assert.equal(describeIdentity(s), `shared library, needs glibc ≥ ${neededGlibc(so)}, stripped`);
});

test('a corrupt e_machine is named in the warnings; known machines are named, unknown ones by number', { skip: noCorpus }, () => {
  const bytes = Buffer.from(fs.readFileSync(BUSYBOX));
  bytes.writeUInt16LE(0, 18);
  assert.deepEqual(id(BUSYBOX, bytes).warnings, ['e_machine 0 is not a valid machine (corrupt header?)']);
  bytes.writeUInt16LE(0x7777, 18);
  const odd = id(BUSYBOX, bytes);
  assert.deepEqual(odd.warnings, ['e_machine 30583 is not a valid machine (corrupt header?)']);
  assert.equal(odd.machine, 'machine 30583');
  bytes.writeUInt16LE(183, 18);
  const arm = id(BUSYBOX, bytes);
  assert.equal(arm.machine, 'aarch64');
  assert.deepEqual(arm.warnings, []);
  assert.equal(describeIdentity(arm), 'static executable, aarch64, 64-bit, stripped');
  bytes.writeUInt16LE(0x9026, 18); // a legacy number (alpha) is tolerated
  assert.deepEqual(id(BUSYBOX, bytes).warnings, []);
});

test('describeIdentity and isProgram on hand-made identities: each libc source, Go, 32-bit, object files', () => {
  const base: Identity = { class: 64, machine: 'x86-64', type: 'executable', linkage: 'dynamic', needed: [], stripped: false, warnings: [] };
  assert.equal(describeIdentity(base), 'dynamic executable');
  assert.equal(describeIdentity({ ...base, libc: { name: 'glibc', version: '2.14', source: 'version-definitions' } }), 'dynamic executable, glibc ≥ 2.14');
  assert.equal(describeIdentity({ ...base, libc: { name: 'musl', source: 'interpreter' } }), 'dynamic executable, musl');
  assert.equal(describeIdentity({ ...base, libc: { name: 'eglibc', version: '2.13', source: 'file-name' } }), 'dynamic executable, eglibc 2.13');
  assert.equal(describeIdentity({ ...base, linkage: 'static', go: { version: 'go1.12.9', source: 'buildinfo' }, stripped: true }), 'static executable, Go 1.12.9, stripped');
  assert.equal(describeIdentity({ ...base, class: 32, machine: 'i386', type: 'pie' }), 'dynamic PIE executable, i386, 32-bit');
  assert.equal(describeIdentity({ ...base, type: 'relocatable', linkage: 'static' }), 'static relocatable');
  assert.equal(isProgram({ ...base, type: 'pie' }), true);
  assert.equal(isProgram({ ...base, type: 'relocatable' }), false);
  assert.equal(isProgram({ ...base, type: 'core' }), false);
  assert.equal(isProgram(undefined), false);
});
