// `--paths` selection, table-tested: each spec and the exact ids it selects, written out by hand
// (an id selects that row alone, a group its rows, table order, each row once); unknown names are
// usage errors that list what is valid; the CLI exits 2 on them and runs exactly the row it was given.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BENCH_PATHS, PATH_GROUPS, selectPaths } from '../../src/bench/paths.js';
import { VsysError } from '../../src/errors.js';
import { runVsys } from '../helpers.js';

const VDSO = [
  'vdso-clock_gettime-realtime', 'vdso-clock_gettime-monotonic', 'vdso-clock_gettime-monotonic-raw', 'vdso-clock_gettime-realtime-coarse',
  'vdso-clock_gettime-monotonic-coarse', 'vdso-clock_gettime-boottime', 'vdso-clock_gettime-tai', 'vdso-gettimeofday', 'vdso-time', 'vdso-getcpu',
];
const LIBC = ['libc-time', 'libc-gettimeofday', 'libc-clock_gettime', 'libc-clock_gettime-monotonic', 'libc-sched_getcpu'];
const SYSCALL = ['syscall-getpid', 'syscall-gettimeofday', 'syscall-time', 'syscall-clock_gettime', 'syscall-clock_gettime-monotonic', 'syscall-getcpu'];
const VSYSCALL = ['vsyscall-gettimeofday', 'vsyscall-time', 'vsyscall-getcpu'];
const INT80 = ['int80-64-getpid', 'int80-64-gettimeofday'];
const I386 = ['i386-int80', 'i386-sysenter', 'i386-kernel-vsyscall', 'i386-vdso32-gettimeofday', 'i386-vdso32-clock_gettime'];
const ALL = [...VDSO, ...LIBC, ...SYSCALL, ...VSYSCALL, ...INT80, ...I386];

const TABLE: [spec: string | undefined, ids: string[]][] = [
  // An id is that row alone: not the rows whose ids it begins (it used to run -raw and -coarse too).
  ['vdso-clock_gettime-monotonic', ['vdso-clock_gettime-monotonic']],
  ['vdso-clock_gettime-monotonic-raw', ['vdso-clock_gettime-monotonic-raw']],
  ['syscall-clock_gettime', ['syscall-clock_gettime']],
  ['libc-clock_gettime', ['libc-clock_gettime']],
  ['int80-64-getpid', ['int80-64-getpid']],
  // The four rows issue 21 added, by id.
  ['syscall-clock_gettime-monotonic,libc-clock_gettime-monotonic,syscall-getcpu,libc-sched_getcpu',
    ['libc-clock_gettime-monotonic', 'libc-sched_getcpu', 'syscall-clock_gettime-monotonic', 'syscall-getcpu']],
  // Groups.
  ['vdso', VDSO],
  ['libc', LIBC],
  ['syscall', SYSCALL],
  ['vsyscall', VSYSCALL],
  ['int80-64', INT80],
  ['i386', I386],
  // Mixes, in table order whatever the order of the spec; blanks around names dropped.
  ['vsyscall-time,vdso-time', ['vdso-time', 'vsyscall-time']],
  [' syscall-getcpu , vdso ,', [...VDSO, 'syscall-getcpu']],
  // The kernel matrix's bench command (test/zz-kernels/matrix.test.ts) and the exporter's background bench.
  ['vdso-time,syscall-getpid,vsyscall', ['vdso-time', 'syscall-getpid', ...VSYSCALL]],
  ['vsyscall,vdso,syscall', [...VDSO, ...SYSCALL, ...VSYSCALL]],
  // Duplicates: each row once.
  ['vdso-time,vdso-time', ['vdso-time']],
  ['vdso,vdso-getcpu,vdso', VDSO],
  // Nothing named: every row.
  [undefined, ALL],
  ['', ALL],
  [' , ', ALL],
];

test('selectPaths: each spec selects exactly these ids', () => {
  assert.deepEqual(BENCH_PATHS.map((p) => p.id), ALL, 'the table lists every row');
  for (const [spec, ids] of TABLE) assert.deepEqual(selectPaths(spec).map((p) => p.id), ids, `--paths ${JSON.stringify(spec)}`);
});

test('selectPaths: an unknown name (a prefix of ids, a wrong case, a typo) is a USAGE error naming it and every valid id and group', () => {
  for (const [spec, bad] of [
    ['vdso-clock_gettime', "'vdso-clock_gettime'"],
    ['VDSO', "'VDSO'"],
    ['vdso,sycall-getpid', "'sycall-getpid'"],
    ['int80', "'int80'"],
    ['vdso-time,nope,also-nope', "'nope', 'also-nope'"],
  ] as const) {
    assert.throws(() => selectPaths(spec), (e: unknown) => {
      assert.ok(e instanceof VsysError, String(e));
      assert.equal(e.code, 'USAGE');
      assert.ok(e.message.includes(bad), e.message);
      for (const g of PATH_GROUPS) assert.ok(e.message.includes(g), `${g} in: ${e.message}`);
      for (const id of ALL) assert.ok(e.message.includes(id), `${id} in: ${e.message}`);
      return true;
    }, spec);
  }
});

test('vsys bench --paths: an id runs that row alone; an unknown name or an empty list exits 2 and says what is valid', { timeout: 60_000 }, () => {
  const r = runVsys(['bench', '--paths', 'vdso-clock_gettime-monotonic', '--budget', '10', '--repeats', '2', '--json', '--no-save']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).results.map((x: { id: string }) => x.id), ['vdso-clock_gettime-monotonic']);
  const bad = runVsys(['bench', '--paths', 'vdso-clock_gettime,vdso', '--no-save']);
  assert.equal(bad.status, 2);
  assert.equal(bad.stdout, '');
  assert.match(bad.stderr, /unknown path 'vdso-clock_gettime'/);
  assert.match(bad.stderr, /groups: vdso, libc, syscall, vsyscall, int80-64, i386/);
  assert.match(bad.stderr, /ids: vdso-clock_gettime-realtime, .*libc-sched_getcpu, .*syscall-getcpu,/);
  const empty = runVsys(['bench', '--paths', ',', '--no-save']);
  assert.equal(empty.status, 2);
  assert.match(empty.stderr, /names no path/);
});
