// One sampled tracepoint event as a line of the Sysdig blog's (2018) format: the sequence number,
// the time, the CPU, the command and thread, and the event with its decoded fields.
import { describePageFault } from '../model/page-fault.js';
import type { TraceEvent } from './events.js';
import { SIGNAL_NAMES } from './signals.js';

const hexTexts = new Map<bigint, string>();

/** Upper-case hex; the few addresses a trace shows over and over are made once (at most 4096 kept). */
function hexUpper(v: bigint | undefined): string {
  const x = v ?? 0n;
  let t = hexTexts.get(x);
  if (t === undefined) {
    t = x.toString(16).toUpperCase();
    if (hexTexts.size < 4096) hexTexts.set(x, t);
  }
  return t;
}

let clockSecond = -1;
let clockPrefix = '';

function clock(t: number): string {
  // perf's clock is since boot: shown as HH:MM:SS.nnnnnnnnn of that, as sysdig shows its own clock.
  // The HH:MM:SS. part is made once a second.
  const s = Math.floor(t / 1_000_000_000);
  if (s !== clockSecond) {
    const hh = String(Math.floor(s / 3600) % 24).padStart(2, '0');
    const mm = String(Math.floor(s / 60) % 60).padStart(2, '0');
    const ss = String(s % 60).padStart(2, '0');
    clockSecond = s;
    clockPrefix = `${hh}:${mm}:${ss}.`;
  }
  return clockPrefix + String(t % 1_000_000_000).padStart(9, '0');
}

const errorTexts = new Map<number, string>();

/** `0x14(PAGE_NOT_PRESENT|…)`, made once per error code. */
function errorText(error: number): string {
  let t = errorTexts.get(error);
  if (t === undefined) {
    t = `0x${error.toString(16)}(${describePageFault(error)})`;
    errorTexts.set(error, t);
  }
  return t;
}

/** One line in seed 003's sysdig format. */
export function formatEvent(e: TraceEvent): string {
  const head = `${String(e.n).padStart(10)} ${clock(e.time)} ${e.cpu} ${e.comm} (${e.tid}) >`;
  switch (e.kind) {
    case 'page_fault':
      return `${head} page_fault addr=${hexUpper(e.address)} ip=${hexUpper(e.ip)} error=${errorText(e.error ?? 0)}`;
    case 'emulate':
      return `${head} emulate_vsyscall nr=${e.nr}`;
    case 'signaldeliver':
      return `${head} signaldeliver spid=0 dpid=${e.tid}(${e.comm}) sig=${e.sig}(${SIGNAL_NAMES[e.sig ?? 0] ?? `SIG${e.sig}`})`;
    case 'procexec':
      return `${head} execve filename=${e.filename ?? '?'}`;
    case 'procexit':
      return `${head} procexit status=${e.status ?? 0}`;
  }
}
