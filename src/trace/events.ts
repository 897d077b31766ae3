// Sampled tracepoint events, decoded with tracefs formats into sysdig-style records (seed 003):
// page faults in the vsyscall page, emulated calls, SIGSEGV deliveries, execs, process exits
// (format-event.ts writes one as a line).
import { readComm } from './attribution.js';
import { PerfRing, type SampleVisitor } from '../native/perf-ring.js';
import { readEventFormat, type EventFormat } from './tracefs.js';
import { PAGE_FILTER } from './counters.js';
import { SIGSEGV } from './signals.js';

export type EventKind = 'page_fault' | 'emulate' | 'signaldeliver' | 'procexec' | 'procexit';

export interface TraceEvent {
  /** Sequence number in time order. */
  n: number;
  /** perf clock, ns since boot (a safe integer for 104 days of uptime). */
  time: number;
  cpu: number;
  pid: number;
  tid: number;
  comm: string;
  kind: EventKind;
  /** page_fault */
  address?: bigint;
  ip?: bigint;
  error?: number;
  /** emulate: the entry's nr (0 gettimeofday, 1 time, 2 getcpu, -22 misaligned). */
  nr?: number;
  /** signaldeliver */
  sig?: number;
  /** signaldeliver: a handler catches it (sa_handler is not SIG_DFL): the process lives on. */
  handled?: boolean;
  /** signaldeliver: si_code (> 0 from a fault, <= 0 when a process sent or raised it). */
  code?: number;
  /** procexit: the exit status as sysdig prints it (the signal number for a fatal signal). */
  status?: number;
  /** procexec: the path given to execve (as the process saw it: relative to its root and cwd). */
  filename?: string;
}

interface Source {
  kind: EventKind;
  format: EventFormat;
  filter?: string;
  /** Fires for every emulated call (millions a second), not only on the rare events crash detection needs. */
  everyCall: boolean;
}

/** Which tracepoints to sample: everything for --events, only the rare ones for crash detection. */
export function eventSources(all: boolean): Source[] {
  const out: Source[] = [];
  const pf = readEventFormat('exceptions', 'page_fault_user');
  // Faults at an entry start are the emulated calls themselves (millions a second): only --events
  // samples them; crash detection needs only the others (misaligned calls, data reads).
  const entryStarts = ['0xffffffffff600000', '0xffffffffff600400', '0xffffffffff600800'].map((a) => `address != ${a}`).join(' && ');
  out.push({ kind: 'page_fault', format: pf, filter: all ? PAGE_FILTER : `${PAGE_FILTER} && ${entryStarts}`, everyCall: all });
  if (all) {
    try {
      out.push({ kind: 'emulate', format: readEventFormat('vsyscall', 'emulate_vsyscall'), everyCall: true });
    } catch {
      // no emulation in this kernel: nothing to sample
    }
  }
  out.push({ kind: 'signaldeliver', format: readEventFormat('signal', 'signal_deliver'), filter: `sig == ${SIGSEGV}`, everyCall: false });
  // An exec renames the process (bash, not the chroot that exec'd it): kept even when counting only.
  out.push({ kind: 'procexec', format: readEventFormat('sched', 'sched_process_exec'), everyCall: false });
  out.push({ kind: 'procexit', format: readEventFormat('sched', 'sched_process_exit'), everyCall: false });
  return out;
}

export type SamplerScope = { pid: number; inherit: boolean } | { cgroupFd?: number };

export interface SampledSource {
  kind: EventKind;
  format: EventFormat;
  rd: Readers;
}

/** A tracepoint as the reader decodes it: its kind, its format, and its fields' readers. */
export function sampledSource(kind: EventKind, format: EventFormat): SampledSource {
  return { kind, format, rd: readers(format) };
}

/** What the reader needs of a sampler set: its rings, and which tracepoint a sample id stands for. */
export interface RingSource {
  readonly rings: readonly Pick<PerfRing, 'visit'>[];
  sourceOf(id: number): SampledSource | undefined;
}

/**
 * Ring data pages per CPU: for the events of every call, 64 MiB shared among the CPUs, 512 KiB to
 * 8 MiB each; for the rare events crash detection samples, 256 KiB.
 */
export function ringPages(cpus: number, everyCall: boolean): number {
  if (!everyCall) return 64;
  const want = Math.floor((64 * 1024 * 1024) / Math.max(1, cpus) / 4096);
  return Math.min(2048, Math.max(128, 2 ** Math.floor(Math.log2(Math.max(1, want)))));
}

/**
 * The rings events are sampled into, shared by every tracepoint and thread traced: two per CPU,
 * one for the events of every call and one for the rare ones (SIGSEGV deliveries, exits, faults
 * that are not calls), so a flood that overflows the first cannot push crash evidence out of the
 * second. A ring no event writes into is never mapped.
 */
export class SamplerSet implements RingSource {
  private readonly flood: PerfRing[];
  private readonly rare: PerfRing[];
  readonly rings: PerfRing[];
  private readonly sources = new Map<number, SampledSource>();

  constructor(cpus: number[]) {
    this.flood = cpus.map((cpu) => new PerfRing(cpu, ringPages(cpus.length, true)));
    this.rare = cpus.map((cpu) => new PerfRing(cpu, ringPages(cpus.length, false)));
    this.rings = [...this.flood, ...this.rare];
  }

  /** Opens (disabled) a sampling event for each source on each CPU, for a task (and what it starts) or a cgroup or everything. */
  open(sources: Source[], scope: SamplerScope): void {
    for (const s of sources) {
      const sampled = sampledSource(s.kind, s.format);
      for (const ring of s.everyCall ? this.flood : this.rare) {
        const id = ring.add({
          tracepointId: s.format.id,
          ...('pid' in scope ? { pid: scope.pid, inherit: scope.inherit } : { pid: -1, ...(scope.cgroupFd !== undefined ? { cgroupFd: scope.cgroupFd } : {}) }),
          ...(s.filter ? { filter: s.filter } : {}),
        });
        this.sources.set(id, sampled);
      }
    }
  }

  sourceOf(id: number): SampledSource | undefined {
    return this.sources.get(id);
  }

  /** Samples the kernel could not write, by its own count (Linux 6.0+; else undefined). */
  lostSamples(): number | undefined {
    let sum = 0;
    for (const r of this.rings) {
      const n = r.lostSamples();
      if (n === undefined) return undefined;
      sum += n;
    }
    return sum;
  }

  enable(): void {
    for (const r of this.rings) r.enable();
  }

  disable(): void {
    for (const r of this.rings) r.disable();
  }

  close(): void {
    for (const r of this.rings) r.close();
  }
}

const comms = new Map<number, string>();

/** The command name of a task: from /proc while it lives, remembered after. */
export function commOf(tid: number): string {
  const c = comms.get(tid);
  if (c !== undefined) return c;
  const v = readComm(tid);
  if (v !== undefined) comms.set(tid, v);
  return v ?? '?';
}

export function rememberComm(tid: number, comm: string): void {
  comms.set(tid, comm);
}

/** Records decoded from one ring per round: bounds the events alive at once, so they die young. */
const BATCH = 2048;
/** Rounds a drain reads before it returns (final drains excepted): 64k records a ring, ~6M events/s at a drain every 10 ms. */
const MAX_ROUNDS = 32;

/**
 * Reads a sampler set's rings in time order. A ring holds every event of one CPU and is written
 * in time order, so its events form a sorted run; the CPUs' runs are merged, not sorted. Rings are
 * read while the kernel writes them, one after another, so an event may reach its ring after a
 * later one was read from another: a round (every ring read once) gives out only events no later
 * than the latest time the previous round saw (what perf's own reader does), the rest wait. A ring
 * is read at most BATCH records a round, and while one is left with more, nothing later than the
 * last time read from it is given out either. The final drain, with the samplers stopped, gives
 * out everything.
 */
export class EventReader {
  private readonly pending: TraceEvent[][];
  /** The latest time seen by the rounds before this one. */
  private seen = -Infinity;

  constructor(private readonly set: RingSource) {
    this.pending = set.rings.map(() => []);
  }

  /**
   * Gives out the events that are ready (all when `final`), in time order, numbered 0 (the caller
   * numbers them). Returns the lost count. Outside the final drain it reads at most MAX_ROUNDS
   * rounds and returns, even if the rings still hold more: a producer that fills them as fast as
   * they are read must not keep the event loop (the timers for --duration and --interval, Ctrl-C)
   * from running; what is left waits for the next drain, and overflow shows as lost samples.
   */
  drain(final: boolean, emit: (e: TraceEvent) => void): number {
    let lost = 0;
    const visitor = (run: TraceEvent[]): SampleVisitor => (id, pid, tid, time, cpu, buf, at, size) => {
      const src = this.set.sourceOf(id);
      // A sample of an event vsys did not open cannot be decoded: counted with the lost ones.
      if (src) insert(run, decode(src.kind, src.rd, pid, tid, time, cpu, buf, at, size));
      else lost++;
    };
    for (let round = 0; final || round < MAX_ROUNDS; round++) {
      let limit = final ? Infinity : this.seen;
      let capped = false;
      let latest = this.seen;
      this.set.rings.forEach((ring, i) => {
        const run = this.pending[i] as TraceEvent[];
        if (run.length < BATCH) {
          const got = ring.visit(visitor(run), BATCH - run.length);
          lost += got.lost;
          // Nothing kept (no more records, or only ones not decoded): nothing to wait for.
          if (!got.more || run.length === 0) return;
        }
        capped = true;
        limit = Math.min(limit, (run[run.length - 1] as TraceEvent).time);
      });
      for (const run of this.pending) if (run.length) latest = Math.max(latest, (run[run.length - 1] as TraceEvent).time);
      mergeRuns(this.pending, limit, emit);
      this.seen = latest;
      if (!capped) break;
    }
    return lost;
  }
}

/** Appends in time order (a ring out of order, which should never happen, costs a step back each). */
function insert(run: TraceEvent[], e: TraceEvent): void {
  let i = run.length;
  while (i > 0 && (run[i - 1] as TraceEvent).time > e.time) i--;
  if (i === run.length) run.push(e);
  else run.splice(i, 0, e);
}

function decode(kind: EventKind, rd: Readers, pid: number, tid: number, time: number, cpu: number, buf: Buffer, at: number, size: number): TraceEvent {
  // Every field present, so all events share one shape.
  const e = { n: 0, time, cpu, pid, tid, comm: '', kind, address: undefined, ip: undefined, error: undefined, nr: undefined, sig: undefined, handled: undefined, code: undefined, status: undefined, filename: undefined } as unknown as TraceEvent;
  switch (kind) {
    case 'page_fault':
      e.address = rd.address.u64(buf, at, size);
      e.ip = rd.ip.u64(buf, at, size);
      e.error = Number(rd.error_code.u64(buf, at, size));
      e.comm = commOf(tid);
      break;
    case 'emulate':
      e.nr = rd.nr.i32(buf, at, size);
      e.comm = commOf(tid);
      break;
    case 'signaldeliver':
      e.sig = rd.sig.i32(buf, at, size);
      e.handled = rd.sa_handler.u64(buf, at, size) !== 0n;
      e.code = rd.code.i32(buf, at, size);
      e.comm = commOf(tid);
      break;
    case 'procexec':
      e.filename = rd.filename.loc(buf, at, size) ?? '?';
      // The tracepoint fires after the exec set the name, as the kernel does (fs/exec.c: the
      // basename of the file, 15 bytes at most).
      e.comm = commOfExec(e.filename);
      break;
    case 'procexit':
      e.comm = rd.comm.str(buf, at, size) ?? commOf(tid);
      rememberComm(tid, e.comm);
      break;
  }
  return e;
}

/** Gives out, in time order, the events of the sorted runs with time ≤ limit, and removes them from the runs (ties keep run order). */
export function mergeRuns(runs: TraceEvent[][], limit: number, emit: (e: TraceEvent) => void): void {
  const at = runs.map(() => 0);
  try {
    for (;;) {
      let best = -1;
      let bestTime = limit;
      for (let j = 0; j < runs.length; j++) {
        const e = (runs[j] as TraceEvent[])[at[j] as number];
        if (e !== undefined && (e.time < bestTime || (best < 0 && e.time === bestTime))) {
          best = j;
          bestTime = e.time;
        }
      }
      if (best < 0) break;
      // Counted as given out before `emit` runs: one that throws is not given out again.
      const e = (runs[best] as TraceEvent[])[at[best] as number] as TraceEvent;
      at[best] = (at[best] as number) + 1;
      emit(e);
    }
  } finally {
    runs.forEach((r, j) => r.splice(0, at[j] as number));
  }
}

interface FieldReader {
  u64(buf: Buffer, at: number, size: number): bigint;
  i32(buf: Buffer, at: number, size: number): number;
  str(buf: Buffer, at: number, size: number): string | undefined;
  /** A `__data_loc char[]` field: a u32 of (length << 16 | offset in the record) pointing at the string. */
  loc(buf: Buffer, at: number, size: number): string | undefined;
}

type Readers = Record<'address' | 'ip' | 'error_code' | 'nr' | 'sig' | 'sa_handler' | 'code' | 'comm' | 'filename', FieldReader>;

/** The name the kernel gives a task at exec: the file's basename, cut to TASK_COMM_LEN - 1 bytes. */
export function commOfExec(filename: string): string {
  const base = Buffer.from(filename.slice(filename.lastIndexOf('/') + 1));
  const cut = base.subarray(0, 15);
  return cut.toString('utf8');
}

const readerCache = new WeakMap<EventFormat, Readers>();

/** A field read straight off the ring buffer at the format's offset (no per-sample copies or lookups); 0 when absent or cut short. */
function fieldReader(f: EventFormat, name: string): FieldReader {
  const ff = f.fields.get(name);
  const offset = ff?.offset ?? 0;
  const width = ff?.size ?? 0;
  const present = ff !== undefined;
  return {
    u64: (buf, at, size) => (present && offset + 8 <= size ? buf.readBigUInt64LE(at + offset) : 0n),
    i32: (buf, at, size) => (present && offset + 4 <= size ? buf.readInt32LE(at + offset) : 0),
    str(buf, at, size) {
      if (!present || offset + width > size) return undefined;
      const s = buf.subarray(at + offset, at + offset + width);
      const nul = s.indexOf(0);
      return s.toString('utf8', 0, nul < 0 ? s.length : nul);
    },
    loc(buf, at, size) {
      if (!present || offset + 4 > size) return undefined;
      const v = buf.readUInt32LE(at + offset);
      const off = v & 0xffff;
      const len = v >>> 16;
      if (off + len > size) return undefined;
      const s = buf.subarray(at + off, at + off + len);
      const nul = s.indexOf(0);
      return s.toString('utf8', 0, nul < 0 ? s.length : nul);
    },
  };
}

function readers(f: EventFormat): Readers {
  let r = readerCache.get(f);
  if (r) return r;
  const names = ['address', 'ip', 'error_code', 'nr', 'sig', 'sa_handler', 'code', 'comm', 'filename'] as const;
  r = Object.fromEntries(names.map((n) => [n, fieldReader(f, n)])) as Readers;
  readerCache.set(f, r);
  return r;
}
