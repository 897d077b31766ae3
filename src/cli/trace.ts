// `vsys trace`: live use of the vsyscall page — counts, events, crashes and their cost.
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { VsysError } from '../errors.js';
import { runTrace } from '../trace/session.js';
import type { StopRequest, TraceTarget } from '../trace/options.js';
import type { TraceSummary } from '../trace/summary.js';
import type { TraceEvent } from '../trace/events.js';
import { formatEvent } from '../trace/format-event.js';
import { describePageFault } from '../model/page-fault.js';
import { EXIT, numberOption, toJson, usageError, type Io, type Command } from './io.js';

const HELP = `usage: vsys trace [-o FILE] [--events] [--json] [--interval S] -- CMD [ARGS...]
       vsys trace -p PID[,PID...] | --cgroup PATH | -a  [--duration S] [-o FILE] [--events] [--json]

Counts what processes do with the legacy vsyscall page, on the kernel's own
tracepoints (no strace: strace cannot see emulated vsyscalls): emulated calls by
entry (vsyscall:emulate_vsyscall), page faults inside the page by error code
(exceptions:page_fault_user), all system calls for comparison; crashes (SIGSEGV
after a fault in the page); and the CPU time lost to emulation, from this host's
'vsys bench' figures, as a share of the CPU time the traced processes used
(perf's task-clock). Counting is done by three small eBPF programs on raw
tracepoints (exact, per process, the cheapest hook), or by perf counters where
eBPF is not allowed. Processes are named by what they run after exec (bash, not
the chroot that exec'd it). Needs root (or CAP_PERFMON, plus CAP_BPF for eBPF)
and a mounted tracefs.

The summary, --events lines and --json go to stderr, or to FILE with -o: a
traced command's stdout and stdin stay its own.

options:
  -- CMD ARGS       run CMD and trace it and its children (exact counts)
  -p PIDS           trace running processes (all their threads)
  --cgroup PATH     trace a cgroup (e.g. /sys/fs/cgroup/system.slice/docker-ID.scope)
  -a, --all         trace the whole system, per CPU
  --duration S      stop after S seconds (else Ctrl-C); a command runs to its end
  -o, --output FILE write the summary, events and JSON to FILE, not stderr
  --events          print every event, sysdig style (page_fault, emulate_vsyscall,
                    execve, signaldeliver, procexit)
  --interval S      print the summary every S seconds
  --backend B       how to count: auto (default: bpf, else perf), bpf, perf
  --json            NDJSON: events (with --events), then {"summary": …}
  -h, --help        this text

exit status:
  with -- CMD       the command's own: its exit code, or 128+N when it died of
                    signal N (139 for SIGSEGV), as a shell reports it
  otherwise         0
  and always        130 when stopped with Ctrl-C (after the partial summary;
                    a command still running a second later gets SIGTERM);
                    141 when the output (stderr or FILE) is closed: the trace
                    stops quietly and a traced command gets SIGTERM;
                    2 usage, 3 runtime error, 4 tracing not allowed here

examples:
  vsys trace -- ./old-static-binary              # summary on stderr
  vsys trace -o trace.txt -- ./old-app > app.out  # app.out is the app's alone
  vsys trace --events -- chroot /srv/wheezy bash -c date
  vsys trace --json -o trace.ndjson -- ./old-app; echo "app exited $?"
  vsys trace -a --duration 10
  vsys trace -p 1234 --json --duration 5 2>&1 | jq .summary.counts
`;

/** " (0x14 PAGE_NOT_PRESENT|…: 103, 0x4 …: 1)" for the faults by error code, when known. */
function byError(m: Record<string, number> | undefined): string {
  const e = Object.entries(m ?? {});
  if (!e.length) return '';
  return ` (${e.sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v.toLocaleString('en')} × error ${k} ${describePageFault(Number(k))}`).join(', ')})`;
}

/** "64 %", "4.2 %", "0.031 %": two significant digits below 10 %. */
function percent(share: number): string {
  const p = share * 100;
  return `${p >= 10 ? p.toFixed(0) : p >= 0.01 ? p.toPrecision(2) : p > 0 ? '< 0.01' : '0'} %`;
}

export function formatSummary(s: TraceSummary): string {
  const c = s.counts;
  const calls = Object.values(c.emulated).reduce((a, b) => a + b, 0);
  const rate = (n: number) => (s.seconds > 0 ? `${Math.round(n / s.seconds).toLocaleString('en')}/s` : '');
  const out = [
    `vsys trace — ${s.target}: ${s.seconds.toFixed(2)} s${s.exit ? `, exit ${s.exit.signal ?? s.exit.code}` : ''}${s.stopped ? ' (stopped early: partial figures)' : ''}`,
    `emulated vsyscalls: ${calls.toLocaleString('en')} (${rate(calls)}): time ${c.emulated.time}, gettimeofday ${c.emulated.gettimeofday}, getcpu ${c.emulated.getcpu}, misaligned ${c.emulated.misaligned}`,
    `page faults in the vsyscall page: ${c.pageFaults.toLocaleString('en')}${byError(c.faultsByError)}; system calls: ${c.syscalls.toLocaleString('en')}`,
  ];
  const secs = (v: number) => (v >= 0.01 ? `${v.toFixed(3)} s` : v >= 1e-5 ? `${(v * 1e3).toFixed(3)} ms` : `${(v * 1e6).toFixed(2)} µs`);
  if (s.cost) {
    const share = s.cost.share !== undefined && s.cpuSeconds !== undefined ? [`, ${percent(s.cost.share)} of the run's CPU time`, `of ${secs(s.cpuSeconds)} the traced processes used; `] : ['', ''];
    out.push(`CPU time lost to emulation: ${secs(s.cost.cpuSeconds)}${share[0]} (${share[1]}${s.cost.perCallNs.toFixed(0)} ns × ${calls.toLocaleString('en')} calls; ${s.cost.source})`);
  } else if (s.cpuSeconds !== undefined) {
    out.push(`CPU time used by the traced processes: ${secs(s.cpuSeconds)}`);
  }
  if (s.backend.fallbackReason) out.push(`counted with perf counters (eBPF unavailable: ${s.backend.fallbackReason})`);
  const dr = s.backend.dropped;
  if (dr?.counts) out.push(`! ${dr.counts} counts were dropped: the per-process table was full (16,384 process × kind entries); figures are low by that much`);
  if (dr?.members) out.push(`! ${dr.members} new threads or processes were not followed: the members table was full (65,536); their calls are not counted`);
  if (dr?.skipped) out.push(`! the kernel skipped the counting programs ${dr.skipped} times (another eBPF program was running on that CPU): counts are low by up to that much`);
  if (dr?.records) out.push(`! ${dr.records} fault or crash records were not stored (their table was full): crashes may be missing`);
  if (s.lostEvents > 0) out.push(`! ${s.lostEvents} events were lost (the ring buffer overflowed): per-process figures from samples are low by that much`);
  if (s.processes.length) {
    out.push('', 'per process:');
    for (const p of s.processes) {
      const n = Object.values(p.emulated).reduce((a, b) => a + b, 0);
      const ctr = p.container ? ` [${p.container.runtime} ${p.container.id.slice(0, 12)}${p.container.pod ? ` pod ${p.container.pod}` : ''}]` : '';
      out.push(`  ${String(p.pid).padStart(7)} ${p.comm}${p.exe ? ` (${p.exe})` : ''}${ctr}: ${n} emulated (time ${p.emulated.time}, gettimeofday ${p.emulated.gettimeofday}, getcpu ${p.emulated.getcpu}, misaligned ${p.emulated.misaligned}), ${p.pageFaults} faults${p.crashes ? `, ${p.crashes} CRASHED` : ''}`);
    }
  }
  if (s.containers.length) {
    out.push('', 'per container:');
    for (const k of s.containers) {
      const n = Object.values(k.emulated).reduce((a, b) => a + b, 0);
      out.push(`  ${k.container.runtime} ${k.container.id.slice(0, 12)}${k.container.pod ? ` (pod ${k.container.pod})` : ''}: ${k.pids.length} process${k.pids.length === 1 ? '' : 'es'}, ${n} emulated (${rate(n)}), ${k.pageFaults} faults${k.crashes ? `, ${k.crashes} CRASHED` : ''}`);
    }
  }
  for (const c2 of s.crashes) {
    if (c2.address === 'unknown') out.push(`✗ crash: ${c2.comm} (${c2.pid}) died of SIGSEGV after using the page; no fault in the page was seen (the kernel refuses an emulated call whose result pointer is bad)`);
    else out.push(`✗ crash: ${c2.comm} (${c2.pid}) got SIGSEGV after a fault at ${c2.address} (ip ${c2.ip}, error 0x${c2.error.toString(16)})`);
  }
  return out.join('\n') + '\n';
}

async function costNs(): Promise<{ emulated: number; vdso: number; source: string } | undefined> {
  try {
    const { vsyscallTimeCost } = await import('../bench/time-cost.js');
    const c = await vsyscallTimeCost({ measure: true });
    if (!c || !('emulatedNs' in c)) return undefined; // the page cannot be called: no cost line
    const source = c.savedAt ? `vsys bench on this boot: ${c.emulatedNs.toFixed(0)} ns vs ${c.vdsoNs.toFixed(1)} ns` : 'measured briefly now';
    return { emulated: c.emulatedNs, vdso: c.vdsoNs, source };
  } catch {
    return undefined;
  }
}

/** A stream's pipe handle, when Node opened one for it (pipes only). */
function pipeHandle(stream: unknown): { setBlocking?: (b: boolean) => void } | undefined {
  return (stream as { _handle?: { setBlocking?: (b: boolean) => void } })._handle;
}

/**
 * Where the summary, events and JSON go: FILE (-o), else stderr. Written through the file
 * descriptor, synchronously: a slow reader holds vsys back (memory stays bounded; the rings count
 * what they lose) and a closed pipe shows as EPIPE at the write that met it, not as an 'error'
 * event on a stream (Node's stack trace). After EPIPE nothing more is written and `onClosed` runs.
 */
class Output {
  closed = false;
  onClosed: () => void = () => {};
  private readonly fd: number | undefined;
  private readonly own: boolean;
  private readonly nap = new Int32Array(new SharedArrayBuffer(4));

  constructor(file: string | undefined, private readonly io: Io) {
    if (file !== undefined) {
      try {
        this.fd = fs.openSync(file, 'w');
      } catch (e) {
        throw new VsysError('IO_FAILED', `trace: cannot write ${file}: ${(e as Error).message}`, { path: file });
      }
      this.own = true;
    } else {
      this.fd = io.stderr === process.stderr ? 2 : undefined;
      this.own = false;
    }
  }

  write(text: string): void {
    if (this.closed) return;
    if (this.fd === undefined) {
      this.io.stderr.write(text);
      return;
    }
    const buf = Buffer.from(text);
    for (let at = 0; at < buf.length;) {
      try {
        at += fs.writeSync(this.fd, buf, at);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // A descriptor another program left non-blocking: wait for room as a blocking write would.
        if (code === 'EAGAIN') Atomics.wait(this.nap, 0, 0, 1);
        else if (code === 'EPIPE') {
          this.closed = true;
          this.onClosed();
          return;
        } else throw new VsysError('IO_FAILED', `trace: write failed: ${(e as Error).message}`, { syscall: 'write' });
      }
    }
  }

  close(): void {
    if (this.own && this.fd !== undefined) fs.closeSync(this.fd);
  }
}

/** A command's exit as a shell reports it: its code, or 128 + the signal's number. */
export function shellStatus(exit: TraceSummary['exit']): number {
  if (!exit) return EXIT.runtime;
  if (exit.code !== null) return exit.code;
  const n = exit.signal ? os.constants.signals[exit.signal as NodeJS.Signals] : undefined;
  return n === undefined ? EXIT.runtime : 128 + n;
}

/** The one target the options name (exactly one was given). */
function targetOf(command: string[], values: { pid?: string | undefined; cgroup?: string | undefined }): TraceTarget {
  if (command.length) return { k: 'command', argv: command };
  if (values.pid !== undefined) {
    const pids = values.pid.split(',').map((s) => Number(s.trim()));
    if (pids.some((p) => !Number.isInteger(p) || p <= 0)) throw usageError(`trace: -p wants process ids, not '${values.pid}'`);
    return { k: 'pids', pids };
  }
  if (values.cgroup !== undefined) return { k: 'cgroup', path: values.cgroup };
  return { k: 'all' };
}

/**
 * Events are written up to 1 MiB at a time, one write each (a write per event cost a system call
 * per line); a drain is synchronous, so what is left is flushed right after it.
 */
function lineBuffer(sink: Output): { put: (line: string) => void; flush: () => void } {
  const out = Buffer.allocUnsafe(1 << 20);
  let used = 0;
  const flush = () => {
    if (used === 0) return;
    const text = out.toString('utf8', 0, used);
    used = 0;
    sink.write(text);
  };
  const put = (line: string) => {
    if (used === 0) queueMicrotask(flush);
    // UTF-8 takes at most 3 bytes per UTF-16 unit: room for that is room enough (no byte count per line).
    const most = 3 * line.length + 1;
    if (used + most > out.length) flush();
    if (most > out.length) {
      sink.write(`${line}\n`); // too long for the buffer: on its own
      return;
    }
    used += out.write(line, used);
    out[used++] = 0x0a;
  };
  return { put, flush };
}

/** How long a terminal's SIGINT may take to reach vsys after it ended the command (signals go through the event loop). */
const SIGINT_SETTLE_MS = 500;

async function sigintSettles(got: () => boolean): Promise<void> {
  for (let waited = 0; waited < SIGINT_SETTLE_MS && !got(); waited += 10) await new Promise((r) => setTimeout(r, 10));
}

export const traceCommand: Command = {
  summary: 'which live processes use the vsyscall page, how often, which crashed, what it costs',
  async run(args, io: Io) {
    const dd = args.indexOf('--');
    const own = dd >= 0 ? args.slice(0, dd) : args;
    const cmd = dd >= 0 ? args.slice(dd + 1) : [];
    const { values, positionals } = parseArgs({
      args: own,
      allowPositionals: true,
      options: {
        pid: { type: 'string', short: 'p' },
        cgroup: { type: 'string' },
        all: { type: 'boolean', short: 'a' },
        duration: { type: 'string' },
        events: { type: 'boolean' },
        interval: { type: 'string' },
        backend: { type: 'string' },
        json: { type: 'boolean' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    const command = [...positionals, ...cmd];
    const chosen = [command.length > 0, values.pid !== undefined, values.cgroup !== undefined, !!values.all].filter(Boolean).length;
    if (chosen !== 1) throw usageError('trace: give exactly one of: -- CMD, -p PIDS, --cgroup PATH, -a');
    const target = targetOf(command, values);
    const backend = values.backend ?? 'auto';
    if (backend !== 'auto' && backend !== 'bpf' && backend !== 'perf') throw usageError(`trace: --backend wants auto, bpf or perf, not '${backend}'`);
    const durationS = numberOption('trace', 'duration', values.duration, { positive: 'seconds' });
    const intervalS = numberOption('trace', 'interval', values.interval, { positive: 'seconds' });
    const sink = new Output(values.output, io);
    let stopResolve: (r: StopRequest) => void = () => {};
    const stop = new Promise<StopRequest>((r) => { stopResolve = r; });
    let interrupted = false;
    // Ctrl-C reaches a command in the terminal's foreground too: it gets a second to end by itself.
    const onSigint = () => {
      interrupted = true;
      stopResolve({ graceS: 1, signal: 'SIGTERM' });
    };
    sink.onClosed = () => stopResolve({ signal: 'SIGTERM' });
    process.once('SIGINT', onSigint);
    // Node makes the pipes it opens for its stdout and stderr non-blocking, and a command given
    // them would meet EAGAIN where it expects a blocking write (and lose output): blocking again.
    for (const s of [io.stdout, io.stderr]) if (s === process.stdout || s === process.stderr) pipeHandle(s)?.setBlocking?.(true);
    const cost = await costNs();
    const { put, flush } = lineBuffer(sink);
    try {
      const summary = await runTrace({
        target,
        events: !!values.events,
        backend,
        onEvent: (e: TraceEvent) => {
          put(values.json ? toJson({ event: e }, 0) : formatEvent(e));
        },
        ...(intervalS ? { intervalS, onInterval: (s: TraceSummary) => { flush(); sink.write(values.json ? toJson({ interval: s }, 0) + '\n' : formatSummary(s)); } } : {}),
        ...(durationS ? { durationS } : {}),
        stop,
        stdio: 'inherit',
        ...(cost ? { costNs: cost } : {}),
      });
      flush();
      // Ctrl-C to the terminal's group can end the command before vsys's own SIGINT handler has run
      // (the command's exit can come first in the event loop): a command ended by SIGINT is given
      // a moment for that handler. Only if vsys got the SIGINT too was the run stopped early; a
      // command that died of a SIGINT of its own (raise, kill -INT PID) ended, and was traced whole.
      if (!interrupted && summary.exit?.signal === 'SIGINT') await sigintSettles(() => interrupted);
      if (interrupted) summary.stopped = true;
      sink.write(values.json ? toJson({ summary }, 0) + '\n' : formatSummary(summary));
      if (sink.closed) return EXIT.brokenPipe;
      if (interrupted) return EXIT.interrupted;
      return target.k === 'command' ? shellStatus(summary.exit) : EXIT.ok;
    } finally {
      process.removeListener('SIGINT', onSigint);
      sink.close();
    }
  },
};
