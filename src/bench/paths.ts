// The syscall paths vsys measures, as data: how each is called from generated code, what the
// seeds published for it, and whether it can fault (then it runs in a child process).
import { VsysError } from '../errors.js';
import type { PathFamily } from '../model/figures.js';
import { CLOCK_IDS, SYS_X86_64 } from '../model/syscalls.js';

export const PATH_GROUPS = ['vdso', 'libc', 'syscall', 'vsyscall', 'int80-64', 'i386'] as const;
export type PathGroup = (typeof PATH_GROUPS)[number];

/**
 * What a call's result is checked against (result-check.ts): `time`, `timeval` and `timespec` against
 * the same clock read by real system calls just before and after (CLOCK_REALTIME, or the path's own
 * clock for `timespec`); `cpu` (getcpu's cpu and node through pointers) and `cpu-return` (sched_getcpu's
 * return value) against real getcpu(2) calls before and after, and the node against sysfs; `pid`
 * against this process's pid.
 */
export type CheckKind = 'time' | 'timeval' | 'timespec' | 'cpu' | 'cpu-return' | 'pid' | 'none';

/** How the arguments of one call are set up (x86-64 SysV registers; `buf` is a scratch buffer). */
export type ArgShape =
  | { k: 'clock_gettime'; clock: number }
  | { k: 'gettimeofday' }
  | { k: 'time' }
  | { k: 'getcpu' }
  | { k: 'none' };

export type Invoke =
  /** `call *%r13` to a symbol of this process's vDSO. */
  | { k: 'vdso'; symbol: string }
  /** `call *%r13` to a libc function resolved with dlsym. */
  | { k: 'libc'; symbol: string }
  /** `call *%r13` to a fixed address (the vsyscall page's entries). */
  | { k: 'address'; address: bigint }
  /** The `syscall` instruction with this x86-64 number. */
  | { k: 'syscall'; nr: number }
  /** `int $0x80` from 64-bit code with this i386 number (buffers below 4 GiB). */
  | { k: 'int80'; nr: number }
  /** Measured by the tiny i386 program. */
  | { k: 'i386'; which: 'int80' | 'sysenter' | 'kernel-vsyscall' | 'vdso32-gettimeofday' | 'vdso32-clock_gettime' };

export interface BenchPath {
  id: string;
  group: PathGroup;
  label: string;
  args: ArgShape;
  invoke: Invoke;
  /** Seed 004's row for this path (its table is gettimeofday through each path). */
  seed004?: PathFamily;
  /**
   * The vDSO path that does the same job (same function, same clock): the row's "vs vDSO" ratio
   * is its time over that one's. None for calls the vDSO has no counterpart of (getpid) and for
   * the vDSO rows themselves.
   */
  vdsoTwin?: string;
  /** What the result is checked against. */
  check: CheckKind;
  /** Can fault or be killed: run in a child process. */
  risky: boolean;
}

const VSYS = 0xffffffffff600000n;

function clockPath(name: keyof typeof CLOCK_IDS): BenchPath {
  return {
    id: `vdso-clock_gettime-${name.toLowerCase().replace(/_/g, '-')}`, group: 'vdso', label: `vDSO clock_gettime(${name})`,
    args: { k: 'clock_gettime', clock: CLOCK_IDS[name] }, invoke: { k: 'vdso', symbol: '__vdso_clock_gettime' },
    check: 'timespec', risky: false,
  };
}

export const BENCH_PATHS: readonly BenchPath[] = [
  clockPath('REALTIME'), clockPath('MONOTONIC'), clockPath('MONOTONIC_RAW'), clockPath('REALTIME_COARSE'),
  clockPath('MONOTONIC_COARSE'), clockPath('BOOTTIME'), clockPath('TAI'),
  { id: 'vdso-gettimeofday', group: 'vdso', label: 'vDSO gettimeofday', args: { k: 'gettimeofday' }, invoke: { k: 'vdso', symbol: '__vdso_gettimeofday' }, seed004: 'vdso', check: 'timeval', risky: false },
  { id: 'vdso-time', group: 'vdso', label: 'vDSO time', args: { k: 'time' }, invoke: { k: 'vdso', symbol: '__vdso_time' }, check: 'time', risky: false },
  { id: 'vdso-getcpu', group: 'vdso', label: 'vDSO getcpu', args: { k: 'getcpu' }, invoke: { k: 'vdso', symbol: '__vdso_getcpu' }, check: 'cpu', risky: false },
  { id: 'libc-time', group: 'libc', label: 'libc time', args: { k: 'time' }, invoke: { k: 'libc', symbol: 'time' }, vdsoTwin: 'vdso-time', check: 'time', risky: false },
  { id: 'libc-gettimeofday', group: 'libc', label: 'libc gettimeofday', args: { k: 'gettimeofday' }, invoke: { k: 'libc', symbol: 'gettimeofday' }, vdsoTwin: 'vdso-gettimeofday', check: 'timeval', risky: false },
  { id: 'libc-clock_gettime', group: 'libc', label: 'libc clock_gettime(REALTIME)', args: { k: 'clock_gettime', clock: 0 }, invoke: { k: 'libc', symbol: 'clock_gettime' }, vdsoTwin: 'vdso-clock_gettime-realtime', check: 'timespec', risky: false },
  { id: 'libc-clock_gettime-monotonic', group: 'libc', label: 'libc clock_gettime(MONOTONIC)', args: { k: 'clock_gettime', clock: CLOCK_IDS.MONOTONIC }, invoke: { k: 'libc', symbol: 'clock_gettime' }, vdsoTwin: 'vdso-clock_gettime-monotonic', check: 'timespec', risky: false },
  { id: 'libc-sched_getcpu', group: 'libc', label: 'libc sched_getcpu', args: { k: 'none' }, invoke: { k: 'libc', symbol: 'sched_getcpu' }, vdsoTwin: 'vdso-getcpu', check: 'cpu-return', risky: false },
  { id: 'syscall-getpid', group: 'syscall', label: 'syscall getpid', args: { k: 'none' }, invoke: { k: 'syscall', nr: 39 }, check: 'pid', risky: false },
  { id: 'syscall-gettimeofday', group: 'syscall', label: 'syscall gettimeofday', args: { k: 'gettimeofday' }, invoke: { k: 'syscall', nr: 96 }, seed004: 'syscall', vdsoTwin: 'vdso-gettimeofday', check: 'timeval', risky: false },
  { id: 'syscall-time', group: 'syscall', label: 'syscall time', args: { k: 'time' }, invoke: { k: 'syscall', nr: 201 }, vdsoTwin: 'vdso-time', check: 'time', risky: false },
  { id: 'syscall-clock_gettime', group: 'syscall', label: 'syscall clock_gettime(REALTIME)', args: { k: 'clock_gettime', clock: 0 }, invoke: { k: 'syscall', nr: 228 }, vdsoTwin: 'vdso-clock_gettime-realtime', check: 'timespec', risky: false },
  { id: 'syscall-clock_gettime-monotonic', group: 'syscall', label: 'syscall clock_gettime(MONOTONIC)', args: { k: 'clock_gettime', clock: CLOCK_IDS.MONOTONIC }, invoke: { k: 'syscall', nr: SYS_X86_64.clock_gettime }, vdsoTwin: 'vdso-clock_gettime-monotonic', check: 'timespec', risky: false },
  { id: 'syscall-getcpu', group: 'syscall', label: 'syscall getcpu', args: { k: 'getcpu' }, invoke: { k: 'syscall', nr: SYS_X86_64.getcpu }, vdsoTwin: 'vdso-getcpu', check: 'cpu', risky: false },
  { id: 'vsyscall-gettimeofday', group: 'vsyscall', label: 'vsyscall gettimeofday', args: { k: 'gettimeofday' }, invoke: { k: 'address', address: VSYS }, seed004: 'vsyscall-emulated', vdsoTwin: 'vdso-gettimeofday', check: 'timeval', risky: true },
  { id: 'vsyscall-time', group: 'vsyscall', label: 'vsyscall time', args: { k: 'time' }, invoke: { k: 'address', address: VSYS + 0x400n }, vdsoTwin: 'vdso-time', check: 'time', risky: true },
  { id: 'vsyscall-getcpu', group: 'vsyscall', label: 'vsyscall getcpu', args: { k: 'getcpu' }, invoke: { k: 'address', address: VSYS + 0x800n }, vdsoTwin: 'vdso-getcpu', check: 'cpu', risky: true },
  { id: 'int80-64-getpid', group: 'int80-64', label: 'int 0x80 getpid (from 64-bit code)', args: { k: 'none' }, invoke: { k: 'int80', nr: 20 }, check: 'pid', risky: true },
  { id: 'int80-64-gettimeofday', group: 'int80-64', label: 'int 0x80 gettimeofday (from 64-bit code)', args: { k: 'gettimeofday' }, invoke: { k: 'int80', nr: 78 }, seed004: 'int80', vdsoTwin: 'vdso-gettimeofday', check: 'none', risky: true },
  { id: 'i386-int80', group: 'i386', label: 'int 0x80 getpid (32-bit process)', args: { k: 'none' }, invoke: { k: 'i386', which: 'int80' }, check: 'none', risky: true },
  { id: 'i386-sysenter', group: 'i386', label: 'sysenter getpid (32-bit process)', args: { k: 'none' }, invoke: { k: 'i386', which: 'sysenter' }, seed004: 'sysenter', check: 'none', risky: true },
  { id: 'i386-kernel-vsyscall', group: 'i386', label: '__kernel_vsyscall getpid (32-bit process)', args: { k: 'none' }, invoke: { k: 'i386', which: 'kernel-vsyscall' }, check: 'none', risky: true },
  { id: 'i386-vdso32-gettimeofday', group: 'i386', label: 'vDSO-32 gettimeofday', args: { k: 'none' }, invoke: { k: 'i386', which: 'vdso32-gettimeofday' }, seed004: 'vdso32', vdsoTwin: 'vdso-gettimeofday', check: 'none', risky: true },
  { id: 'i386-vdso32-clock_gettime', group: 'i386', label: 'vDSO-32 clock_gettime(MONOTONIC)', args: { k: 'none' }, invoke: { k: 'i386', which: 'vdso32-clock_gettime' }, vdsoTwin: 'vdso-clock_gettime-monotonic', check: 'none', risky: true },
];

/** The names a `--paths` spec holds: comma-separated, blanks dropped. */
export function pathNames(spec: string): string[] {
  return spec.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/**
 * Paths chosen by `--paths`: each name is a path id (exactly that row) or a group name (its rows),
 * comma-separated; the rows in table order, each once; all when the spec names nothing. An unknown
 * name is a USAGE error that lists the valid ones.
 */
export function selectPaths(spec: string | undefined): BenchPath[] {
  const names = pathNames(spec ?? '');
  if (names.length === 0) return [...BENCH_PATHS];
  const groups: readonly string[] = PATH_GROUPS;
  const unknown = names.filter((n) => !groups.includes(n) && !BENCH_PATHS.some((p) => p.id === n));
  if (unknown.length) {
    throw new VsysError('USAGE', `unknown path${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `'${n}'`).join(', ')}: give path ids or groups.\n  groups: ${PATH_GROUPS.join(', ')}\n  ids: ${BENCH_PATHS.map((p) => p.id).join(', ')}`);
  }
  return BENCH_PATHS.filter((p) => names.includes(p.id) || names.includes(p.group));
}
