// Plain host facts read from /proc and /sys: kernel, CPU, clocksource, CPU vulnerabilities (KPTI),
// 32-bit support, perf access and tracefs, containers, seccomp. Every reader returns null for what
// it cannot see rather than guessing; the parsers take text so tests can feed captured files.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import type { CmdlineFacts } from './cmdline.js';
import type { KconfigFacts } from './kconfig.js';

export function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

export interface KernelFacts {
  release: string;
  version: string;
  arch: string;
  platform: string;
}

export function readKernel(): KernelFacts {
  return { release: os.release(), version: os.version(), arch: os.machine(), platform: process.platform };
}

export interface CpuFacts {
  vendor: string | null;
  model: string | null;
  family: number | null;
  modelNumber: number | null;
  count: number;
  flags: { rdtscp: boolean; constantTsc: boolean; nonstopTsc: boolean; pti: boolean; hypervisor: boolean };
}

export function parseCpuinfo(text: string): CpuFacts {
  const first = text.split(/\n\s*\n/)[0] ?? '';
  const field = (k: string) => {
    const m = new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(first);
    return m ? m[1]!.trim() : null;
  };
  const flags = new Set((field('flags') ?? '').split(/\s+/));
  const num = (s: string | null) => (s === null || s === '' ? null : Number(s));
  return {
    vendor: field('vendor_id'),
    model: field('model name'),
    family: num(field('cpu family')),
    modelNumber: num(field('model')),
    count: (text.match(/^processor\s*:/gm) ?? []).length,
    flags: {
      rdtscp: flags.has('rdtscp'),
      constantTsc: flags.has('constant_tsc'),
      nonstopTsc: flags.has('nonstop_tsc'),
      pti: flags.has('pti'),
      hypervisor: flags.has('hypervisor'),
    },
  };
}

export interface ClocksourceFacts {
  current: string | null;
  available: string[];
}

export function readClocksource(root = '/sys/devices/system/clocksource/clocksource0'): ClocksourceFacts {
  return {
    current: readText(`${root}/current_clocksource`)?.trim() ?? null,
    available: (readText(`${root}/available_clocksource`) ?? '').trim().split(/\s+/).filter(Boolean),
  };
}

export interface Vulnerability {
  name: string;
  status: string;
  affected: boolean;
}

export function readVulnerabilities(dir = '/sys/devices/system/cpu/vulnerabilities'): Vulnerability[] {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  return names.map((name) => {
    const status = (readText(`${dir}/${name}`) ?? '').trim();
    return { name, status, affected: !/^Not affected/.test(status) };
  });
}

export interface KptiFacts {
  /** Page-table isolation in force: every kernel entry pays a CR3 switch (seed 004: ~180 ns). */
  enabled: boolean | null;
  evidence: string;
}

export function kptiState(vulns: Vulnerability[], cmdline: CmdlineFacts | null, cpu: CpuFacts | null): KptiFacts {
  const m = vulns.find((v) => v.name === 'meltdown');
  if (m) {
    if (/PTI/.test(m.status)) return { enabled: true, evidence: `meltdown: ${m.status}` };
    return { enabled: false, evidence: `meltdown: ${m.status}` };
  }
  if (cpu?.flags.pti) return { enabled: true, evidence: 'cpu flag pti' };
  if (cmdline?.pti === 'off') return { enabled: false, evidence: 'pti=off / nopti on the command line' };
  return { enabled: null, evidence: 'no /sys/devices/system/cpu/vulnerabilities/meltdown' };
}

export interface Ia32Facts {
  /** 32-bit processes can run (int 0x80, sysenter, the 32-bit vDSO). */
  available: boolean | null;
  vsyscall32: boolean | null;
  evidence: string[];
}

export function ia32Facts(k: KconfigFacts | null, cmdline: CmdlineFacts | null, vsyscall32Text: string | null): Ia32Facts {
  const evidence: string[] = [];
  let available: boolean | null = null;
  if (k?.ia32Emulation === false) {
    available = false;
    evidence.push('CONFIG_IA32_EMULATION is not set');
  } else if (k?.ia32Emulation) {
    available = k.ia32EmulationDefaultDisabled ? false : true;
    evidence.push(`CONFIG_IA32_EMULATION=y${k.ia32EmulationDefaultDisabled ? ', default disabled' : ''}`);
  }
  if (cmdline?.ia32Emulation !== null && cmdline?.ia32Emulation !== undefined && k?.ia32Emulation !== false) {
    available = cmdline.ia32Emulation;
    evidence.push(`ia32_emulation=${cmdline.ia32Emulation ? 'on' : 'off'} on the command line`);
  }
  const v = vsyscall32Text?.trim();
  if (v !== undefined) evidence.push(`/proc/sys/abi/vsyscall32 = ${v}`);
  return { available, vsyscall32: v === undefined ? null : v !== '0', evidence };
}

export interface PerfFacts {
  euid: number | null;
  capPerfmon: boolean;
  capSysAdmin: boolean;
  paranoid: number | null;
  /** Can this process count tracepoints of other processes (what vsys trace needs)? */
  tracepointsUsable: boolean;
  reason: string;
  tracefs: string | null;
  vsyscallTracepoint: boolean;
}

export function parseCapEff(status: string): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)/m.exec(status);
  return m ? BigInt('0x' + m[1]!) : 0n;
}

const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;

export function perfFacts(status: string | null, paranoidText: string | null, tracefsCandidates = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing']): PerfFacts {
  const capEff = status ? parseCapEff(status) : 0n;
  const capPerfmon = ((capEff >> CAP_PERFMON) & 1n) === 1n;
  const capSysAdmin = ((capEff >> CAP_SYS_ADMIN) & 1n) === 1n;
  const paranoid = paranoidText === null ? null : Number(paranoidText.trim());
  const euid = typeof process.geteuid === 'function' ? process.geteuid() : null;
  const tracefs = tracefsCandidates.find((d) => existsSync(`${d}/events`)) ?? null;
  const privileged = capPerfmon || capSysAdmin;
  let usable = privileged || paranoid === -1;
  let reason = privileged ? `CAP_${capPerfmon ? 'PERFMON' : 'SYS_ADMIN'} is effective` : paranoid === -1 ? 'kernel.perf_event_paranoid = -1' : `not root, no CAP_PERFMON, and kernel.perf_event_paranoid = ${paranoid ?? 'unknown'} (tracepoints need root or CAP_PERFMON, or perf_event_paranoid <= -1)`;
  if (paranoid === null) {
    usable = false;
    reason = '/proc/sys/kernel/perf_event_paranoid is missing: the kernel has no perf events';
  }
  if (usable && !tracefs) {
    usable = false;
    reason = 'tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)';
  }
  return {
    euid,
    capPerfmon,
    capSysAdmin,
    paranoid,
    tracepointsUsable: usable,
    reason,
    tracefs,
    vsyscallTracepoint: tracefs ? existsSync(`${tracefs}/events/vsyscall/emulate_vsyscall`) : false,
  };
}

export interface ContainerFacts {
  inContainer: boolean;
  kind: string | null;
  evidence: string[];
}

export function containerFacts(cgroupText: string | null, files: { dockerenv: boolean; containerenv: boolean }, environ: NodeJS.ProcessEnv = process.env): ContainerFacts {
  const evidence: string[] = [];
  let kind: string | null = null;
  if (files.dockerenv) { evidence.push('/.dockerenv exists'); kind = 'docker'; }
  if (files.containerenv) { evidence.push('/run/.containerenv exists'); kind = 'podman'; }
  if (environ.KUBERNETES_SERVICE_HOST) { evidence.push('KUBERNETES_SERVICE_HOST is set'); kind = kind ?? 'kubernetes'; }
  if (environ.container) { evidence.push(`container=${environ.container}`); kind = kind ?? environ.container; }
  for (const line of (cgroupText ?? '').split('\n')) {
    const path = line.split(':').slice(2).join(':');
    const m = /(docker|containerd|cri-containerd|crio|libpod|kubepods|lxc)[-/]/.exec(path);
    if (m) {
      evidence.push(`cgroup ${path}`);
      kind = kind ?? (m[1] === 'kubepods' ? 'kubernetes' : m[1]!);
      break;
    }
  }
  return { inContainer: evidence.length > 0, kind, evidence };
}

export interface SeccompFacts {
  mode: 'disabled' | 'strict' | 'filter' | 'unknown';
  filters: number | null;
  note: string;
}

export function seccompFacts(status: string | null): SeccompFacts {
  const m = /^Seccomp:\s*(\d+)/m.exec(status ?? '');
  const f = /^Seccomp_filters:\s*(\d+)/m.exec(status ?? '');
  const mode = !m ? 'unknown' : m[1] === '0' ? 'disabled' : m[1] === '1' ? 'strict' : m[1] === '2' ? 'filter' : 'unknown';
  const note = mode === 'filter' ? 'emulated vsyscalls pass through the seccomp filter as time/gettimeofday/getcpu; a filter that denies them kills the caller with SIGSYS' : '';
  return { mode, filters: f ? Number(f[1]) : null, note };
}
