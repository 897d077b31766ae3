// A trace's kernel side: what counts (the eBPF programs, or perf counters), the traced command
// started stopped (or the -p threads, the cgroup, every CPU) with counters, samplers and the task
// clock attached to it, their start in an order that misses nothing, their stop and release.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VsysError } from '../errors.js';
import { emulatedFetchError } from '../model/page-fault.js';
import { modeOfMaps } from '../model/maps-mode.js';
import { CounterSet, zeroEntries, type CounterScope } from './counters.js';
import { EventReader, SamplerSet, eventSources, rememberComm } from './events.js';
import { BpfCounters, type BpfCountersOptions } from './bpf-counters.js';
import { TaskClock } from './cpu-time.js';
import { processInfo } from './attribution.js';
import { tracefsRoot } from './tracefs.js';
import type { EventFold } from './fold.js';
import type { StopRequest, TraceOptions } from './options.js';
import type { ProcessStats, TraceSummary } from './summary.js';

/** The state of one trace. */
export interface TraceRun {
  readonly o: TraceOptions;
  readonly t0: number;
  readonly cpus: number[];
  /** The kernel has the vsyscall:emulate_vsyscall tracepoint. */
  readonly emulation: boolean;
  /** The target as the summary names it. */
  label: string;
  /** perf counters, with the process (thread group) each counts for (command, -p). */
  readonly counterSets: { pid?: number; set: CounterSet }[];
  /** The rings every sampled event goes into (two per CPU, see SamplerSet), made when first needed. */
  samplers?: SamplerSet;
  reader?: EventReader;
  /** Events the rings lost. */
  lost: number;
  bpf?: BpfCounters;
  /** Why auto counts with perf. */
  fallbackReason?: string;
  clock?: TaskClock;
  cgroupFd?: number;
  child?: ChildProcess;
  /** Resolves when the command has exited (`exit` is set then). */
  childExit?: Promise<void>;
  exit?: TraceSummary['exit'];
  /** Set when the trace is ended early. */
  stopRequest?: StopRequest;
  /** -p threads as first listed (see startCounting). */
  readonly firstListed: Set<number>;
}

export function newRun(o: TraceOptions): TraceRun {
  const emulation = hasEmulation();
  const t0 = performance.now();
  return { o, t0, cpus: onlineCpus(), emulation, label: '', counterSets: [], lost: 0, firstListed: new Set() };
}

/** A process first seen, described from /proc (see processInfo), with nothing counted yet. */
export function processStats(pid: number, comm?: string): ProcessStats {
  const info = processInfo(pid, comm);
  const s: ProcessStats = { pid, comm: info.comm, emulated: zeroEntries(), pageFaults: 0, crashes: 0 };
  if (info.exe) s.exe = info.exe;
  if (info.container) s.container = info.container;
  return s;
}

function onlineCpus(): number[] {
  return os.cpus().map((_, i) => i);
}

function hasEmulation(): boolean {
  const root = tracefsRoot();
  return root !== undefined && fs.existsSync(`${root}/events/vsyscall/emulate_vsyscall`);
}

/** Whether the CPU has Linear Address Space Separation ("lass" in /proc/cpuinfo's flags). */
function cpuHasLass(): boolean {
  try {
    return /^flags\s*:.*\blass\b/m.test(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}

async function waitStopped(pid: number): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    try {
      if (/\) T /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))) return;
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
}

/**
 * Attaches at once, so that a kernel that loads the programs but refuses to attach them is found
 * while perf can still take over. Counting starts a moment early: a command is still stopped then,
 * and a -p target's threads are members only once listed.
 */
function attached(c: BpfCounters): BpfCounters {
  try {
    c.enable();
  } catch (e) {
    c.close();
    throw e;
  }
  return c;
}

/** Opens the cgroup, then the eBPF counters unless perf is asked for (auto: perf where they are refused). */
export function openCounting(run: TraceRun): void {
  const { o } = run;
  if (o.target.k === 'cgroup') {
    try {
      run.cgroupFd = fs.openSync(o.target.path, 'r');
    } catch (e) {
      throw new VsysError('IO_FAILED', `cannot open cgroup ${o.target.path}: ${(e as Error).message}`, { path: o.target.path });
    }
  }
  const wanted = o.backend ?? 'auto';
  if (wanted !== 'perf' && run.emulation) {
    try {
      run.bpf = attached(new BpfCounters(bpfOptions(run)));
    } catch (e) {
      if (wanted === 'bpf' || !(e instanceof VsysError)) throw e; // auto: perf may still be allowed
      run.fallbackReason = e.message.split('\n')[0];
    }
  }
}

function bpfOptions(run: TraceRun): BpfCountersOptions {
  const says = modeOfMaps(fs.readFileSync('/proc/self/maps', 'utf8'));
  return {
    ...(run.cgroupFd !== undefined ? { cgroupFd: run.cgroupFd } : {}),
    modeNone: says === 'none',
    // With LASS (Linear Address Space Separation) the kernel emulates calls from a #GP, not
    // a page fault: no fault to derive, so every fault in the page is taken as it comes.
    ...((says === 'xonly' || says === 'emulate-or-native') && !cpuHasLass() ? { emulatedFetchError: emulatedFetchError(says) } : {}),
    members: run.o.target.k === 'command' || run.o.target.k === 'pids',
  };
}

/** perf counters on `scope`. With bpf counting, perf keeps only the comparison counter (system calls). */
function openCounters(run: TraceRun, scope: CounterScope, pid?: number): void {
  const set = new CounterSet(scope, run.bpf ? { emulation: false, faults: false } : { emulation: run.emulation });
  run.counterSets.push(pid === undefined ? { set } : { pid, set });
}

function sampled(run: TraceRun): SamplerSet {
  return (run.samplers ??= new SamplerSet(run.cpus));
}

/**
 * Samplers: every source for --events; for counting, perf needs the crash sources, bpf only the
 * execs and exits that name a process after what it runs.
 */
function sources(run: TraceRun): ReturnType<typeof eventSources> {
  return run.o.events ? eventSources(true) : run.bpf ? eventSources(false).filter((s) => s.kind === 'procexec' || s.kind === 'procexit') : eventSources(false);
}

/** CPU time of the traced tasks, for the cost's share; a kernel refusing it only loses the share. */
function clockOn(run: TraceRun, scopes: CounterScope[]): void {
  try {
    run.clock = new TaskClock(scopes);
  } catch {
    run.clock = undefined;
  }
}

/** Starts the command (stopped) or finds the target's threads, and opens what watches them. */
export async function attachTarget(run: TraceRun, fold: EventFold): Promise<void> {
  const t = run.o.target;
  switch (t.k) {
    case 'command':
      return attachCommand(run, fold, t.argv);
    case 'pids':
      return attachPids(run, t.pids);
    case 'cgroup':
    case 'all':
      run.label = t.k === 'cgroup' ? `cgroup ${t.path}` : 'all processes';
      return attachCpus(run);
  }
}

async function attachCommand(run: TraceRun, fold: EventFold, argv: string[]): Promise<void> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new VsysError('USAGE', 'trace: give a command after --');
  run.label = argv.join(' ');
  // Start it stopped, attach with inheritance, then let it run: nothing it does is missed.
  const child = spawn('/bin/sh', ['-c', 'kill -STOP $$; exec "$0" "$@"', cmd, ...args], { stdio: run.o.stdio ?? 'inherit' });
  run.child = child;
  const pid = child.pid;
  if (pid === undefined) throw new VsysError('CHILD_FAILED', `cannot start ${cmd}`);
  run.childExit = new Promise((resolve) => child.on('exit', (code, signal) => {
    run.exit = { code, signal };
    resolve();
  }));
  await waitStopped(pid);
  // The wrapper is still `sh` here; name the process after the command it becomes.
  const comm = path.basename(cmd).slice(0, 15);
  fold.name({ pid, comm, exe: cmd, emulated: zeroEntries(), pageFaults: 0, crashes: 0 });
  rememberComm(pid, comm);
  run.bpf?.addMembers([pid]);
  openCounters(run, { pid, inherit: true }, pid);
  sampled(run).open(sources(run), { pid, inherit: true });
  clockOn(run, [{ pid, inherit: true }]);
}

function attachPids(run: TraceRun, pids: number[]): void {
  run.label = `pid ${pids.join(',')}`;
  for (const pid of pids) {
    let tids: number[];
    try {
      tids = fs.readdirSync(`/proc/${pid}/task`).map(Number);
    } catch {
      throw new VsysError('PROC_READ_FAILED', `no process ${pid}`);
    }
    // Counts are kept per process (thread group): a thread id given here stands for its process.
    const tgid = Number(/^Tgid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? pid);
    run.bpf?.addMembers(tids);
    for (const t of tids) run.firstListed.add(t);
    for (const tid of tids) {
      openCounters(run, { pid: tid, inherit: true }, tgid);
      sampled(run).open(sources(run), { pid: tid, inherit: true });
    }
  }
  clockOn(run, pids.flatMap((pid) => fs.readdirSync(`/proc/${pid}/task`).map((t) => ({ pid: Number(t), inherit: true }))));
}

/** A cgroup or every process: counters and samplers per CPU. */
function attachCpus(run: TraceRun): void {
  const { cgroupFd } = run;
  for (const cpu of run.cpus) openCounters(run, cgroupFd === undefined ? { cpu } : { cpu, cgroupFd });
  // A cgroup's task-clock counts its tasks' time on each CPU; a CPU's alone would be wall time.
  if (cgroupFd !== undefined) clockOn(run, run.cpus.map((cpu) => ({ cpu, cgroupFd })));
  const scope = cgroupFd === undefined ? {} : { cgroupFd };
  if (run.o.events) sampled(run).open(eventSources(true), scope);
  else if (!run.bpf) {
    // perf counters are not per process: attribution needs samples of every emulated call.
    sampled(run).open(eventSources(true).filter((s) => s.kind !== 'page_fault' || s.filter?.includes('!=')), scope);
  }
}

/** Counters first, samplers after (see stopCounting), then the command is let go. */
export function startCounting(run: TraceRun): void {
  for (const c of run.counterSets) c.set.enable();
  run.clock?.enable();
  if (run.bpf && run.o.target.k === 'pids') relistPids(run.bpf, run.o.target.pids, run.firstListed);
  run.samplers?.enable();
  if (run.child?.pid !== undefined) process.kill(run.child.pid, 'SIGCONT');
}

/**
 * Threads started between the first listing and the members' insertion: list them again.
 * Threads listed then that have ended since left no exit to remove them: remove them here,
 * or a process reusing the id later would be counted.
 */
function relistPids(bpf: BpfCounters, pids: number[], firstListed: Set<number>): void {
  const listed = new Set<number>();
  for (const pid of pids) {
    try {
      for (const t of fs.readdirSync(`/proc/${pid}/task`).map(Number)) listed.add(t);
    } catch {
      // it has ended meanwhile
    }
  }
  bpf.addMembers([...listed]);
  bpf.removeMembers([...firstListed].filter((t) => !listed.has(t) && !fs.existsSync(`/proc/${t}`)));
}

/**
 * Samplers stop before counters (they started after them), so every sampled event was also
 * counted: per-process figures from samples never exceed the exact totals.
 */
export function stopCounting(run: TraceRun): void {
  run.samplers?.disable();
  for (const c of run.counterSets) c.set.disable();
  run.clock?.disable();
  run.bpf?.disable();
}

export function closeRun(run: TraceRun): void {
  for (const c of run.counterSets) c.set.close();
  run.clock?.close();
  run.samplers?.close();
  run.bpf?.close();
  if (run.cgroupFd !== undefined) fs.closeSync(run.cgroupFd);
}
