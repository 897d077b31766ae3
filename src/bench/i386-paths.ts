// Measures the 32-bit kernel entry paths (int 0x80, sysenter, __kernel_vsyscall, the i386 vDSO):
// a probe learns what the kernel maps into a 32-bit process, then each path runs in a child of its
// own (i386-code.ts generates the programs, i386-run.ts runs them, i386-verify.ts reads and checks
// what they wrote) and its TSC deltas become cycles per call.
import fs from 'node:fs';
import { VsysError } from '../errors.js';
import type { Asm } from '../x86/assemble.js';
import { BODIES, H, I386_PATHS, PAGE, probeProgram, ROUND, STATUS, timingProgram, type Body, type I386Path } from './i386-code.js';
import { describeI386Failure, NO_IA32, runI386 } from './i386-run.js';
import { cyclesFrom, loadedSize, readOutput, VDSO_SYMBOL, vdsoOffset, verify } from './i386-verify.js';

export { I386_PATHS, type I386Path } from './i386-code.js';

export type I386Result = { cyclesPerCall: number[]; check?: string } | { unavailable: string };

export interface I386Options {
  /** Calls per timed repeat (1..1e9). */
  iterations: number;
  /** Timed repeats, one cycles-per-call figure each (1..1000). */
  repeats: number;
  /** Per child process; default 60 s. */
  timeoutMs?: number;
}

export const SYSENTER_AMD = 'sysenter is not usable in compat mode on AMD CPUs (SIGILL)';

function checkArgs(o: I386Options): void {
  if (!Number.isSafeInteger(o.iterations) || o.iterations < 1 || o.iterations > 1e9) {
    throw new VsysError('USAGE', `measureI386: iterations ${o.iterations} must be an integer in 1..1e9`);
  }
  if (!Number.isSafeInteger(o.repeats) || o.repeats < 1 || o.repeats > 1000) {
    throw new VsysError('USAGE', `measureI386: repeats ${o.repeats} must be an integer in 1..1000`);
  }
  if (o.timeoutMs !== undefined && !(o.timeoutMs > 0)) {
    throw new VsysError('USAGE', `measureI386: timeoutMs ${o.timeoutMs} must be positive`);
  }
}

/** Times a caller-supplied 32-bit body (no prerequisites) the way the paths are timed: for baselines and tests. */
export async function measureI386Body(emit: (a: Asm) => void, opts: I386Options): Promise<I386Result> {
  checkArgs(opts);
  const run = await runI386(timingProgram({ emit }, opts.iterations, opts.repeats), opts.timeoutMs);
  const failed = describeI386Failure(run);
  if (failed !== undefined || run.kind !== 'exit') return { unavailable: failed ?? 'no output' };
  const cycles = cyclesFrom(run.stdout, opts.iterations, opts.repeats);
  return cycles ? { cyclesPerCall: cycles } : { unavailable: `the 32-bit program wrote ${run.stdout.length} bytes of output, not ${H.size + opts.repeats * ROUND}` };
}

function cpuVendor(): string | undefined {
  try {
    return /^vendor_id\s*:\s*(\S+)/m.exec(fs.readFileSync('/proc/cpuinfo', 'latin1'))?.[1];
  } catch {
    return undefined;
  }
}

interface Probe {
  /** Set when nothing 32-bit can be measured. */
  unavailable?: string;
  hasSysinfo: boolean;
  /** The vDSO image, or why there is none. */
  vdso: Uint8Array | string;
}

/** Runs the probe until it has dumped all of the vDSO's loaded part (or learned there is none). */
async function probe(timeoutMs: number | undefined): Promise<Probe> {
  let pages = 2;
  for (;;) {
    const run = await runI386(probeProgram(pages), timeoutMs);
    const stdout = run.kind === 'exit' || run.kind === 'signal' ? run.stdout : Buffer.alloc(0);
    const head = readOutput(stdout);
    if (run.kind === 'signal' && head && run.signal === 'SIGSEGV') {
      return { unavailable: 'rdtsc faults in this process (SIGSEGV): reading the TSC is disabled (CR4.TSD, prctl PR_SET_TSC)', hasSysinfo: false, vdso: '' };
    }
    if (run.kind === 'signal' && !head && (run.signal === 'SIGKILL' || run.signal === 'SIGSEGV')) {
      return { unavailable: NO_IA32, hasSysinfo: false, vdso: '' }; // killed during exec
    }
    const failed = describeI386Failure(run);
    if (failed !== undefined) return { unavailable: failed, hasSysinfo: false, vdso: '' };
    if (!head) return { unavailable: `the 32-bit probe wrote ${stdout.length} bytes of unexpected output`, hasSysinfo: false, vdso: '' };
    const hasSysinfo = head.sysinfo !== 0;
    if (head.status === STATUS.noEhdr) return { hasSysinfo, vdso: 'the kernel maps no vDSO into 32-bit processes (no AT_SYSINFO_EHDR; vdso32=0?)' };
    const image = stdout.subarray(H.size);
    const need = loadedSize(image);
    if (typeof need === 'string') return { hasSysinfo, vdso: need };
    if (need <= image.length) return { hasSysinfo, vdso: image.subarray(0, need) };
    if (image.length < pages * PAGE) return { hasSysinfo, vdso: `the vDSO is ${image.length} readable bytes, but its headers describe ${need}` };
    pages = Math.ceil(need / PAGE);
  }
}

async function measurePath(p: I386Path, body: Body, o: I386Options, vendor: string | undefined): Promise<I386Result> {
  const elf = timingProgram(body, o.iterations, o.repeats);
  const before = { ms: Date.now(), mono: process.hrtime.bigint() };
  const run = await runI386(elf, o.timeoutMs);
  const after = { ms: Date.now(), mono: process.hrtime.bigint() };
  if (p === 'sysenter' && run.kind === 'signal' && run.signal === 'SIGILL') {
    return { unavailable: vendor === 'AuthenticAMD' || vendor === 'HygonGenuine' ? SYSENTER_AMD : `sysenter raised SIGILL on this ${vendor ?? 'unknown'} CPU` };
  }
  const failed = describeI386Failure(run);
  if (failed !== undefined || run.kind !== 'exit') return { unavailable: failed ?? 'no output' };
  const h = readOutput(run.stdout);
  if (!h) return { unavailable: 'the 32-bit program wrote no valid header' };
  if (h.status === STATUS.noSysinfo) return { unavailable: 'no AT_SYSINFO in the auxiliary vector: the kernel maps no 32-bit vDSO' };
  if (h.status === STATUS.noEhdr) return { unavailable: 'no AT_SYSINFO_EHDR in the auxiliary vector: the kernel maps no 32-bit vDSO' };
  const cycles = cyclesFrom(run.stdout, o.iterations, o.repeats);
  if (!cycles) return { unavailable: `the 32-bit program wrote ${run.stdout.length} bytes, not ${H.size + o.repeats * ROUND}` };
  const v = verify(p, h, run.pid, before, after);
  return 'wrong' in v ? { unavailable: `wrong result: ${v.wrong}` } : { cyclesPerCall: cycles, check: v.ok };
}

/**
 * Measures every 32-bit path in its own child, one after another. Paths that cannot run here are
 * reported as `unavailable` with the reason; only bad arguments throw.
 */
export async function measureI386(opts: I386Options): Promise<Record<I386Path, I386Result>> {
  checkArgs(opts);
  const all = (reason: string) => Object.fromEntries(I386_PATHS.map((p) => [p, { unavailable: reason }])) as Record<I386Path, I386Result>;
  const pr = await probe(opts.timeoutMs);
  if (pr.unavailable !== undefined) return all(pr.unavailable);
  const vendor = cpuVendor();
  const results = {} as Record<I386Path, I386Result>;
  for (const p of I386_PATHS) {
    if (p === 'vdso32-gettimeofday' || p === 'vdso32-clock_gettime') {
      const off = typeof pr.vdso === 'string' ? pr.vdso : vdsoOffset(pr.vdso, VDSO_SYMBOL[p]);
      results[p] = typeof off === 'string' ? { unavailable: off } : await measurePath(p, BODIES[p](off), opts, vendor);
    } else {
      results[p] = await measurePath(p, BODIES[p](), opts, vendor);
    }
  }
  return results;
}
