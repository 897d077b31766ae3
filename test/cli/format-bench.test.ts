// The bench table and chart from reports built here (no host is measured): every line of the table
// exact, with the published figures checked against the sources' own numbers as the design notes
// quote them (Habr 2018's table, Sysdig 2018's calls per second, AppNexus 2014's 10 M calls); the
// chart's bars placed on its log scale; an empty report; unavailable rows; a failed result check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBench, formatBenchSvg, publishedNote } from '../../src/cli/format-bench.js';
import type { BenchReport } from '../../src/bench/run-bench.js';

function report(): BenchReport {
  return {
    host: { kernel: '6.18.0-vsys', cpu: 'AMD EPYC 7B13', cpus: 2, kpti: false, vsyscallMode: 'xonly', clocksource: 'kvm-clock' },
    pinnedCpu: 0, tscGhz: 2.4512, budgetMs: 300, repeats: 5,
    results: [
      { id: 'vdso-gettimeofday', label: 'vDSO gettimeofday', group: 'vdso', status: 'measured', ns: { min: 18.234, median: 19.5, p95: 25.01 }, cycles: { min: 44.6, median: 47 }, check: { ok: true, detail: 'ok' } },
      { id: 'vdso-time', label: 'vDSO time', group: 'vdso', status: 'measured', ns: { min: 1.234, median: 1.3, p95: 1.5 }, check: { ok: true, detail: 'ok' } },
      { id: 'syscall-getpid', label: 'syscall getpid', group: 'syscall', status: 'measured', ns: { min: 66.74, median: 70.1, p95: 99.9 }, check: { ok: true, detail: 'ok' } },
      { id: 'syscall-gettimeofday', label: 'syscall gettimeofday', group: 'syscall', status: 'measured', ns: { min: 123.4, median: 130.2, p95: 180.9 }, ratio: 123.4 / 18.234, ratioTo: 'vdso-gettimeofday' },
      { id: 'vsyscall-gettimeofday', label: 'vsyscall gettimeofday', group: 'vsyscall', status: 'measured', ns: { min: 489.6, median: 501, p95: 612 }, ratio: 489.6 / 18.234, ratioTo: 'vdso-gettimeofday', check: { ok: true, detail: 'ok' } },
      { id: 'vsyscall-time', label: 'vsyscall time', group: 'vsyscall', status: 'measured', ns: { min: 565.98, median: 570, p95: 800 }, ratio: 565.98 / 1.234, ratioTo: 'vdso-time', check: { ok: false, detail: 'time() = 5, between 1765000000 and 1765000001 from real syscalls (less a tick)' } },
      { id: 'int80-64-gettimeofday', label: 'int 0x80 gettimeofday (from 64-bit code)', group: 'int80-64', status: 'unavailable', reason: 'int 0x80 died with SIGSEGV: no IA32 emulation in this kernel?' },
      { id: 'i386-sysenter', label: 'sysenter getpid (32-bit process)', group: 'i386', status: 'unavailable' },
    ],
  };
}

test('publishedNote: the sources\' figures by article and year, KPTI as the host has it; none for rows no source measured', () => {
  assert.equal(publishedNote('vdso-gettimeofday', false), 'Habr, 2018: 37 ns (KPTI off; 37 on)');
  assert.equal(publishedNote('syscall-gettimeofday', true), 'Habr, 2018: 278 ns (KPTI on; 103 off)');
  assert.equal(publishedNote('syscall-gettimeofday', null), 'Habr, 2018: 278 ns (KPTI on; 103 off)', 'unknown KPTI: the KPTI-on figure first');
  assert.equal(publishedNote('vsyscall-gettimeofday', false), 'Habr, 2018: 496 ns (KPTI off; 692 on)');
  assert.equal(publishedNote('int80-64-gettimeofday', true), 'Habr, 2018: 498 ns (KPTI on; 317 off)');
  // 266.77 M calls/s is 3.75 ns a call; 1.4 M calls/s is 714 ns.
  assert.equal(publishedNote('vdso-time', true), 'Sysdig blog, 2018: 266.77 M calls/s = 3.75 ns; AppNexus engineering blog, 2014: 0.041 s / 10 M');
  assert.equal(publishedNote('vsyscall-time', true), 'Sysdig blog, 2018: 1.4 M calls/s = 714 ns; AppNexus engineering blog, 2014: 6.415 s / 10 M');
  assert.equal(publishedNote('syscall-getpid', true), '');
  assert.equal(publishedNote('no-such-path', false), '');
});

test('the table: header, one row per path grouped with blank lines, ratios, checks, unavailable rows, the summary sentences', () => {
  assert.equal(formatBench(report()), [
    'vsys bench — Linux 6.18.0-vsys, AMD EPYC 7B13, 2 CPUs; KPTI off; vsyscall=xonly; clocksource kvm-clock',
    'pinned to CPU 0; 5 repeats of ~60 ms per path; min (as the published tables), median, p95; TSC 2.45 GHz',
    '',
    'path                                       ns/call   median      p95  cycles vs vDSO  check  published',
    'vDSO gettimeofday                             18.2     19.5     25.0      45          ✓      Habr, 2018: 37 ns (KPTI off; 37 on)',
    'vDSO time                                     1.23     1.30     1.50                  ✓      Sysdig blog, 2018: 266.77 M calls/s = 3.75 ns; AppNexus engineering blog, 2014: 0.041 s / 10 M',
    '',
    'syscall getpid                                66.7     70.1     99.9               —  ✓      ',
    'syscall gettimeofday                           123      130      181            6.8×         Habr, 2018: 103 ns (KPTI off; 278 on)',
    '',
    'vsyscall gettimeofday                          490      501      612             27×  ✓      Habr, 2018: 496 ns (KPTI off; 692 on)',
    'vsyscall time                                  566      570      800            459×  ✗      Sysdig blog, 2018: 1.4 M calls/s = 714 ns; AppNexus engineering blog, 2014: 6.415 s / 10 M',
    '',
    'int 0x80 gettimeofday (from 64-bit code)         —  unavailable: int 0x80 died with SIGSEGV: no IA32 emulation in this kernel?',
    '',
    'sysenter getpid (32-bit process)                 —  unavailable: not measured',
    '',
    'vs vDSO: each path against the vDSO call of the same function (vsyscall gettimeofday against vDSO gettimeofday,',
    'syscall clock_gettime(REALTIME) against vDSO clock_gettime(REALTIME), …); — where the vDSO has no such call (getpid).',
    '✗ vsyscall time: result check failed: time() = 5, between 1765000000 and 1765000001 from real syscalls (less a tick)',
    // 565.98 / 1.234 = 458.6; 489.6 / 18.234 = 26.9.
    'Here a vsyscall time() costs 566 ns, 459× a vDSO time() (1.23 ns).',
    'Here a vsyscall gettimeofday() costs 490 ns, 27× a vDSO gettimeofday().',
    '',
  ].join('\n'));
});

test('an empty report: the header, the column titles and the note, no rows and no summary; unknown KPTI, no pinning figures', () => {
  const r = report();
  r.results = [];
  r.host = { ...r.host, kpti: null, clocksource: null };
  r.tscGhz = null;
  assert.equal(formatBench(r), [
    'vsys bench — Linux 6.18.0-vsys, AMD EPYC 7B13, 2 CPUs; KPTI unknown; vsyscall=xonly; clocksource ?',
    'pinned to CPU 0; 5 repeats of ~60 ms per path; min (as the published tables), median, p95',
    '',
    'path         ns/call   median      p95  cycles vs vDSO  check  published',
    '',
    'vs vDSO: each path against the vDSO call of the same function (vsyscall gettimeofday against vDSO gettimeofday,',
    'syscall clock_gettime(REALTIME) against vDSO clock_gettime(REALTIME), …); — where the vDSO has no such call (getpid).',
    '',
  ].join('\n'));
});

test('a measured row without figures is shown as unavailable; the summary needs both rows of a pair', () => {
  const r = report();
  r.results = r.results.filter((x) => x.id !== 'vdso-time');
  const text = formatBench(r);
  assert.doesNotMatch(text, /Here a vsyscall time\(\)/);
  assert.match(text, /^Here a vsyscall gettimeofday\(\) costs 490 ns, 27× a vDSO gettimeofday\(\)\.$/m);
  r.results = [{ id: 'syscall-getpid', label: 'syscall getpid', group: 'syscall', status: 'measured' }];
  assert.match(formatBench(r), /^syscall getpid {9}—  unavailable: not measured$/m);
});

/** Where the chart puts `ns` on its log axis: 170 px of labels, 570 px for 1 ns to 10,000 ns. */
const x = (ns: number) => 170 + (570 * Math.log10(ns)) / 4;

test('the chart: one row per row of the 2018 table, this host in blue where measured, grey bars of the published figures on a log scale', () => {
  const svg = formatBenchSvg(report());
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="760" height="370"/);
  assert.ok(svg.endsWith('</svg>\n'));
  assert.match(svg, /this host \(Linux 6\.18\.0-vsys, KPTI off\) in blue; Habr, 2018 \(2015 laptop, KPTI off\) in grey/);
  const labels = [...svg.matchAll(/<text x="10" y="\d+">([^<]+)<\/text>/g)].map((m) => m[1]);
  assert.deepEqual(labels, ['int 0x80', 'sysenter', 'syscall', 'vsyscall, emulated', 'vsyscall, native', 'vDSO', 'vDSO-32']);
  const blue = [...svg.matchAll(/<rect x="170" y="(\d+)" width="([\d.]+)" height="12" fill="#2b6cb0"\/>/g)].map((m) => Number(m[2]));
  assert.deepEqual(blue, [x(123.4), x(489.6), x(18.234)].map((v) => Number((v - 170).toFixed(1))), 'syscall, vsyscall emulated and vDSO gettimeofday measured here');
  const grey = [...svg.matchAll(/<rect x="170" y="(\d+)" width="([\d.]+)" height="12" fill="#aaa"\/>/g)].map((m) => Number(m[2]));
  assert.deepEqual(grey, [317, 150, 103, 496, 103, 37, 51].map((ns) => Number((x(ns) - 170).toFixed(1))), 'KPTI-off figures of the 2018 table');
  assert.equal([...svg.matchAll(/unavailable here/g)].length, 4);
  assert.deepEqual([...svg.matchAll(/text-anchor="middle" fill="#555">(\d+)</g)].map((m) => Number(m[1])), [1, 10, 100, 1000, 10000]);
  assert.match(svg, />18\.2 ns</);
  // Escaped text: a kernel name with markup in it stays text.
  const r = report();
  r.host = { ...r.host, kernel: '<6&>', kpti: true };
  const esc = formatBenchSvg(r);
  assert.match(esc, /this host \(Linux &lt;6&amp;>, KPTI on\) in blue/);
  assert.deepEqual([...esc.matchAll(/fill="#555">(\d+) ns</g)].map((m) => Number(m[1])), [498, 338, 278, 692, 278, 37, 51], 'KPTI-on figures');
});

test('a figure above 10 µs widens the axis to it', () => {
  const r = report();
  r.results = [{ id: 'int80-64-gettimeofday', label: 'int 0x80 gettimeofday (from 64-bit code)', group: 'int80-64', status: 'measured', ns: { min: 40_000, median: 41_000, p95: 50_000 } }];
  const svg = formatBenchSvg(r);
  const width = Number(/<rect x="170" y="\d+" width="([\d.]+)" height="12" fill="#2b6cb0"\/>/.exec(svg)?.[1]);
  assert.equal(width, 570, 'the largest figure spans the whole axis');
});

test('figures at the edges of a precision step print as they round (99.96 is "100", 9.996 is "10.0"); an unknown KPTI is said so in the chart', () => {
  const r = report();
  r.results = [
    { id: 'syscall-getpid', label: 'syscall getpid', group: 'syscall', status: 'measured', ns: { min: 99.96, median: 99.94, p95: 9.996 } },
  ];
  assert.match(formatBench(r), /^syscall getpid {7}100 {5}99\.9 {5}10\.0 /m);
  r.host = { ...r.host, kpti: null };
  assert.match(formatBenchSvg(r), /this host \(Linux 6\.18\.0-vsys, KPTI unknown\) in blue; Habr, 2018 \(2015 laptop, KPTI on\) in grey/);
});
