// Whether one call of a path returned what it must: judged against what real system calls said just
// before and after it (the bracketing of the kernel's selftests test_vsyscall.c and
// vdso_test_correctness.c) and, for getcpu's node, against sysfs (/sys/devices/system/cpu/cpuN/nodeM).
import { readSysfsNodes } from '../host/getcpu-check.js';
import type { CheckKind } from './paths.js';

export interface Verdict {
  ok: boolean;
  detail: string;
}

/** What one call left: its %rax and the scratch buffer (loop-code.ts: [0,16) timespec/timeval or cpu, [16,20) node). */
export interface CallResult {
  rax: bigint;
  buf: Buffer;
}

/**
 * What the oracle said just before and just after the call: ns of the clock (time, timeval,
 * timespec), the CPU getcpu(2) named (cpu, cpu-return), the pid (pid).
 */
export interface Bracket {
  before: bigint;
  after: bigint;
}

/** The node of `cpu` as sysfs links it; undefined when sysfs cannot say. */
export type NodeOf = (cpu: number) => number | undefined;

/**
 * The NUMA node of `cpu` from sysfs (the `nodeM` link in `cpu/cpuN/`, read by the probe's own
 * reader); undefined where sysfs links none (no /sys in a container, a kernel without NUMA, no such CPU).
 */
export function cpuNode(cpu: number, root = '/sys/devices/system/cpu'): number | undefined {
  return readSysfsNodes([cpu], root).get(cpu) ?? undefined;
}

const NS = 1_000_000_000n;

/** Judges one call's result by the path's check kind. */
export function judgeCall(kind: Exclude<CheckKind, 'none'>, call: CallResult, b: Bracket, nodeOf: NodeOf = cpuNode): Verdict {
  switch (kind) {
    case 'time': {
      // time() reads the coarse clock, updated once a tick: just after a second begins it may
      // still say the last one while the precise bracket says the new one (≤ 10 ms of lag).
      const s = call.rax;
      const lo = (b.before - 10_000_000n) / NS;
      const ok = s >= lo && s <= b.after / NS;
      return { ok, detail: `time() = ${s}, between ${lo} and ${b.after / NS} from real syscalls (less a tick)` };
    }
    case 'timeval': {
      const t = call.buf.readBigInt64LE(0) * NS + call.buf.readBigInt64LE(8) * 1000n;
      const ok = call.rax === 0n && t >= (b.before / 1000n) * 1000n && t <= b.after;
      return { ok, detail: `returned ${call.rax}; tv = ${t / 1000n} µs, bracketed by real syscalls: ${ok ? 'yes' : 'no'}` };
    }
    case 'timespec': {
      // The same clock read by the syscall before and after; coarse clocks too, since the vDSO's
      // copy and the kernel's are updated under one seqcount (vdso_test_correctness.c checks the same).
      const t = call.buf.readBigInt64LE(0) * NS + call.buf.readBigInt64LE(8);
      const ok = call.rax === 0n && t >= b.before && t <= b.after;
      return { ok, detail: `returned ${call.rax}; ts = ${fmtNs(t)}, ${ok ? 'within' : 'outside'} [${fmtNs(b.before)}, ${fmtNs(b.after)}] read by real syscalls of the same clock` };
    }
    case 'cpu':
      return judgeCpu({ ret: call.rax, cpu: call.buf.readUInt32LE(0), node: call.buf.readUInt32LE(16) }, b, nodeOf);
    case 'cpu-return': {
      // sched_getcpu returns an int: the CPU, or -1 with errno.
      const v = BigInt.asIntN(32, call.rax);
      return judgeCpu({ ret: v < 0n ? v : 0n, cpu: Number(v) }, b, nodeOf);
    }
    case 'pid': {
      const ok = call.rax === b.before && call.rax === b.after;
      return { ok, detail: `getpid = ${call.rax}, process.pid = ${b.before}` };
    }
  }
}

/** What a getcpu-like call said: its return (0 on success), the CPU, and the node where the call gives one. */
export interface CpuAnswer {
  ret: bigint;
  cpu: number;
  node?: number;
}

/**
 * The CPU must be one getcpu(2) named just before or after the call (the same one when the thread
 * is pinned), and the node, where the call returns one, the one sysfs links that CPU to.
 */
export function judgeCpu(a: CpuAnswer, b: Bracket, nodeOf: NodeOf): Verdict {
  const seen = [...new Set([Number(b.before), Number(b.after)])];
  const cpuOk = a.ret === 0n && seen.includes(a.cpu);
  const said = `returned ${a.ret}; CPU ${a.cpu}${a.node === undefined ? '' : `, node ${a.node}`}; getcpu(2) before/after: CPU ${seen.join('/')}`;
  if (a.node === undefined) return { ok: cpuOk, detail: said };
  const want = nodeOf(a.cpu);
  if (want === undefined) return { ok: cpuOk, detail: `${said}; node not checked (sysfs does not say which node cpu${a.cpu} is on)` };
  return { ok: cpuOk && a.node === want, detail: `${said}; sysfs: cpu${a.cpu} is on node ${want}` };
}

function fmtNs(t: bigint): string {
  const a = t < 0n ? -t : t;
  return `${t < 0n ? '-' : ''}${a / NS}.${(a % NS).toString().padStart(9, '0')} s`;
}
