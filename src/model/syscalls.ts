// The system call numbers vsys uses, for both ABIs.
// x86_64 from arch/x86/entry/syscalls/syscall_64.tbl, i386 from syscall_32.tbl.

export const SYS_X86_64 = {
  read: 0,
  write: 1,
  close: 3,
  poll: 7,
  ioctl: 16,
  execve: 59,
  kill: 62,
  fcntl: 72,
  chdir: 80,
  fchdir: 81,
  prctl: 157,
  chroot: 161,
  mount: 165,
  openat: 257,
  unshare: 272,
  seccomp: 317,
  pidfd_open: 434,
  pidfd_getfd: 438,
  mmap: 9,
  mprotect: 10,
  munmap: 11,
  getpid: 39,
  setgroups: 116,
  setresuid: 117,
  setresgid: 119,
  exit: 60,
  gettimeofday: 96,
  time: 201,
  clock_gettime: 228,
  exit_group: 231,
  tgkill: 234,
  getcpu: 309,
  perf_event_open: 298,
  bpf: 321,
} as const;

export const SYS_I386 = {
  exit: 1,
  write: 4,
  time: 13,
  getpid: 20,
  gettimeofday: 78,
  clock_gettime: 265,
  exit_group: 252,
  getcpu: 318,
  clock_gettime64: 403,
} as const;

export type SyscallName64 = keyof typeof SYS_X86_64;
export type SyscallName32 = keyof typeof SYS_I386;

/** Clock ids of clock_gettime(2), from include/uapi/linux/time.h. */
export const CLOCK_IDS = {
  REALTIME: 0,
  MONOTONIC: 1,
  MONOTONIC_RAW: 4,
  REALTIME_COARSE: 5,
  MONOTONIC_COARSE: 6,
  BOOTTIME: 7,
  TAI: 11,
} as const;

export type ClockName = keyof typeof CLOCK_IDS;

/** Auxiliary vector keys, from include/uapi/linux/auxvec.h and arch/x86/include/uapi/asm/auxvec.h. */
export const AT_SYSINFO = 32;
export const AT_SYSINFO_EHDR = 33;
export const AT_HWCAP = 16;
export const AT_PLATFORM = 15;
