// Exact per-process counts with small eBPF programs on raw tracepoints, the cheapest hook the kernel
// offers (no trace record is built, no perf event per process):
//   emulate_vsyscall(nr)                      → counts[(tgid, EMULATE | nr)]
//   page_fault_user(address, regs, error)     → counts[(tgid, FAULT | error)] for faults in the page;
//                                               a fault that will not be emulated is kept per thread
//   signal_deliver(sig, info, ka), sig 11     → a kept fault becomes a crash (address, ip, error, comm)
//                                               unless a handler catches the signal (then it is
//                                               the crash of a later SIGSEGV the program raises)
//   sched_process_exit                        → the thread's kept fault and membership are dropped
// The emulated calls themselves (millions a second) pass the fault hook without a helper call: an
// instruction fetch at an entry start with the error code every such fetch has in this mode (0x14
// where the page is unmapped, 0x15 where emulate maps it readable) is always followed by the
// emulation, so the fault hook leaves it and its count is the emulations of entries (nr ≥ 0). Any
// other fault in the page takes the full path; one at an entry start with another code (none is
// known) is counted under its code and taken back from the derived count, so the counts stay exact.
// Each helper call costs ~25 ns on a guest with retpolines and "safe RET", so the hot path has three.
// A command or -p target is followed in the kernel: `members` holds its threads, a program on the
// sched:sched_process_fork tracepoint adds every child of a member, and the counting programs skip
// non-members. A cgroup target adds a current_task_under_cgroup check instead. The maps are
// bounded; an update that finds a map full is counted in `dropped`, never lost silently.
// The programs themselves, and the layouts of the maps, are in bpf-programs.ts; this file loads,
// attaches, reads and closes them.
import fs from 'node:fs';
import { VsysError } from '../errors.js';
import { BpfMap, MAP_TYPE, ProgramLinks, closePrograms, attachRawTracepoint, attachTracepointProgram, loadRawTracepointProgram, loadTracepointProgram, programMisses } from '../native/bpf.js';
import { readEventFormat } from './tracefs.js';
import { entryOfNr, zeroEntries, type EntryKey } from './counters.js';
import {
  COMM_LEN, COUNT_KEY, CRASH, MISC, PENDING, TAG_ADJUST, TAG_CRASH, TAG_EMULATE, TAG_FAULT,
  emulateProgram, execProgram, exitProgram, faultProgram, forkProgram, signalProgram, type ProgramMaps,
} from './bpf-programs.js';

const MAX_KEYS = 16384;
const MAX_CRASHES = 1024;
const MAX_MEMBERS = 65536;

export interface BpfProcessCounts {
  /** The name it had when first counted. */
  comm: string;
  emulated: Record<EntryKey, number>;
  /** In-page faults by error code. */
  faults: Map<number, number>;
  crashes: number;
}

/** Updates that found a map full, by map. */
export interface BpfDropped {
  /** counts not kept: the per-process table is full (figures are low by this much) */
  counts: number;
  /** threads not followed: the members table is full (their calls are not counted at all) */
  members: number;
  /** kept faults or crash records not stored (crashes may be missing) */
  records: number;
  /** program runs the kernel skipped (another BPF program was running on that CPU) */
  skipped: number;
}

export interface BpfCrash {
  pid: number;
  tid: number;
  comm: string;
  address: bigint;
  ip: bigint;
  error: number;
}

export interface BpfCountersOptions {
  /** An open cgroup directory: count only its tasks (and its descendants'). */
  cgroupFd?: number;
  /** `none`: every fault in the page is fatal, so every one is kept for the crash report. */
  modeNone?: boolean;
  /**
   * The error code of an instruction fetch at an entry start in this mode (0x14 xonly, 0x15
   * emulate): such faults skip the fault hook's work and are counted as the emulations that follow
   * them. Unset (and always under none): every fault in the page takes the full path.
   */
  emulatedFetchError?: number;
  /** Count only members (threads added with addMembers, and their descendants). */
  members?: boolean;
}

export class BpfCounters {
  private readonly maps: BpfMap[] = [];
  private readonly counts: BpfMap;
  private readonly misc: BpfMap;
  private readonly pending: BpfMap;
  private readonly crashMap: BpfMap;
  private readonly comms: BpfMap;
  private readonly cgroup: BpfMap | undefined;
  private readonly memberMap: BpfMap | undefined;
  /** The error code whose entry-start fetch faults are counted through the emulations (see the top). */
  readonly emulatedFetchError: number | undefined;
  private readonly progs: { fd: number; tracepoint: string; classic?: number }[] = [];
  private readonly links = new ProgramLinks();

  constructor(opts: BpfCountersOptions = {}) {
    // The programs key counts by the kernel's global process ids; inside a PID namespace vsys
    // knows only its own ids, so a command or -p target could not be matched.
    const ns = pidNamespace();
    if (ns !== null && ns !== INIT_PID_NS) {
      throw new VsysError('BPF_UNAVAILABLE', `running in a PID namespace (pid:[${ns}]): the eBPF programs see the host's process ids, not this namespace's`);
    }
    const map = (type: number, keySize: number, valueSize: number, maxEntries: number, name: string) => {
      const m = new BpfMap({ type, keySize, valueSize, maxEntries, name });
      this.maps.push(m);
      return m;
    };
    this.emulatedFetchError = opts.modeNone ? undefined : opts.emulatedFetchError;
    try {
      this.counts = map(MAP_TYPE.HASH, COUNT_KEY.size, 8, MAX_KEYS, 'vsys_counts');
      this.misc = map(MAP_TYPE.ARRAY, 4, 8, 3, 'vsys_dropped');
      this.pending = map(MAP_TYPE.HASH, 4, PENDING.size, MAX_CRASHES, 'vsys_pending');
      this.crashMap = map(MAP_TYPE.HASH, 4, CRASH.size, MAX_CRASHES, 'vsys_crashes');
      this.comms = map(MAP_TYPE.HASH, 4, COMM_LEN, MAX_KEYS, 'vsys_comms');
      if (opts.members) this.memberMap = map(MAP_TYPE.HASH, 4, 4, MAX_MEMBERS, 'vsys_members');
      if (opts.cgroupFd !== undefined) {
        this.cgroup = map(MAP_TYPE.CGROUP_ARRAY, 4, 4, 1, 'vsys_cgroup');
        const v = Buffer.alloc(4);
        v.writeUInt32LE(opts.cgroupFd);
        this.cgroup.update(Buffer.alloc(4), v);
      }
      const maps: ProgramMaps = { counts: this.counts, misc: this.misc, pending: this.pending, crashes: this.crashMap, comms: this.comms, cgroup: this.cgroup, members: this.memberMap };
      this.progs.push({ fd: loadRawTracepointProgram(emulateProgram(maps), 'vsys_emulate'), tracepoint: 'emulate_vsyscall' });
      this.progs.push({ fd: loadRawTracepointProgram(faultProgram(maps, !!opts.modeNone, this.emulatedFetchError), 'vsys_fault'), tracepoint: 'page_fault_user' });
      this.progs.push({ fd: loadRawTracepointProgram(signalProgram(maps), 'vsys_signal'), tracepoint: 'signal_deliver' });
      this.progs.push({ fd: loadRawTracepointProgram(exitProgram(maps), 'vsys_exit'), tracepoint: 'sched_process_exit' });
      if (this.memberMap) {
        this.progs.push({ fd: loadRawTracepointProgram(execProgram(maps, this.memberMap), 'vsys_exec'), tracepoint: 'sched_process_exec' });
        const fork = readEventFormat('sched', 'sched_process_fork');
        const parent = fork.fields.get('parent_pid');
        const child = fork.fields.get('child_pid');
        if (!parent || !child) throw new VsysError('BPF_UNAVAILABLE', 'sched:sched_process_fork has no parent_pid/child_pid fields here');
        // First in the list: attached before the counting programs, so no child is missed.
        this.progs.unshift({ fd: loadTracepointProgram(forkProgram(maps, this.memberMap, parent.offset, child.offset), 'vsys_fork'), tracepoint: 'sched_process_fork', classic: fork.id });
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Threads (ids as the kernel sees them) whose events count, with everything they start later. */
  addMembers(tids: number[]): void {
    if (!this.memberMap) throw new VsysError('BPF_UNAVAILABLE', 'these counters were made without members');
    const one = Buffer.alloc(4);
    one.writeUInt32LE(1);
    for (const t of tids) {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(t);
      this.memberMap.update(k, one);
    }
  }

  removeMembers(tids: number[]): void {
    if (!this.memberMap) return;
    for (const t of tids) {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(t);
      this.memberMap.remove(k);
    }
  }

  /** Attaches the programs: counting starts. */
  enable(): void {
    this.links.attach(this.progs.map((p) => () => (p.classic !== undefined ? attachTracepointProgram(p.fd, p.classic) : attachRawTracepoint(p.fd, p.tracepoint))));
  }

  /** Detaches the programs: counting stops; the maps keep what was counted. */
  disable(): void {
    this.links.detach();
  }

  /** Counts per process (tgid), and how many updates found a map full. */
  read(): { processes: Map<number, BpfProcessCounts>; dropped: BpfDropped } {
    const processes = new Map<number, BpfProcessCounts>();
    const adjust = new Map<number, number>();
    for (const k of this.counts.keys()) {
      const v = this.counts.lookup(k);
      if (!v) continue;
      const kb = Buffer.from(k);
      const tgid = kb.readUInt32LE(COUNT_KEY.tgid);
      const tag = kb.readUInt32LE(COUNT_KEY.tag);
      const n = Number(Buffer.from(v).readBigUInt64LE(0));
      let p = processes.get(tgid);
      if (!p) {
        p = { comm: this.commOf(tgid), emulated: zeroEntries(), faults: new Map(), crashes: 0 };
        processes.set(tgid, p);
      }
      const low = tag & 0xffff;
      if ((tag & ~0xffff) === TAG_EMULATE) p.emulated[entryOfNr((low << 16) >> 16)] += n;
      else if ((tag & ~0xffff) === TAG_FAULT) p.faults.set(low, (p.faults.get(low) ?? 0) + n);
      else if ((tag & ~0xffff) === TAG_CRASH) p.crashes += n;
      else if ((tag & ~0xffff) === TAG_ADJUST) adjust.set(tgid, (adjust.get(tgid) ?? 0) + n);
    }
    if (this.emulatedFetchError !== undefined) {
      // Every emulation of an entry followed one entry-start fetch fault the fault hook left.
      const code = this.emulatedFetchError;
      for (const [tgid, p] of processes) {
        const left = p.emulated.gettimeofday + p.emulated.time + p.emulated.getcpu - (adjust.get(tgid) ?? 0);
        if (left > 0) p.faults.set(code, (p.faults.get(code) ?? 0) + left);
      }
    }
    const dropped = { counts: 0, members: 0, records: 0, skipped: this.progs.reduce((n, p) => n + programMisses(p.fd), 0) };
    for (const [name, slot] of Object.entries(MISC) as [Exclude<keyof BpfDropped, 'skipped'>, number][]) {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(slot);
      const d = this.misc.lookup(k);
      if (d) dropped[name] = Number(Buffer.from(d).readBigUInt64LE(0));
    }
    return { processes, dropped };
  }

  private commOf(tgid: number): string {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(tgid);
    const v = this.comms.lookup(k);
    return v ? cString(Buffer.from(v)) : '?';
  }

  /** The last crash of each thread that died of SIGSEGV after a fault in the page. */
  crashes(): BpfCrash[] {
    const out: BpfCrash[] = [];
    const seen = new Set<string>();
    for (const k of this.crashMap.keys()) {
      // A key read while the programs run can come twice (a replaced element moves in its bucket).
      const id = Buffer.from(k).toString('hex');
      if (seen.has(id)) continue;
      seen.add(id);
      const v = this.crashMap.lookup(k);
      if (!v) continue;
      const b = Buffer.from(v);
      out.push({
        tid: Buffer.from(k).readUInt32LE(0), pid: b.readUInt32LE(CRASH.tgid), error: b.readUInt32LE(CRASH.error),
        address: b.readBigUInt64LE(CRASH.address), ip: b.readBigUInt64LE(CRASH.ip), comm: cString(b.subarray(CRASH.comm, CRASH.comm + COMM_LEN)),
      });
    }
    return out;
  }

  close(): void {
    closePrograms(this.links, this.progs, this.maps);
  }
}

/** The initial PID namespace's inode number (PROC_PID_INIT_INO). */
const INIT_PID_NS = 0xeffffffc;

function pidNamespace(): number | null {
  try {
    return Number(/\[(\d+)\]/.exec(fs.readlinkSync('/proc/self/ns/pid'))?.[1] ?? NaN) || null;
  } catch {
    return null;
  }
}

function cString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
}

/** Whether the BPF counters can be used here; the reason when not. */
export function bpfCountersProblem(): VsysError | null {
  try {
    // With members: that also tries the fork tracepoint's format and its perf attach.
    const c = new BpfCounters({ members: true });
    try {
      c.enable(); // attaching can fail where loading did not
    } finally {
      c.close();
    }
    return null;
  } catch (e) {
    if (e instanceof VsysError) return e;
    throw e;
  }
}
