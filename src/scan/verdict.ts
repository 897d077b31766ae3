// What happens to a file's vsyscall uses in each mode, computed from the model (MODE_BEHAVIOUR):
// a call crashes where calls are SIGSEGV, is slow where they are emulated; a fallback is fine while
// the vDSO has the symbol; a misaligned call is a SIGSEGV in every mode.
import { MODE_BEHAVIOUR, VSYSCALL_MODES, type VsyscallMode } from '../model/modes.js';
import { entryNameOf } from '../model/vsyscall-page.js';
import { seedSlowdown } from '../model/figures.js';
import type { SiteKind } from '../model/site-kinds.js';

export type Outcome = 'crash' | 'slow' | 'review' | 'fallback' | 'ok';

/** Worst first: the order used to combine outcomes and for --fail-on. */
export const OUTCOME_RANK: Readonly<Record<Outcome, number>> = { crash: 4, slow: 3, review: 2, fallback: 1, ok: 0 };

export function worse(a: Outcome, b: Outcome): Outcome {
  return OUTCOME_RANK[a] >= OUTCOME_RANK[b] ? a : b;
}

/**
 * How sure a verdict is. Static analysis sees that a function would crash, not whether the program
 * calls it on a given run: every verdict about a use is `conditional` on `condition` ("time() is
 * called"); `certain` is kept for what holds whatever the program does (no use at all, a native
 * page); `unknown` for a file that could not be fully analysed.
 */
export type Certainty = 'certain' | 'conditional' | 'unknown';

export interface ModeVerdict {
  outcome: Outcome;
  /** One line of plain English. */
  why: string;
  certainty: Certainty;
  /** What must happen for the outcome to occur: "time() is called". */
  condition?: string;
}

/** The cost of one emulated call relative to a vDSO call, with where the figure comes from. */
export interface Slowdown {
  ratio: number;
  source: string;
}

export type SlowdownFor = (entry: 'time' | 'gettimeofday' | 'getcpu') => Slowdown;

/** The default: the seeds' figures. `vsys bench` results replace it when this host has been measured. */
export const seedSlowdowns: SlowdownFor = (entry) => seedSlowdown(entry);

/** A use of the page that matters for the verdict: what kind, which entry, who calls it. */
export interface Use {
  kind: SiteKind;
  target: bigint;
  /** "time()", "the function at 0x4e1390", "stamp() → time() in libc-2.13.so" */
  caller: string;
  /** The code reads the page as data (not a call): the mode's read rule decides. */
  reads?: boolean;
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** The verdict of one use in one mode. */
export function verdictOfUse(use: Use, mode: VsyscallMode, slow: SlowdownFor = seedSlowdowns): ModeVerdict {
  const entry = entryNameOf(use.target);
  const b = MODE_BEHAVIOUR[mode];
  const called = `${use.caller} is called`;
  const cond = (outcome: Outcome, why: string, condition = called): ModeVerdict => ({ outcome, why, certainty: 'conditional', condition });
  switch (use.kind) {
    case 'misaligned':
      return cond('crash', `crashes if ${called}, in every mode: SIGSEGV at ${hex(use.target)} (not an entry start)`);
    case 'direct-call': {
      if (entry === 'misaligned') return verdictOfUse({ ...use, kind: 'misaligned' }, mode, slow);
      if (b.call === 'sigsegv') return cond('crash', `crashes if ${called}: SIGSEGV at ${hex(use.target)}`);
      if (b.call === 'emulated') {
        const s = slow(entry);
        return cond('slow', `slow if ${called}: it traps into the kernel, which emulates the ${entry} entry at ~${Math.round(s.ratio)}× the cost of the vDSO's ${entry} (${s.source})`);
      }
      return cond('ok', `${use.caller} runs the native page's code at syscall speed`);
    }
    case 'indirect':
      return cond('review', `${use.caller} is reached only through a function pointer (its address is taken, nothing calls it directly): it calls the ${entry} entry${b.call === 'sigsegv' ? ', a SIGSEGV' : b.call === 'emulated' ? ', emulated (slow)' : ''} only if that pointer is used`, `the pointer to ${use.caller} is called`);
    case 'fallback':
      return cond('fallback', `${use.caller} uses the page only if the vDSO lacks the ${entry} symbol${b.call === 'sigsegv' ? ' (then SIGSEGV)' : ''}`, `the vDSO lacks ${entry}`);
    case 'data-ref':
      if (use.reads) {
        return b.read === 'sigsegv'
          ? cond('crash', `crashes if ${use.caller} reads the page at ${hex(use.target)}: data reads are denied under vsyscall=${mode}`, `${use.caller} runs`)
          : cond('ok', `${use.caller} reads the page at ${hex(use.target)}, which vsyscall=${mode} allows`, `${use.caller} runs`);
      }
      return cond('review', `${hex(use.target)} is referenced as data by ${use.caller}; no call through it was found`, `${use.caller} calls through it`);
  }
}

/** Combines a file's uses into one verdict per mode (the worst use decides; its explanation is kept). */
export function verdictsOf(uses: Use[], slow: SlowdownFor = seedSlowdowns): Record<VsyscallMode, ModeVerdict> {
  const out = {} as Record<VsyscallMode, ModeVerdict>;
  for (const mode of VSYSCALL_MODES) {
    let best: ModeVerdict | undefined;
    for (const u of uses) {
      const v = verdictOfUse(u, mode, slow);
      if (!best || OUTCOME_RANK[v.outcome] > OUTCOME_RANK[best.outcome]) best = v;
    }
    out[mode] = best ?? { outcome: 'ok', why: 'no use of the vsyscall page', certainty: 'certain' };
  }
  return out;
}
