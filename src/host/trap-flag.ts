// Native or emulated, seen from user space: a call of the page's time entry stepped with the trap flag
// in a child process (trap-flag-code.ts), and what the count of traps inside the page means. As the
// kernel's selftest reasons (tools/testing/selftests/x86/test_vsyscall.c): an emulated call traps once
// in the page, on the call that lands on the entry, before the kernel takes over; native code (the
// page's own `mov $201,%eax; syscall; ret`, kernels before 4.15 only) traps on each instruction it runs.
import { describeChildEnd, firstTryNote, runNodeChildSteady } from './child.js';
import type { CallGate } from './call-gate.js';
import type { TrapFlagRaw } from './trap-flag-code.js';

export interface TrapFlagCheck {
  /**
   * `ran`: the call was stepped. `not-applicable`: calls of the page do not return here (none), so
   * there is nothing to step. `skipped`: not run (no active test). `failed`: the child could not do it.
   */
  status: 'ran' | 'not-applicable' | 'skipped' | 'failed';
  /** Single-step traps whose saved RIP was inside the page (the selftest's count); null unless ran. */
  trapsInPage: number | null;
  /** Every single-step trap between setting and clearing TF, in the page or not; null unless ran. */
  trapsTotal: number | null;
  /** `emulated`: exactly one trap in the page; `native`: more; null when not judged. */
  calls: 'emulated' | 'native' | null;
  detail: string;
}

/** The child's raw result, as JSON numbers (a type only: this module loads no native code). */
export type TrapFlagCounts = TrapFlagRaw;

const X86_EFLAGS_TF = 0x100;

/** What the counts mean. Pure: tests feed it counts no host of theirs produces (native, zero traps). */
export function judgeTrapCounts(c: TrapFlagCounts, nowSeconds: number): TrapFlagCheck {
  const ran = { status: 'ran' as const, trapsInPage: c.inPage, trapsTotal: c.total };
  if (c.install !== 0) return { status: 'failed', trapsInPage: null, trapsTotal: null, calls: null, detail: `rt_sigaction(SIGTRAP) failed (${c.install}): no trap was counted` };
  if ((c.flagsAfter & X86_EFLAGS_TF) !== 0) return { ...ran, calls: null, detail: 'the trap flag was still set after clearing it: the count cannot be trusted' };
  if (c.total === 0) return { ...ran, calls: null, detail: 'no single-step trap at all while the trap flag was set (a hypervisor or debugger that swallows them?): cannot judge' };
  const timeNote = Math.abs(c.time - nowSeconds) <= 5 ? '' : `; time() returned ${c.time}, not the current time`;
  const traps = `${c.inPage} trap${c.inPage === 1 ? '' : 's'} in the page (${c.total} in all) stepping a call of time()`;
  if (c.inPage === 0) return { ...ran, calls: null, detail: `${traps}: the call never reached the page, cannot judge${timeNote}` };
  if (c.inPage === 1) return { ...ran, calls: 'emulated', detail: `${traps}: calls are emulated by the kernel (not native)${timeNote}` };
  return { ...ran, calls: 'native', detail: `${traps}: the page's own instructions ran, calls are native (a kernel before 4.15)${timeNote}` };
}

function isCounts(v: unknown): v is TrapFlagCounts {
  const o = v as Record<string, unknown> | null;
  return !!o && ['install', 'inPage', 'total', 'time', 'restore', 'flagsAfter'].every((k) => typeof o[k] === 'number');
}

/** Steps the call in a child process, where the gate says calls of the page return here. */
export async function runTrapFlagCheck(gate: CallGate): Promise<TrapFlagCheck> {
  if (!gate.run) return { status: gate.status, trapsInPage: null, trapsTotal: null, calls: null, detail: `${gate.status === 'not-applicable' ? 'not applicable' : 'not run'}: ${gate.why}` };
  const o = await runNodeChildSteady(new URL('./vsyscall-child.js', import.meta.url), ['trap-flag']);
  if (o.outcome === 'works' && isCounts(o.result)) {
    const j = judgeTrapCounts(o.result, Math.floor(Date.now() / 1000));
    return { ...j, detail: j.detail + firstTryNote(o) };
  }
  return { status: 'failed', trapsInPage: null, trapsTotal: null, calls: null, detail: `the stepping child ${describeChildEnd(o)}${firstTryNote(o)}` };
}
