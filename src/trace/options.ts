// What a trace is asked to do: its target, how it counts, what it streams, when it stops.
// session.ts's runTrace takes these.
import type { TraceEvent } from './events.js';
import type { TraceSummary } from './summary.js';

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
