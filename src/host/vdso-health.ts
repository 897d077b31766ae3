// Does the vDSO's clock_gettime really stay in user space on this host? Measured, not guessed:
// count raw_syscalls:sys_enter around 1,000 calls with perf_event_open when permitted, and always
// compare the per-call cost with the real system call. A clocksource the vDSO cannot read from user
// space (acpi_pm, hpet, some hypervisor clocks) makes every "fast" call a syscall.
import { readFileSync } from 'node:fs';
import { CLOCK_IDS, SYS_X86_64 } from '../model/syscalls.js';
import { Asm } from '../x86/assemble.js';
import { ExecPage, pointerAt } from '../native/memory.js';
import { PerfCounter } from '../native/perf.js';
import type { NativePtr } from '../native/libc.js';
import { describeError, VsysError } from '../errors.js';
import { findVdsoSymbol, type VdsoImage } from './vdso.js';

export interface VdsoHealth {
  /** true: clock_gettime stays in user space; false: it falls back to the syscall; null: unknown. */
  userSpace: boolean | null;
  clocksource: string | null;
  method: 'perf-count' | 'timing';
  /** raw_syscalls:sys_enter events per vDSO call (perf method), ~0 when healthy. */
  syscallsPerCall: number | null;
  /** Positive control: events per real clock_gettime syscall (should be ~1). */
  controlSyscallsPerCall: number | null;
  vdsoNs: number;
  syscallNs: number;
  summary: string;
  perfSkipped?: string;
}

/**
 * `long loop(target, count, clockid, ts)`: calls `target(clockid, ts)` count times (count ≥ 1),
 * or, with `viaSyscall`, executes the clock_gettime syscall count times.
 */
function buildLoop(viaSyscall: boolean): ExecPage {
  const a = new Asm(64);
  a.push('rbx').push('r12').push('r13').push('r14').subImm('rsp', 8);
  a.mov('rbx', 'rdi').mov('r12', 'rsi').mov('r13', 'rdx').mov('r14', 'rcx');
  a.label('loop');
  a.mov('rdi', 'r13').mov('rsi', 'r14');
  if (viaSyscall) a.movImm('eax', SYS_X86_64.clock_gettime).syscall();
  else a.callReg('rbx');
  a.dec('r12').jnz('loop');
  a.addImm('rsp', 8).pop('r14').pop('r13').pop('r12').pop('rbx').ret();
  const page = new ExecPage(4096);
  page.write(a.assemble(page.address));
  page.seal();
  return page;
}

const SIG = 'long (void *, long, long, void *)';

function nsPerCall(page: ExecPage, target: NativePtr | null, ts: Buffer, count: number): number {
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    page.call(SIG, target, count, CLOCK_IDS.MONOTONIC, ts);
    const t1 = process.hrtime.bigint();
    best = Math.min(best, Number(t1 - t0) / count);
  }
  return best;
}

function tracepointId(tracefs: string, name: string): number {
  return Number(readFileSync(`${tracefs}/events/${name}/id`, 'utf8').trim());
}

export function checkVdsoHealth(vdso: VdsoImage, opts: { tracefs: string | null; perfUsable: boolean; clocksource: string | null }): VdsoHealth {
  const sym = findVdsoSymbol(vdso, '__vdso_clock_gettime') ?? findVdsoSymbol(vdso, 'clock_gettime');
  if (!sym) throw new VsysError('VDSO_MALFORMED', 'the vDSO exports no clock_gettime');
  const target = pointerAt(sym.address);
  const vloop = buildLoop(false);
  const sloop = buildLoop(true);
  const ts = Buffer.alloc(16);
  try {
    // warm up both paths, then time them
    vloop.call(SIG, target, 1000, CLOCK_IDS.MONOTONIC, ts);
    sloop.call(SIG, null, 100, CLOCK_IDS.MONOTONIC, ts);
    const vdsoNs = nsPerCall(vloop, target, ts, 20_000);
    const syscallNs = nsPerCall(sloop, null, ts, 2_000);

    let syscallsPerCall: number | null = null;
    let control: number | null = null;
    let perfSkipped: string | undefined;
    if (opts.perfUsable && opts.tracefs) {
      try {
        const c = new PerfCounter({ tracepointId: tracepointId(opts.tracefs, 'raw_syscalls/sys_enter') });
        try {
          const count = (page: ExecPage, n: number) => {
            c.reset();
            c.enable();
            page.call(SIG, page === vloop ? target : null, n, CLOCK_IDS.MONOTONIC, ts);
            c.disable();
            return Number(c.read());
          };
          // The difference between 1,001 and 1 calls cancels the ioctl that disables the counter.
          syscallsPerCall = (count(vloop, 1001) - count(vloop, 1)) / 1000;
          control = (count(sloop, 1001) - count(sloop, 1)) / 1000;
        } finally {
          c.close();
        }
      } catch (e) {
        perfSkipped = describeError(e);
      }
    } else {
      perfSkipped = 'perf tracepoints not usable by this process';
    }

    let userSpace: boolean | null;
    let method: VdsoHealth['method'];
    if (syscallsPerCall !== null && control !== null && control > 0.9) {
      method = 'perf-count';
      userSpace = syscallsPerCall < 0.5;
    } else {
      method = 'timing';
      userSpace = vdsoNs < syscallNs * 0.5;
    }
    const cs = opts.clocksource ?? 'unknown';
    const summary = userSpace
      ? `clock_gettime stays in user space (${vdsoNs.toFixed(1)} ns vs ${syscallNs.toFixed(0)} ns for the syscall${method === 'perf-count' ? `; ${syscallsPerCall!.toFixed(3)} syscalls per call counted` : ''}; clocksource ${cs})`
      : `clock_gettime falls back to the kernel: clocksource ${cs} cannot be read from user space (${vdsoNs.toFixed(0)} ns per call vs ${syscallNs.toFixed(0)} ns for the syscall${method === 'perf-count' ? `; ${syscallsPerCall!.toFixed(2)} syscalls per call counted` : ''})`;
    return {
      userSpace, clocksource: opts.clocksource, method, syscallsPerCall, controlSyscallsPerCall: control, vdsoNs, syscallNs, summary,
      ...(perfSkipped ? { perfSkipped } : {}),
    };
  } finally {
    vloop.free();
    sloop.free();
  }
}
