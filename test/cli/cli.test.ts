import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BIN, ROOT, runVsys, Capture } from '../helpers.js';
import { modeFromMaps } from '../../src/host/vsyscall-mode.js';
import { main } from '../../src/cli/main.js';

const onLinux = process.platform === 'linux' && process.arch === 'x64';
const mapsMode = () => {
  const m = modeFromMaps(readFileSync('/proc/self/maps', 'utf8')).says;
  return m === 'emulate-or-native' ? 'emulate' : m;
};

test('vsys probe --json runs as a subprocess and reports the mode the kernel shows', { skip: !onLinux }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vsys-cli-'));
  try {
    const dump = path.join(dir, 'vdso.so');
    const r = runVsys(['probe', '--json', '--dump-vdso', dump]);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.vsyscall.mode, mapsMode());
    assert.equal(j.vsyscall.agree, true, JSON.stringify(j.vsyscall.disagreements));
    assert.equal(j.vsyscall.decidedBy, 'active-test');
    // A page in the top of the 47-bit user half (ASLR puts it anywhere from 0x7e… to 0x7f…).
    assert.match(j.vdso.base, /^0x7[0-9a-f]{8}000$/);
    assert.ok(j.vdso.symbols.some((s: { name: string }) => s.name === '__vdso_clock_gettime'));
    assert.equal(j.kernel.arch, 'x86_64');
    assert.ok(existsSync(dump));
    const readelf = spawnSync('readelf', ['-h', dump], { encoding: 'utf8' });
    if (readelf.status !== null && !readelf.error) assert.match(readelf.stdout, /DYN \(Shared object file\)/);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('vsys probe says how vsys trace would count: as root it loads the eBPF programs (or says why not); unprivileged it cannot', { skip: (!onLinux || process.getuid?.() !== 0) && 'needs root' }, async () => {
  const j = JSON.parse(runVsys(['probe', '--json']).stdout);
  const { bpfCountersProblem } = await import('../../src/trace/bpf-counters.js');
  if (!j.perf.tracepointsUsable || !j.perf.vsyscallTracepoint) assert.equal(j.traceCounting.backend, 'none');
  else {
    const problem = bpfCountersProblem();
    assert.equal(j.traceCounting.backend, problem ? 'perf' : 'bpf', j.traceCounting.reason);
    if (problem) assert.match(j.traceCounting.reason, /eBPF refused/);
  }
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, 'probe', '--json'], { encoding: 'utf8' });
  if (r.error) return;
  const u = JSON.parse(r.stdout);
  assert.equal(u.traceCounting.backend, 'none');
  assert.match(u.traceCounting.reason, /CAP_PERFMON/);
});

test('vsys probe prints the evidence as text', { skip: !onLinux }, () => {
  const r = runVsys(['probe']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^vsyscall mode: ${mapsMode()} `, 'm'));
  for (const src of ['active-test', 'maps', 'cmdline', 'kconfig']) assert.match(r.stdout, new RegExp(`^  ${src}\\s`, 'm'));
  assert.match(r.stdout, /^vDSO: linux-vdso\.so\.1 at 0x/m);
  assert.match(r.stdout, /^clocksource:/m);
});

test('the doctor (no arguments) runs end to end, explains the mode, and --json has the same verdict', { skip: !onLinux }, () => {
  const r = runVsys([]);
  assert.equal(r.status, 0, r.stderr);
  const mode = mapsMode();
  assert.match(r.stdout, /^vsys doctor — Linux /);
  if (mode === 'none') assert.match(r.stdout, /will CRASH here/);
  else assert.match(r.stdout, /will run here, but every vsyscall traps into the kernel/);
  const j = runVsys(['doctor', '--json']);
  assert.equal(j.status, 0, j.stderr);
  const d = JSON.parse(j.stdout);
  assert.equal(d.verdict.mode, mode);
  assert.equal(d.verdict.severity, mode === 'none' ? 'crash' : mode === 'native' ? 'ok' : 'slow');
  assert.ok(d.slowdown.ratio > 1);
});

test('usage errors exit 2 with a message; --help has an example', async () => {
  const out = new Capture();
  const err = new Capture();
  assert.equal(await main(['nosuch'], { stdout: out, stderr: err }), 2);
  assert.match(err.text, /unknown command 'nosuch'/);
  const err2 = new Capture();
  assert.equal(await main(['probe', '--bogus'], { stdout: out, stderr: err2 }), 2);
  assert.match(err2.text, /--bogus/);
  const help = new Capture();
  assert.equal(await main(['probe', '--help'], { stdout: help, stderr: err }), 0);
  assert.match(help.text, /examples:\n  vsys probe/);
});

test('on a host that is not Linux x86-64, probe says so and exits 4', () => {
  const script = `Object.defineProperty(process, 'platform', { value: 'darwin' });
    const { main } = await import(${JSON.stringify(path.join(ROOT, 'dist', 'src', 'cli', 'main.js'))});
    process.exitCode = await main(['probe'], { stdout: process.stdout, stderr: process.stderr });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 4, r.stderr);
  assert.match(r.stderr, /Linux on x86-64; this is darwin/);
  assert.ok(BIN);
});
