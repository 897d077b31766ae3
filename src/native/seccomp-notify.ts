// The supervisor's side of a seccomp user-notification listener (seccomp_unotify(2)): take the
// listener from the process that installed the filter (pidfd_getfd), see whether a notification is
// waiting (poll), and receive it (SECCOMP_IOCTL_NOTIF_RECV). Used by `vsys run --as none`.
import { VsysError } from '../errors.js';
import { SECCOMP_DATA, SECCOMP_IOCTL_NOTIF_RECV, SECCOMP_IOCTL_NOTIF_SEND, SECCOMP_NOTIF, SECCOMP_NOTIF_RESP, SECCOMP_USER_NOTIF_FLAG_CONTINUE, SYS_X86_64 } from '../model/index.js';
import { loadLibc } from './koffi.js';
import { errno, libcBindings, rawSyscall } from './libc.js';

const POLLIN = 0x1;
const POLLHUP = 0x10;

interface NotifyBindings {
  poll(fds: Buffer, n: number, timeoutMs: number): number;
  ioctlBuf(fd: number, req: number, buf: Buffer): number;
}
let nb: NotifyBindings | undefined;
function bindings(): NotifyBindings {
  if (nb) return nb;
  const lib = loadLibc();
  nb = {
    poll: lib.func('int poll(_Inout_ uint8_t *fds, unsigned long nfds, int timeout)'),
    ioctlBuf: lib.func('int ioctl(int fd, unsigned long req, _Inout_ uint8_t *buf)'),
  } as unknown as NotifyBindings;
  return nb;
}

function fail(what: string): never {
  const e = errno();
  throw new VsysError('NATIVE_CALL_FAILED', `${what}: ${libcBindings().strerror(e)}`, { syscall: what, errno: e });
}

/** A copy of descriptor `fd` of process `pid` in this process (pidfd_open + pidfd_getfd, Linux 5.6). */
export function takeDescriptor(pid: number, fd: number): number {
  const pidfd = Number(rawSyscall(SYS_X86_64.pidfd_open, pid, 0));
  if (pidfd < 0) fail('pidfd_open');
  try {
    const mine = Number(rawSyscall(SYS_X86_64.pidfd_getfd, pidfd, fd, 0));
    if (mine < 0) fail('pidfd_getfd');
    return mine;
  } finally {
    libcBindings().close(pidfd);
  }
}

/** Whether a notification waits on the listener (`ready`), none yet (`idle`), or no process uses the filter any more (`gone`). */
export function listenerState(fd: number, timeoutMs = 0): 'ready' | 'idle' | 'gone' {
  const p = Buffer.alloc(8);
  p.writeInt32LE(fd, 0);
  p.writeInt16LE(POLLIN, 4);
  const n = bindings().poll(p, 1, timeoutMs);
  if (n < 0) return errno() === 4 /* EINTR */ ? 'idle' : fail('poll');
  if (n === 0) return 'idle';
  const revents = p.readInt16LE(6);
  if (revents & POLLIN) return 'ready';
  return revents & POLLHUP ? 'gone' : 'idle';
}

export interface Notification {
  id: bigint;
  /** The thread that made the call (its id in vsys's pid namespace). */
  pid: number;
  /** The system call number: for a call of the page, the entry's (gettimeofday 96, time 201, getcpu 309). */
  nr: number;
  arch: number;
  /** Where the call was made: the entry's address in the page. */
  ip: bigint;
  args: bigint[];
}

/** Receives one notification; undefined when it went away meanwhile (its thread was killed). */
export function receiveNotification(fd: number): Notification | undefined {
  const buf = Buffer.alloc(SECCOMP_NOTIF.size); // zeroed, as the kernel requires
  if (bindings().ioctlBuf(fd, SECCOMP_IOCTL_NOTIF_RECV, buf) < 0) {
    if (errno() === 2 /* ENOENT */) return undefined;
    fail('ioctl(SECCOMP_IOCTL_NOTIF_RECV)');
  }
  const d = SECCOMP_NOTIF.data;
  return {
    id: buf.readBigUInt64LE(SECCOMP_NOTIF.id),
    pid: buf.readUInt32LE(SECCOMP_NOTIF.pid),
    nr: buf.readInt32LE(d + SECCOMP_DATA.nr),
    arch: buf.readUInt32LE(d + SECCOMP_DATA.arch),
    ip: buf.readBigUInt64LE(d + SECCOMP_DATA.instructionPointerLow),
    args: [0, 1, 2, 3, 4, 5].map((i) => buf.readBigUInt64LE(d + SECCOMP_DATA.args + 8 * i)),
  };
}

/** Answers a notification "go on": the kernel carries out the call as if no filter had asked. */
export function continueNotification(fd: number, id: bigint): void {
  const r = Buffer.alloc(SECCOMP_NOTIF_RESP.size);
  r.writeBigUInt64LE(id, SECCOMP_NOTIF_RESP.id);
  r.writeUInt32LE(SECCOMP_USER_NOTIF_FLAG_CONTINUE, SECCOMP_NOTIF_RESP.flags);
  // ENOENT: the thread went away meanwhile; nothing to answer.
  if (bindings().ioctlBuf(fd, SECCOMP_IOCTL_NOTIF_SEND, r) < 0 && errno() !== 2) fail('ioctl(SECCOMP_IOCTL_NOTIF_SEND)');
}

/** SIGSEGV to one thread (tgkill), as the kernel sends it to the thread that faulted; false when it is gone. */
export function segfaultThread(tgid: number, tid: number): boolean {
  return rawSyscall(SYS_X86_64.tgkill, tgid, tid, 11 /* SIGSEGV */) === 0n;
}

export function closeDescriptor(fd: number): void {
  libcBindings().close(fd);
}
