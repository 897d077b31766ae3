// The four vsyscall modes and what a data read of the page and a call of an entry do in each.
// Follows vsyscall_64.c (vsyscall_mode, emulate_vsyscall) and Documentation/admin-guide/kernel-parameters.txt.

export type VsyscallMode = 'none' | 'xonly' | 'emulate' | 'native';

export const VSYSCALL_MODES: readonly VsyscallMode[] = ['none', 'xonly', 'emulate', 'native'];

export function isVsyscallMode(s: string): s is VsyscallMode {
  return (VSYSCALL_MODES as readonly string[]).includes(s);
}

export type AccessOutcome = 'works' | 'emulated' | 'sigsegv';

export interface ModeBehaviour {
  readonly mode: VsyscallMode;
  /** Permissions of the `[vsyscall]` line in /proc/PID/maps, or null when there is no line. */
  readonly mapsPerms: string | null;
  readonly read: AccessOutcome;
  readonly call: AccessOutcome;
  /** What the kernel logs (with debug.exception-trace) when a program trips over the page. */
  readonly log?: string;
  readonly note: string;
  /** Kconfig symbol that makes this mode the default. */
  readonly kconfig?: string;
}

export const MODE_BEHAVIOUR: Readonly<Record<VsyscallMode, ModeBehaviour>> = {
  native: {
    mode: 'native',
    mapsPerms: 'r-xp',
    read: 'works',
    call: 'works',
    note: 'the page holds real `mov $nr,%rax; syscall; ret` code; removed from kernels around 4.15',
  },
  emulate: {
    mode: 'emulate',
    mapsPerms: 'r-xp',
    read: 'works',
    call: 'emulated',
    kconfig: 'CONFIG_LEGACY_VSYSCALL_EMULATE',
    note: 'the page is readable but not executable; each call faults and the kernel emulates it (default before 5.3)',
  },
  xonly: {
    mode: 'xonly',
    mapsPerms: '--xp',
    read: 'sigsegv',
    call: 'emulated',
    log: 'vsyscall read attempt denied',
    kconfig: 'CONFIG_LEGACY_VSYSCALL_XONLY',
    note: 'calls fault and are emulated by the kernel; reading the page is denied (default since 5.3)',
  },
  none: {
    mode: 'none',
    mapsPerms: null,
    read: 'sigsegv',
    call: 'sigsegv',
    log: 'vsyscall attempted with vsyscall=none',
    kconfig: 'CONFIG_LEGACY_VSYSCALL_NONE',
    note: 'no page: every call and read is a SIGSEGV (Debian cloud kernels, Docker Desktop, WSL2, Alpine, Clear Linux)',
  },
};
