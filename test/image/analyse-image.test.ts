// An image's verdicts from its final filesystem, checked against judging every file one by one
// (judgeFile, the directory scan's own rule): analyseImage skips the library lookup of files with no
// use of their own when no library in the image exports an affected function, and must keep exactly
// the files, and the verdicts, that the file-by-file judgement gives. Real files: the host's libc and
// programs, the corpus' static busybox 1.15.2 (direct calls) and wheezy libc 2.13 (affected exports).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CORPUS } from '../helpers.js';
import { ImageFs, type LayerOp } from '../../src/image/image-fs.js';
import { analyseImage, imageRoot } from '../../src/image/analyse-image.js';
import { analyseFile } from '../../src/scan/read-file.js';
import { judgeFile } from '../../src/scan/scan.js';
import { lookupContext } from '../../src/scan/resolve.js';
import { seedSlowdowns } from '../../src/scan/verdict.js';
import { VSYSCALL_MODES } from '../../src/model/modes.js';
import type { FileReport } from '../../src/scan/types.js';


const BUSYBOX = path.join(CORPUS, 'busybox-1.15.2-static', 'busybox');
const WHEEZY = path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so');
const HOST_LIBC = ['/lib/x86_64-linux-gnu/libc.so.6', '/usr/lib/x86_64-linux-gnu/libc.so.6'].find((p) => fs.existsSync(p));
const skip = (!fs.existsSync(BUSYBOX) && 'corpus not present') || (!HOST_LIBC && 'no x86-64 glibc on this host');

function report(host: string, inner: string): FileReport {
  const r = analyseFile(fs.realpathSync(host));
  assert.equal(r.kind, 'elf', host);
  return { ...(r as Extract<typeof r, { kind: 'elf' }>).report, path: inner };
}

function imageOf(files: [string, FileReport][]): ImageFs {
  const ops: LayerOp[] = files.map(([inner, rep]) => ({ op: 'add', path: inner, node: { kind: 'file', layer: 0, size: rep.size, report: rep } }));
  const ifs = new ImageFs();
  ifs.apply(ops, 0);
  return ifs;
}

/** The oracle: every file judged with its libraries looked up, kept when it has a use or a verdict other than ok. */
function judgedOneByOne(ifs: ImageFs): { path: string; verdicts: unknown; through: unknown }[] {
  const ctx = lookupContext(imageRoot(ifs, 'x'));
  const reportOf = (k: string) => {
    const n = ifs.get(k);
    return n?.kind === 'file' ? n.report : undefined;
  };
  const kept = [];
  for (const [, n] of ifs.files()) {
    if (!n.report) continue;
    const s = judgeFile(n.report, ctx, reportOf, seedSlowdowns, false);
    if (s.class !== 'clean' || (s.through?.length ?? 0) > 0 || VSYSCALL_MODES.some((m) => s.verdicts[m].outcome !== 'ok')) kept.push({ path: s.path, verdicts: s.verdicts, through: s.through });
  }
  return kept.sort((a, b) => (a.path < b.path ? -1 : 1));
}

test('an image whose libraries are clean: the static program with direct calls is kept, every clean program is left out, as judged one by one', { skip }, () => {
  const files: [string, FileReport][] = [
    ['/lib/x86_64-linux-gnu/libc.so.6', report(HOST_LIBC as string, '/lib/x86_64-linux-gnu/libc.so.6')],
    ['/bin/busybox', report(BUSYBOX, '/bin/busybox')],
    ['/bin/ls', report('/usr/bin/ls', '/bin/ls')],
    ['/bin/true', report('/usr/bin/true', '/bin/true')],
  ];
  const ifs = imageOf(files);
  const img = analyseImage(ifs, { ref: 'x', source: 'oci-dir', layers: [], problems: [] });
  assert.equal(img.elfFiles, 4);
  assert.deepEqual(img.files.map((f) => ({ path: f.path, verdicts: f.verdicts, through: f.through })), judgedOneByOne(ifs));
  assert.deepEqual(img.files.map((f) => f.path), ['/bin/busybox']);
  assert.equal(img.verdicts.none.outcome, 'crash');
  assert.match(img.verdicts.none.why, /\/bin\/busybox/);
});

test('an image with an affected libc: programs importing its affected functions are kept with the way through, as judged one by one', { skip: skip || (!fs.existsSync(WHEEZY) && 'corpus not present') }, () => {
  const files: [string, FileReport][] = [
    ['/lib/x86_64-linux-gnu/libc.so.6', report(WHEEZY, '/lib/x86_64-linux-gnu/libc.so.6')],
    ['/bin/ls', report('/usr/bin/ls', '/bin/ls')],
    ['/bin/date', report('/usr/bin/date', '/bin/date')],
    ['/bin/true', report('/usr/bin/true', '/bin/true')],
  ];
  const ifs = imageOf(files);
  const img = analyseImage(ifs, { ref: 'x', source: 'oci-dir', layers: [], problems: [] });
  const oracle = judgedOneByOne(ifs);
  assert.deepEqual(img.files.map((f) => ({ path: f.path, verdicts: f.verdicts, through: f.through })), oracle);
  assert.ok(img.files.some((f) => f.path !== '/lib/x86_64-linux-gnu/libc.so.6' && (f.through?.length ?? 0) > 0), `a program reaches the page through libc: ${img.files.map((f) => f.path)}`);
});
