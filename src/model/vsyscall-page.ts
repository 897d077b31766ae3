// The legacy vsyscall page: one fixed 4 KiB page with three entry points.
// Follows arch/x86/entry/vsyscall/vsyscall_64.c (vsyscall_nr = (addr & 0xC00) >> 10).

export const VSYSCALL_PAGE_ADDR = 0xffffffffff600000n;
export const VSYSCALL_PAGE_SIZE = 0x1000;
export const VSYSCALL_ENTRY_STRIDE = 0x400;

export type VsyscallEntryName = 'gettimeofday' | 'time' | 'getcpu';

export interface VsyscallEntry {
  /** Index used by the kernel and by the `vsyscall:emulate_vsyscall` tracepoint's `nr`. */
  readonly nr: 0 | 1 | 2;
  readonly name: VsyscallEntryName;
  readonly offset: number;
  readonly address: bigint;
  /** The x86_64 system call the entry stands for. */
  readonly syscall: number;
}

export const VSYSCALL_ENTRIES: readonly VsyscallEntry[] = [
  { nr: 0, name: 'gettimeofday', offset: 0x000, address: VSYSCALL_PAGE_ADDR + 0x000n, syscall: 96 },
  { nr: 1, name: 'time', offset: 0x400, address: VSYSCALL_PAGE_ADDR + 0x400n, syscall: 201 },
  { nr: 2, name: 'getcpu', offset: 0x800, address: VSYSCALL_PAGE_ADDR + 0x800n, syscall: 309 },
];

/** The `nr` the emulate_vsyscall tracepoint reports for a call that is not at an entry start. */
export const EMULATE_NR_MISALIGNED = -22;

export function vsyscallEntry(name: VsyscallEntryName): VsyscallEntry {
  const e = VSYSCALL_ENTRIES.find((x) => x.name === name);
  if (!e) throw new RangeError(`no vsyscall entry ${name}`);
  return e;
}

export function isInVsyscallPage(addr: bigint): boolean {
  return addr >= VSYSCALL_PAGE_ADDR && addr < VSYSCALL_PAGE_ADDR + BigInt(VSYSCALL_PAGE_SIZE);
}

/** The entry a call to `addr` reaches, or 'misaligned' when it is in the page but not at an entry start. */
export function classifyVsyscallTarget(addr: bigint): VsyscallEntry | 'misaligned' | undefined {
  if (!isInVsyscallPage(addr)) return undefined;
  return VSYSCALL_ENTRIES.find((e) => e.address === addr) ?? 'misaligned';
}

/** The entry name a call to `addr` reaches, or 'misaligned' for any other address (in the page or not). */
export function entryNameOf(addr: bigint): VsyscallEntryName | 'misaligned' {
  const e = classifyVsyscallTarget(addr);
  return e === undefined || e === 'misaligned' ? 'misaligned' : e.name;
}
