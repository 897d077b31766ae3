// What `vsys run --as none` builds its launcher from: seccomp, classic BPF, namespaces and mounts,
// as the kernel's UAPI headers define them (linux/seccomp.h, filter.h, audit.h, prctl.h, sched.h,
// mount.h, fcntl.h). test/model/model.test.ts reads each value back from the installed headers.
//
// Why seccomp can stand in for vsyscall=none: emulate_vsyscall() (arch/x86/entry/vsyscall/
// vsyscall_64.c) runs the seccomp filter with the instruction pointer still at the entry's address
// and the entry's syscall number, before it emulates anything. A filter that answers "notify" for
// an instruction pointer inside the page hands every call of the page to a supervisor, which can
// do what a none kernel does: SIGSEGV.

/** prctl(2) option that lets an unprivileged process install a seccomp filter. */
export const PR_SET_NO_NEW_PRIVS = 38;
/** prctl(2) option: a signal for this process when its parent (vsys) dies; SIGKILL, its number. */
export const PR_SET_PDEATHSIG = 1;
/** prctl(2) option: after dropping root the process is not dumpable, and its /proc/self files (uid_map) stay root's; this gives them back. */
export const PR_SET_DUMPABLE = 4;
export const SIGKILL = 9;
/** seccomp(2) operation and flag: install a filter and return a listener fd for its notifications. */
export const SECCOMP_SET_MODE_FILTER = 1;
export const SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3;
/** Filter return values. */
export const SECCOMP_RET_ALLOW = 0x7fff0000;
export const SECCOMP_RET_USER_NOTIF = 0x7fc00000;
export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
/** struct seccomp_data: where the filter finds each field (the instruction pointer as two 32-bit words, little-endian). */
export const SECCOMP_DATA = { nr: 0, arch: 4, instructionPointerLow: 8, instructionPointerHigh: 12, args: 16, size: 64 } as const;
/** AUDIT_ARCH_X86_64 (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE): 32-bit processes have no vsyscall page. */
export const AUDIT_ARCH_X86_64 = 0xc000003e;
/** struct seccomp_notif (id u64, pid u32, flags u32, data) and its ioctls on the listener. */
export const SECCOMP_NOTIF = { id: 0, pid: 8, flags: 12, data: 16, size: 80 } as const;
export const SECCOMP_IOCTL_NOTIF_RECV = 0xc0502100; // _IOWR('!', 0, struct seccomp_notif)
/** struct seccomp_notif_resp (id u64, val s64, error s32, flags u32), the answer, and its "let the call go on" flag. */
export const SECCOMP_NOTIF_RESP = { id: 0, val: 8, error: 16, flags: 20, size: 24 } as const;
export const SECCOMP_IOCTL_NOTIF_SEND = 0xc0182101; // _IOWR('!', 1, struct seccomp_notif_resp)
export const SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1;

/** Classic BPF opcodes the filter uses (linux/bpf_common.h). */
export const BPF = { LD_W_ABS: 0x20, JEQ_K: 0x15, AND_K: 0x54, RET_K: 0x06 } as const;

/** unshare(2) flags and mount(2) flags for a private root. */
export const CLONE_NEWNS = 0x00020000;
export const CLONE_NEWUSER = 0x10000000;
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_PRIVATE = 1 << 18;

/** fcntl(2): close this descriptor on a successful execve. */
export const F_SETFD = 2;
export const FD_CLOEXEC = 1;
/** openat(2) */
export const AT_FDCWD = -100;
export const O_WRONLY = 1;
export const O_DIRECTORY = 0o200000;
