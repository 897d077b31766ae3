// Sampled tracepoint events, decoded with tracefs formats into sysdig-style records (seed 003):
// page faults in the vsyscall page, emulated calls, SIGSEGV deliveries, process exits.
import { readComm } from './attribution.js';
import { PerfSampler } from '../native/perf-ring.js';
import { describePageFault } from '../model/page-fault.js';
import { readEventFormat, type EventFormat } from './tracefs.js';
import { PAGE_FILTER } from './counters.js';

export type EventKind = 'page_fault' | 'emulate' | 'signaldeliver' | 'procexit';

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
}

interface Source {
  kind: EventKind;
  format: EventFormat;
  filter?: string;
}

/** Which tracepoints to sample: everything for --events, only the rare ones for crash detection. */
export function eventSources(all: boolean): Source[] {
  const out: Source[] = [];
  const pf = readEventFormat('exceptions', 'page_fault_user');
  // Faults at an entry start are the emulated calls themselves (millions a second): only --events
  // samples them; crash detection needs only the others (misaligned calls, data reads).
  const entryStarts = ['0xffffffffff600000', '0xffffffffff600400', '0xffffffffff600800'].map((a) => `address != ${a}`).join(' && ');
  out.push({ kind: 'page_fault', format: pf, filter: all ? PAGE_FILTER : `${PAGE_FILTER} && ${entryStarts}` });
  if (all) {
    try {
      out.push({ kind: 'emulate', format: readEventFormat('vsyscall', 'emulate_vsyscall') });
    } catch {
      // no emulation in this kernel: nothing to sample
    }
  }
  out.push({ kind: 'signaldeliver', format: readEventFormat('signal', 'signal_deliver'), filter: 'sig == 11' });
  out.push({ kind: 'procexit', format: readEventFormat('sched', 'sched_process_exit') });
  return out;
}

export interface SamplerSet {
  samplers: { kind: EventKind; format: EventFormat; sampler: PerfSampler }[];
}

export function openSamplers(sources: Source[], scope: { pid: number; inherit: boolean } | { cgroupFd?: number }, cpus: number[]): SamplerSet {
  const samplers: SamplerSet['samplers'] = [];
  try {
    for (const s of sources) {
      for (const cpu of cpus) {
        const o = 'pid' in scope
          ? { tracepointId: s.format.id, cpu, pid: scope.pid, inherit: scope.inherit }
          : { tracepointId: s.format.id, cpu, pid: -1, ...(scope.cgroupFd !== undefined ? { cgroupFd: scope.cgroupFd } : {}) };
        samplers.push({ kind: s.kind, format: s.format, sampler: new PerfSampler({ ...o, ...(s.filter ? { filter: s.filter } : {}), pages: s.kind === 'page_fault' || s.kind === 'emulate' ? 1024 : 8 }) });
      }
    }
  } catch (e) {
    for (const x of samplers) x.sampler.close();
    throw e;
  }
  return { samplers };
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

/** Drains every sampler, decodes, and returns the events in time order plus the lost count. */
export function drainEvents(set: SamplerSet): { events: Omit<TraceEvent, 'n'>[]; lost: number } {
  const events: Omit<TraceEvent, 'n'>[] = [];
  let lost = 0;
  for (const { kind, format, sampler } of set.samplers) {
    const rd = readers(format);
    lost += sampler.visit((pid, tid, time, cpu, buf, at, size) => {
      const e: Omit<TraceEvent, 'n'> = { time, cpu, pid, tid, comm: '', kind };
      switch (kind) {
        case 'page_fault':
          e.address = rd.u64(buf, at, size, 'address');
          e.ip = rd.u64(buf, at, size, 'ip');
          e.error = Number(rd.u64(buf, at, size, 'error_code'));
          e.comm = commOf(tid);
          break;
        case 'emulate':
          e.nr = rd.i32(buf, at, size, 'nr');
          e.comm = commOf(tid);
          break;
        case 'signaldeliver':
          e.sig = rd.i32(buf, at, size, 'sig');
          e.handled = rd.u64(buf, at, size, 'sa_handler') !== 0n;
          e.code = rd.i32(buf, at, size, 'code');
          e.comm = commOf(tid);
          break;
        case 'procexit':
          e.comm = rd.str(buf, at, size, 'comm') ?? commOf(tid);
          rememberComm(tid, e.comm);
          break;
      }
      events.push(e);
    });
  }
  if (set.samplers.length > 1) events.sort((a, b) => a.time - b.time);
  return { events, lost };
}

interface Readers {
  u64(buf: Buffer, at: number, size: number, name: string): bigint;
  i32(buf: Buffer, at: number, size: number, name: string): number;
  str(buf: Buffer, at: number, size: number, name: string): string | undefined;
}

const readerCache = new WeakMap<EventFormat, Readers>();

/** Field readers straight off the ring buffer, by the format's offsets (no per-sample copies). */
function readers(f: EventFormat): Readers {
  let r = readerCache.get(f);
  if (r) return r;
  r = {
    u64(buf, at, size, name) {
      const ff = f.fields.get(name);
      if (!ff || ff.offset + 8 > size) return 0n;
      return buf.readBigUInt64LE(at + ff.offset);
    },
    i32(buf, at, size, name) {
      const ff = f.fields.get(name);
      if (!ff || ff.offset + 4 > size) return 0;
      return buf.readInt32LE(at + ff.offset);
    },
    str(buf, at, size, name) {
      const ff = f.fields.get(name);
      if (!ff || ff.offset + ff.size > size) return undefined;
      const s = buf.subarray(at + ff.offset, at + ff.offset + ff.size);
      const nul = s.indexOf(0);
      return s.subarray(0, nul < 0 ? s.length : nul).toString('utf8');
    },
  };
  readerCache.set(f, r);
  return r;
}

const SIGNALS: Record<number, string> = { 11: 'SIGSEGV', 7: 'SIGBUS', 4: 'SIGILL', 6: 'SIGABRT' };

function hexUpper(v: bigint | undefined): string {
  return (v ?? 0n).toString(16).toUpperCase();
}

function clock(t: number): string {
  // perf's clock is since boot: shown as HH:MM:SS.nnnnnnnnn of that, as sysdig shows its own clock.
  const ns = t % 1_000_000_000;
  const s = Math.floor(t / 1_000_000_000);
  const hh = String(Math.floor(s / 3600) % 24).padStart(2, '0');
  const mm = String(Math.floor(s / 60) % 60).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return `${hh}:${mm}:${ss}.${ns.toString().padStart(9, '0')}`;
}

/** One line in seed 003's sysdig format. */
export function formatEvent(e: TraceEvent): string {
  const head = `${String(e.n).padStart(10)} ${clock(e.time)} ${e.cpu} ${e.comm} (${e.tid}) >`;
  switch (e.kind) {
    case 'page_fault':
      return `${head} page_fault addr=${hexUpper(e.address)} ip=${hexUpper(e.ip)} error=0x${(e.error ?? 0).toString(16)}(${describePageFault(e.error ?? 0)})`;
    case 'emulate':
      return `${head} emulate_vsyscall nr=${e.nr}`;
    case 'signaldeliver':
      return `${head} signaldeliver spid=0 dpid=${e.tid}(${e.comm}) sig=${e.sig}(${SIGNALS[e.sig ?? 0] ?? `SIG${e.sig}`})`;
    case 'procexit':
      return `${head} procexit status=${e.status ?? 0}`;
  }
}
