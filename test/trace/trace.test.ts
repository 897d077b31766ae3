// vsys trace against the real kernel: exact counts for programs that call the page a known number
// of times, the corpus' busybox date, the sysdig-style event order of a crash, -p and -a
// attribution, and the error without privileges. Needs root and tracefs (.ci/run mounts it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, CORPUS, runVsys } from '../helpers.js';
import { buildTraceFixture } from '../support/trace-fixture.js';
import { runTrace } from '../../src/trace/session.js';
import { parseFormat } from '../../src/trace/tracefs.js';
import { containerFromCgroup } from '../../src/trace/attribution.js';

const root = process.getuid?.() === 0;
const emulation = fs.existsSync('/sys/kernel/tracing/events/vsyscall/emulate_vsyscall');
const skip = !root ? 'needs root' : !emulation ? 'no vsyscall emulation tracepoint here (tracefs not mounted, or vsyscall=none)' : false;

for (const n of [1, 17, 1000, 25_000]) {
  test(`a program that calls the time entry exactly ${n} times is counted exactly, attributed to its pid`, { skip }, async () => {
    const bin = buildTraceFixture();
    const s = await runTrace({ target: { k: 'command', argv: [bin, 'time', String(n)] }, stdio: 'ignore' });
    assert.equal(s.exit?.code, 0);
    assert.deepEqual(s.counts.emulated, { gettimeofday: 0, time: n, getcpu: 0, misaligned: 0 });
    assert.equal(s.counts.pageFaults, n);
    assert.equal(s.processes.length, 1);
    assert.equal(s.processes[0]?.emulated.time, n);
    assert.equal(s.processes[0]?.comm, path.basename(bin));
    assert.ok(s.counts.syscalls > 0);
  });
}

test('getcpu and gettimeofday counted exactly by entry', { skip }, async () => {
  const s = await runTrace({ target: { k: 'command', argv: [buildTraceFixture(), 'getcpu', '123', 'gettimeofday', '45', 'time', '6'] }, stdio: 'ignore' });
  assert.deepEqual(s.counts.emulated, { gettimeofday: 45, time: 6, getcpu: 123, misaligned: 0 });
});

test('the corpus busybox-1.15.2 `busybox date` makes exactly one emulated time call', { skip: skip || (!fs.existsSync(path.join(CORPUS, 'busybox-1.15.2-static')) && 'corpus not present') }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-bb-'));
  try {
    const bb = path.join(dir, 'busybox');
    fs.copyFileSync(path.join(CORPUS, 'busybox-1.15.2-static', 'busybox'), bb);
    fs.chmodSync(bb, 0o755);
    const s = await runTrace({ target: { k: 'command', argv: [bb, 'date'] }, stdio: 'ignore' });
    assert.equal(s.exit?.code, 0);
    assert.deepEqual(s.counts.emulated, { gettimeofday: 0, time: 1, getcpu: 0, misaligned: 0 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('--events on a misaligned call: page_fault (decoded flags), then signaldeliver SIGSEGV, then procexit status=11', { skip }, () => {
  const r = runVsys(['trace', '--events', '--', buildTraceFixture(), 'misaligned', '1']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n');
  const fault = lines.findIndex((l) => /> page_fault addr=FFFFFFFFFF600010 ip=FFFFFFFFFF600010 error=0x14\(PAGE_NOT_PRESENT\|READ_ACCESS\|USER_FAULT\|INSTRUCTION_FETCH\)$/.test(l));
  const emu = lines.findIndex((l) => /> emulate_vsyscall nr=-22$/.test(l));
  const sig = lines.findIndex((l) => /> signaldeliver spid=0 dpid=\d+\(call-n\) sig=11\(SIGSEGV\)$/.test(l));
  const exit = lines.findIndex((l) => /> procexit status=11$/.test(l));
  assert.ok(fault >= 0 && sig > fault && exit > sig, r.stdout);
  assert.ok(emu > fault && emu < sig, 'the kernel tried to emulate the misaligned call (nr -22) before the signal');
  assert.match(r.stdout, /✗ crash: call-n \(\d+\) got SIGSEGV after a fault at 0xffffffffff600010/);
  assert.match(r.stdout, /exit SIGSEGV/);
});

test('-p: a running process calling the page is counted and named; -a attributes it among all processes', { skip, timeout: 60_000 }, async () => {
  const bin = buildTraceFixture();
  const child = spawn(bin, ['time', '400000000'], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 100));
    const p = await runTrace({ target: { k: 'pids', pids: [child.pid!] }, durationS: 0.5 });
    assert.ok(p.counts.emulated.time > 1000, JSON.stringify(p.counts));
    assert.equal(p.processes[0]?.pid, child.pid);
    assert.equal(p.processes[0]?.comm, 'call-n');
    const a = await runTrace({ target: { k: 'all' }, durationS: 0.5 });
    const mine = a.processes.find((x) => x.pid === child.pid);
    assert.ok(mine && mine.emulated.time > 1000, JSON.stringify(a.processes.map((x) => [x.pid, x.comm, x.emulated.time])));
    assert.ok(a.counts.emulated.time >= mine.emulated.time + 0, 'counter total ≥ sampled per-process figure');
    assert.equal(typeof a.lostEvents, 'number');
  } finally {
    child.kill('SIGKILL');
  }
});

test('without privileges: a clear message and exit 4', { skip: !root && 'needs root to drop privileges' }, () => {
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, 'trace', '--', '/bin/true'], { encoding: 'utf8' });
  if (r.error) return;
  assert.equal(r.status, 4, r.stderr);
  assert.match(r.stderr, /needs root or CAP_PERFMON/);
});

test('tracefs format parsing and container ids from /proc/PID/cgroup', () => {
  const f = parseFormat('vsyscall', 'emulate_vsyscall', 'name: emulate_vsyscall\nID: 24\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int nr;\toffset:8;\tsize:4;\tsigned:1;\n');
  assert.equal(f.id, 24);
  assert.deepEqual(f.fields.get('nr'), { name: 'nr', offset: 8, size: 4, signed: true });
  const id = 'a'.repeat(64);
  assert.deepEqual(containerFromCgroup(`0::/system.slice/docker-${id}.scope\n`), { runtime: 'docker', id });
  assert.deepEqual(containerFromCgroup(`0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12345678_1234_1234_1234_123456789abc.slice/cri-containerd-${id}.scope\n`), { runtime: 'containerd', id, pod: '12345678-1234-1234-1234-123456789abc' });
  assert.deepEqual(containerFromCgroup(`0::/machine.slice/libpod-${id}.scope\n`), { runtime: 'podman', id });
  assert.equal(containerFromCgroup('0::/user.slice/user-1000.slice/session-2.scope\n'), undefined);
});
