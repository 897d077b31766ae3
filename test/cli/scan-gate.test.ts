// `vsys scan` as a CI gate, end to end through the built CLI, on real 2011 files: exit codes for
// every kind of input that cannot be judged, each file judged in its own root (the corpus' Gentoo
// initramfs with its own glibc 2.13), records that validate against the documented JSON Schema
// (ajv), SARIF that Microsoft's validator accepts with a result for every file that is not ok,
// images grouped by cause with the entrypoint judged first, a closed pipe and Ctrl-C.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { BIN, CORPUS, ROOT, runVsys } from '../helpers.js';
import { INITFS, materialiseInitfs } from '../support/initfs.js';
import { buildDockerArchive } from '../support/images.js';

const skip = !fs.existsSync(INITFS) && `no corpus at ${INITFS}`;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-gate-'));
const BUSYBOX = path.join(CORPUS, 'busybox-1.15.2-static', 'busybox');

const schema = JSON.parse(fs.readFileSync(path.join(ROOT, 'schema', 'scan-record.schema.json'), 'utf8'));
const ajv = new Ajv2020({ allErrors: true, strict: false });
const validate = new Ajv2020({ allErrors: true, strict: true }).compile(schema);

type Rec = Record<string, any>;

/** Runs `vsys scan --json ARGS`, checks every line against the schema, returns the records. */
function scanJson(args: string[]): { status: number | null; records: Rec[]; stderr: string } {
  const r = runVsys(['scan', '--json', ...args], { timeout: 180_000 });
  const records = r.stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Rec);
  for (const rec of records) assert.ok(validate(rec), `${JSON.stringify(validate.errors, null, 1)}\nin ${JSON.stringify(rec).slice(0, 400)}`);
  assert.equal(records.at(-1)?.record, 'summary', 'the last record is the summary');
  return { status: r.status, records, stderr: r.stderr };
}

let root = '';
before(() => {
  if (!skip) root = materialiseInitfs(path.join(work, 'initfs'));
});

describe('exit codes: 0 ok · 1 at or above --fail-on · 2 usage · 3 not judged', { skip }, () => {
  test('a missing path exits 3 and is listed at the end, also with --fail-on', () => {
    for (const extra of [[], ['--fail-on', 'crash']]) {
      const r = runVsys(['scan', '--mode', 'none', ...extra, '/nonexistent']);
      assert.equal(r.status, 3, r.stdout + r.stderr);
      assert.match(r.stdout, /could not be read or judged \(1;[^\n]*\n {2}! \/nonexistent: FILE_NOT_FOUND/);
    }
  });

  test('a file this user cannot read exits 3 (EACCES, as nobody)', (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to switch to nobody');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-eacces-'));
    fs.chmodSync(dir, 0o755);
    const f = path.join(dir, 'secret');
    fs.copyFileSync(BUSYBOX, f);
    fs.chmodSync(f, 0o000);
    try {
      const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, 'scan', '--mode', 'none', '--fail-on', 'crash', f], { encoding: 'utf8' });
      assert.equal(r.status, 3, r.stdout + r.stderr);
      assert.match(r.stdout, /IO_FAILED|EACCES|permission denied/i);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a truncated ELF file is never ok: review, listed, exit 3', () => {
    const f = path.join(work, 'truncated');
    fs.writeFileSync(f, fs.readFileSync(BUSYBOX).subarray(0, 600_000));
    const j = scanJson(['--mode', 'none', '--fail-on', 'slow', f]);
    assert.equal(j.status, 3);
    const rec = j.records.find((r) => r.record === 'file')!;
    assert.equal(rec.outcome, 'review');
    assert.equal(rec.certainty, 'unknown');
    assert.match(rec.error.code, /^ELF_/);
    const s = j.records.at(-1)!;
    assert.equal(s.byOutcome.none.ok, 0, 'not counted ok');
    assert.equal(s.unjudged, 1);
    assert.ok(j.records.some((r) => r.record === 'error' && r.path === f));
  });

  test('a truncated ELF file still shows the page addresses its readable bytes hold, decoded where they sit', () => {
    const whole = scanJson(['--mode', 'none', BUSYBOX]).records.find((r) => r.record === 'file')!;
    const cut = 1_050_000;
    const f = path.join(work, 'truncated-after-time');
    fs.writeFileSync(f, fs.readFileSync(BUSYBOX).subarray(0, cut));
    const j = scanJson(['--mode', 'none', f]);
    assert.equal(j.status, 3);
    const rec = j.records.find((r) => r.record === 'file')!;
    assert.equal(rec.outcome, 'review', 'not judged as a whole: review, not crash');
    assert.ok(rec.error);
    const want = whole.findings.filter((x: Rec) => x.offset < cut - 16).map((x: Rec) => [x.offset, x.kind, x.entry]);
    assert.ok(want.length >= 2, 'the cut keeps time() and gettimeofday()');
    assert.deepEqual(rec.findings.map((x: Rec) => [x.offset, x.kind, x.entry]), want);
    assert.match(rec.why, /readable bytes hold uses of the page/);
  });

  test('big-endian ELF files (arch-test\'s s390x, ppc64, …) are judged: no x86-64 code, ok, exit 0', (t) => {
    const dir = '/usr/lib/arch-test';
    if (!fs.existsSync(dir)) return t.skip('arch-test is not installed (.ci/run installs it)');
    const msb = fs.readdirSync(dir).filter((n) => /ELF \d+-bit MSB/.test(spawnSync('file', ['-b', path.join(dir, n)], { encoding: 'utf8' }).stdout));
    assert.ok(msb.length >= 3, msb.join(' '));
    const j = scanJson(['--mode', 'none', '--fail-on', 'slow', dir]);
    assert.equal(j.status, 0, JSON.stringify(j.records.filter((r) => r.record === 'error')));
    for (const n of msb) assert.equal(j.records.find((r) => r.record === 'file' && r.path === path.join(dir, n))?.outcome, 'ok', n);
  });

  test('a tar that is not an image, a bad manifest and a registry that does not answer exit 3; the rest is still judged', () => {
    const notImage = path.join(work, 'not-image.tar');
    spawnSync('tar', ['-cf', notImage, '-C', path.dirname(BUSYBOX), 'busybox']);
    const badManifest = path.join(work, 'bad-manifest.tar');
    const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-badman-'));
    fs.writeFileSync(path.join(stage, 'manifest.json'), '[{"Config": 5}]');
    fs.writeFileSync(path.join(stage, 'pad'), Buffer.alloc(2048));
    spawnSync('tar', ['-cf', badManifest, '-C', stage, 'manifest.json', 'pad']);
    const gz = path.join(work, 'image.tar.gz');
    spawnSync('sh', ['-c', `gzip -c < "${badManifest}" > "${gz}"`]);
    for (const [input, code] of [[notImage, 'IMAGE_BAD_MANIFEST'], [badManifest, 'IMAGE_BAD_MANIFEST'], [gz, 'IMAGE_COMPRESSED_ARCHIVE'], ['registry://127.0.0.1:9/none:latest', 'REGISTRY']] as const) {
      const j = scanJson(['--mode', 'none', input, path.join(CORPUS, 'ctl-busybox-1.22.1-static-glibc2.17')]);
      assert.equal(j.status, 3, `${input}: ${j.stderr}`);
      const err = j.records.find((r) => r.record === 'error')!;
      assert.equal(err.image, input);
      assert.ok(err.code.startsWith(code), err.code);
      assert.ok(j.records.some((r) => r.record === 'file' && r.path.endsWith('ctl-busybox-1.22.1-static-glibc2.17/busybox') && r.outcome === 'ok'));
    }
  });

  test('a crash found wins over an unjudged input (1), and a clean tree exits 0', () => {
    assert.equal(runVsys(['scan', '--mode', 'none', '--fail-on', 'crash', '/nonexistent', BUSYBOX]).status, 1);
    assert.equal(runVsys(['scan', '--mode', 'none', '--fail-on', 'crash', path.join(CORPUS, 'ctl-busybox-1.22.1-static-glibc2.17')]).status, 0);
    assert.equal(runVsys(['scan', '--mode', 'none', '--fail-on', 'sometimes', BUSYBOX]).status, 2);
  });
});

describe('each file is judged in the root it lives in', { skip }, () => {
  test('ROOTFS/bin/e2fsck crashes through its own libc-2.13 time(), and says in which root', () => {
    const j = scanJson(['--mode', 'none', path.join(root, 'bin', 'e2fsck')]);
    const rec = j.records.find((r) => r.record === 'file')!;
    assert.equal(rec.root, root);
    assert.equal(rec.outcome, 'crash');
    assert.equal(rec.certainty, 'conditional');
    assert.equal(rec.condition, 'time() (imported from libc-2.13.so) is called');
    assert.ok(rec.through.some((t: Rec) => t.symbol === 'time' && t.libraryPath === path.join(root, 'lib64', 'libc-2.13.so')));
    const text = runVsys(['scan', '--mode', 'none', path.join(root, 'bin', 'e2fsck')]);
    assert.match(text.stdout, new RegExp(`judged in root ${root.replace(/[.+]/g, '\\$&')}`));
    assert.match(text.stdout, /crash[^\n]* if it calls time\(\) of libc-2\.13\.so/);
    assert.equal(text.stderr, '', 'no warning: the libraries come from the file\'s own root');
  });

  test('ROOTFS/bin as a directory: the dynamically linked programs of the root crash, the clean ones do not', () => {
    const j = scanJson(['--mode', 'none', path.join(root, 'bin')]);
    const byName = new Map(j.records.filter((r) => r.record === 'file').map((r) => [path.basename(r.path), r]));
    assert.equal(byName.get('e2fsck')?.outcome, 'crash');
    assert.equal(byName.get('busybox')?.outcome, 'crash');
    assert.equal(byName.get('busybox')?.class, 'direct');
    assert.ok([...byName.values()].every((r) => r.root === root));
  });

  test('--root elsewhere is obeyed with one warning naming the file\'s own root', () => {
    const r = runVsys(['scan', '--mode', 'none', '--root', '/', path.join(root, 'bin', 'e2fsck'), path.join(root, 'bin', 'udevadm')]);
    const warnings = r.stderr.split('\n').filter((l) => l.includes('warning'));
    assert.equal(warnings.length, 1, r.stderr);
    assert.match(warnings[0]!, new RegExp(`is in ${root.replace(/[.+]/g, '\\$&')}`));
  });

  test('host directories stay judged in /: /usr/bin, and /usr itself (a merged /usr holds a loader too)', () => {
    const bin = scanJson(['--mode', 'none', '/usr/bin']);
    const usr = scanJson(['--mode', 'none', '/usr/lib/x86_64-linux-gnu/libc.so.6', '/usr/bin/env']);
    for (const j of [bin, usr]) assert.deepEqual(Object.keys(j.records.at(-1)!.roots), ['/']);
    assert.match(runVsys(['scan', '--mode', 'none', '/usr'], { timeout: 180_000 }).stdout, /judged in root \/\n/);
  });

  test('through a symlinked directory (ln -s ROOTFS/bin): judged in the root it really is in', () => {
    const link = path.join(work, 'bin-link');
    fs.symlinkSync(path.join(root, 'bin'), link);
    const j = scanJson(['--mode', 'none', path.join(link, 'e2fsck')]);
    const rec = j.records.find((r) => r.record === 'file')!;
    assert.equal(rec.root, root);
    assert.equal(rec.outcome, 'crash');
  });

  test('a directory with lib/ and etc/ but no loader, libc or os-release is not a root', () => {
    const d = path.join(work, 'not-a-root');
    fs.mkdirSync(path.join(d, 'lib'), { recursive: true });
    fs.mkdirSync(path.join(d, 'etc'), { recursive: true });
    fs.copyFileSync(path.join(root, 'bin', 'e2fsck'), path.join(d, 'e2fsck'));
    const j = scanJson(['--mode', 'none', d]);
    assert.deepEqual(Object.keys(j.records.at(-1)!.roots), ['/']);
  });

  test('a program whose libraries are not in its root is not judged ok: review, listed, exit 3', () => {
    const empty = path.join(work, 'empty-root');
    fs.mkdirSync(path.join(empty, 'etc'), { recursive: true });
    const j = scanJson(['--mode', 'none', '--fail-on', 'crash', '--root', empty, path.join(root, 'bin', 'e2fsck')]);
    assert.equal(j.status, 3);
    const rec = j.records.find((r) => r.record === 'file')!;
    assert.equal(rec.outcome, 'review');
    assert.ok(rec.missingLibraries.includes('libc.so.6'));
    assert.ok(j.records.some((r) => r.record === 'error' && r.code === 'LIBRARY_NOT_FOUND'));
  });

  test('--root must be a directory (usage, exit 2)', () => {
    assert.equal(runVsys(['scan', '--root', '/nonexistent', BUSYBOX]).status, 2);
    assert.equal(runVsys(['scan', '--root', BUSYBOX, BUSYBOX]).status, 2);
  });
});

describe('complete machine output: every record validates, outcome per record, SARIF per file', { skip }, () => {
  test('selecting on .outcome finds the programs that crash through imports; .class misses them', () => {
    const j = scanJson(['--mode', 'none', root]);
    const files = j.records.filter((r) => r.record === 'file');
    const crash = files.filter((r) => r.outcome === 'crash').map((r) => path.relative(root, r.path)).sort();
    assert.ok(crash.includes('bin/e2fsck') && crash.includes('bin/udevadm') && crash.includes('lib64/libc-2.13.so'), crash.join(' '));
    const byClass = files.filter((r) => r.class !== 'clean').map((r) => path.relative(root, r.path));
    assert.ok(!byClass.includes('bin/e2fsck'), 'the old jq example would miss e2fsck');
    const s = j.records.at(-1)!;
    assert.equal(s.byOutcome.none.crash, crash.length);
    const help = runVsys(['scan', '--help']).stdout;
    assert.match(help, /jq -r 'select\(\.record == "file" and \.outcome == "crash"\) \| \.path'/);
  });

  test('SARIF: Microsoft\'s validator accepts it; every file not ok is a result at that file, imports with their chain', (t) => {
    const tool = path.join(ROOT, 'node_modules', '@microsoft', 'sarif-multitool-linux', 'Sarif.Multitool');
    if (!fs.existsSync(tool)) return t.skip('npm ci did not install @microsoft/sarif-multitool-linux');
    fs.chmodSync(tool, 0o755);
    const out = path.join(work, 'initfs.sarif');
    runVsys(['scan', '--mode', 'none', '--sarif', out, root, '/nonexistent']);
    const doc = JSON.parse(fs.readFileSync(out, 'utf8')) as Rec;
    const results: Rec[] = doc.runs[0].results;
    const at = (name: string) => results.filter((r) => r.locations[0].physicalLocation.artifactLocation.uri.endsWith(`/bin/${name}`));
    const e2 = at('e2fsck');
    assert.equal(e2.length, 1);
    assert.equal(e2[0]!.ruleId, 'vsys/import');
    assert.equal(e2[0]!.level, 'error');
    assert.match(e2[0]!.message.text, /e2fsck imports time@GLIBC_2\.2\.5 from .*lib64\/libc-2\.13\.so/);
    assert.equal(at('busybox')[0]!.ruleId, 'vsys/direct-call');
    // Each site carries its own verdict: libc's getcpu site is about sched_getcpu, not time().
    const getcpu = results.find((r) => r.locations[0].physicalLocation.artifactLocation.uri.endsWith('/lib64/libc-2.13.so') && r.properties.entry === 'getcpu')!;
    assert.match(getcpu.message.text, /Under vsyscall=none: crashes if sched_getcpu\(\) is called/);
    const j = scanJson(['--mode', 'none', root]);
    const notOk = j.records.filter((r) => r.record === 'file' && r.outcome !== 'ok').map((r) => pathUri(r.path));
    const uris = new Set(results.map((r) => r.locations[0].physicalLocation.artifactLocation.uri));
    for (const u of notOk) assert.ok(uris.has(u), `no SARIF result for ${u}`);
    assert.match(doc.runs[0].invocations[0].toolExecutionNotifications[0].message.text, /nonexistent: FILE_NOT_FOUND/);
    assert.deepEqual(sarifErrors(tool, out), []);
    // The SARIF 2.1.0 JSON Schema Microsoft ships with the validator, checked with ajv as well.
    const sarifSchema = ajv.compile(JSON.parse(fs.readFileSync(path.join(path.dirname(tool), 'sarif-2.1.0.json'), 'utf8')));
    assert.ok(sarifSchema(doc), JSON.stringify(sarifSchema.errors));
    // Both are able to fail: a run without its driver, a result without a message and with an unknown level.
    const bad = path.join(work, 'bad.sarif');
    doc.runs[0].results[0] = { ruleId: 'vsys/import', level: 'fatal' };
    assert.equal(sarifSchema(doc), false);
    delete doc.runs[0].tool.driver;
    fs.writeFileSync(bad, JSON.stringify(doc));
    assert.ok(sarifErrors(tool, bad).length >= 2);
  });
});

function pathUri(p: string): string {
  return `file://${path.resolve(p).split('/').map(encodeURIComponent).join('/')}`;
}

/** Sarif.Multitool validate: the error-level results it reports about `file`. */
function sarifErrors(tool: string, file: string): string[] {
  const out = `${file}.validation.sarif`;
  fs.rmSync(out, { force: true });
  const r = spawnSync(tool, ['validate', file, '--output', out], { encoding: 'utf8' });
  assert.ok(fs.existsSync(out), r.stdout + r.stderr);
  const v = JSON.parse(fs.readFileSync(out, 'utf8'));
  return (v.runs[0].results ?? []).filter((x: Rec) => x.level === 'error').map((x: Rec) => `${x.ruleId}: ${JSON.stringify(x.message)}`);
}

describe('images: the entrypoint first, grouped by cause, the layer of each file, complete JSON', { skip }, () => {
  let tar = '';
  before(() => {
    // Two layers: the initramfs without e2fsck, then a layer that adds it.
    const base = path.join(work, 'layer-base');
    fs.cpSync(root, base, { recursive: true, verbatimSymlinks: true });
    fs.rmSync(path.join(base, 'bin', 'e2fsck'));
    const top = path.join(work, 'layer-top');
    fs.mkdirSync(path.join(top, 'bin'), { recursive: true });
    fs.copyFileSync(path.join(root, 'bin', 'e2fsck'), path.join(top, 'bin', 'e2fsck'));
    tar = path.join(work, 'initfs-image.tar');
    buildDockerArchive(tar, [{ dir: base }, { dir: top }], { repoTag: 'gentoo-initfs:2011', config: { Env: ['PATH=/bin:/sbin'], Cmd: ['e2fsck', '-V'] } });
  });

  test('text: the entrypoint e2fsck is judged by name, programs grouped under libc-2.13.so time(), files with their layer', () => {
    const r = runVsys(['scan', '--mode', 'none', tar]);
    const lines = r.stdout.split('\n');
    assert.match(lines[1]!, /^ {4}entrypoint \["e2fsck","-V"\] = \/bin\/e2fsck: ✗ crash under vsyscall=none: crashes if time\(\) \(imported from libc-2\.13\.so\) is called/);
    assert.match(r.stdout, /✗ 3 programs crash under vsyscall=none if they call time\(\) of libc-2\.13\.so \(\/lib64\/libc-2\.13\.so, the time entry\), through their imports:\n {8}e2fsck \(layer 2\), udevadm \(layer 1\), udevd \(layer 1\)/);
    assert.match(r.stdout, /✗ \/bin\/busybox — static executable, stripped \[layer 1\/2 sha256:[0-9a-f]{12}\]/);
    assert.equal((r.stdout.match(/direct-call time/g) ?? []).length, 4, 'busybox, cryptsetup, mdadm and libc: one block each');
    assert.match(r.stdout, /Rebase on a release whose libc uses the vDSO: CentOS 7/);
  });

  test('JSON: summary counts the image\'s files, the files carry their layer; --all lists the clean ones', () => {
    const j = scanJson(['--mode', 'none', tar]);
    const img = j.records.find((r) => r.record === 'image')!;
    assert.equal(img.entrypoint.path, '/bin/e2fsck');
    assert.equal(img.entrypoint.verdicts.none.outcome, 'crash');
    assert.deepEqual(img.causes[0].programs, ['/bin/e2fsck', '/bin/udevadm', '/bin/udevd']);
    const files = j.records.filter((r) => r.record === 'file');
    const e2 = files.find((r) => r.path === '/bin/e2fsck')!;
    assert.equal(e2.image, 'gentoo-initfs:2011');
    assert.equal(e2.layer.index, 1);
    assert.equal(e2.layer.digest, img.layers[1].digest);
    const s = j.records.at(-1)!;
    assert.equal(s.byOutcome.none.crash, files.filter((r) => r.outcome === 'crash').length);
    assert.ok(s.byOutcome.none.crash >= 8, JSON.stringify(s.byOutcome.none));
    assert.equal(s.elfFiles, img.elfFiles);
    assert.equal(s.byOutcome.none.ok + s.byOutcome.none.crash + s.byOutcome.none.review + s.byOutcome.none.fallback + s.byOutcome.none.slow, img.elfFiles);
    const all = scanJson(['--mode', 'none', '--all', tar]);
    const allFiles = all.records.filter((r) => r.record === 'file');
    assert.equal(allFiles.length, img.elfFiles);
    assert.ok(allFiles.some((r) => r.path === '/bin/strace' && r.outcome === 'ok'));
    assert.match(runVsys(['scan', '--mode', 'none', '--all', tar]).stdout, /✓ \/bin\/strace — /);
  });
});

describe('clean failure', { skip }, () => {
  test('Ctrl-C while an image is still being read reports the images finished and exits 130', async (t) => {
    if (!fs.existsSync(path.join(work, 'initfs-image.tar'))) return t.skip('the image is built by the images tests above');
    // A registry that accepts the connection and never answers: the scan of it never ends by itself.
    const net = await import('node:net');
    const held: import('node:net').Socket[] = [];
    const server = net.createServer((sock) => held.push(sock));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as import('node:net').AddressInfo).port;
    const tar = path.join(work, 'initfs-image.tar');
    try {
      const child = spawn(process.execPath, [BIN, 'scan', '--json', '--mode', 'none', '--concurrency', '2', tar, `registry://127.0.0.1:${port}/silent:1`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      await new Promise((r) => setTimeout(r, 3000));
      child.kill('SIGINT');
      const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
      assert.equal(code, 130, err);
      const recs = out.trim().split('\n').map((l) => JSON.parse(l) as Rec);
      for (const rec of recs) assert.ok(validate(rec), JSON.stringify(validate.errors));
      assert.deepEqual(recs.filter((r) => r.record === 'image').map((r) => r.ref), ['gentoo-initfs:2011']);
      assert.equal(recs.at(-1)!.interrupted, true);
    } finally {
      for (const s of held) s.destroy();
      server.close();
    }
  });

  test('a SARIF file that cannot be written is a usage error before the scan, not a stack trace', () => {
    const r = runVsys(['scan', '--mode', 'none', '--sarif', '/nonexistent/dir/x.sarif', BUSYBOX]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /cannot write --sarif \/nonexistent\/dir\/x\.sarif/);
    assert.doesNotMatch(r.stderr, /internal error|at .*\.js:\d+/);
  });

  test('a closed pipe ends the run quietly with 141, no stack trace', () => {
    const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${BIN}" scan --json /usr/bin | head -1 > /dev/null; echo "status \${PIPESTATUS[0]}" >&2`], { encoding: 'utf8', timeout: 120_000 });
    assert.match(r.stderr, /status 141/);
    assert.doesNotMatch(r.stderr, /EPIPE|at .*\.js:\d+/);
  });

  test('Ctrl-C reports what was scanned and exits 130', async () => {
    // Node's own start-up handler for SIGINT is there before vsys's (SigCgt cannot tell them apart),
    // and on a loaded machine start-up takes longer than any fixed delay: a SIGINT that came before
    // vsys's handler (the process dies of the signal, no exit code) is tried again, later.
    let got: { code: number | null; out: string; err: string } | undefined;
    for (const delay of [700, 2000, 5000]) {
      const child = spawn(process.execPath, [BIN, 'scan', '--json', '--workers', '0', '/usr'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      const closed = new Promise<number | null>((r) => child.on('close', (c) => r(c)));
      await new Promise((r) => setTimeout(r, delay));
      child.kill('SIGINT');
      got = { code: await closed, out, err };
      if (got.code !== null) break;
    }
    assert.equal(got!.code, 130, got!.err);
    const summary = JSON.parse(got!.out.trim().split('\n').at(-1)!);
    assert.equal(summary.record, 'summary');
    assert.equal(summary.interrupted, true);
    assert.equal(summary.exit, 130);
    assert.ok(validate(summary));
    assert.match(got!.err, /interrupted/);
  });
});
