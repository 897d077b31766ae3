// perf_event_open(2) for counting tracepoints, through koffi. Layout of struct perf_event_attr
// from include/uapi/linux/perf_event.h (the fields vsys sets; the rest stays zero).
import { VsysError } from '../errors.js';
import { loadLibc } from './koffi.js';
import { errno, libcBindings } from './libc.js';
import { SYS_X86_64 } from '../model/syscalls.js';

export const PERF_TYPE_TRACEPOINT = 2;
const PERF_ATTR_SIZE = 128;
const PERF_FLAG_FD_CLOEXEC = 8;
/** perf_event ioctl requests (include/uapi/linux/perf_event.h). */
export const PERF_IOC = { ENABLE: 0x2400, DISABLE: 0x2401, RESET: 0x2403, SET_FILTER: 0x40082406, SET_BPF: 0x40042408 } as const;

let perfSyscall: ((nr: number, attr: Buffer, pid: number, cpu: number, group: number, flags: number) => number) | undefined;

function binding() {
  if (!perfSyscall) perfSyscall = loadLibc().func('syscall', 'long', ['long', 'void *', 'int', 'int', 'int', 'unsigned long']) as never;
  return perfSyscall!;
}

export interface CounterOptions {
  /** Tracepoint id from tracefs events/<sys>/<name>/id. */
  tracepointId: number;
  /** 0 = this thread; a pid for another process. */
  pid?: number;
  /** -1 = any CPU. */
  cpu?: number;
  /** Count in children created after opening. */
  inherit?: boolean;
  /** A tracepoint filter in ftrace syntax ("nr == 1"), set with PERF_EVENT_IOC_SET_FILTER. */
  filter?: string;
  /** An open fd of a cgroup directory: count only tasks in that cgroup (cpu must be ≥ 0). */
  cgroupFd?: number;
}

const PERF_FLAG_PID_CGROUP = 4;

let filterIoctl: ((fd: number, req: number, filter: string) => number) | undefined;

/** perf_event_open with an attr buffer, mapping errno to the coded errors every caller wants. */
export function openPerfEvent(attr: Buffer, opts: { pid?: number; cpu?: number; cgroupFd?: number; filter?: string }): number {
  const pid = opts.cgroupFd ?? opts.pid ?? 0;
  const flags = PERF_FLAG_FD_CLOEXEC | (opts.cgroupFd !== undefined ? PERF_FLAG_PID_CGROUP : 0);
  const fd = Number(binding()(SYS_X86_64.perf_event_open, attr, pid, opts.cpu ?? -1, -1, flags));
  if (fd < 0) {
    const e = errno();
    const why = libcBindings().strerror(e);
    if (e === 1 || e === 13) {
      throw new VsysError('PERF_NO_PERMISSION', `perf_event_open: ${why} (need root or CAP_PERFMON, or kernel.perf_event_paranoid <= -1 for tracepoints)`, { syscall: 'perf_event_open', errno: e });
    }
    if (e === 3) throw new VsysError('PERF_UNAVAILABLE', `perf_event_open: no such process ${pid}`, { syscall: 'perf_event_open', errno: e });
    throw new VsysError('PERF_UNAVAILABLE', `perf_event_open: ${why}`, { syscall: 'perf_event_open', errno: e });
  }
  if (opts.filter !== undefined) {
    filterIoctl ??= loadLibc().func('int ioctl(int fd, unsigned long req, const char *filter)') as never;
    if (filterIoctl!(fd, PERF_IOC.SET_FILTER, opts.filter) !== 0) {
      const e = errno();
      libcBindings().close(fd);
      throw new VsysError('PERF_UNAVAILABLE', `perf filter '${opts.filter}' rejected: ${libcBindings().strerror(e)}`, { syscall: 'ioctl', errno: e });
    }
  }
  return fd;
}

/**
 * struct perf_event_attr for a tracepoint, disabled until enabled: type, size, config (the
 * tracepoint id), and the flags word (bit 0 disabled, bit 1 inherit, plus `extraFlags`).
 */
export function tracepointAttr(tracepointId: number, inherit: boolean | undefined, extraFlags = 0n): Buffer {
  const attr = Buffer.alloc(PERF_ATTR_SIZE);
  attr.writeUInt32LE(PERF_TYPE_TRACEPOINT, 0);
  attr.writeUInt32LE(PERF_ATTR_SIZE, 4);
  attr.writeBigUInt64LE(BigInt(tracepointId), 8);
  attr.writeBigUInt64LE(1n | (inherit ? 2n : 0n) | extraFlags, 40);
  return attr;
}

/** A counting perf event; starts disabled. */
export class PerfCounter {
  readonly fd: number;

  constructor(opts: CounterOptions) {
    this.fd = openPerfEvent(tracepointAttr(opts.tracepointId, opts.inherit), opts);
  }

  private ioctl(req: number, what: string): void {
    if (libcBindings().ioctl(this.fd, req, 0) !== 0) throw new VsysError('PERF_UNAVAILABLE', `ioctl(${what}) on a perf event failed: errno ${errno()}`, { syscall: 'ioctl', errno: errno() });
  }

  reset(): void { this.ioctl(PERF_IOC.RESET, 'RESET'); }
  enable(): void { this.ioctl(PERF_IOC.ENABLE, 'ENABLE'); }
  disable(): void { this.ioctl(PERF_IOC.DISABLE, 'DISABLE'); }

  read(): bigint {
    const buf = Buffer.alloc(8);
    const n = libcBindings().read(this.fd, buf, 8);
    if (n !== 8) throw new VsysError('PERF_UNAVAILABLE', `read of a perf counter returned ${n}`, { syscall: 'read', errno: errno() });
    return buf.readBigUInt64LE(0);
  }

  close(): void {
    libcBindings().close(this.fd);
  }
}
