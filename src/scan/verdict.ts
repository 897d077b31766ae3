// What happens to a file's vsyscall uses in each mode, computed from the model (MODE_BEHAVIOUR):
// a call crashes where calls are SIGSEGV, is slow where they are emulated; a fallback is fine while
// the vDSO has the symbol; a misaligned call is a SIGSEGV in every mode.
import { MODE_BEHAVIOUR, VSYSCALL_MODES, type VsyscallMode } from '../model/modes.js';
import { entryNameOf } from '../model/vsyscall-page.js';
import { seedSlowdown } from '../model/figures.js';
import type { SiteKind } from '../x86/call-sites.js';

export type Outcome = 'crash' | 'slow' | 'review' | 'fallback' | 'ok';

/** Worst first: the order used to combine outcomes and for --fail-on. */
export const OUTCOME_RANK: Readonly<Record<Outcome, number>> = { crash: 4, slow: 3, review: 2, fallback: 1, ok: 0 };

export function worse(a: Outcome, b: Outcome): Outcome {
  return OUTCOME_RANK[a] >= OUTCOME_RANK[b] ? a : b;
}

export interface ModeVerdict {
  outcome: Outcome;
  /** One line of plain English. */
  why: string;
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
  switch (use.kind) {
    case 'misaligned':
      return { outcome: 'crash', why: `SIGSEGV at ${hex(use.target)} (not an entry start) when ${use.caller} runs, in every mode` };
    case 'direct-call': {
      if (entry === 'misaligned') return verdictOfUse({ ...use, kind: 'misaligned' }, mode, slow);
      if (b.call === 'sigsegv') return { outcome: 'crash', why: `SIGSEGV at ${hex(use.target)} when ${use.caller} is called` };
      if (b.call === 'emulated') {
        const s = slow(entry);
        return { outcome: 'slow', why: `${use.caller} traps into the kernel, which emulates the ${entry} entry: ~${Math.round(s.ratio)}× a vDSO call (${s.source})` };
      }
      return { outcome: 'ok', why: `${use.caller} runs the native page's code at syscall speed` };
    }
    case 'indirect':
      return {
        outcome: 'review',
        why: `${use.caller} is reached only through a function pointer (its address is taken, nothing calls it directly): it calls the ${entry} entry${b.call === 'sigsegv' ? ', a SIGSEGV' : b.call === 'emulated' ? ', emulated (slow)' : ''} only if that pointer is used`,
      };
    case 'fallback':
      return {
        outcome: 'fallback',
        why: `${use.caller} uses the page only if the vDSO lacks the ${entry} symbol${b.call === 'sigsegv' ? ' (then SIGSEGV)' : ''}`,
      };
    case 'data-ref':
      if (use.reads) {
        return b.read === 'sigsegv'
          ? { outcome: 'crash', why: `SIGSEGV when ${use.caller} reads the page at ${hex(use.target)} (data reads are denied under vsyscall=${mode})` }
          : { outcome: 'ok', why: `${use.caller} reads the page at ${hex(use.target)}, which vsyscall=${mode} allows` };
      }
      return { outcome: 'review', why: `${hex(use.target)} is referenced as data by ${use.caller}; no call through it was found` };
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
    out[mode] = best ?? { outcome: 'ok', why: 'no use of the vsyscall page' };
  }
  return out;
}
