// The scanner against real third-party files: the corpus (expected sites from its README, and
// objdump as an independent oracle), esbuild 0.0.2 (Go 1.12.9, a fallback data word objdump cannot
// see), and Debian bookworm's libc6, busybox-static and fzf (clean).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CORPUS, hasCommand } from '../helpers.js';
import { analyseBytes } from '../../src/scan/analyse-file.js';
import { scanPaths } from '../../src/scan/scan.js';
import { esbuild002 } from '../support/real-files.js';
import { debianPackage } from '../support/debian-packages.js';
import type { FileReport } from '../../src/scan/types.js';

function analyse(p: string): FileReport {
  const r = analyseBytes(fs.readFileSync(p), p);
  assert.ok(r, `${p} is ELF`);
  assert.equal(r.error, undefined, `${p}: ${r.error?.message}`);
  return r;
}

/** Addresses objdump -d prints on lines that mention an entry address (the corpus README's method). */
function objdumpSites(p: string): number[] {
  const r = spawnSync('objdump', ['-d', '--no-show-raw-insn', p], { encoding: 'utf8', maxBuffer: 1 << 30 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => /ff60(0000|0400|0800)\b/.test(l)).map((l) => parseInt(l.trim().split(':')[0] as string, 16));
}

type Expect = { entry: string; kind: string; fn?: string[]; address?: number };

const CORPUS_EXPECT: Record<string, { class: string; sites: Expect[]; libc?: [string, string] }> = {
  'debian-wheezy-libc-2.13/libc-2.13.so': {
    class: 'direct', libc: ['eglibc', '2.13'],
    sites: [
      { entry: 'gettimeofday', kind: 'fallback', address: 0x1ecd7 },
      { entry: 'time', kind: 'direct-call', fn: ['time'] },
      { entry: 'getcpu', kind: 'direct-call', fn: ['sched_getcpu'] },
    ],
  },
  'busybox-1.15.2-static/busybox': {
    class: 'direct',
    sites: [
      { entry: 'time', kind: 'direct-call', address: 0x4e1394 },
      { entry: 'gettimeofday', kind: 'direct-call', address: 0x4e13b4 },
    ],
  },
  'rhel6-glibc-2.12-libpthread/libpthread.so.0': {
    class: 'direct', libc: ['glibc', '2.12'],
    sites: ['pthread_rwlock_timedrdlock', 'pthread_rwlock_timedwrlock', 'sem_timedwait', '__lll_timedlock_wait', '__lll_timedwait_tid', '__lll_robust_timedlock_wait']
      .map((f) => ({ entry: 'gettimeofday', kind: 'direct-call', fn: [f] })),
  },
  'fb-glibc-2.16-libc/libc.so.6': {
    class: 'fallback', libc: ['glibc', '2.16'],
    sites: [
      { entry: 'getcpu', kind: 'fallback', fn: ['_init'] },
      { entry: 'time', kind: 'fallback', fn: ['time'] },
      { entry: 'gettimeofday', kind: 'fallback', fn: ['gettimeofday', '__gettimeofday'] },
    ],
  },
  'ctl-busybox-1.22.1-static-glibc2.17/busybox': { class: 'clean', sites: [] },
};

for (const [rel, want] of Object.entries(CORPUS_EXPECT)) {
  test(`corpus ${rel}: exactly the README's sites and classes, and every objdump hit`, { skip: !fs.existsSync(path.join(CORPUS, rel)) && 'corpus not present' }, () => {
    const p = path.join(CORPUS, rel);
    const r = analyse(p);
    assert.equal(r.class, want.class);
    assert.equal(r.findings.length, want.sites.length, JSON.stringify(r.findings.map((f) => [f.kind, f.entry, f.function?.name])));
    for (const [i, w] of want.sites.entries()) {
      const f = r.findings[i]!;
      assert.equal(f.entry, w.entry, `site ${i}`);
      assert.equal(f.kind, w.kind, `site ${i}`);
      if (w.address !== undefined) assert.equal(Number(f.address), w.address);
      if (w.fn) assert.ok(w.fn.includes(f.function?.name ?? ''), `site ${i} in ${f.function?.name}, want ${w.fn.join('|')}`);
    }
    // objdump is the oracle for code sites: same addresses, no more, no fewer.
    if (hasCommand('objdump')) {
      assert.deepEqual(r.findings.map((f) => Number(f.address)).sort((a, b) => a - b), objdumpSites(p).sort((a, b) => a - b));
    }
    if (want.libc) {
      assert.equal(r.identity?.libc?.name, want.libc[0]);
      assert.equal(r.identity?.libc?.version, want.libc[1]);
    }
  });
}

test('busybox 1.15.2 is static and stripped; its sites are named by FDE range', { skip: !fs.existsSync(path.join(CORPUS, 'busybox-1.15.2-static/busybox')) && 'corpus not present' }, () => {
  const r = analyse(path.join(CORPUS, 'busybox-1.15.2-static/busybox'));
  assert.equal(r.identity?.linkage, 'static');
  assert.equal(r.identity?.stripped, true);
  assert.deepEqual(r.findings.map((f) => [f.function?.source, Number(f.function?.start)]), [['eh_frame', 0x4e1390], ['eh_frame', 0x4e13b0]]);
});

test('exports of the wheezy libc that reach the page include time and sched_getcpu, not printf or malloc', { skip: !fs.existsSync(path.join(CORPUS, 'debian-wheezy-libc-2.13/libc-2.13.so')) && 'corpus not present' }, () => {
  const r = analyse(path.join(CORPUS, 'debian-wheezy-libc-2.13/libc-2.13.so'));
  const names = new Set(r.affectedExports.map((e) => e.name));
  for (const n of ['time', 'sched_getcpu', 'syslog']) assert.ok(names.has(n), n);
  for (const n of ['printf', 'malloc', 'puts', 'gettimeofday', 'clock_gettime']) assert.ok(!names.has(n), n);
  const time = r.affectedExports.find((e) => e.name === 'time');
  assert.deepEqual(time?.versions, ['GLIBC_2.2.5']);
  assert.equal(time?.kind, 'direct-call');
});

test('esbuild 0.0.2 (Go 1.12.9): the runtime.vdsoGettimeofdaySym word is a fallback objdump cannot see', { timeout: 180_000 }, async (t) => {
  const p = await esbuild002();
  if (!p) return t.skip('npm pack esbuild-linux-64@0.0.2 failed (no registry?)');
  const r = analyse(p);
  assert.equal(r.identity?.go?.version, 'go1.12.9');
  assert.equal(r.class, 'fallback');
  assert.ok(r.findings.length >= 1);
  for (const f of r.findings) {
    assert.equal(f.kind, 'fallback');
    assert.equal(f.entry, 'gettimeofday');
    assert.equal(f.dataWord?.symbol, 'runtime.vdsoGettimeofdaySym');
  }
  assert.deepEqual(new Set(r.findings.map((f) => f.function?.name)), new Set(['runtime.walltime', 'runtime.nanotime']));
  if (hasCommand('objdump')) assert.deepEqual(objdumpSites(p), [], 'objdump sees no instruction with the constant');
});

for (const pkg of ['libc6', 'busybox-static', 'fzf']) {
  test(`Debian bookworm ${pkg}: every ELF file is clean`, { timeout: 300_000 }, async (t) => {
    const root = debianPackage(pkg);
    if (!root) return t.skip(`apt-get download ${pkg} failed (no apt repository?)`);
    // A package is installed onto a system: its programs' libraries (libc.so.6 for fzf) come from the host.
    const res = await scanPaths({ paths: [root], workers: 0, root: '/' });
    assert.ok(res.summary.elfFiles > 0, 'the package has ELF files');
    assert.deepEqual(res.errors, []);
    assert.deepEqual(res.files.filter((f) => f.class !== 'clean').map((f) => [f.path, f.class]), []);
    if (pkg === 'fzf') assert.match(res.files.find((f) => f.path.endsWith('/fzf'))?.identity?.go?.version ?? '', /^go1\.19/);
    if (pkg === 'libc6') {
      const libc = res.files.find((f) => f.path.endsWith('/libc.so.6'));
      assert.equal(libc?.identity?.libc?.version, '2.36');
    }
  });
}
