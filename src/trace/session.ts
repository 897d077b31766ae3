// `vsys trace` as a library: attach counters (exact counts) and samplers (events, attribution,
// crashes) to a command, some pids, a cgroup or the whole system; poll; summarise per process.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VsysError } from '../errors.js';
import { CounterSet, addCounts, entryOfNr, zeroCounts, zeroEntries, type Counts, type CounterScope, type EntryKey } from './counters.js';
import { EventReader, SamplerSet, eventSources, rememberComm, type TraceEvent } from './events.js';
import { BpfCounters, type BpfDropped } from './bpf-counters.js';
import { modeOfMaps } from '../model/maps-mode.js';
import { emulatedFetchError } from '../model/page-fault.js';
import { nameAfterExec, processInfo, type Container, type SeenNames } from './attribution.js';
import { TaskClock } from './cpu-time.js';
import { tracefsProblem, tracefsRoot } from './tracefs.js';

export type TraceTarget =
  | { k: 'command'; argv: string[] }
  | { k: 'pids'; pids: number[] }
  | { k: 'cgroup'; path: string }
  | { k: 'all' };

export interface TraceOptions {
  target: TraceTarget;
  /** Stream every event (sysdig style) through onEvent. */
  events?: boolean;
  onEvent?: (e: TraceEvent) => void;
  /** Seconds between onInterval summaries. */
  intervalS?: number;
  onInterval?: (s: TraceSummary) => void;
  /** Stop after this many seconds (pids/cgroup/all); a command runs to its end. */
  durationS?: number;
  /**
   * Resolves when the trace must end early (Ctrl-C, an output closed). A command still running is
   * then given `graceS` seconds (default 0) to end by itself (a terminal's Ctrl-C reaches it too),
   * then sent `signal` (default SIGTERM), and SIGKILL a second later.
   */
  stop?: Promise<StopRequest | void>;
  /** The traced command's stdio (default inherit). */
  stdio?: 'inherit' | 'ignore' | 'pipe';
  /**
   * How counts are taken: 'bpf' (raw-tracepoint programs, exact per process, the cheapest hook),
   * 'perf' (perf counters on the tracepoints), or 'auto' (bpf when the kernel allows, else perf).
   */
  backend?: 'auto' | 'bpf' | 'perf';
  /** ns per emulated call and per vDSO call, for the cost line. */
  costNs?: { emulated: number; vdso: number; source: string };
}

export interface StopRequest {
  graceS?: number;
  signal?: NodeJS.Signals;
}

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

export interface TraceSummary {
  target: string;
  seconds: number;
  counts: Counts;
  /** Per process: exact from counters (command, pids), or from samples (cgroup, all). */
  processes: ProcessStats[];
  /** The same, summed per container (processes outside any container are left out). */
  containers: ContainerStats[];
  crashes: { pid: number; tid: number; comm: string; address: string; ip: string; error: number }[];
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

function stats(pid: number, comm?: string): ProcessStats {
  const info = processInfo(pid, comm);
  const s: ProcessStats = { pid, comm: info.comm, emulated: zeroEntries(), pageFaults: 0, crashes: 0 };
  if (info.exe) s.exe = info.exe;
  if (info.container) s.container = info.container;
  return s;
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

const sleep = (s: number) => new Promise<void>((r) => setTimeout(r, s * 1000).unref());

/** Ends a command the trace was stopped early for: its grace, then the signal, then SIGKILL. */
async function endChild(child: ReturnType<typeof spawn>, exited: Promise<void>, r: StopRequest): Promise<void> {
  const ended = exited.then(() => true);
  if (r.graceS && await Promise.race([ended, sleep(r.graceS).then(() => false)])) return;
  child.kill(r.signal ?? 'SIGTERM');
  if (await Promise.race([ended, sleep(1).then(() => false)])) return;
  child.kill('SIGKILL');
  await exited;
}

export async function runTrace(o: TraceOptions): Promise<TraceSummary> {
  const problem = tracefsProblem();
  if (problem) throw problem;
  const emulation = hasEmulation();
  const t0 = performance.now();
  const cpus = onlineCpus();
  const counterSets: { pid?: number; set: CounterSet }[] = [];
  // The rings every sampled event goes into (two per CPU, see SamplerSet), made when first needed.
  let samplers: SamplerSet | undefined;
  let reader: EventReader | undefined;
  const sampled = () => (samplers ??= new SamplerSet(cpus));
  let child: ReturnType<typeof spawn> | undefined;
  let cgroupFd: number | undefined;
  let exit: TraceSummary['exit'];
  let childExit: Promise<void> | undefined;
  let stopRequest: StopRequest | undefined;
  let label = '';
  const perPid = new Map<number, ProcessStats>();
  const crashes: TraceSummary['crashes'] = [];
  const lastFault = new Map<number, TraceEvent>();
  const handledFault = new Map<number, TraceEvent>();
  const firstListed = new Set<number>();
  const pendingSegv = new Set<number>();
  let lost = 0;
  let seq = 0;
  const wanted = o.backend ?? 'auto';
  let bpf: BpfCounters | undefined;
  let fallbackReason: string | undefined;
  let clock: TaskClock | undefined;
  // What the kernel said of each process's names (by pid), and each task's name since its exec.
  const seen = new Map<number, SeenNames>();
  const seenOf = (pid: number) => seen.get(pid) ?? seen.set(pid, {}).get(pid)!;
  const execName = new Map<number, string>();

  const open = (scope: CounterScope, pid?: number) => {
    // With bpf counting, perf keeps only the comparison counter (system calls).
    const set = new CounterSet(scope, bpf ? { emulation: false, faults: false } : { emulation });
    counterSets.push(pid === undefined ? { set } : { pid, set });
  };
  /**
   * Samplers: every source for --events; for counting, perf needs the crash sources, bpf only the
   * execs and exits that name a process after what it runs.
   */
  const sources = () => (o.events ? eventSources(true) : bpf ? eventSources(false).filter((s) => s.kind === 'procexec' || s.kind === 'procexit') : eventSources(false));
  /** CPU time of the traced tasks, for the cost's share; a kernel refusing it only loses the share. */
  const clockOn = (scopes: CounterScope[]) => {
    try {
      clock = new TaskClock(scopes);
    } catch {
      clock = undefined;
    }
  };

  try {
    if (o.target.k === 'cgroup') {
      try {
        cgroupFd = fs.openSync(o.target.path, 'r');
      } catch (e) {
        throw new VsysError('IO_FAILED', `cannot open cgroup ${o.target.path}: ${(e as Error).message}`, { path: o.target.path });
      }
    }
    if (wanted !== 'perf' && emulation) {
      try {
        const says = modeOfMaps(fs.readFileSync('/proc/self/maps', 'utf8'));
        bpf = attached(new BpfCounters({
          ...(cgroupFd !== undefined ? { cgroupFd } : {}),
          modeNone: says === 'none',
          // With LASS (Linear Address Space Separation) the kernel emulates calls from a #GP, not
          // a page fault: no fault to derive, so every fault in the page is taken as it comes.
          ...((says === 'xonly' || says === 'emulate-or-native') && !cpuHasLass() ? { emulatedFetchError: emulatedFetchError(says) } : {}),
          members: o.target.k === 'command' || o.target.k === 'pids',
        }));
      } catch (e) {
        if (wanted === 'bpf' || !(e instanceof VsysError)) throw e; // auto: perf may still be allowed
        fallbackReason = e.message.split('\n')[0];
      }
    }
    switch (o.target.k) {
      case 'command': {
        const [cmd, ...args] = o.target.argv;
        if (!cmd) throw new VsysError('USAGE', 'trace: give a command after --');
        label = o.target.argv.join(' ');
        // Start it stopped, attach with inheritance, then let it run: nothing it does is missed.
        child = spawn('/bin/sh', ['-c', 'kill -STOP $$; exec "$0" "$@"', cmd, ...args], { stdio: o.stdio ?? 'inherit' });
        const pid = child.pid;
        if (pid === undefined) throw new VsysError('CHILD_FAILED', `cannot start ${cmd}`);
        const c = child;
        childExit = new Promise((resolve) => c.on('exit', (code, signal) => {
          exit = { code, signal };
          resolve();
        }));
        await waitStopped(pid);
        // The wrapper is still `sh` here; name the process after the command it becomes.
        perPid.set(pid, { pid, comm: path.basename(cmd).slice(0, 15), exe: cmd, emulated: zeroEntries(), pageFaults: 0, crashes: 0 });
        rememberComm(pid, path.basename(cmd).slice(0, 15));
        bpf?.addMembers([pid]);
        open({ pid, inherit: true }, pid);
        sampled().open(sources(), { pid, inherit: true });
        clockOn([{ pid, inherit: true }]);
        break;
      }
      case 'pids': {
        label = `pid ${o.target.pids.join(',')}`;
        for (const pid of o.target.pids) {
          let tids: number[];
          try {
            tids = fs.readdirSync(`/proc/${pid}/task`).map(Number);
          } catch {
            throw new VsysError('PROC_READ_FAILED', `no process ${pid}`);
          }
          // Counts are kept per process (thread group): a thread id given here stands for its process.
          const tgid = Number(/^Tgid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? pid);
          bpf?.addMembers(tids);
          for (const t of tids) firstListed.add(t);
          for (const tid of tids) {
            open({ pid: tid, inherit: true }, tgid);
            sampled().open(sources(), { pid: tid, inherit: true });
          }
        }
        clockOn(o.target.pids.flatMap((pid) => fs.readdirSync(`/proc/${pid}/task`).map((t) => ({ pid: Number(t), inherit: true }))));
        break;
      }
      case 'cgroup':
      case 'all': {
        label = o.target.k === 'cgroup' ? `cgroup ${o.target.path}` : 'all processes';
        for (const cpu of cpus) open(cgroupFd === undefined ? { cpu } : { cpu, cgroupFd });
        // A cgroup's task-clock counts its tasks' time on each CPU; a CPU's alone would be wall time.
        if (cgroupFd !== undefined) clockOn(cpus.map((cpu) => ({ cpu, cgroupFd: cgroupFd as number })));
        const scope = cgroupFd === undefined ? {} : { cgroupFd };
        if (o.events) sampled().open(eventSources(true), scope);
        else if (!bpf) {
          // perf counters are not per process: attribution needs samples of every emulated call.
          sampled().open(eventSources(true).filter((s) => s.kind !== 'page_fault' || s.filter?.includes('!=')), scope);
        }
        break;
      }
    }

    const drain = (final = false) => {
      if (!samplers) return;
      reader ??= new EventReader(samplers);
      lost += reader.drain(final, (e) => {
        e.n = ++seq;
        // In time order here: an exec renames its task for every later event.
        if (e.kind === 'procexec') {
          (seenOf(e.pid).execs ??= []).push({ filename: e.filename ?? '?', comm: e.comm });
          execName.set(e.tid, e.comm);
        } else if (e.kind !== 'procexit') {
          e.comm = execName.get(e.tid) ?? e.comm;
        } else {
          execName.delete(e.tid);
          if (e.tid === e.pid) seenOf(e.pid).exited = e.comm;
        }
        if (e.kind === 'procexit' && pendingSegv.has(e.tid)) e.status = 11;
        if (e.kind === 'procexit' && !pendingSegv.has(e.tid) && !o.events) return;
        if (e.kind === 'page_fault') lastFault.set(e.tid, e);
        // An emulated call's fault is dealt with: no signal follows it.
        if (e.kind === 'emulate' && (e.nr ?? -1) >= 0) lastFault.delete(e.tid);
        if (e.kind === 'signaldeliver' && e.sig === 11 && e.handled) {
          // Caught: not a crash, unless the program raises SIGSEGV again (as crash reporters do).
          const f = lastFault.get(e.tid);
          if (f) handledFault.set(e.tid, f);
          lastFault.delete(e.tid);
        }
        if (e.kind === 'signaldeliver' && e.sig === 11 && !e.handled) {
          pendingSegv.add(e.tid);
          const f = lastFault.get(e.tid) ?? ((e.code ?? 1) <= 0 ? handledFault.get(e.tid) : undefined);
          lastFault.delete(e.tid);
          handledFault.delete(e.tid);
          if (f && !bpf) {
            crashes.push({ pid: e.pid, tid: e.tid, comm: e.comm, address: `0x${(f.address ?? 0n).toString(16)}`, ip: `0x${(f.ip ?? 0n).toString(16)}`, error: f.error ?? 0 });
            const p = perPid.get(e.pid) ?? stats(e.pid, e.comm);
            p.crashes++;
            perPid.set(e.pid, p);
          }
        }
        if (e.kind === 'procexit') rememberComm(e.tid, e.comm);
        if (!bpf && (o.target.k === 'all' || o.target.k === 'cgroup') && e.kind === 'emulate') {
          seenOf(e.pid).counted ??= e.comm;
          const p = perPid.get(e.pid) ?? stats(e.pid, e.comm);
          const k = entryOfNr(e.nr ?? 0);
          p.emulated[k]++;
          perPid.set(e.pid, p);
        }
        if (!bpf && (o.target.k === 'all' || o.target.k === 'cgroup') && e.kind === 'page_fault') {
          const p = perPid.get(e.pid) ?? stats(e.pid, e.comm);
          p.pageFaults++;
          perPid.set(e.pid, p);
        }
        if (o.events) o.onEvent?.(e);
      });
    };

    const summary = (): TraceSummary => {
      let counts = zeroCounts();
      // Copies: a summary adds counter totals into these, and --interval takes one every S seconds.
      const processes = new Map<number, ProcessStats>([...perPid].map(([pid, p]) => [pid, { ...p, emulated: { ...p.emulated }, ...(p.faultsByError ? { faultsByError: { ...p.faultsByError } } : {}) }]));
      for (const c of counterSets) {
        const got = c.set.read();
        counts = addCounts(counts, got);
        if (c.pid !== undefined) {
          const p = processes.get(c.pid) ?? stats(c.pid);
          for (const k of Object.keys(got.emulated) as EntryKey[]) p.emulated[k] += got.emulated[k];
          p.pageFaults += got.pageFaults;
          processes.set(c.pid, p);
        }
      }
      let dropped: BpfDropped | undefined;
      const crashList = [...crashes];
      const counted = new Map<number, string>();
      if (bpf) {
        const got = bpf.read();
        dropped = got.dropped;
        for (const [pid, c] of got.processes) {
          if (c.comm !== '?') counted.set(pid, c.comm);
          const p = processes.get(pid) ?? stats(pid, c.comm);
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
        for (const c of bpf.crashes()) {
          crashList.push({ pid: c.pid, tid: c.tid, comm: c.comm, address: `0x${c.address.toString(16)}`, ip: `0x${c.ip.toString(16)}`, error: c.error });
        }
      }
      for (const [pid, p] of processes) {
        const names = seen.get(pid);
        const kernel = counted.get(pid);
        if (!names && kernel === undefined) continue;
        const named = nameAfterExec(p, { ...names, ...(kernel !== undefined ? { counted: kernel } : {}) });
        p.comm = named.comm;
        if (named.exe !== undefined) p.exe = named.exe;
      }
      const seconds = (performance.now() - t0) / 1000;
      const calls = Object.values(counts.emulated).reduce((a, b) => a + b, 0);
      if (bpf && !counts.faultsByError) counts.faultsByError = {};
      const shown = [...processes.values()].filter((p) => p.crashes > 0 || p.pageFaults > 0 || Object.values(p.emulated).some((v) => v > 0) || o.target.k === 'command' || o.target.k === 'pids');
      const s: TraceSummary = {
        target: label, seconds, counts,
        processes: shown,
        containers: perContainer(shown),
        crashes: crashList, lostEvents: lost,
        backend: bpf ? { name: 'bpf', dropped: dropped ?? { counts: 0, members: 0, records: 0, skipped: 0 } } : { name: 'perf', ...(fallbackReason ? { fallbackReason } : {}) },
      };
      if (o.costNs) {
        const per = Math.max(0, o.costNs.emulated - o.costNs.vdso);
        s.cost = { cpuSeconds: (calls * per) / 1e9, perCallNs: per, source: o.costNs.source };
      }
      if (clock) {
        s.cpuSeconds = clock.seconds();
        // The cost is an estimate from bench figures: where it passes the CPU time measured, all of it was lost.
        if (s.cost && s.cpuSeconds > 0) s.cost.share = Math.min(1, s.cost.cpuSeconds / s.cpuSeconds);
      }
      if (exit) s.exit = exit;
      if (stopRequest) s.stopped = true;
      return s;
    };

    for (const c of counterSets) c.set.enable();
    clock?.enable();
    if (bpf && o.target.k === 'pids') {
      // Threads started between the first listing and the members' insertion: list them again.
      // Threads listed then that have ended since left no exit to remove them: remove them here,
      // or a process reusing the id later would be counted.
      const listed = new Set<number>();
      for (const pid of o.target.pids) {
        try {
          for (const t of fs.readdirSync(`/proc/${pid}/task`).map(Number)) listed.add(t);
        } catch {
          // it has ended meanwhile
        }
      }
      bpf.addMembers([...listed]);
      bpf.removeMembers([...firstListed].filter((t) => !listed.has(t) && !fs.existsSync(`/proc/${t}`)));
    }
    samplers?.enable();
    if (child?.pid !== undefined) process.kill(child.pid, 'SIGCONT');

    const ticker = setInterval(() => drain(), 10);
    let intervalTimer: NodeJS.Timeout | undefined;
    if (o.intervalS && o.onInterval) intervalTimer = setInterval(() => o.onInterval?.(summary()), o.intervalS * 1000);
    try {
      const waits: Promise<void>[] = [];
      if (childExit) waits.push(childExit);
      else if (o.durationS) waits.push(new Promise((r) => setTimeout(r, o.durationS! * 1000)));
      if (o.stop) waits.push(o.stop.then((r) => { stopRequest = r ?? {}; }));
      if (waits.length === 0) throw new VsysError('USAGE', 'trace: give --duration, or stop with Ctrl-C');
      await Promise.race(waits);
      if (child && childExit && !exit && stopRequest) await endChild(child, childExit, stopRequest);
    } finally {
      clearInterval(ticker);
      if (intervalTimer) clearInterval(intervalTimer);
    }
    // Samplers stop before counters (they started after them), so every sampled event was also
    // counted: per-process figures from samples never exceed the exact totals.
    samplers?.disable();
    for (const c of counterSets) c.set.disable();
    clock?.disable();
    bpf?.disable();
    drain(true);
    // A ring still full at the end never got the LOST record for what it dropped last: the
    // kernel's own count of lost samples covers those too.
    lost = Math.max(lost, samplers?.lostSamples() ?? 0);
    // The command itself died of SIGSEGV: a crash even if its fault sample was not kept.
    if (!bpf && child && exit?.signal === 'SIGSEGV' && child.pid !== undefined && !crashes.some((c) => c.pid === child!.pid)) {
      const f = lastFault.get(child.pid);
      const p = perPid.get(child.pid);
      if (p) p.crashes++;
      crashes.push({ pid: child.pid, tid: child.pid, comm: f?.comm ?? p?.comm ?? o.target.k, address: f ? `0x${(f.address ?? 0n).toString(16)}` : 'unknown', ip: f ? `0x${(f.ip ?? 0n).toString(16)}` : 'unknown', error: f?.error ?? 0 });
    }
    const final = summary();
    // With bpf, a crash is recorded from a kept fault; an emulated call the kernel refused (a bad
    // pointer for its result) gets SIGSEGV with no fault kept. If the command died of SIGSEGV after
    // using the page, say so, with the address unknown.
    if (bpf && child?.pid !== undefined && exit?.signal === 'SIGSEGV' && !final.crashes.some((c) => c.pid === child!.pid)) {
      const p = final.processes.find((x) => x.pid === child!.pid);
      if (p && (p.pageFaults > 0 || Object.values(p.emulated).some((v) => v > 0))) {
        final.crashes.push({ pid: p.pid, tid: p.pid, comm: p.comm, address: 'unknown', ip: 'unknown', error: 0 });
        p.crashes++;
      }
    }
    return final;
  } finally {
    for (const c of counterSets) c.set.close();
    clock?.close();
    samplers?.close();
    bpf?.close();
    if (cgroupFd !== undefined) fs.closeSync(cgroupFd);
  }
}
