// The event reader's merge of per-ring runs, against a sort of everything (the oracle), with rings
// read a batch at a time so the watermark is exercised.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventReader, mergeRuns, sampledSource, type RingSource, type TraceEvent } from '../../src/trace/events.js';
import type { PerfRing, SampleVisitor } from '../../src/native/perf-ring.js';
import type { EventFormat } from '../../src/trace/tracefs.js';

function ev(time: number, cpu: number): TraceEvent {
  return { n: 0, time, cpu, pid: 1, tid: 1, comm: 'x', kind: 'emulate', nr: 1 };
}

test('mergeRuns gives events up to the limit in time order, keeps the rest, and keeps run order on ties', () => {
  const runs = [[ev(1, 0), ev(4, 0), ev(9, 0)], [ev(1, 1), ev(2, 1), ev(4, 1), ev(12, 1)]];
  const out: TraceEvent[] = [];
  mergeRuns(runs, 4, (e) => out.push(e));
  assert.deepEqual(out.map((e) => [e.time, e.cpu]), [[1, 0], [1, 1], [2, 1], [4, 0], [4, 1]]);
  assert.deepEqual(runs.map((r) => r.map((e) => e.time)), [[9], [12]]);
});

/** A CPU's ring that hands out pre-made raw records of event 7, at most `max` per visit, as PerfRing does; `times` may grow (the kernel writing on). */
function fakeRing(times: number[], cpu: number): Pick<PerfRing, 'visit'> {
  let at = 0;
  const raw = Buffer.alloc(16);
  raw.writeInt32LE(1, 8);
  return {
    visit(visit: SampleVisitor, max = Infinity) {
      let k = 0;
      while (at < times.length && k < max) {
        visit(7, 1, 1, times[at] as number, cpu, raw, 0, 16);
        at++;
        k++;
      }
      return { lost: 0, more: at < times.length };
    },
  };
}

const format: EventFormat = { system: 'vsyscall', name: 'emulate_vsyscall', id: 1, fields: new Map([['nr', { name: 'nr', offset: 8, size: 4, signed: true }]]) };

/** Two CPUs' rings; samples of any id but 7 are not ours and are skipped. */
function rings(a: number[], b: number[]): RingSource {
  const src = sampledSource('emulate', format);
  return { rings: [fakeRing(a, 0), fakeRing(b, 1)], sourceOf: (id: number) => (id === 7 ? src : undefined) };
}

test('the reader merges rings read a batch at a time into one time order, each event once', () => {
  // Ring 0 is dense early and sparse late, ring 1 the other way: a batch of one covers far less
  // time than a batch of the other, the case where reading each batch in turn would misorder.
  const a = Array.from({ length: 9000 }, (_, i) => (i < 6000 ? i : 6000 + (i - 6000) * 10));
  const b = Array.from({ length: 7000 }, (_, i) => (i < 1000 ? i * 30 : 30000 + i));
  const set = rings(a, b);
  const got: TraceEvent[] = [];
  new EventReader(set).drain(true, (e) => got.push(e));
  const want = [...a.map((t) => [t, 0]), ...b.map((t) => [t, 1])].sort((x, y) => (x[0] as number) - (y[0] as number) || (x[1] as number) - (y[1] as number));
  assert.deepEqual(got.map((e) => [e.time, e.cpu]), want);
  assert.ok(got.every((e) => e.nr === 1));
});

test('while the rings are written, a drain gives out only events no later than the previous round saw; the final drain the rest', () => {
  // Ring 0 is read before ring 1 in a round; an event stamped 15 reaches ring 0 only after ring 1
  // was read with 20 in it: it must still come out before 20.
  const a = [10];
  const b = [20];
  const set = rings(a, b);
  const reader = new EventReader(set);
  const got: number[] = [];
  reader.drain(false, (e) => got.push(e.time));
  assert.equal(got.length, 0, 'the first round has no earlier round to trust');
  a.push(15, 30);
  reader.drain(false, (e) => got.push(e.time));
  assert.deepEqual(got, [10, 15, 20]);
  b.push(25);
  reader.drain(true, (e) => got.push(e.time));
  assert.deepEqual(got, [10, 15, 20, 25, 30]);
});
