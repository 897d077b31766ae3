// Whether a check may call the vsyscall page here, from what the active test's call did: the trap-flag
// step and the vsyscall side of the getcpu sweep run only where a call returns (xonly, emulate, native).

/** What calling the page's `time` entry did in a child process (the active test's `call`). */
export interface PageCallOutcome {
  outcome: 'works' | 'sigsegv' | 'signal' | 'failed';
  signal?: string;
  detail: string;
}

/**
 * `run`: calls of the page return here. `not-applicable`: they kill the caller (vsyscall=none, or a
 * seccomp filter), so there is nothing to call. `skipped`: vsys did not find out (no active test, or
 * its child failed), and does not guess.
 */
export type CallGate = { run: true } | { run: false; status: 'not-applicable' | 'skipped'; why: string };

export function callGate(call: PageCallOutcome | null): CallGate {
  if (call === null) return { run: false, status: 'skipped', why: 'the active test is off (--no-active): vsys does not call the page' };
  switch (call.outcome) {
    case 'works':
      return { run: true };
    case 'sigsegv':
      return { run: false, status: 'not-applicable', why: 'calls of the page crash here (SIGSEGV, as under vsyscall=none)' };
    case 'signal':
      return { run: false, status: 'not-applicable', why: `calls of the page are ${call.detail} here` };
    case 'failed':
      return { run: false, status: 'skipped', why: `the active test's call did not run (${call.detail}), so vsys does not know whether a call returns` };
  }
}
