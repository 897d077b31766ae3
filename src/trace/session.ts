// `vsys trace` as a library: attach counters (exact counts) and samplers (events, attribution,
// crashes) to a command, some pids, a cgroup or the whole system; poll; summarise per process.
// The steps: target.ts sets up and tears down the kernel side, fold.ts turns the sampled events
// into figures (pure), summary.ts adds them to the counters' readings (pure).
import { VsysError } from '../errors.js';
import { EventReader, rememberComm } from './events.js';
import { EventFold } from './fold.js';
import { addRefusedCallCrash, assembleSummary, type Readings, type TraceSummary } from './summary.js';
import { attachTarget, closeRun, newRun, openCounting, processStats, startCounting, stopCounting, type TraceRun } from './target.js';
import { tracefsProblem } from './tracefs.js';
import type { StopRequest, TraceOptions } from './options.js';

export type { StopRequest, TraceOptions, TraceTarget } from './options.js';
export type { ContainerStats, ProcessStats, TraceSummary } from './summary.js';

export async function runTrace(o: TraceOptions): Promise<TraceSummary> {
  const problem = tracefsProblem();
  if (problem) throw problem;
  const run = newRun(o);
  try {
    openCounting(run);
    const fold = new EventFold({
      bpf: run.bpf !== undefined,
      countSamples: !run.bpf && (o.target.k === 'all' || o.target.k === 'cgroup'),
      events: !!o.events,
      describe: processStats,
    });
    await attachTarget(run, fold);
    startCounting(run);
    await untilDone(run, fold);
    stopCounting(run);
    drain(run, fold, true);
    // A ring still full at the end never got the LOST record for what it dropped last: the
    // kernel's own count of lost samples covers those too.
    run.lost = Math.max(run.lost, run.samplers?.lostSamples() ?? 0);
    return finalSummary(run, fold);
  } finally {
    closeRun(run);
  }
}

/** Reads the rings into the fold, in time order; what it keeps goes on to onEvent (--events). */
function drain(run: TraceRun, fold: EventFold, final = false): void {
  if (!run.samplers) return;
  run.reader ??= new EventReader(run.samplers);
  const { o } = run;
  run.lost += run.reader.drain(final, (e) => {
    if (!fold.add(e)) return;
    if (e.kind === 'procexit') rememberComm(e.tid, e.comm);
    if (o.events) o.onEvent?.(e);
  });
}

/** Drains every 10 ms and gives the interval summaries until the command ends, the duration passes or stop resolves. */
async function untilDone(run: TraceRun, fold: EventFold): Promise<void> {
  const { o } = run;
  const ticker = setInterval(() => drain(run, fold), 10);
  let intervalTimer: NodeJS.Timeout | undefined;
  if (o.intervalS && o.onInterval) intervalTimer = setInterval(() => o.onInterval?.(summarise(run, fold)), o.intervalS * 1000);
  try {
    const waits: Promise<void>[] = [];
    if (run.childExit) waits.push(run.childExit);
    else if (o.durationS) waits.push(new Promise((r) => setTimeout(r, o.durationS! * 1000)));
    if (o.stop) waits.push(o.stop.then((r) => { run.stopRequest = r ?? {}; }));
    if (waits.length === 0) throw new VsysError('USAGE', 'trace: give --duration, or stop with Ctrl-C');
    await Promise.race(waits);
    if (run.child && run.childExit && !run.exit && run.stopRequest) await endChild(run, run.stopRequest);
  } finally {
    clearInterval(ticker);
    if (intervalTimer) clearInterval(intervalTimer);
  }
}

const sleep = (s: number) => new Promise<void>((r) => setTimeout(r, s * 1000).unref());

/** Ends a command the trace was stopped early for: its grace, then the signal, then SIGKILL. */
async function endChild(run: TraceRun, r: StopRequest): Promise<void> {
  const { child, childExit } = run;
  if (!child || !childExit) return;
  const ended = childExit.then(() => true);
  if (r.graceS && await Promise.race([ended, sleep(r.graceS).then(() => false)])) return;
  child.kill(r.signal ?? 'SIGTERM');
  if (await Promise.race([ended, sleep(1).then(() => false)])) return;
  child.kill('SIGKILL');
  await childExit;
}

/** A summary now: the fold's figures and what the counters read. */
function summarise(run: TraceRun, fold: EventFold): TraceSummary {
  const counters = run.counterSets.map((c) => (c.pid === undefined ? { counts: c.set.read() } : { pid: c.pid, counts: c.set.read() }));
  const bpf = run.bpf ? { ...run.bpf.read(), crashes: run.bpf.crashes() } : undefined;
  const readings: Readings = { counters, seconds: (performance.now() - run.t0) / 1000 };
  if (bpf) readings.bpf = bpf;
  if (run.clock) readings.cpuSeconds = run.clock.seconds();
  const { o } = run;
  return assembleSummary(fold, readings, {
    target: run.label,
    showAll: o.target.k === 'command' || o.target.k === 'pids',
    lostEvents: run.lost,
    ...(run.fallbackReason ? { fallbackReason: run.fallbackReason } : {}),
    ...(o.costNs ? { costNs: o.costNs } : {}),
    ...(run.exit ? { exit: run.exit } : {}),
    stopped: run.stopRequest !== undefined,
    describe: processStats,
  });
}

/** The last summary, with the crash of a command that died of SIGSEGV however each backend saw it. */
function finalSummary(run: TraceRun, fold: EventFold): TraceSummary {
  const pid = run.child?.pid;
  const segv = pid !== undefined && run.exit?.signal === 'SIGSEGV';
  // The command itself died of SIGSEGV: a crash even if its fault sample was not kept (perf).
  if (segv) fold.commandDiedOfSegv(pid, run.o.target.k);
  const s = summarise(run, fold);
  if (segv && run.bpf) addRefusedCallCrash(s, pid);
  return s;
}
