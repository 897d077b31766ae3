// The pure part of a trace: sampled events, in time order, folded into per-process figures,
// crashes and the names each process had. No I/O and no kernel: a session feeds it what its rings
// give out, a test feeds it invented sequences.
import type { SeenNames } from './attribution.js';
import { entryOfNr } from './counters.js';
import type { TraceEvent } from './events.js';
import { SIGSEGV } from './signals.js';
import { emptyStats, makeCrash, type Describe, type Folded, type ProcessStats, type TraceCrash } from './summary.js';

export interface FoldOptions {
  /** The eBPF counters count: crashes and per-process figures come from their maps, not from samples. */
  bpf: boolean;
  /** Per-process figures come from the samples (perf counting a cgroup or all processes). */
  countSamples: boolean;
  /** Every event is wanted (--events): exits are kept, not only those of a thread with a fatal SIGSEGV. */
  events: boolean;
  /** How a process first seen is described (default: its comm and nothing counted). */
  describe?: Describe;
}

export class EventFold implements Folded {
  readonly perPid = new Map<number, ProcessStats>();
  readonly crashes: TraceCrash[] = [];
  /** What the kernel said of each process's names (by pid). */
  readonly seen = new Map<number, SeenNames>();
  /** Each task's name since its exec. */
  private readonly execName = new Map<number, string>();
  /** Each thread's last fault in the page not yet dealt with (emulated, caught, or its crash). */
  private readonly lastFault = new Map<number, TraceEvent>();
  /** A fault whose SIGSEGV a handler caught: the crash's, should the program raise SIGSEGV again. */
  private readonly handledFault = new Map<number, TraceEvent>();
  /** Threads a fatal SIGSEGV was delivered to: their exit is kept, with status SIGSEGV. */
  private readonly pendingSegv = new Set<number>();
  private readonly describe: Describe;
  private seq = 0;

  constructor(private readonly opts: FoldOptions) {
    this.describe = opts.describe ?? emptyStats;
  }

  /**
   * Folds the next event: numbers it, names it after its task's exec. Returns false for an event
   * nobody wants (an exit with no crash, unless every event is).
   */
  add(e: TraceEvent): boolean {
    e.n = ++this.seq;
    this.rename(e);
    if (e.kind === 'procexit') {
      if (this.pendingSegv.has(e.tid)) e.status = SIGSEGV;
      else if (!this.opts.events) return false;
    }
    if (e.kind === 'page_fault') this.lastFault.set(e.tid, e);
    // An emulated call's fault is dealt with: no signal follows it.
    if (e.kind === 'emulate' && (e.nr ?? -1) >= 0) this.lastFault.delete(e.tid);
    if (e.kind === 'signaldeliver' && e.sig === SIGSEGV) this.segv(e);
    if (this.opts.countSamples) this.count(e);
    return true;
  }

  /** In time order here: an exec renames its task for every later event. */
  private rename(e: TraceEvent): void {
    if (e.kind === 'procexec') {
      (this.seenOf(e.pid).execs ??= []).push({ filename: e.filename ?? '?', comm: e.comm });
      this.execName.set(e.tid, e.comm);
    } else if (e.kind !== 'procexit') {
      e.comm = this.execName.get(e.tid) ?? e.comm;
    } else {
      this.execName.delete(e.tid);
      if (e.tid === e.pid) this.seenOf(e.pid).exited = e.comm;
    }
  }

  private segv(e: TraceEvent): void {
    if (e.handled) {
      // Caught: not a crash, unless the program raises SIGSEGV again (as crash reporters do).
      const f = this.lastFault.get(e.tid);
      if (f) this.handledFault.set(e.tid, f);
      this.lastFault.delete(e.tid);
      return;
    }
    this.pendingSegv.add(e.tid);
    // Raised by the program (si_code <= 0) after a caught fault: that fault's crash.
    const f = this.lastFault.get(e.tid) ?? ((e.code ?? 1) <= 0 ? this.handledFault.get(e.tid) : undefined);
    this.lastFault.delete(e.tid);
    this.handledFault.delete(e.tid);
    if (f && !this.opts.bpf) {
      this.crashes.push(makeCrash(e.pid, e.tid, e.comm, f));
      this.statsOf(e.pid, e.comm).crashes++;
    }
  }

  /** Per-process figures from the samples themselves. */
  private count(e: TraceEvent): void {
    if (e.kind === 'emulate') {
      this.seenOf(e.pid).counted ??= e.comm;
      this.statsOf(e.pid, e.comm).emulated[entryOfNr(e.nr ?? 0)]++;
    } else if (e.kind === 'page_fault') {
      this.statsOf(e.pid, e.comm).pageFaults++;
    }
  }

  /**
   * The traced command `pid` died of SIGSEGV: a crash even if its fault sample was not kept (perf
   * counting; with eBPF, the counters' maps say, see addRefusedCallCrash). `comm` names it when
   * nothing else does.
   */
  commandDiedOfSegv(pid: number, comm: string): void {
    if (this.opts.bpf || this.crashes.some((c) => c.pid === pid)) return;
    const f = this.lastFault.get(pid);
    const p = this.perPid.get(pid);
    if (p) p.crashes++;
    this.crashes.push(makeCrash(pid, pid, f?.comm ?? p?.comm ?? comm, f));
  }

  /** Sets what a process is called before any event names it (a command started through `sh`). */
  name(p: ProcessStats): void {
    this.perPid.set(p.pid, p);
  }

  private statsOf(pid: number, comm: string): ProcessStats {
    let p = this.perPid.get(pid);
    if (!p) {
      p = this.describe(pid, comm);
      this.perPid.set(pid, p);
    }
    return p;
  }

  private seenOf(pid: number): SeenNames {
    let s = this.seen.get(pid);
    if (!s) {
      s = {};
      this.seen.set(pid, s);
    }
    return s;
  }
}

/** Folds a whole sequence of events (in time order). */
export function foldEvents(events: Iterable<TraceEvent>, opts: FoldOptions): EventFold {
  const fold = new EventFold(opts);
  for (const e of events) fold.add(e);
  return fold;
}
