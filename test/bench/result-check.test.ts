// The bench's result checks for getcpu-like rows, as the kernel's test_vsyscall.c checks getcpu: pinned
// to each CPU in turn, every row's CPU must be that CPU and its node the one sysfs names (lscpu is the
// oracle for sysfs); fed a wrong CPU or node, by a real call or by hand, the check fails. And the
// monotonic rows' check: within Node's own CLOCK_MONOTONIC readings, and a time outside the bracket fails it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkResult } from '../../src/bench/measure-path.js';
import { BENCH_PATHS, type BenchPath } from '../../src/bench/paths.js';
import { cpuNode, judgeCall } from '../../src/bench/result-check.js';
import { runChildPath } from '../../src/bench/run-bench.js';
import { modeFromMaps } from '../../src/host/vsyscall-mode.js';
import { allowedCpus, onCpu } from '../../src/native/libc.js';
import { hasCommand } from '../helpers.js';

const row = (id: string) => BENCH_PATHS.find((p) => p.id === id) as BenchPath;
const CPU_ROWS = ['vdso-getcpu', 'syscall-getcpu', 'libc-sched_getcpu'];
const mode = modeFromMaps(fs.readFileSync('/proc/self/maps', 'utf8')).says;
const pageCallable = mode === 'xonly' || mode === 'emulate-or-native';

/** CPU → node as lscpu reads it (util-linux; the oracle for cpuNode). */
function lscpuNodes(): Map<number, number> {
  const r = spawnSync('lscpu', ['-p=CPU,NODE'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const m = new Map<number, number>();
  for (const line of r.stdout.split('\n')) {
    const f = /^(\d+),(\d*)$/.exec(line);
    // lscpu leaves NODE empty on a kernel without NUMA: every CPU is then on node 0.
    if (f) m.set(Number(f[1]), f[2] === '' ? 0 : Number(f[2]));
  }
  return m;
}

test('cpuNode agrees with lscpu on every CPU; in a sysfs tree it reads the nodeM link, undefined where there is none', { skip: !hasCommand('lscpu') && 'no lscpu' }, () => {
  const nodes = lscpuNodes();
  assert.ok(nodes.size >= 1);
  for (const [cpu, node] of nodes) assert.equal(cpuNode(cpu), node, `cpu${cpu}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-sysfs-'));
  try {
    fs.mkdirSync(path.join(dir, 'cpu0'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'cpu5'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'cpu0', 'online'), '1\n');
    fs.symlinkSync('../../node/node3', path.join(dir, 'cpu5', 'node3'));
    assert.equal(cpuNode(5, dir), 3);
    assert.equal(cpuNode(0, dir), undefined, 'no nodeM link');
    assert.equal(cpuNode(7, dir), undefined, 'no such CPU');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('pinned to each CPU, every getcpu row names that CPU and its node from sysfs', { skip: !hasCommand('lscpu') && 'no lscpu', timeout: 60_000 }, async () => {
  const nodes = lscpuNodes();
  for (const cpu of allowedCpus()) {
    const node = nodes.get(cpu);
    for (const id of CPU_ROWS) {
      const c = onCpu(cpu, () => checkResult(row(id)));
      assert.equal(c?.ok, true, `${id} on CPU ${cpu}: ${c?.detail}`);
      assert.match(c.detail, new RegExp(`CPU ${cpu}\\b`), id);
      if (id !== 'libc-sched_getcpu') assert.match(c.detail, new RegExp(`node ${node}; .*sysfs: cpu${cpu} is on node ${node}$`), id);
    }
    if (pageCallable) {
      const v = await runChildPath(row('vsyscall-getcpu'), 5, 1, cpu);
      assert.equal(v.result?.check?.ok, true, `vsyscall-getcpu on CPU ${cpu}: ${v.detail} ${v.result?.check?.detail}`);
      assert.match(v.result.check.detail, new RegExp(`CPU ${cpu}, node ${node}; getcpu\\(2\\) before/after: CPU ${cpu}; sysfs`));
    }
  }
});

test('fed a wrong CPU or node, the check fails', { skip: !hasCommand('lscpu') && 'no lscpu' }, () => {
  const nodes = lscpuNodes();
  const cpus = allowedCpus();
  const cpu = cpus[0] as number;
  const node = nodes.get(cpu) as number;
  const other = cpus.find((c) => c !== cpu) ?? cpu + 1;
  const b = { before: BigInt(cpu), after: BigInt(cpu) };
  const buf = (c: number, n: number) => {
    const x = Buffer.alloc(20, 0xa5);
    x.writeUInt32LE(c, 0);
    x.writeUInt32LE(n, 16);
    return x;
  };
  // The right answer passes, so each failure below is the wrong value's doing.
  assert.equal(judgeCall('cpu', { rax: 0n, buf: buf(cpu, node) }, b).ok, true);
  assert.equal(judgeCall('cpu-return', { rax: BigInt(cpu), buf: buf(0, 0) }, b).ok, true);
  assert.equal(judgeCall('cpu', { rax: 0n, buf: buf(other, node) }, b).ok, false, 'wrong CPU');
  assert.equal(judgeCall('cpu', { rax: 0n, buf: buf(cpu, node + 1) }, b).ok, false, 'wrong node');
  assert.equal(judgeCall('cpu', { rax: 0n, buf: Buffer.alloc(20, 0xa5) }, b).ok, false, 'nothing written');
  assert.equal(judgeCall('cpu', { rax: -14n, buf: buf(cpu, node) }, b).ok, false, 'an error returned (-EFAULT)');
  assert.equal(judgeCall('cpu-return', { rax: BigInt(other), buf: buf(0, 0) }, b).ok, false, 'sched_getcpu: wrong CPU');
  assert.equal(judgeCall('cpu-return', { rax: 0xffffffffn, buf: buf(0, 0) }, b).ok, false, 'sched_getcpu: -1');
  // A CPU the thread was on just before or just after passes when it moved between (not pinned).
  assert.equal(judgeCall('cpu', { rax: 0n, buf: buf(cpu, node) }, { before: BigInt(other), after: BigInt(cpu) }, () => node).ok, true);
  // The node of that CPU is what sysfs says: a sysfs that says another node fails a right answer.
  assert.equal(judgeCall('cpu', { rax: 0n, buf: buf(cpu, node) }, b, () => node + 1).ok, false);
  // A real call that returns something other than the CPU, through the whole check: getpid as sched_getcpu.
  onCpu(cpu, () => {
    const fake = { ...row('libc-sched_getcpu'), id: 'fake', invoke: { k: 'libc', symbol: 'getpid' } } as BenchPath;
    const c = checkResult(fake);
    assert.equal(c?.ok, false, c?.detail);
    assert.match(c.detail, new RegExp(`CPU ${process.pid}; getcpu\\(2\\) before/after: CPU ${cpu}$`));
    // The syscall getcpu row with getpid's number: returns the pid, writes no CPU (the buffer keeps its 0xa5 fill).
    const silent = { ...row('syscall-getcpu'), id: 'silent', invoke: { k: 'syscall', nr: 39 } } as BenchPath;
    assert.equal(checkResult(silent)?.ok, false);
  });
});

test('the monotonic rows are checked against clock_gettime(2) of the same clock; a time read earlier fails', () => {
  for (const id of ['vdso-clock_gettime-monotonic', 'libc-clock_gettime-monotonic', 'syscall-clock_gettime-monotonic']) {
    // Node's hrtime reads CLOCK_MONOTONIC through libuv: a second, independent bracket.
    const t0 = process.hrtime.bigint();
    const c = checkResult(row(id));
    const t1 = process.hrtime.bigint();
    assert.equal(c?.ok, true, `${id}: ${c?.detail}`);
    const m = /ts = (\d+)\.(\d{9}) s/.exec(c.detail);
    assert.ok(m, c.detail);
    const t = BigInt(m[1] as string) * 1_000_000_000n + BigInt(m[2] as string);
    assert.ok(t0 <= t && t <= t1, `${id}: ${t} not within hrtime's [${t0}, ${t1}]`);
  }
  const ts = (ns: bigint) => {
    const x = Buffer.alloc(20);
    x.writeBigInt64LE(ns / 1_000_000_000n, 0);
    x.writeBigInt64LE(ns % 1_000_000_000n, 8);
    return x;
  };
  const b = { before: 5_000_000_000n, after: 5_000_000_100n };
  assert.equal(judgeCall('timespec', { rax: 0n, buf: ts(5_000_000_050n) }, b).ok, true);
  assert.equal(judgeCall('timespec', { rax: 0n, buf: ts(4_999_999_999n) }, b).ok, false, 'before the first syscall');
  assert.equal(judgeCall('timespec', { rax: 0n, buf: ts(5_000_000_101n) }, b).ok, false, 'after the second');
  assert.equal(judgeCall('timespec', { rax: -22n, buf: ts(5_000_000_050n) }, b).ok, false, '-EINVAL');
  // The realtime clock's time in a monotonic row fails: the bracket is the row's own clock.
  const realtime = BigInt(Date.now()) * 1_000_000n;
  assert.equal(judgeCall('timespec', { rax: 0n, buf: ts(realtime) }, b).ok, false);
});
