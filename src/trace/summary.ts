// What a trace found (per process, per container, crashes, cost) and how a summary is assembled
// from the folded events and the counters' readings. Pure: the session reads the kernel, this adds up.
import { addCounts, zeroCounts, zeroEntries, type Counts, type EntryKey } from './counters.js';
import { nameAfterExec, type Container, type SeenNames } from './attribution.js';
import type { BpfCrash, BpfDropped, BpfProcessCounts } from './bpf-counters.js';

export interface ProcessStats {
  pid: number;
  comm: string;
  exe?: string;
  container?: Container;
  emulated: Record<EntryKey, number>;
  pageFaults: number;
  /** In-page faults by error code, where the counter sees codes (bpf). */
  faultsByError?: Record<string, number>;
  crashes: number;
}

/** What the processes of one container did. */
export interface ContainerStats {
  container: Container;
  pids: number[];
  emulated: Record<EntryKey, number>;
  pageFaults: number;
  crashes: number;
}

/** A SIGSEGV after a fault in the page; address and ip 'unknown' when no fault was kept. */
export interface TraceCrash {
  pid: number;
  tid: number;
  comm: string;
  address: string;
  ip: string;
  error: number;
}

export interface TraceSummary {
  target: string;
  seconds: number;
  counts: Counts;
  /** Per process: exact from counters (command, pids), or from samples (cgroup, all). */
  processes: ProcessStats[];
  /** The same, summed per container (processes outside any container are left out). */
  containers: ContainerStats[];
  crashes: TraceCrash[];
  lostEvents: number;
  /** What counted: the eBPF programs or perf counters (and why not bpf, when auto fell back). */
  backend: { name: 'bpf' | 'perf'; fallbackReason?: string; dropped?: BpfDropped };
  /**
   * CPU time (user and kernel) the traced tasks used while traced, from perf's task-clock: the
   * command and its descendants, the -p processes, or the cgroup's tasks (none for -a).
   */
  cpuSeconds?: number;
  /** `share`: cpuSeconds of the cost over the traced tasks' cpuSeconds. */
  cost?: { cpuSeconds: number; perCallNs: number; source: string; share?: number };
  exit?: { code: number | null; signal: string | null };
  /** Set when the trace was ended early (stop resolved) rather than by its command or duration. */
  stopped?: boolean;
}

/** How a process first seen is described: a session reads /proc; tests give a plain record. */
export type Describe = (pid: number, comm?: string) => ProcessStats;

/** A process with nothing counted yet, named `comm` ('?' when unknown). */
export function emptyStats(pid: number, comm?: string): ProcessStats {
  return { pid, comm: comm ?? '?', emulated: zeroEntries(), pageFaults: 0, crashes: 0 };
}

/** The one way a crash record is built: from the fault kept for it, or without one ('unknown'). */
export function makeCrash(pid: number, tid: number, comm: string, fault?: { address?: bigint; ip?: bigint; error?: number }): TraceCrash {
  const hex = (v: bigint | undefined) => (fault ? `0x${(v ?? 0n).toString(16)}` : 'unknown');
  return { pid, tid, comm, address: hex(fault?.address), ip: hex(fault?.ip), error: fault?.error ?? 0 };
}

/** Per-container sums of the processes' figures. */
export function perContainer(processes: ProcessStats[]): ContainerStats[] {
  const by = new Map<string, ContainerStats>();
  for (const p of processes) {
    if (!p.container) continue;
    const key = `${p.container.runtime}:${p.container.id}`;
    let c = by.get(key);
    if (!c) {
      c = { container: p.container, pids: [], emulated: zeroEntries(), pageFaults: 0, crashes: 0 };
      by.set(key, c);
    }
    c.pids.push(p.pid);
    for (const k of Object.keys(c.emulated) as EntryKey[]) c.emulated[k] += p.emulated[k];
    c.pageFaults += p.pageFaults;
    c.crashes += p.crashes;
  }
  return [...by.values()];
}

/** What the event fold kept (fold.ts): per-process figures from samples, crashes, names seen. */
export interface Folded {
  readonly perPid: ReadonlyMap<number, ProcessStats>;
  readonly crashes: readonly TraceCrash[];
  readonly seen: ReadonlyMap<number, SeenNames>;
}

/** What the kernel said when the summary was taken. */
export interface Readings {
  /** Each perf counter set's totals, with the process they count for (command, -p). */
  counters: { pid?: number; counts: Counts }[];
  /** The eBPF counters' maps, when they counted. */
  bpf?: { processes: Map<number, BpfProcessCounts>; dropped: BpfDropped; crashes: BpfCrash[] };
  seconds: number;
  cpuSeconds?: number;
}

/** What the session knows of the run itself. */
export interface RunFacts {
  target: string;
  /** A command or -p target: its processes are shown even when they did nothing. */
  showAll: boolean;
  lostEvents: number;
  fallbackReason?: string;
  costNs?: { emulated: number; vdso: number; source: string };
  exit?: TraceSummary['exit'];
  stopped: boolean;
  describe: Describe;
}

/** The summary: the fold's figures plus the counters', each process named after what it exec'd. */
export function assembleSummary(folded: Folded, r: Readings, run: RunFacts): TraceSummary {
  // Copies: a summary adds counter totals into these, and --interval takes one every S seconds.
  const processes = new Map<number, ProcessStats>([...folded.perPid].map(([pid, p]) => [pid, { ...p, emulated: { ...p.emulated }, ...(p.faultsByError ? { faultsByError: { ...p.faultsByError } } : {}) }]));
  let counts = zeroCounts();
  for (const c of r.counters) {
    counts = addCounts(counts, c.counts);
    if (c.pid !== undefined) {
      const p = processes.get(c.pid) ?? run.describe(c.pid);
      for (const k of Object.keys(c.counts.emulated) as EntryKey[]) p.emulated[k] += c.counts.emulated[k];
      p.pageFaults += c.counts.pageFaults;
      processes.set(c.pid, p);
    }
  }
  const crashList = [...folded.crashes];
  const counted = new Map<number, string>();
  if (r.bpf) {
    addBpfCounts(processes, counts, counted, r.bpf.processes, run.describe);
    for (const c of r.bpf.crashes) crashList.push(makeCrash(c.pid, c.tid, c.comm, c));
  }
  nameProcesses(processes, folded.seen, counted);
  const calls = Object.values(counts.emulated).reduce((a, b) => a + b, 0);
  if (r.bpf && !counts.faultsByError) counts.faultsByError = {};
  const shown = [...processes.values()].filter((p) => p.crashes > 0 || p.pageFaults > 0 || Object.values(p.emulated).some((v) => v > 0) || run.showAll);
  const s: TraceSummary = {
    target: run.target, seconds: r.seconds, counts,
    processes: shown,
    containers: perContainer(shown),
    crashes: crashList, lostEvents: run.lostEvents,
    backend: r.bpf ? { name: 'bpf', dropped: r.bpf.dropped } : { name: 'perf', ...(run.fallbackReason ? { fallbackReason: run.fallbackReason } : {}) },
  };
  if (run.costNs) {
    const per = Math.max(0, run.costNs.emulated - run.costNs.vdso);
    s.cost = { cpuSeconds: (calls * per) / 1e9, perCallNs: per, source: run.costNs.source };
  }
  if (r.cpuSeconds !== undefined) {
    s.cpuSeconds = r.cpuSeconds;
    // The cost is an estimate from bench figures: where it passes the CPU time measured, all of it was lost.
    if (s.cost && s.cpuSeconds > 0) s.cost.share = Math.min(1, s.cost.cpuSeconds / s.cpuSeconds);
  }
  if (run.exit) s.exit = run.exit;
  if (run.stopped) s.stopped = true;
  return s;
}

/** Adds the eBPF counters' per-process figures into `processes` and `counts`; notes the comm each was counted under. */
function addBpfCounts(processes: Map<number, ProcessStats>, counts: Counts, counted: Map<number, string>, got: Map<number, BpfProcessCounts>, describe: Describe): void {
  for (const [pid, c] of got) {
    if (c.comm !== '?') counted.set(pid, c.comm);
    const p = processes.get(pid) ?? describe(pid, c.comm);
    for (const k of Object.keys(c.emulated) as EntryKey[]) {
      p.emulated[k] += c.emulated[k];
      counts.emulated[k] += c.emulated[k];
    }
    const faults = [...c.faults.values()].reduce((a, b) => a + b, 0);
    p.pageFaults += faults;
    counts.pageFaults += faults;
    for (const [code, n] of c.faults) {
      const k = `0x${code.toString(16)}`;
      p.faultsByError = { ...p.faultsByError, [k]: (p.faultsByError?.[k] ?? 0) + n };
      counts.faultsByError = { ...counts.faultsByError, [k]: (counts.faultsByError?.[k] ?? 0) + n };
    }
    p.crashes += c.crashes;
    processes.set(pid, p);
  }
}

/** Names each process after what it exec'd, from the names the events and the counters saw. */
function nameProcesses(processes: Map<number, ProcessStats>, seen: ReadonlyMap<number, SeenNames>, counted: Map<number, string>): void {
  for (const [pid, p] of processes) {
    const names = seen.get(pid);
    const kernel = counted.get(pid);
    if (!names && kernel === undefined) continue;
    const named = nameAfterExec(p, { ...names, ...(kernel !== undefined ? { counted: kernel } : {}) });
    p.comm = named.comm;
    if (named.exe !== undefined) p.exe = named.exe;
  }
}

/**
 * With eBPF, a crash is recorded from a kept fault; an emulated call the kernel refused (a bad
 * pointer for its result) gets SIGSEGV with no fault kept. If the command (`pid`) died of SIGSEGV
 * after using the page, say so, with the address unknown.
 */
export function addRefusedCallCrash(s: TraceSummary, pid: number): void {
  if (s.crashes.some((c) => c.pid === pid)) return;
  const p = s.processes.find((x) => x.pid === pid);
  if (p && (p.pageFaults > 0 || Object.values(p.emulated).some((v) => v > 0))) {
    s.crashes.push(makeCrash(p.pid, p.pid, p.comm));
    p.crashes++;
  }
}
