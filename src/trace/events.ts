// Sampled tracepoint events, decoded with tracefs formats into sysdig-style records (seed 003):
// page faults in the vsyscall page, emulated calls, SIGSEGV deliveries, process exits.
import { readComm } from './attribution.js';
import { PerfSampler, type RawSample } from '../native/perf-ring.js';
import { describePageFault } from '../model/page-fault.js';
import { fieldString, fieldValue, readEventFormat, type EventFormat } from './tracefs.js';
import { PAGE_FILTER } from './counters.js';

export type EventKind = 'page_fault' | 'emulate' | 'signaldeliver' | 'procexit';

export interface TraceEvent {
  /** Sequence number in time order. */
  n: number;
  /** perf clock, ns since boot. */
  time: bigint;
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
        samplers.push({ kind: s.kind, format: s.format, sampler: new PerfSampler({ ...o, ...(s.filter ? { filter: s.filter } : {}), pages: s.kind === 'procexit' || s.kind === 'signaldeliver' ? 8 : 256 }) });
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
    const d = sampler.drain();
    lost += d.lost;
    for (const s of d.samples) events.push(decode(kind, format, s));
  }
  events.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  return { events, lost };
}

function decode(kind: EventKind, f: EventFormat, s: RawSample): Omit<TraceEvent, 'n'> {
  const get = (name: string): bigint => {
    const ff = f.fields.get(name);
    return ff ? fieldValue(s.raw, ff) : 0n;
  };
  const base = { time: s.time, cpu: s.cpu, pid: s.pid, tid: s.tid, kind };
  switch (kind) {
    case 'page_fault':
      return { ...base, comm: commOf(s.tid), address: get('address'), ip: get('ip'), error: Number(get('error_code')) };
    case 'emulate':
      return { ...base, comm: commOf(s.tid), nr: Number(get('nr')) };
    case 'signaldeliver':
      return { ...base, comm: commOf(s.tid), sig: Number(get('sig')) };
    case 'procexit': {
      const cf = f.fields.get('comm');
      const comm = cf ? fieldString(s.raw, cf) : commOf(s.tid);
      rememberComm(s.tid, comm);
      return { ...base, comm };
    }
  }
}

const SIGNALS: Record<number, string> = { 11: 'SIGSEGV', 7: 'SIGBUS', 4: 'SIGILL', 6: 'SIGABRT' };

function hexUpper(v: bigint | undefined): string {
  return (v ?? 0n).toString(16).toUpperCase();
}

function clock(t: bigint): string {
  // perf's clock is since boot: shown as HH:MM:SS.nnnnnnnnn of that, as sysdig shows its own clock.
  const ns = t % 1_000_000_000n;
  const s = Number(t / 1_000_000_000n);
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
