// The pure part of a trace: event sequences in the order the kernel gives them (a fault in the
// page, then its emulation or its SIGSEGV, then the exit; see trace.test.ts's --events tests)
// folded into per-process figures, crashes and names. No kernel, no root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventFold, foldEvents, type FoldOptions } from '../../src/trace/fold.js';
import type { TraceEvent } from '../../src/trace/events.js';
import { SIGSEGV } from '../../src/trace/signals.js';

const PAGE = 0xffffffffff600000n;
const TIME = PAGE + 0x400n;

/** An event of task `tid` in process `pid` (the leader when tid is left out). */
function ev(kind: TraceEvent['kind'], pid: number, fields: Partial<TraceEvent> = {}): TraceEvent {
  return { n: 0, time: 0, cpu: 0, pid, tid: pid, comm: 'old-app', kind, ...fields };
}
const fault = (pid: number, address: bigint, f: Partial<TraceEvent> = {}) => ev('page_fault', pid, { address, ip: address, error: 0x14, ...f });
const emulate = (pid: number, nr: number, f: Partial<TraceEvent> = {}) => ev('emulate', pid, { nr, ...f });
/** A called entry: its fetch fault, then the emulation. */
const call = (pid: number, nr: number, f: Partial<TraceEvent> = {}) => [fault(pid, PAGE + BigInt(nr * 0x400), f), emulate(pid, nr, f)];
const segv = (pid: number, f: Partial<TraceEvent> = {}) => ev('signaldeliver', pid, { sig: SIGSEGV, handled: false, code: 1, ...f });
const exit = (pid: number, f: Partial<TraceEvent> = {}) => ev('procexit', pid, { status: 0, ...f });

const perf: FoldOptions = { bpf: false, countSamples: true, events: false };

test('perf sampling of all processes: calls counted per entry and per process, faults counted, nothing else', () => {
  const events = [
    ...call(100, 1), ...call(100, 1), ...call(100, 1), ...call(100, 0), ...call(100, 2),
    ...call(200, 1, { comm: 'other' }),
    // a fault outside an entry start is still a fault in the page; its emulation reports -22
    fault(200, PAGE + 0x10n, { comm: 'other' }), emulate(200, -22, { comm: 'other' }),
  ];
  const f = foldEvents(events, perf);
  assert.deepEqual(f.perPid.get(100), { pid: 100, comm: 'old-app', emulated: { gettimeofday: 1, time: 3, getcpu: 1, misaligned: 0 }, pageFaults: 5, crashes: 0 });
  assert.deepEqual(f.perPid.get(200), { pid: 200, comm: 'other', emulated: { gettimeofday: 0, time: 1, getcpu: 0, misaligned: 1 }, pageFaults: 2, crashes: 0 });
  assert.equal(f.perPid.size, 2);
  assert.deepEqual(f.crashes, []);
  assert.deepEqual(events.map((e) => e.n), events.map((_, i) => i + 1), 'every event numbered in time order');
  assert.deepEqual(f.seen.get(100), { counted: 'old-app' });
});

test('a fatal SIGSEGV after a fault in the page is a crash with that fault\'s address, ip and error; the exit carries status SIGSEGV', () => {
  const f = new EventFold(perf);
  for (const e of call(100, 1)) f.add(e);
  f.add(fault(100, PAGE + 0x10n, { ip: 0x401000n, error: 0x15 }));
  f.add(emulate(100, -22));
  f.add(segv(100));
  const end = exit(100, { status: 0 });
  assert.equal(f.add(end), true, 'the exit of a crashed thread is kept');
  assert.equal(end.status, SIGSEGV);
  assert.deepEqual(f.crashes, [{ pid: 100, tid: 100, comm: 'old-app', address: '0xffffffffff600010', ip: '0x401000', error: 0x15 }]);
  assert.equal(f.perPid.get(100)?.crashes, 1);
  assert.equal(f.perPid.get(100)?.pageFaults, 2);
});

test('an emulated call deals with its fault, whichever the entry: a SIGSEGV after it (from elsewhere) is no crash of the page', () => {
  for (const nr of [0, 1, 2]) {
    const f = foldEvents([...call(100, nr), segv(100)], perf);
    assert.deepEqual(f.crashes, [], `entry ${nr}`);
    assert.equal(f.perPid.get(100)?.crashes, 0);
  }
  // A misaligned call's emulation (-22) deals with nothing: the SIGSEGV after it is the fault's crash.
  const misaligned = foldEvents([fault(100, PAGE + 0x10n), emulate(100, -22), segv(100)], perf);
  assert.equal(misaligned.crashes.length, 1);
});

test('a SIGSEGV a handler catches is no crash; raised again by the program (si_code <= 0) it is the caught fault\'s crash', () => {
  const caught = foldEvents([fault(100, PAGE + 0x10n), segv(100, { handled: true })], perf);
  assert.deepEqual(caught.crashes, []);
  // The kernel's own signal for another reason (si_code > 0) does not revive the caught fault.
  const other = foldEvents([fault(100, PAGE + 0x10n), segv(100, { handled: true }), segv(100, { code: 1 })], perf);
  assert.deepEqual(other.crashes, []);
  const raised = foldEvents([fault(100, PAGE + 0x10n, { ip: 0x400100n }), segv(100, { handled: true }), segv(100, { code: 0 })], perf);
  assert.deepEqual(raised.crashes, [{ pid: 100, tid: 100, comm: 'old-app', address: '0xffffffffff600010', ip: '0x400100', error: 0x14 }]);
});

test('crashes are per thread: a fault on one thread and a SIGSEGV on another are not one crash', () => {
  const f = foldEvents([fault(100, PAGE + 0x10n, { tid: 101 }), segv(100, { tid: 102 }), segv(100, { tid: 101 })], perf);
  assert.deepEqual(f.crashes, [{ pid: 100, tid: 101, comm: 'old-app', address: '0xffffffffff600010', ip: '0xffffffffff600010', error: 0x14 }]);
});

test('an exit with no crash is dropped unless every event is wanted', () => {
  const quiet = new EventFold(perf);
  const e1 = exit(100);
  assert.equal(quiet.add(e1), false);
  assert.equal(e1.status, 0);
  const all = new EventFold({ ...perf, events: true });
  assert.equal(all.add(exit(100)), true);
});

test('an exec names its task for every later event; the names seen are kept per process', () => {
  const events = [
    ev('procexec', 100, { comm: 'bash', filename: '/bin/bash' }),
    ...call(100, 1, { comm: 'chroot' }),
    exit(100, { comm: 'bash' }),
  ];
  const f = foldEvents(events, { ...perf, events: true });
  assert.equal(events[1]?.comm, 'bash');
  assert.equal(events[2]?.comm, 'bash');
  assert.deepEqual(f.seen.get(100), { execs: [{ filename: '/bin/bash', comm: 'bash' }], counted: 'bash', exited: 'bash' });
  // After the exit the name is forgotten: a reused id is not named after the old process.
  const later = emulate(100, 1, { comm: 'new' });
  f.add(later);
  assert.equal(later.comm, 'new');
});

test('counting with eBPF or exactly per process: the fold counts nothing itself, and eBPF records crashes in its own maps', () => {
  const withBpf = foldEvents([...call(100, 1), fault(100, PAGE + 0x10n), segv(100)], { bpf: true, countSamples: false, events: false });
  assert.equal(withBpf.perPid.size, 0);
  assert.deepEqual(withBpf.crashes, []);
  const exact = foldEvents([...call(100, 1), fault(100, PAGE + 0x10n), segv(100)], { bpf: false, countSamples: false, events: false });
  assert.equal(exact.perPid.get(100)?.pageFaults, 0, 'figures of the crashed process come from the counters');
  assert.equal(exact.perPid.get(100)?.crashes, 1);
  assert.equal(exact.crashes.length, 1);
});

test('a process first seen is described by the given function', () => {
  const f = foldEvents(call(100, 1), { ...perf, describe: (pid, comm) => ({ pid, comm: `${comm}!`, exe: '/opt/old-app', emulated: { gettimeofday: 0, time: 0, getcpu: 0, misaligned: 0 }, pageFaults: 0, crashes: 0 }) });
  assert.deepEqual(f.perPid.get(100), { pid: 100, comm: 'old-app!', exe: '/opt/old-app', emulated: { gettimeofday: 0, time: 1, getcpu: 0, misaligned: 0 }, pageFaults: 1, crashes: 0 });
});

test('the command died of SIGSEGV: its crash from the last fault kept, else with the address unknown; never twice', () => {
  const kept = new EventFold({ ...perf, countSamples: false });
  kept.name({ pid: 100, comm: 'old-app', exe: './old-app', emulated: { gettimeofday: 0, time: 0, getcpu: 0, misaligned: 0 }, pageFaults: 0, crashes: 0 });
  kept.add(fault(100, TIME, { error: 0x4 }));
  kept.commandDiedOfSegv(100, 'command');
  assert.deepEqual(kept.crashes, [{ pid: 100, tid: 100, comm: 'old-app', address: '0xffffffffff600400', ip: '0xffffffffff600400', error: 0x4 }]);
  assert.equal(kept.perPid.get(100)?.crashes, 1);
  kept.commandDiedOfSegv(100, 'command');
  assert.equal(kept.crashes.length, 1);

  const none = new EventFold({ ...perf, countSamples: false });
  for (const e of call(100, 1)) none.add(e);
  none.commandDiedOfSegv(100, 'command');
  assert.deepEqual(none.crashes, [{ pid: 100, tid: 100, comm: 'command', address: 'unknown', ip: 'unknown', error: 0 }]);

  const bpf = new EventFold({ bpf: true, countSamples: false, events: false });
  bpf.add(fault(100, TIME));
  bpf.commandDiedOfSegv(100, 'command');
  assert.deepEqual(bpf.crashes, []);
});
