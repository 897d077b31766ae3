// Exact counts of vsyscall use with perf counters on tracepoints (no sampling): emulated calls by
// entry (vsyscall:emulate_vsyscall filtered on nr), user page faults inside the page
// (exceptions:page_fault_user filtered on address), and all system calls (raw_syscalls:sys_enter).
import { PerfCounter } from '../native/perf.js';
import { EMULATE_NR_MISALIGNED, VSYSCALL_ENTRIES, VSYSCALL_PAGE_ADDR, VSYSCALL_PAGE_SIZE } from '../model/vsyscall-page.js';
import { readEventFormat } from './tracefs.js';

export type EntryKey = 'gettimeofday' | 'time' | 'getcpu' | 'misaligned';

export interface Counts {
  emulated: Record<EntryKey, number>;
  pageFaults: number;
  /** In-page faults by the kernel's error code ("0x14": n), where the counter sees codes (bpf). */
  faultsByError?: Record<string, number>;
  syscalls: number;
}

/** Where counters attach: a task (with inheritance), or a CPU for everything / a cgroup. */
export type CounterScope = { pid: number; inherit: boolean } | { cpu: number; cgroupFd?: number };

/** The emulate_vsyscall tracepoint's `nr` per entry, from the model (and -22 for a misaligned call). */
const ENTRY_NR = {
  ...Object.fromEntries(VSYSCALL_ENTRIES.map((e) => [e.name, e.nr])),
  misaligned: EMULATE_NR_MISALIGNED,
} as Record<EntryKey, number>;

/** The entry an emulate_vsyscall `nr` stands for. */
export function entryOfNr(nr: number): EntryKey {
  return (Object.keys(ENTRY_NR) as EntryKey[]).find((k) => ENTRY_NR[k] === nr) ?? 'misaligned';
}

export const PAGE_FILTER = `address >= 0x${VSYSCALL_PAGE_ADDR.toString(16)} && address < 0x${(VSYSCALL_PAGE_ADDR + BigInt(VSYSCALL_PAGE_SIZE)).toString(16)}`;

/** Zero calls for every entry. */
export function zeroEntries(): Record<EntryKey, number> {
  return { gettimeofday: 0, time: 0, getcpu: 0, misaligned: 0 };
}

export function zeroCounts(): Counts {
  return { emulated: zeroEntries(), pageFaults: 0, syscalls: 0 };
}

export function addCounts(a: Counts, b: Counts): Counts {
  const out = zeroCounts();
  for (const k of Object.keys(ENTRY_NR) as EntryKey[]) out.emulated[k] = a.emulated[k] + b.emulated[k];
  out.pageFaults = a.pageFaults + b.pageFaults;
  if (a.faultsByError || b.faultsByError) {
    out.faultsByError = { ...a.faultsByError };
    for (const [k, v] of Object.entries(b.faultsByError ?? {})) out.faultsByError[k] = (out.faultsByError[k] ?? 0) + v;
  }
  out.syscalls = a.syscalls + b.syscalls;
  return out;
}

/** One scope's set of counters. Starts disabled. */
export class CounterSet {
  private readonly entries: [EntryKey, PerfCounter][] = [];
  private readonly faults: PerfCounter | undefined;
  private readonly syscalls: PerfCounter | undefined;

  constructor(scope: CounterScope, opts: { syscalls?: boolean; emulation: boolean; faults?: boolean }) {
    const base = 'pid' in scope ? { pid: scope.pid, inherit: scope.inherit, cpu: -1 } : { pid: -1, cpu: scope.cpu, ...(scope.cgroupFd !== undefined ? { cgroupFd: scope.cgroupFd } : {}) };
    const opened: PerfCounter[] = [];
    try {
      if (opts.emulation) {
        const emu = readEventFormat('vsyscall', 'emulate_vsyscall');
        for (const [k, nr] of Object.entries(ENTRY_NR) as [EntryKey, number][]) {
          const c = new PerfCounter({ tracepointId: emu.id, ...base, filter: `nr == ${nr}` });
          opened.push(c);
          this.entries.push([k, c]);
        }
      }
      if (opts.faults !== false) {
        const pf = readEventFormat('exceptions', 'page_fault_user');
        this.faults = new PerfCounter({ tracepointId: pf.id, ...base, filter: PAGE_FILTER });
        opened.push(this.faults);
      }
      if (opts.syscalls !== false) {
        const se = readEventFormat('raw_syscalls', 'sys_enter');
        this.syscalls = new PerfCounter({ tracepointId: se.id, ...base });
        opened.push(this.syscalls);
      }
    } catch (e) {
      for (const c of opened) c.close();
      throw e;
    }
  }

  private all(): PerfCounter[] {
    return [...this.entries.map(([, c]) => c), ...(this.faults ? [this.faults] : []), ...(this.syscalls ? [this.syscalls] : [])];
  }

  enable(): void {
    for (const c of this.all()) c.enable();
  }

  disable(): void {
    for (const c of this.all()) c.disable();
  }

  read(): Counts {
    const out = zeroCounts();
    for (const [k, c] of this.entries) out.emulated[k] = Number(c.read());
    out.pageFaults = this.faults ? Number(this.faults.read()) : 0;
    out.syscalls = this.syscalls ? Number(this.syscalls.read()) : 0;
    return out;
  }

  close(): void {
    for (const c of this.all()) c.close();
  }
}
