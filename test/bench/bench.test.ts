// vsys bench against the real kernel: every path this host can run gives a positive figure and a
// result bracketed by real system calls; the ordering that must hold here holds; paths the host
// cannot run, and a child that faults on purpose, are reported, never fatal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBench, runChildPath } from '../../src/bench/run-bench.js';
import { loopCode } from '../../src/bench/loop-code.js';
import { modeFromMaps } from '../../src/host/vsyscall-mode.js';
import { CORPUS, runVsys } from '../helpers.js';

const mode = modeFromMaps(fs.readFileSync('/proc/self/maps', 'utf8')).says;

test('every 64-bit path gives a positive figure and a correct result; the ordering holds', { timeout: 120_000 }, async () => {
  const r = await runBench({ paths: 'vdso,libc,syscall,vsyscall,int80-64', budgetMs: 40, repeats: 3, save: false });
  const by = new Map(r.results.map((x) => [x.id, x]));
  for (const x of r.results) {
    if (x.status === 'unavailable') {
      assert.ok(x.group === 'vsyscall' || x.group === 'int80-64', `${x.id} unavailable: ${x.reason}`);
      assert.ok(x.reason && x.reason.length > 10, 'an unavailable path says why');
      continue;
    }
    assert.ok(x.ns && x.ns.min > 0 && Number.isFinite(x.ns.min), `${x.id}: ${JSON.stringify(x.ns)}`);
    assert.ok(x.ns.min <= x.ns.median && x.ns.median <= x.ns.p95, x.id);
    if (x.check) assert.equal(x.check.ok, true, `${x.id}: ${x.check.detail}`);
  }
  // Every 64-bit row is checked but int 0x80 gettimeofday (its buffer is the low page's); the clocks
  // against real syscalls of the same clock, getcpu's CPU against getcpu(2) and its node against sysfs.
  for (const x of r.results.filter((y) => y.ns && y.id !== 'int80-64-gettimeofday')) assert.ok(x.check, `${x.id} has a result check`);
  for (const id of ['vdso-clock_gettime-monotonic', 'libc-clock_gettime-monotonic', 'syscall-clock_gettime-monotonic']) {
    assert.match(by.get(id)?.check?.detail ?? '', /^returned 0; ts = \d+\.\d{9} s, within \[.*\] read by real syscalls of the same clock$/, id);
  }
  for (const id of ['vdso-getcpu', 'syscall-getcpu', ...(by.get('vsyscall-getcpu')?.ns ? ['vsyscall-getcpu'] : [])]) {
    assert.match(by.get(id)?.check?.detail ?? '', /^returned 0; CPU (\d+), node (\d+); getcpu\(2\) before\/after: CPU \1; sysfs: cpu\1 is on node \2$/, id);
  }
  assert.match(by.get('libc-sched_getcpu')?.check?.detail ?? '', /^returned 0; CPU (\d+); getcpu\(2\) before\/after: CPU \1$/);
  const ns = (id: string) => by.get(id)?.ns?.min ?? NaN;
  assert.ok(ns('vdso-time') < ns('vdso-clock_gettime-realtime'), `vDSO time < vDSO clock_gettime (${ns('vdso-time')} vs ${ns('vdso-clock_gettime-realtime')} ns)`);
  assert.ok(ns('vdso-clock_gettime-realtime') < ns('syscall-gettimeofday'), `vDSO clock_gettime < syscall gettimeofday (${ns('vdso-clock_gettime-realtime')} vs ${ns('syscall-gettimeofday')} ns)`);
  // Like for like: each ratio is the row over the vDSO call of the same function, none for getpid.
  const twin: Record<string, string> = {
    'syscall-gettimeofday': 'vdso-gettimeofday', 'syscall-time': 'vdso-time', 'syscall-clock_gettime': 'vdso-clock_gettime-realtime',
    'libc-gettimeofday': 'vdso-gettimeofday', 'libc-time': 'vdso-time', 'libc-clock_gettime': 'vdso-clock_gettime-realtime', 'vsyscall-gettimeofday': 'vdso-gettimeofday',
    'vsyscall-time': 'vdso-time', 'vsyscall-getcpu': 'vdso-getcpu', 'int80-64-gettimeofday': 'vdso-gettimeofday',
    'syscall-clock_gettime-monotonic': 'vdso-clock_gettime-monotonic', 'libc-clock_gettime-monotonic': 'vdso-clock_gettime-monotonic',
    'syscall-getcpu': 'vdso-getcpu', 'libc-sched_getcpu': 'vdso-getcpu',
  };
  for (const x of r.results) {
    if (!x.ns) continue;
    if (twin[x.id]) {
      assert.equal(x.ratioTo, twin[x.id], x.id);
      assert.equal(x.ratio, x.ns.min / ns(twin[x.id]!), x.id);
    } else {
      assert.equal(x.ratio, undefined, `${x.id} has no vDSO twin: no ratio (${x.ratio})`);
    }
  }
  if (mode === 'xonly' || mode === 'emulate-or-native') {
    assert.equal(by.get('vsyscall-time')?.status, 'measured');
    // The two are measured seconds apart (the page path in a child) on a shared machine while other
    // test files run: when a noise burst hides the ordering, measure the pair again, alternating,
    // and keep each one's minimum. A real inversion survives every round.
    let sys = ns('syscall-gettimeofday');
    let vsys = ns('vsyscall-time');
    const rounds: string[] = [`${sys.toFixed(0)} vs ${vsys.toFixed(0)} ns`];
    for (let i = 0; i < 3 && !(sys < vsys); i++) {
      const again = await runBench({ paths: 'syscall-gettimeofday,vsyscall-time', budgetMs: 60, repeats: 5, save: false });
      const get = (id: string) => again.results.find((x) => x.id === id)?.ns?.min ?? Infinity;
      sys = Math.min(sys, get('syscall-gettimeofday'));
      vsys = Math.min(vsys, get('vsyscall-time'));
      rounds.push(`${get('syscall-gettimeofday').toFixed(0)} vs ${get('vsyscall-time').toFixed(0)} ns`);
    }
    assert.ok(sys < vsys, `syscall gettimeofday < emulated vsyscall time (rounds: ${rounds.join('; ')})`);
  } else if (mode === 'none') {
    assert.match(by.get('vsyscall-time')?.reason ?? '', /vsyscall=none/);
  }
});

test('a child that faults on purpose is reported with its signal, not fatal', async () => {
  const c = await runChildPath({ id: 'fault-test' }, 10, 1, null);
  assert.equal(c.result, undefined);
  assert.equal(c.signal, 'SIGSEGV');
});

test('the generated loop decodes to what objdump reads (call through %r13, dec/jnz; no rdtsc inside)', { skip: !fs.existsSync('/usr/bin/objdump') && 'no objdump' }, async () => {
  const { spawnSync } = await import('node:child_process');
  const code = loopCode({ args: { k: 'time' }, target: 0xffffffffff600400n }, 0x1000n);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-loop-'));
  try {
    fs.writeFileSync(path.join(dir, 'loop.bin'), code);
    const r = spawnSync('objdump', ['-D', '-b', 'binary', '-m', 'i386:x86-64', '--adjust-vma=0x1000', path.join(dir, 'loop.bin')], { encoding: 'utf8' });
    assert.match(r.stdout, /movabs \$0xffffffffff600400,%r13/);
    assert.match(r.stdout, /call\s+\*%r13/);
    assert.doesNotMatch(r.stdout, /rdtsc/, 'timing is outside the loop function');
    assert.match(r.stdout, /dec\s+%r12/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('vsys bench CLI: table beside the published figures (by article and year), --json, --svg, and figures saved for scan', { timeout: 120_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-bench-'));
  try {
    const env = { ...process.env, XDG_CACHE_HOME: dir };
    const t = runVsys(['bench', '--paths', 'vdso-time,vdso-gettimeofday,syscall-gettimeofday,vsyscall-time', '--budget', '40', '--repeats', '3', '--svg', path.join(dir, 'b.svg')], { env });
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /vDSO gettimeofday\s+[\d.]+.*Habr, 2018: 37 ns/);
    assert.match(t.stdout, /syscall gettimeofday\s+\d+.*Habr, 2018: (103 ns \(KPTI off; 278 on\)|278 ns \(KPTI on; 103 off\))/);
    assert.match(t.stdout, /vs vDSO: each path against the vDSO call of the same function/);
    assert.doesNotMatch(t.stdout + fs.readFileSync(path.join(dir, 'b.svg'), 'utf8'), /seed|\bcep\b/i);
    assert.match(fs.readFileSync(path.join(dir, 'b.svg'), 'utf8'), /^<svg [^>]*>[\s\S]*vDSO[\s\S]*<\/svg>\n$/);
    const saved = JSON.parse(fs.readFileSync(path.join(dir, 'vsys', 'host-figures.json'), 'utf8'));
    assert.ok(saved.ns['vdso-time'] > 0);
    const j = runVsys(['bench', '--paths', 'syscall-getpid', '--budget', '20', '--repeats', '2', '--json', '--no-save'], { env });
    const doc = JSON.parse(j.stdout);
    assert.equal(doc.results.length, 1);
    assert.equal(doc.results[0].id, 'syscall-getpid');
    assert.equal(doc.results[0].check.ok, true);
    if (saved.ns['vsyscall-time'] && fs.existsSync(path.join(CORPUS, 'busybox-1.15.2-static'))) {
      // scan's "slow" verdicts now quote this host's ratio.
      // A scan that fails here is a failure of this test, not a reason to skip its assertion.
      const s = runVsys(['scan', '--mode', 'xonly', '--json', path.join(CORPUS, 'busybox-1.15.2-static')], { env });
      assert.equal(s.status, 0, `vsys scan exited ${s.status}: ${s.stderr}`);
      const first = s.stdout.trim().split('\n')[0];
      assert.ok(first, `vsys scan printed nothing on stdout (stderr: ${s.stderr})`);
      const f = JSON.parse(first);
      assert.equal(f.path, path.join(CORPUS, 'busybox-1.15.2-static', 'busybox'));
      assert.match(f.verdicts.xonly.why, /this host: vsyscall time\(\) \d+ ns vs vDSO time\(\) [\d.]+ ns, vsys bench/);
    }
    assert.equal(runVsys(['bench', '--paths', 'nothing-like-this']).status, 2);
    assert.equal(runVsys(['bench', '--scenario', 'other']).status, 2);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('--scenario appnexus (and its old name cep): 10 M time() calls through the vDSO, syscall and the page, as ratios', { timeout: 300_000 }, () => {
  const r = runVsys(['bench', '--scenario', 'appnexus', '--json'], { timeout: 170_000 });
  assert.equal(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.published.source, 'AppNexus engineering blog, 2014');
  assert.equal(doc.seed, undefined);
  const help = runVsys(['bench', '--help']).stdout;
  assert.match(help, /--scenario appnexus/);
  assert.doesNotMatch(help, /seed|\bcep\b/i);
  const old = runVsys(['bench', '--scenario', 'cep'], { timeout: 170_000 });
  assert.equal(old.status, 0, old.stderr);
  assert.match(old.stdout, /^The AppNexus engineering blog, 2014 experiment on this host/);
  assert.match(old.stdout, /Published \(AppNexus engineering blog, 2014; CentOS 5 glibc 2\.5 on Linux 3\.8, x86-64\): 10,000,000 calls, vsyscall emulated 6\.415 s, vDSO 0\.041 s: 156×/);
  assert.doesNotMatch(old.stdout, /seed/i);
  assert.equal(doc.calls, 10_000_000);
  const [vdso, sys, page] = doc.rows;
  assert.ok(vdso.seconds > 0 && sys.seconds > vdso.seconds);
  assert.equal(vdso.check.ok, true);
  if (mode === 'none') assert.match(page.reason, /SIGSEGV/);
  else assert.ok(page.seconds > sys.seconds && page.ratio > 20, JSON.stringify(page));
});

// A gcc-built C loop is the oracle: it calls the page's gettimeofday entry and glibc's
// gettimeofday (the vDSO) and times both; vsys's "vs vDSO" for vsyscall gettimeofday must be that
// like-for-like ratio, not one against a cheaper vDSO call (time() is ~15× cheaper than gettimeofday).
const C_LOOP = String.raw`
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
typedef int (*gtod_t)(struct timeval *, void *);
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(void) {
  gtod_t page = (gtod_t)0xffffffffff600000UL;
  struct timeval tv;
  double best_page = 1e30, best_vdso = 1e30;
  for (int r = 0; r < 7; r++) {
    double t0 = now();
    for (int i = 0; i < 20000; i++) page(&tv, 0);
    double t1 = now();
    for (int i = 0; i < 400000; i++) gettimeofday(&tv, 0);
    double t2 = now();
    if ((t1 - t0) / 20000 < best_page) best_page = (t1 - t0) / 20000;
    if ((t2 - t1) / 400000 < best_vdso) best_vdso = (t2 - t1) / 400000;
  }
  printf("%f %f\n", best_page, best_vdso);
  return 0;
}
`;

test('vs vDSO for vsyscall gettimeofday is the like-for-like ratio a gcc-built C loop measures (within 2.5×)', { timeout: 120_000, skip: (mode !== 'xonly' && mode !== 'emulate-or-native' && 'no callable vsyscall page') || (!fs.existsSync('/usr/bin/gcc') && 'no gcc') }, async () => {
  const { spawnSync } = await import('node:child_process');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-gtod-'));
  try {
    fs.writeFileSync(path.join(dir, 'gtod.c'), C_LOOP);
    const cc = spawnSync('gcc', ['-O2', path.join(dir, 'gtod.c'), '-o', path.join(dir, 'gtod')], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const out = spawnSync(path.join(dir, 'gtod'), { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
    const [page, vdso] = out.stdout.trim().split(' ').map(Number) as [number, number];
    const cRatio = page / vdso;
    const r = await runBench({ paths: 'vsyscall-gettimeofday,vdso-gettimeofday,vdso-time', budgetMs: 60, repeats: 5, save: false });
    const row = r.results.find((x) => x.id === 'vsyscall-gettimeofday');
    assert.ok(row?.ratio, JSON.stringify(row));
    t_diag(`vsyscall gettimeofday vs vDSO gettimeofday: vsys ${row.ratio.toFixed(1)}×, C ${cRatio.toFixed(1)}× (${page.toFixed(0)} / ${vdso.toFixed(1)} ns)`);
    assert.ok(row.ratio > cRatio / 2.5 && row.ratio < cRatio * 2.5, `vsys ${row.ratio.toFixed(1)}× vs C ${cRatio.toFixed(1)}×`);
    // Asked for without its twin, the row still gets its like-for-like ratio.
    const alone = await runBench({ paths: 'vsyscall-gettimeofday', budgetMs: 60, repeats: 5, save: false });
    const a = alone.results[0];
    assert.equal(alone.results.length, 1);
    assert.equal(a?.ratioTo, 'vdso-gettimeofday');
    assert.ok(a?.ratio && a.ratio > cRatio / 2.5 && a.ratio < cRatio * 2.5, `alone: vsys ${a?.ratio}× vs C ${cRatio.toFixed(1)}×`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function t_diag(msg: string): void {
  process.stderr.write(`# ${msg}\n`);
}
