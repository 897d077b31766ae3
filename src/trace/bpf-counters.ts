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
import fs from 'node:fs';
import { VsysError } from '../errors.js';
import { Asm, BpfMap, FP, HELPER, MAP_TYPE, UPDATE, attachRawTracepoint, attachTracepointProgram, loadRawTracepointProgram, loadTracepointProgram, programMisses, type Reg } from '../native/bpf.js';
import { readEventFormat } from './tracefs.js';
import { libcBindings } from '../native/libc.js';
import { VSYSCALL_ENTRIES, VSYSCALL_PAGE_ADDR } from '../model/vsyscall-page.js';
import { entryOfNr, zeroEntries, type EntryKey } from './counters.js';

const TAG_EMULATE = 0x10000;
const TAG_FAULT = 0x20000;
const TAG_CRASH = 0x30000;
/** An entry-start fetch fault counted under its own code: one less for the derived count. */
const TAG_ADJUST = 0x40000;
const PF_WRITE = 0x2;
const PT_REGS_IP = 16 * 8;
const MAX_KEYS = 16384;
const MAX_CRASHES = 1024;
const MAX_MEMBERS = 65536;
/** misc slots: update failures by map. */
const MISC = { counts: 0, members: 1, records: 2 } as const;

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
  private links: number[] = [];

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
      this.counts = map(MAP_TYPE.HASH, 8, 8, MAX_KEYS, 'vsys_counts');
      this.misc = map(MAP_TYPE.ARRAY, 4, 8, 3, 'vsys_dropped');
      this.pending = map(MAP_TYPE.HASH, 4, 24, MAX_CRASHES, 'vsys_pending');
      this.crashMap = map(MAP_TYPE.HASH, 4, 40, MAX_CRASHES, 'vsys_crashes');
      this.comms = map(MAP_TYPE.HASH, 4, 16, MAX_KEYS, 'vsys_comms');
      if (opts.members) this.memberMap = map(MAP_TYPE.HASH, 4, 4, MAX_MEMBERS, 'vsys_members');
      if (opts.cgroupFd !== undefined) {
        this.cgroup = map(MAP_TYPE.CGROUP_ARRAY, 4, 4, 1, 'vsys_cgroup');
        const v = Buffer.alloc(4);
        v.writeUInt32LE(opts.cgroupFd);
        this.cgroup.update(Buffer.alloc(4), v);
      }
      this.progs.push({ fd: loadRawTracepointProgram(this.emulateProgram(), 'vsys_emulate'), tracepoint: 'emulate_vsyscall' });
      this.progs.push({ fd: loadRawTracepointProgram(this.faultProgram(!!opts.modeNone), 'vsys_fault'), tracepoint: 'page_fault_user' });
      this.progs.push({ fd: loadRawTracepointProgram(this.signalProgram(), 'vsys_signal'), tracepoint: 'signal_deliver' });
      this.progs.push({ fd: loadRawTracepointProgram(this.exitProgram(), 'vsys_exit'), tracepoint: 'sched_process_exit' });
      if (opts.members) this.progs.push({ fd: loadRawTracepointProgram(this.execProgram(), 'vsys_exec'), tracepoint: 'sched_process_exec' });
      if (this.memberMap) {
        const fork = readEventFormat('sched', 'sched_process_fork');
        const parent = fork.fields.get('parent_pid');
        const child = fork.fields.get('child_pid');
        if (!parent || !child) throw new VsysError('BPF_UNAVAILABLE', 'sched:sched_process_fork has no parent_pid/child_pid fields here');
        // First in the list: attached before the counting programs, so no child is missed.
        this.progs.unshift({ fd: loadTracepointProgram(this.forkProgram(parent.offset, child.offset), 'vsys_fork'), tracepoint: 'sched_process_fork', classic: fork.id });
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Returns early unless the current task is in the target cgroup. Clobbers r0-r5. */
  private cgroupCheck(a: Asm): void {
    if (!this.cgroup) return;
    a.ldMap(1, this.cgroup).mov(2, { imm: 0 }).call(HELPER.current_task_under_cgroup).jmp('jne', 0, { imm: 1 }, 'out');
  }

  /** counts[key at fp-8] += 1, inserting it when absent; a full map bumps `dropped`. Clobbers r0-r5. */
  private countKey(a: Asm): void {
    const miss = a.fresh('miss');
    const retry = a.fresh('retry');
    const drop = a.fresh('drop');
    const done = a.fresh('done');
    a.ldMap(1, this.counts).mov(2, FP).alu64('add', 2, { imm: -8 }).call(HELPER.map_lookup_elem)
      .jmp('jeq', 0, { imm: 0 }, miss)
      .mov(1, { imm: 1 }).atomicAdd64(0, 0, 1).goto(done)
      .label(miss)
      .st('dw', FP, -16, 1)
      .ldMap(1, this.counts).mov(2, FP).alu64('add', 2, { imm: -8 }).mov(3, FP).alu64('add', 3, { imm: -16 }).mov(4, { imm: UPDATE.NOEXIST }).call(HELPER.map_update_elem)
      .jmp('jne', 0, { imm: 0 }, retry)
      // A process seen for the first time: keep its name (it may be gone when the counts are read).
      .mov(1, FP).alu64('add', 1, { imm: -40 }).mov(2, { imm: 16 }).call(HELPER.get_current_comm)
      .ldMap(1, this.comms).mov(2, FP).alu64('add', 2, { imm: -8 }).mov(3, FP).alu64('add', 3, { imm: -40 }).mov(4, { imm: UPDATE.NOEXIST }).call(HELPER.map_update_elem)
      .goto(done)
      // Another CPU inserted it first (or the map is full): look again.
      .label(retry)
      .ldMap(1, this.counts).mov(2, FP).alu64('add', 2, { imm: -8 }).call(HELPER.map_lookup_elem)
      .jmp('jeq', 0, { imm: 0 }, drop)
      .mov(1, { imm: 1 }).atomicAdd64(0, 0, 1).goto(done)
      .label(drop);
    this.bump(a, MISC.counts);
    a.label(done);
  }

  /** misc[slot] += 1 (an update that found its map full). Clobbers r0-r5 and fp-64. */
  private bump(a: Asm, slot: number): void {
    const skip = a.fresh('nomisc');
    a.st('w', FP, -64, slot).ldMap(1, this.misc).mov(2, FP).alu64('add', 2, { imm: -64 }).call(HELPER.map_lookup_elem)
      .jmp('jeq', 0, { imm: 0 }, skip).mov(1, { imm: 1 }).atomicAdd64(0, 0, 1).label(skip);
  }

  /** Returns early unless the current thread (low half of r7) is a member. Clobbers r0-r5 and fp-60. */
  private memberCheck(a: Asm): void {
    if (!this.memberMap) return;
    a.stx('w', FP, -60, 7).ldMap(1, this.memberMap).mov(2, FP).alu64('add', 2, { imm: -60 }).call(HELPER.map_lookup_elem)
      .jmp('jeq', 0, { imm: 0 }, 'out');
  }

  /** key at fp-8 = { u32 tgid, u32 tag | (low 16 bits of `value`) } */
  private key(a: Asm, tag: number, value: Reg): void {
    a.call(HELPER.get_current_pid_tgid).mov(7, 0).alu64('rsh', 0, { imm: 32 }).stx('w', FP, -8, 0)
      .mov(1, value).alu64('and', 1, { imm: 0xffff }).alu64('or', 1, { imm: tag }).stx('w', FP, -4, 1);
  }

  private emulateProgram(): Buffer {
    const a = new Asm();
    a.ldx('dw', 6, 1, 0); // nr
    this.cgroupCheck(a);
    this.key(a, TAG_EMULATE, 6);
    this.memberCheck(a);
    this.countKey(a);
    a.label('out').mov(0, { imm: 0 }).exit();
    return a.build();
  }

  private faultProgram(modeNone: boolean): Buffer {
    const a = new Asm();
    a.mov(6, 1)
      .ldx('dw', 8, 6, 0) // address
      .mov(2, 8).alu64('and', 2, { imm: -4096 }).ld64(3, VSYSCALL_PAGE_ADDR).jmp('jne', 2, 3, 'out')
      .ldx('dw', 9, 6, 16); // error code
    if (this.emulatedFetchError !== undefined) {
      // The emulated calls: left to the emulation hook, which counts them (see the top).
      a.jmp('jne', 9, { imm: this.emulatedFetchError }, 'full');
      for (const e of VSYSCALL_ENTRIES) a.ld64(2, e.address).jmp('jeq', 8, 2, 'out');
      a.label('full');
    }
    this.cgroupCheck(a);
    this.key(a, TAG_FAULT, 9);
    this.memberCheck(a);
    this.countKey(a);
    // pending[tid] = { error, pad, address, ip }, ip read from regs->ip (0 if unreadable).
    a.stx('w', FP, -24, 7)
      .stx('w', FP, -48, 9).st('w', FP, -44, 0).stx('dw', FP, -40, 8).st('dw', FP, -32, 0)
      .mov(1, FP).alu64('add', 1, { imm: -32 }).mov(2, { imm: 8 }).ldx('dw', 3, 6, 8).alu64('add', 3, { imm: PT_REGS_IP }).call(HELPER.probe_read_kernel);
    if (!modeNone) {
      // What the kernel emulates (vsyscall_64.c): no write, a fault at the instruction pointer
      // (a fetch, whatever the error code says: a CPU without NX sets no INSTR bit), at an entry
      // start. Nothing to keep for a crash report; and, under another code than the one derived
      // counts assume, it is taken back from those.
      a.mov(1, 9).alu64('and', 1, { imm: PF_WRITE }).jmp('jne', 1, { imm: 0 }, 'keep')
        .ldx('dw', 1, FP, -32).jmp('jne', 1, 8, 'keep');
      for (const e of VSYSCALL_ENTRIES) a.ld64(2, e.address).jmp('jeq', 8, 2, this.emulatedFetchError !== undefined ? 'adjust' : 'out');
      a.label('keep');
    }
    a.ldMap(1, this.pending).mov(2, FP).alu64('add', 2, { imm: -24 }).mov(3, FP).alu64('add', 3, { imm: -48 }).mov(4, { imm: UPDATE.ANY }).call(HELPER.map_update_elem)
      .jmp('jeq', 0, { imm: 0 }, 'out');
    this.bump(a, MISC.records);
    if (!modeNone && this.emulatedFetchError !== undefined) {
      a.goto('out').label('adjust');
      this.key(a, TAG_ADJUST, 9);
      this.countKey(a);
    }
    a.label('out').mov(0, { imm: 0 }).exit();
    return a.build();
  }

  private signalProgram(): Buffer {
    const a = new Asm();
    a.mov(6, 1).ldx('dw', 2, 6, 0).jmp('jne', 2, { imm: 11 }, 'out', true)
      // The action about to run: ka->sa.sa_handler (first field), 0 = SIG_DFL, i.e. the process dies.
      .mov(1, FP).alu64('add', 1, { imm: -56 }).mov(2, { imm: 8 }).ldx('dw', 3, 6, 16).call(HELPER.probe_read_kernel)
      .ldx('dw', 8, FP, -56)
      .call(HELPER.get_current_pid_tgid).mov(7, 0)
      .stx('w', FP, -4, 7) // tid
      .ldMap(1, this.pending).mov(2, FP).alu64('add', 2, { imm: -4 }).call(HELPER.map_lookup_elem)
      .jmp('jeq', 0, { imm: 0 }, 'out')
      // A handler catches it: not a crash yet; the kept fault is marked (its pad word) in case the
      // handler re-raises the signal, as crash reporters do.
      .jmp('jeq', 8, { imm: 0 }, 'fatal')
      .st('w', 0, 4, 1).goto('out')
      .label('fatal')
      .ldx('w', 1, 0, 4).jmp('jeq', 1, { imm: 0 }, 'record', true)
      // The kept fault was handled before: this fatal SIGSEGV is its crash only if it was raised by
      // the program (si_code <= 0: kill, tgkill, raise); a fault's own signal has si_code > 0.
      .stx('dw', FP, -80, 0)
      .mov(1, FP).alu64('add', 1, { imm: -64 }).mov(2, { imm: 4 }).ldx('dw', 3, 6, 8).alu64('add', 3, { imm: 8 }).call(HELPER.probe_read_kernel)
      .ldx('w', 1, FP, -64).jmp('jsgt', 1, { imm: 0 }, 'handled', true)
      .ldx('dw', 0, FP, -80)
      .label('record')
      // crash value at fp-48: { u32 tgid, u32 error, u64 address, u64 ip, char comm[16] }
      .mov(1, 7).alu64('rsh', 1, { imm: 32 }).stx('w', FP, -48, 1)
      .ldx('w', 1, 0, 0).stx('w', FP, -44, 1)
      .ldx('dw', 1, 0, 8).stx('dw', FP, -40, 1)
      .ldx('dw', 1, 0, 16).stx('dw', FP, -32, 1)
      .mov(1, FP).alu64('add', 1, { imm: -24 }).mov(2, { imm: 16 }).call(HELPER.get_current_comm)
      .ldMap(1, this.crashMap).mov(2, FP).alu64('add', 2, { imm: -4 }).mov(3, FP).alu64('add', 3, { imm: -48 }).mov(4, { imm: UPDATE.ANY }).call(HELPER.map_update_elem)
      .jmp('jeq', 0, { imm: 0 }, 'stored');
    this.bump(a, MISC.records);
    a.label('stored')
      .ldMap(1, this.pending).mov(2, FP).alu64('add', 2, { imm: -4 }).call(HELPER.map_delete_elem)
      // and one more crash for its process
      .mov(1, 7).alu64('rsh', 1, { imm: 32 }).stx('w', FP, -8, 1).st('w', FP, -4, TAG_CRASH);
    this.countKey(a);
    a.goto('out')
      .label('handled')
      .ldMap(1, this.pending).mov(2, FP).alu64('add', 2, { imm: -4 }).call(HELPER.map_delete_elem)
      .label('out').mov(0, { imm: 0 }).exit();
    return a.build();
  }

  /** A thread ends: its kept fault, and its membership (its id may be reused), go with it. */
  private exitProgram(): Buffer {
    const a = new Asm();
    a.call(HELPER.get_current_pid_tgid).stx('w', FP, -4, 0)
      .ldMap(1, this.pending).mov(2, FP).alu64('add', 2, { imm: -4 }).call(HELPER.map_delete_elem);
    if (this.memberMap) a.ldMap(1, this.memberMap).mov(2, FP).alu64('add', 2, { imm: -4 }).call(HELPER.map_delete_elem);
    a.mov(0, { imm: 0 }).exit();
    return a.build();
  }

  /**
   * sched_process_exec(p, old_pid, bprm): a thread other than the leader that execs takes the
   * leader's id (the leader's exit already dropped it): membership moves from old_pid to it.
   */
  private execProgram(): Buffer {
    const a = new Asm();
    const members = this.memberMap as BpfMap;
    a.ldx('dw', 6, 1, 8) // old_pid
      .call(HELPER.get_current_pid_tgid).jmp('jeq', 0, 6, 'out', true)
      .stx('w', FP, -8, 0).stx('w', FP, -4, 6)
      .ldMap(1, members).mov(2, FP).alu64('add', 2, { imm: -4 }).call(HELPER.map_lookup_elem)
      .jmp('jeq', 0, { imm: 0 }, 'out')
      .st('w', FP, -12, 1)
      .ldMap(1, members).mov(2, FP).alu64('add', 2, { imm: -8 }).mov(3, FP).alu64('add', 3, { imm: -12 }).mov(4, { imm: UPDATE.ANY }).call(HELPER.map_update_elem)
      .jmp('jeq', 0, { imm: 0 }, 'moved');
    this.bump(a, MISC.members);
    a.label('moved')
      .ldMap(1, members).mov(2, FP).alu64('add', 2, { imm: -4 }).call(HELPER.map_delete_elem)
      .label('out').mov(0, { imm: 0 }).exit();
    return a.build();
  }

  /** sched:sched_process_fork, on the trace record: a member's child (process or thread) is a member. */
  private forkProgram(parentOff: number, childOff: number): Buffer {
    const a = new Asm();
    a.mov(6, 1)
      .ldx('w', 2, 6, parentOff).stx('w', FP, -4, 2)
      .ldMap(1, this.memberMap as BpfMap).mov(2, FP).alu64('add', 2, { imm: -4 }).call(HELPER.map_lookup_elem)
      .jmp('jeq', 0, { imm: 0 }, 'out')
      .ldx('w', 2, 6, childOff).stx('w', FP, -8, 2).st('w', FP, -12, 1)
      .ldMap(1, this.memberMap as BpfMap).mov(2, FP).alu64('add', 2, { imm: -8 }).mov(3, FP).alu64('add', 3, { imm: -12 }).mov(4, { imm: UPDATE.ANY }).call(HELPER.map_update_elem)
      .jmp('jeq', 0, { imm: 0 }, 'out');
    this.bump(a, MISC.members);
    a.label('out').mov(0, { imm: 0 }).exit();
    return a.build();
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
    if (this.links.length) return;
    try {
      for (const p of this.progs) this.links.push(p.classic !== undefined ? attachTracepointProgram(p.fd, p.classic) : attachRawTracepoint(p.fd, p.tracepoint));
    } catch (e) {
      this.disable();
      throw e;
    }
  }

  /** Detaches the programs: counting stops; the maps keep what was counted. */
  disable(): void {
    for (const l of this.links) libcBindings().close(l);
    this.links = [];
  }

  /** Counts per process (tgid), and how many updates found a map full. */
  read(): { processes: Map<number, BpfProcessCounts>; dropped: BpfDropped } {
    const processes = new Map<number, BpfProcessCounts>();
    const adjust = new Map<number, number>();
    for (const k of this.counts.keys()) {
      const v = this.counts.lookup(k);
      if (!v) continue;
      const kb = Buffer.from(k);
      const tgid = kb.readUInt32LE(0);
      const tag = kb.readUInt32LE(4);
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
        tid: Buffer.from(k).readUInt32LE(0), pid: b.readUInt32LE(0), error: b.readUInt32LE(4),
        address: b.readBigUInt64LE(8), ip: b.readBigUInt64LE(16), comm: cString(b.subarray(24, 40)),
      });
    }
    return out;
  }

  close(): void {
    this.disable();
    for (const p of this.progs) libcBindings().close(p.fd);
    this.progs.length = 0;
    for (const m of this.maps) m.close();
    this.maps.length = 0;
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
