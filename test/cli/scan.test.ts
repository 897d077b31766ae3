// `vsys scan` end to end through the built CLI: text, NDJSON, SARIF, --mode/--fail-on exit codes,
// usage errors, bad paths that do not stop the run, symlinks not followed, --processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CORPUS, runVsys } from '../helpers.js';

const corpus = !fs.existsSync(CORPUS) && 'corpus not present';
/** The corpus' single files (its Gentoo initramfs is scanned in scan-gate.test.ts). */
const FILES = ['busybox-1.15.2-static', 'ctl-busybox-1.22.1-static-glibc2.17', 'debian-wheezy-libc-2.13', 'fb-glibc-2.16-libc', 'rhel6-glibc-2.12-libpthread'].map((d) => path.join(CORPUS, d));

test('scan prints each affected file with its sites and the verdict for the chosen mode', { skip: corpus }, () => {
  const r = runVsys(['scan', '--mode', 'none', ...FILES]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /✗ .*busybox-1\.15\.2-static\/busybox — static executable, stripped/);
  assert.match(r.stdout, /direct-call time\s+0x4e1394\s+mov \$0xffffffffff600400,%rax; call \*%rax/);
  assert.match(r.stdout, /→ vsyscall=none: crashes if time\(\) is called: SIGSEGV at 0xffffffffff600400/);
  assert.match(r.stdout, /~ .*fb-glibc-2\.16-libc\/libc\.so\.6/);
  assert.match(r.stdout, /5 ELF files of 5/);
  assert.match(r.stdout, /under vsyscall=none \(chosen with --mode\): 3 crash, 0 slow, 0 to review, 1 fallback only, 1 ok/);
  assert.doesNotMatch(r.stdout, /ctl-busybox/, 'clean files are only counted without --all');
});

test('--fail-on crash exits 1 under none, 0 under xonly; --fail-on slow exits 1 under xonly', { skip: corpus }, () => {
  assert.equal(runVsys(['scan', '--mode', 'none', '--fail-on', 'crash', ...FILES]).status, 1);
  assert.equal(runVsys(['scan', '--mode', 'xonly', '--fail-on', 'crash', ...FILES]).status, 0);
  assert.equal(runVsys(['scan', '--mode', 'xonly', '--fail-on', 'slow', ...FILES]).status, 1);
  assert.equal(runVsys(['scan', '--mode', 'none', '--fail-on', 'crash', path.join(CORPUS, 'ctl-busybox-1.22.1-static-glibc2.17')]).status, 0);
});

test('--json is NDJSON: one object per ELF file with the library field names, then the summary', { skip: corpus }, () => {
  const r = runVsys(['scan', '--json', '--mode', 'none', ...FILES]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  assert.equal(lines.length, 6);
  const summary = lines.at(-1)!;
  assert.equal(summary.record, 'summary');
  assert.equal(summary.elfFiles, 5);
  assert.equal(summary.mode, 'none');
  const bb = lines.find((l) => String(l.path).endsWith('busybox-1.15.2-static/busybox'))!;
  assert.equal(bb.class, 'direct');
  assert.equal(bb.findings[0].address, '0x4e1394');
  assert.equal(bb.findings[0].target, '0xffffffffff600400');
  assert.equal(bb.verdicts.none.outcome, 'crash');
  assert.equal(bb.verdicts.xonly.outcome, 'slow');
  assert.equal(bb.record, 'file');
  assert.equal(bb.outcome, 'crash');
});

test('--sarif writes SARIF 2.1.0 with one result per finding and a rule per kind', { skip: corpus }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-sarif-'));
  try {
    const out = path.join(dir, 'scan.sarif');
    const r = runVsys(['scan', '--mode', 'none', '--sarif', out, ...FILES]);
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(doc.version, '2.1.0');
    const run = doc.runs[0];
    assert.deepEqual(run.tool.driver.rules.map((x: { id: string }) => x.id), ['vsys/direct-call', 'vsys/misaligned', 'vsys/indirect', 'vsys/fallback', 'vsys/data-ref', 'vsys/import', 'vsys/not-analysed']);
    // 3 (wheezy libc) + 2 (busybox) + 6 (libpthread) + 3 (glibc 2.16) findings.
    assert.equal(run.results.length, 14);
    const bb = run.results.find((x: any) => x.locations[0].physicalLocation.address.absoluteAddress === 0x4e1394);
    assert.equal(bb.ruleId, 'vsys/direct-call');
    assert.match(bb.locations[0].physicalLocation.artifactLocation.uri, /^file:\/\/.*busybox$/);
    assert.equal(bb.locations[0].physicalLocation.region.byteOffset, 0xe1394);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bad arguments: usage errors exit 2; a missing path is reported and the others are scanned', { skip: corpus }, () => {
  assert.equal(runVsys(['scan']).status, 2);
  assert.equal(runVsys(['scan', '--mode', 'sometimes', CORPUS]).status, 2);
  assert.equal(runVsys(['scan', '--fail-on', 'ok', CORPUS]).status, 2);
  assert.equal(runVsys(['scan', '--workers', '-1', CORPUS]).status, 2);
  const r = runVsys(['scan', '--mode', 'none', '/no/such/file', path.join(CORPUS, 'busybox-1.15.2-static')]);
  assert.equal(r.status, 3, 'an input not judged');
  assert.match(r.stdout, /! \/no\/such\/file: FILE_NOT_FOUND/);
  assert.match(r.stdout, /busybox-1\.15\.2-static\/busybox/);
  const help = runVsys(['scan', '--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /examples:\n {2}vsys scan/);
});

test('symlinks inside a scanned directory are not followed out of it; non-ELF files are skipped', { skip: corpus }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-links-'));
  try {
    fs.symlinkSync(path.join(CORPUS, 'busybox-1.15.2-static'), path.join(dir, 'outside'));
    fs.symlinkSync(path.join(CORPUS, 'busybox-1.15.2-static', 'busybox'), path.join(dir, 'busybox-link'));
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not an ELF file\n');
    const r = runVsys(['scan', '--json', dir]);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.equal(summary.elfFiles, 0);
    assert.equal(summary.notElf, 1);
    assert.equal(summary.skipped.symlink, 2);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('--processes scans the files mapped by running processes and finds this node binary', () => {
  const r = runVsys(['scan', '--processes', '--mode', 'none', '--all', '--json'], { timeout: 120_000 });
  assert.ok(r.status === 0 || r.status === 3, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  assert.ok(lines.at(-1)!.elfFiles >= 2);
  assert.ok(lines.some((l) => typeof l.path === 'string' && l.path.endsWith(path.basename(process.execPath))), 'node itself is mapped');
});

test('the doctor and --processes name a running program that calls the page (busybox 1.15.2 sleeping)', { skip: corpus, timeout: 60_000 }, async () => {
  const { spawn } = await import('node:child_process');
  // The corpus is read-only and not executable: run a copy.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-proc-'));
  const bb = path.join(dir, 'busybox');
  fs.copyFileSync(path.join(CORPUS, 'busybox-1.15.2-static', 'busybox'), bb);
  fs.chmodSync(bb, 0o755);
  const child = spawn(bb, ['sleep', '30'], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 300));
    const d = runVsys(['doctor', '--json']);
    assert.equal(d.status, 0, d.stderr);
    const doc = JSON.parse(d.stdout);
    const hit = doc.processes.affected.find((a: any) => a.path === bb);
    assert.ok(hit, JSON.stringify(doc.processes));
    assert.equal(hit.class, 'direct');
    assert.ok(hit.processes.some((p: any) => p.pid === child.pid));
    const text = runVsys(['doctor']);
    assert.match(text.stdout, new RegExp(`How often they call it, and what it costs: vsys trace -p [0-9,]*\\b${child.pid}\\b`));
    const s = runVsys(['scan', '--processes', '--mode', 'none']);
    assert.match(s.stdout, new RegExp(`${bb.replace(/[.+]/g, '\\$&')}: direct, crash under none — used by ${child.pid} \\(busybox\\)`));
  } finally {
    child.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
