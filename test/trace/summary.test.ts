// Summary assembly without a kernel: the fold's figures plus invented counter readings, in the
// shapes CounterSet.read and BpfCounters.read/crashes return.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { foldEvents } from '../../src/trace/fold.js';
import { addRefusedCallCrash, assembleSummary, emptyStats, makeCrash, type RunFacts } from '../../src/trace/summary.js';
import type { TraceEvent } from '../../src/trace/events.js';

const facts: RunFacts = { target: './old-app', showAll: true, lostEvents: 0, stopped: false, describe: emptyStats };
const counts = (time: number, pageFaults: number, syscalls: number) => ({ emulated: { gettimeofday: 0, time, getcpu: 0, misaligned: 0 }, pageFaults, syscalls });

test('makeCrash: hex address and ip from the fault kept, "unknown" without one', () => {
  assert.deepEqual(makeCrash(7, 8, 'a', { address: 0xffffffffff600010n, ip: 0x401000n, error: 0x15 }), { pid: 7, tid: 8, comm: 'a', address: '0xffffffffff600010', ip: '0x401000', error: 0x15 });
  assert.deepEqual(makeCrash(7, 7, 'a', {}), { pid: 7, tid: 7, comm: 'a', address: '0x0', ip: '0x0', error: 0 });
  assert.deepEqual(makeCrash(7, 7, 'a'), { pid: 7, tid: 7, comm: 'a', address: 'unknown', ip: 'unknown', error: 0 });
});

test('perf counters per process add into the totals and the process; cost and its share of the CPU time', () => {
  const fold = foldEvents([], { bpf: false, countSamples: false, events: false });
  const s = assembleSummary(fold, { counters: [{ pid: 100, counts: counts(1000, 1000, 50) }, { counts: counts(0, 0, 7) }], seconds: 2, cpuSeconds: 0.001 }, { ...facts, costNs: { emulated: 500, vdso: 20, source: 'test' } });
  assert.deepEqual(s.counts, counts(1000, 1000, 57));
  assert.deepEqual(s.processes, [{ pid: 100, comm: '?', emulated: { gettimeofday: 0, time: 1000, getcpu: 0, misaligned: 0 }, pageFaults: 1000, crashes: 0 }]);
  assert.equal(s.backend.name, 'perf');
  assert.deepEqual(s.cost, { cpuSeconds: (1000 * 480) / 1e9, perCallNs: 480, source: 'test', share: (1000 * 480) / 1e9 / 0.001 });
  assert.ok(Math.abs((s.cost?.share ?? 0) - 0.48) < 1e-12);
  assert.equal(s.cpuSeconds, 0.001);
  assert.equal(s.seconds, 2);
  assert.equal(s.exit, undefined);
  assert.equal(s.stopped, undefined);
});

test('eBPF maps: faults by error code, crashes from the crash map, the name the kernel counted under beats the exec\'s', () => {
  const exec: TraceEvent = { n: 0, time: 0, cpu: 0, pid: 100, tid: 100, comm: 'sh', kind: 'procexec', filename: '/bin/sh' };
  const fold = foldEvents([exec], { bpf: true, countSamples: false, events: false });
  const processes = new Map([[100, { comm: 'old-app', emulated: { gettimeofday: 0, time: 3, getcpu: 0, misaligned: 1 }, faults: new Map([[0x14, 3], [0x15, 1]]), crashes: 1 }]]);
  const dropped = { counts: 0, members: 0, records: 0, skipped: 2 };
  const crashes = [{ pid: 100, tid: 101, comm: 'old-app', address: 0xffffffffff600010n, ip: 0xffffffffff600010n, error: 0x15 }];
  const s = assembleSummary(fold, { counters: [{ counts: counts(0, 0, 9) }], bpf: { processes, dropped, crashes }, seconds: 1 }, { ...facts, showAll: false, exit: { code: null, signal: 'SIGSEGV' } });
  assert.deepEqual(s.counts, { emulated: { gettimeofday: 0, time: 3, getcpu: 0, misaligned: 1 }, pageFaults: 4, faultsByError: { '0x14': 3, '0x15': 1 }, syscalls: 9 });
  assert.equal(s.processes.length, 1);
  assert.equal(s.processes[0]?.comm, 'old-app');
  assert.equal(s.processes[0]?.exe, '/bin/sh', 'no exec gave that name: the last exec\'s file');
  assert.equal(s.processes[0]?.crashes, 1);
  assert.deepEqual(s.processes[0]?.faultsByError, { '0x14': 3, '0x15': 1 });
  assert.deepEqual(s.crashes, [{ pid: 100, tid: 101, comm: 'old-app', address: '0xffffffffff600010', ip: '0xffffffffff600010', error: 0x15 }]);
  assert.deepEqual(s.backend, { name: 'bpf', dropped });
  assert.deepEqual(s.exit, { code: null, signal: 'SIGSEGV' });
  // Already a crash of that process: nothing added.
  addRefusedCallCrash(s, 100);
  assert.equal(s.crashes.length, 1);
});

test('a command that died of SIGSEGV after using the page, no fault kept: a crash with the address unknown; one that never used it: none', () => {
  const fold = foldEvents([], { bpf: true, countSamples: false, events: false });
  const used = new Map([[100, { comm: 'old-app', emulated: { gettimeofday: 0, time: 1, getcpu: 0, misaligned: 0 }, faults: new Map<number, number>(), crashes: 0 }]]);
  const none = { counts: 0, members: 0, records: 0, skipped: 0 };
  const s = assembleSummary(fold, { counters: [], bpf: { processes: used, dropped: none, crashes: [] }, seconds: 1 }, facts);
  addRefusedCallCrash(s, 100);
  assert.deepEqual(s.crashes, [{ pid: 100, tid: 100, comm: 'old-app', address: 'unknown', ip: 'unknown', error: 0 }]);
  assert.equal(s.processes[0]?.crashes, 1);
  const idle = assembleSummary(fold, { counters: [{ pid: 200, counts: counts(0, 0, 3) }], bpf: { processes: new Map(), dropped: none, crashes: [] }, seconds: 1 }, facts);
  addRefusedCallCrash(idle, 200);
  assert.deepEqual(idle.crashes, []);
  assert.deepEqual(idle.counts.faultsByError, {}, 'eBPF counting always reports faults by code, even none');
});
