// The host report: every fact vsys knows about this machine's syscall paths, each with its evidence.
// Pieces that fail are reported as skipped with the reason; the probe itself never throws on them.
import { existsSync } from 'node:fs';
import { describeError, VsysError } from '../errors.js';
import { parseCmdline, type CmdlineFacts } from './cmdline.js';
import { readKconfig, type KconfigFacts } from './kconfig.js';
import {
  containerFacts, ia32Facts, kptiState, parseCpuinfo, perfFacts, readClocksource, readKernel, readText, readVulnerabilities, seccompFacts,
  type ClocksourceFacts, type ContainerFacts, type CpuFacts, type Ia32Facts, type KernelFacts, type KptiFacts, type PerfFacts, type SeccompFacts, type Vulnerability,
} from './facts.js';
import { checkVdsoHealth, type VdsoHealth } from './vdso-health.js';
import { dumpVdso, readVdso, type VdsoImage } from './vdso.js';
import { callGate } from './call-gate.js';
import { runGetcpuCheck, type GetcpuCheck } from './getcpu-check.js';
import { detectVsyscallMode, type ActiveChecks, type VsyscallModeReport } from './vsyscall-mode.js';
import type { VdsoSymbol } from './vdso-parse.js';

export interface VdsoReport {
  present: boolean;
  base: bigint | null;
  size: number | null;
  soname: string | null;
  hash: 'gnu' | 'sysv' | null;
  symbols: Pick<VdsoSymbol, 'name' | 'version' | 'address' | 'offset' | 'size' | 'type' | 'binding'>[];
  health: VdsoHealth | null;
  error?: string;
}

export interface HostReport {
  kernel: KernelFacts;
  cpu: CpuFacts | null;
  /** The mode and its evidence; `trapFlag` and `vmReadv` are the selftest's checks (null with --no-active). */
  vsyscall: VsyscallModeReport & ActiveChecks;
  vdso: VdsoReport;
  /** getcpu on every online CPU: the vDSO's and the page's answers against sched_getcpu and sysfs; null when not asked. */
  getcpu: GetcpuCheck | null;
  clocksource: ClocksourceFacts;
  kpti: KptiFacts;
  vulnerabilities: Vulnerability[];
  ia32: Ia32Facts;
  perf: PerfFacts;
  /**
   * How `vsys trace` would count here: eBPF (its programs loaded and verified now), perf, or not at
   * all; null when not asked (ProbeOptions.traceCounting false).
   */
  traceCounting: { backend: 'bpf' | 'perf' | 'none'; reason: string } | null;
  container: ContainerFacts;
  seccomp: SeccompFacts;
  cmdline: CmdlineFacts | null;
  kconfig: KconfigFacts | null;
  skipped: { what: string; why: string }[];
}

export interface ProbeOptions {
  /** Run the child-process vsyscall test (default true). */
  active?: boolean;
  /** Measure whether the vDSO clock stays in user space (default true). */
  vdsoHealth?: boolean;
  /** Write the vDSO image here. */
  dumpVdsoTo?: string;
  /** Load and attach vsys trace's eBPF programs to see whether they are allowed (~100 ms; default true). */
  traceCounting?: boolean;
  /** Pin a child to each online CPU and check getcpu there (default true). */
  getcpu?: boolean;
  /** The kernel selftest's checks of the page: the trap-flag step and process_vm_readv (default true). */
  selftest?: boolean;
}

export function assertSupportedHost(): void {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new VsysError('UNSUPPORTED_HOST', `vsys examines Linux on x86-64; this is ${process.platform} on ${process.arch}. The vsyscall page exists only on x86-64 Linux.`);
  }
}

/** Why `vsys trace` cannot count here at all (from the perf facts alone), or null. */
export function traceBlocker(perf: PerfFacts): string | null {
  if (!perf.tracepointsUsable) return perf.reason;
  if (!perf.vsyscallTracepoint) return 'no vsyscall:emulate_vsyscall tracepoint (a kernel without vsyscall emulation)';
  return null;
}

/** Loads (and drops) vsys trace's eBPF programs to learn whether this kernel and these privileges allow them. */
async function traceCounting(perf: PerfFacts): Promise<NonNullable<HostReport['traceCounting']>> {
  const blocker = traceBlocker(perf);
  if (blocker) return { backend: 'none', reason: blocker };
  try {
    const { bpfCountersProblem } = await import('../trace/bpf-counters.js');
    const problem = bpfCountersProblem();
    if (!problem) return { backend: 'bpf', reason: 'its eBPF programs load and pass this kernel\'s verifier' };
    return { backend: 'perf', reason: `eBPF refused: ${problem.message.split('\n')[0]}` };
  } catch (e) {
    return { backend: 'perf', reason: `eBPF not tried: ${(e as Error).message}` };
  }
}

export async function probeHost(opts: ProbeOptions = {}): Promise<HostReport> {
  assertSupportedHost();
  const skipped: HostReport['skipped'] = [];
  const kernel = readKernel();
  const cpuText = readText('/proc/cpuinfo');
  const cpu = cpuText ? parseCpuinfo(cpuText) : null;
  const cmdlineText = readText('/proc/cmdline');
  const cmdline = cmdlineText === null ? null : parseCmdline(cmdlineText);
  if (cmdline === null) skipped.push({ what: 'kernel command line', why: '/proc/cmdline is not readable' });
  const kconfig = readKconfig(kernel.release);
  if (!kconfig) skipped.push({ what: 'kernel config', why: `neither /proc/config.gz nor /boot/config-${kernel.release} exists` });
  const status = readText('/proc/self/status');
  const clocksource = readClocksource();
  const vulnerabilities = readVulnerabilities();
  const perf = perfFacts(status, readText('/proc/sys/kernel/perf_event_paranoid'));

  const vsyscallP = detectVsyscallMode({ active: opts.active !== false, selftest: opts.selftest !== false, kconfig, kernelRelease: kernel.release, ...(cmdlineText !== null ? { cmdlineText } : {}) });
  if (opts.active === false) skipped.push({ what: 'active vsyscall test', why: 'disabled by option' });

  let vdso: VdsoReport;
  let image: VdsoImage | undefined;
  try {
    image = readVdso();
    vdso = {
      present: true, base: image.base, size: image.size, soname: image.soname, hash: image.hash,
      symbols: image.symbols.map(({ name, version, address, offset, size, type, binding }) => ({ name, version, address, offset, size, type, binding })),
      health: null,
    };
  } catch (e) {
    vdso = { present: false, base: null, size: null, soname: null, hash: null, symbols: [], health: null, error: describeError(e) };
  }
  if (image && opts.dumpVdsoTo) dumpVdso(image, opts.dumpVdsoTo);
  if (image && opts.vdsoHealth !== false) {
    try {
      vdso.health = checkVdsoHealth(image, { tracefs: perf.tracefs, perfUsable: perf.tracepointsUsable, clocksource: clocksource.current });
      if (vdso.health.perfSkipped) skipped.push({ what: 'syscall count around vDSO calls', why: `${vdso.health.perfSkipped}; judged by timing instead` });
    } catch (e) {
      skipped.push({ what: 'vDSO health measurement', why: describeError(e) });
    }
  }

  const vsyscall = await vsyscallP;
  // After the vDSO timing, so that a child hopping between CPUs does not disturb it.
  const getcpu = opts.getcpu === false ? null : await runGetcpuCheck(callGate(vsyscall.active?.call ?? null));
  return {
    kernel,
    cpu,
    vsyscall,
    vdso,
    getcpu,
    clocksource,
    kpti: kptiState(vulnerabilities, cmdline, cpu),
    vulnerabilities,
    ia32: ia32Facts(kconfig, cmdline, readText('/proc/sys/abi/vsyscall32')),
    perf,
    traceCounting: opts.traceCounting === false ? null : await traceCounting(perf),
    container: containerFacts(readText('/proc/self/cgroup'), { dockerenv: existsSync('/.dockerenv'), containerenv: existsSync('/run/.containerenv') }),
    seccomp: seccompFacts(status),
    cmdline,
    kconfig,
    skipped,
  };
}
