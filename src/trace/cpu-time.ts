// CPU time of the traced tasks, from perf's task-clock software counter (PERF_COUNT_SW_TASK_CLOCK,
// include/uapi/linux/perf_event.h): ns on a CPU, user and kernel, a child's time folded into its
// parent's counter when the child exits (inherit), as `perf stat` counts a command.
import { VsysError } from '../errors.js';
import { PERF_IOC, openPerfEvent, tracepointAttr } from '../native/perf.js';
import { errno, libcBindings } from '../native/libc.js';
import type { CounterScope } from './counters.js';

const PERF_TYPE_SOFTWARE = 1;
const PERF_COUNT_SW_TASK_CLOCK = 1;

/**
 * One task-clock counter per scope, disabled until enabled. The attr is perf.ts's (type, size,
 * config, flags) with the type set to software: config is then the software event.
 */
export class TaskClock {
  private readonly fds: number[] = [];

  constructor(scopes: CounterScope[]) {
    try {
      for (const scope of scopes) {
        const attr = tracepointAttr(PERF_COUNT_SW_TASK_CLOCK, 'pid' in scope && scope.inherit);
        attr.writeUInt32LE(PERF_TYPE_SOFTWARE, 0);
        this.fds.push('pid' in scope
          ? openPerfEvent(attr, { pid: scope.pid, cpu: -1 })
          : openPerfEvent(attr, { pid: -1, cpu: scope.cpu, ...(scope.cgroupFd !== undefined ? { cgroupFd: scope.cgroupFd } : {}) }));
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private ioctl(req: number): void {
    for (const fd of this.fds) {
      if (libcBindings().ioctl(fd, req, 0) !== 0) throw new VsysError('PERF_UNAVAILABLE', `ioctl on a task-clock counter failed: errno ${errno()}`, { syscall: 'ioctl', errno: errno() });
    }
  }

  enable(): void { this.ioctl(PERF_IOC.ENABLE); }
  disable(): void { this.ioctl(PERF_IOC.DISABLE); }

  /** Seconds of CPU the scopes' tasks have used while enabled (children once they have exited). */
  seconds(): number {
    let ns = 0n;
    const buf = Buffer.alloc(8);
    for (const fd of this.fds) {
      if (libcBindings().read(fd, buf, 8) !== 8) throw new VsysError('PERF_UNAVAILABLE', 'read of a task-clock counter failed', { syscall: 'read', errno: errno() });
      ns += buf.readBigUInt64LE(0);
    }
    return Number(ns) / 1e9;
  }

  close(): void {
    for (const fd of this.fds.splice(0)) libcBindings().close(fd);
  }
}
