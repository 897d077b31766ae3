// The eBPF programs bpf-counters.ts loads, as instruction sequences, with the layouts they share
// with its decoder: the keys and values of the maps, each program's stack frame, and the fields
// each reads from its context. Raw tracepoint contexts are the tracepoint's arguments, one u64 each
// (struct bpf_raw_tracepoint_args); the TP_PROTOs are from include/trace/events/*.h and
// arch/x86/include/asm/trace/exceptions.h. What each program does is described in bpf-counters.ts.
import { BpfMap, HELPER, UPDATE } from '../native/bpf.js';
import { Asm, FP, type Reg } from '../native/bpf-asm.js';
import { PF } from '../model/page-fault.js';
import { VSYSCALL_ENTRIES, VSYSCALL_PAGE_ADDR } from '../model/vsyscall-page.js';
import { SIGSEGV } from './signals.js';

/** counts key: { u32 tgid, u32 tag | low 16 bits of a value }; the tag says what is counted. */
export const COUNT_KEY = { tgid: 0, tag: 4, size: 8 } as const;
export const TAG_EMULATE = 0x10000;
export const TAG_FAULT = 0x20000;
export const TAG_CRASH = 0x30000;
/** An entry-start fetch fault counted under its own code: one less for the derived count. */
export const TAG_ADJUST = 0x40000;
/** misc slots: update failures by map. */
export const MISC = { counts: 0, members: 1, records: 2 } as const;
/** pending value (a thread's kept fault), keyed by tid; `handled` is set when a handler caught its SIGSEGV. */
export const PENDING = { error: 0, handled: 4, address: 8, ip: 16, size: 24 } as const;
/** crashes value, keyed by tid. */
export const CRASH = { tgid: 0, error: 4, address: 8, ip: 16, comm: 24, size: 40 } as const;
/** get_current_comm's buffer (TASK_COMM_LEN). */
export const COMM_LEN = 16;

/** Raw tracepoint arguments, by tracepoint: byte offsets into the context. */
const CTX = {
  /** emulate_vsyscall(int nr) */
  emulate: { nr: 0 },
  /** page_fault_user(unsigned long address, struct pt_regs *regs, unsigned long error_code) */
  fault: { address: 0, regs: 8, errorCode: 16 },
  /** signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka) */
  signal: { sig: 0, info: 8, ka: 16 },
  /** sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) */
  exec: { oldPid: 8 },
} as const;
/** struct pt_regs (arch/x86/include/asm/ptrace.h): ip after 16 other u64 registers. */
const PT_REGS_IP = 16 * 8;
/** struct kernel_siginfo: si_code after si_signo and si_errno. */
const SIGINFO_CODE = 8;

/**
 * Stack slots (offsets from r10) of the helpers below, the same in every program that uses them:
 * key() and countKey() the counts key, countKey() its first value and the comm it keeps,
 * memberCheck() the tid it looks up, bump() the misc slot.
 */
export const SHARED = { key: -8, keyTag: -4, one: -16, comm: -40, memberTid: -60, miscSlot: -64 } as const;

/** Each program's stack frame: the shared slots it uses and its own. Slots that overlap are used one after another. */
export const FRAME = {
  emulate: { ...SHARED },
  fault: {
    ...SHARED,
    /** the pending key (tid) and value, written after countKey() is done with its comm */
    pendingKey: -24, pending: -48,
  },
  signal: {
    ...SHARED,
    /** the pending and crashes key (tid); keyTag's slot, reused for the crash count's key after */
    tid: -4,
    handler: -56, siCode: -64, savedPending: -80,
    /** the crash value, its comm last */
    crash: -48,
  },
  exit: { tid: -4 },
  exec: { miscSlot: SHARED.miscSlot, tid: -8, oldPid: -4, one: -12 },
  fork: { miscSlot: SHARED.miscSlot, parent: -4, child: -8, one: -12 },
} as const;

/** The maps the programs use. */
export interface ProgramMaps {
  counts: BpfMap;
  misc: BpfMap;
  pending: BpfMap;
  crashes: BpfMap;
  comms: BpfMap;
  cgroup?: BpfMap | undefined;
  members?: BpfMap | undefined;
}

/** Returns early unless the current task is in the target cgroup. Clobbers r0-r5. */
function cgroupCheck(a: Asm, m: ProgramMaps): void {
  if (!m.cgroup) return;
  a.ldMap(1, m.cgroup).mov(2, { imm: 0 }).call(HELPER.current_task_under_cgroup).jmp('jne', 0, { imm: 1 }, 'out');
}

/** counts[key at fp-8] += 1, inserting it when absent; a full map bumps `dropped`. Clobbers r0-r5. */
export function countKey(a: Asm, m: ProgramMaps): void {
  const S = SHARED;
  const miss = a.fresh('miss');
  const retry = a.fresh('retry');
  const drop = a.fresh('drop');
  const done = a.fresh('done');
  a.ldMap(1, m.counts).mov(2, FP).alu64('add', 2, { imm: S.key }).call(HELPER.map_lookup_elem)
    .jmp('jeq', 0, { imm: 0 }, miss)
    .mov(1, { imm: 1 }).atomicAdd64(0, 0, 1).goto(done)
    .label(miss)
    .st('dw', FP, S.one, 1)
    .ldMap(1, m.counts).mov(2, FP).alu64('add', 2, { imm: S.key }).mov(3, FP).alu64('add', 3, { imm: S.one }).mov(4, { imm: UPDATE.NOEXIST }).call(HELPER.map_update_elem)
    .jmp('jne', 0, { imm: 0 }, retry)
    // A process seen for the first time: keep its name (it may be gone when the counts are read).
    .mov(1, FP).alu64('add', 1, { imm: S.comm }).mov(2, { imm: COMM_LEN }).call(HELPER.get_current_comm)
    .ldMap(1, m.comms).mov(2, FP).alu64('add', 2, { imm: S.key }).mov(3, FP).alu64('add', 3, { imm: S.comm }).mov(4, { imm: UPDATE.NOEXIST }).call(HELPER.map_update_elem)
    .goto(done)
    // Another CPU inserted it first (or the map is full): look again.
    .label(retry)
    .ldMap(1, m.counts).mov(2, FP).alu64('add', 2, { imm: S.key }).call(HELPER.map_lookup_elem)
    .jmp('jeq', 0, { imm: 0 }, drop)
    .mov(1, { imm: 1 }).atomicAdd64(0, 0, 1).goto(done)
    .label(drop);
  bump(a, m, MISC.counts);
  a.label(done);
}

/** misc[slot] += 1 (an update that found its map full). Clobbers r0-r5 and fp-64. */
export function bump(a: Asm, m: ProgramMaps, miscSlot: number): void {
  const skip = a.fresh('nomisc');
  a.st('w', FP, SHARED.miscSlot, miscSlot).ldMap(1, m.misc).mov(2, FP).alu64('add', 2, { imm: SHARED.miscSlot }).call(HELPER.map_lookup_elem)
    .jmp('jeq', 0, { imm: 0 }, skip).mov(1, { imm: 1 }).atomicAdd64(0, 0, 1).label(skip);
}

/** Returns early unless the current thread (low half of r7) is a member. Clobbers r0-r5 and fp-60. */
function memberCheck(a: Asm, m: ProgramMaps): void {
  if (!m.members) return;
  a.stx('w', FP, SHARED.memberTid, 7).ldMap(1, m.members).mov(2, FP).alu64('add', 2, { imm: SHARED.memberTid }).call(HELPER.map_lookup_elem)
    .jmp('jeq', 0, { imm: 0 }, 'out');
}

/** key at fp-8 = { u32 tgid, u32 tag | (low 16 bits of `value`) }; r7 = pid_tgid. */
export function key(a: Asm, tag: number, value: Reg): void {
  a.call(HELPER.get_current_pid_tgid).mov(7, 0).alu64('rsh', 0, { imm: 32 }).stx('w', FP, SHARED.key + COUNT_KEY.tgid, 0)
    .mov(1, value).alu64('and', 1, { imm: 0xffff }).alu64('or', 1, { imm: tag }).stx('w', FP, SHARED.key + COUNT_KEY.tag, 1);
}

/** emulate_vsyscall: counts[(tgid, EMULATE | nr)] += 1. */
export function emulateProgram(m: ProgramMaps): Buffer {
  const a = new Asm();
  a.ldx('dw', 6, 1, CTX.emulate.nr);
  cgroupCheck(a, m);
  key(a, TAG_EMULATE, 6);
  memberCheck(a, m);
  countKey(a, m);
  a.label('out').mov(0, { imm: 0 }).exit();
  return a.build();
}

/**
 * page_fault_user, for faults in the page: counts[(tgid, FAULT | error)] += 1, and the fault kept
 * in pending[tid] unless the kernel emulates it. `emulatedFetchError` (see bpf-counters.ts): the
 * code of the fetch faults left to the emulation hook; `modeNone`: every fault is kept.
 */
export function faultProgram(m: ProgramMaps, modeNone: boolean, emulatedFetchError: number | undefined): Buffer {
  const F = FRAME.fault;
  const P = F.pending;
  const a = new Asm();
  a.mov(6, 1)
    .ldx('dw', 8, 6, CTX.fault.address)
    .mov(2, 8).alu64('and', 2, { imm: -4096 }).ld64(3, VSYSCALL_PAGE_ADDR).jmp('jne', 2, 3, 'out')
    .ldx('dw', 9, 6, CTX.fault.errorCode);
  if (emulatedFetchError !== undefined) {
    // The emulated calls: left to the emulation hook, which counts them (see bpf-counters.ts).
    a.jmp('jne', 9, { imm: emulatedFetchError }, 'full');
    for (const e of VSYSCALL_ENTRIES) a.ld64(2, e.address).jmp('jeq', 8, 2, 'out');
    a.label('full');
  }
  cgroupCheck(a, m);
  key(a, TAG_FAULT, 9);
  memberCheck(a, m);
  countKey(a, m);
  // pending[tid] = { error, handled, address, ip }, ip read from regs->ip (0 if unreadable).
  a.stx('w', FP, F.pendingKey, 7)
    .stx('w', FP, P + PENDING.error, 9).st('w', FP, P + PENDING.handled, 0).stx('dw', FP, P + PENDING.address, 8).st('dw', FP, P + PENDING.ip, 0)
    .mov(1, FP).alu64('add', 1, { imm: P + PENDING.ip }).mov(2, { imm: 8 }).ldx('dw', 3, 6, CTX.fault.regs).alu64('add', 3, { imm: PT_REGS_IP }).call(HELPER.probe_read_kernel);
  if (!modeNone) {
    // What the kernel emulates (vsyscall_64.c): no write, a fault at the instruction pointer
    // (a fetch, whatever the error code says: a CPU without NX sets no INSTR bit), at an entry
    // start. Nothing to keep for a crash report; and, under another code than the one derived
    // counts assume, it is taken back from those.
    a.mov(1, 9).alu64('and', 1, { imm: PF.WRITE }).jmp('jne', 1, { imm: 0 }, 'keep')
      .ldx('dw', 1, FP, P + PENDING.ip).jmp('jne', 1, 8, 'keep');
    for (const e of VSYSCALL_ENTRIES) a.ld64(2, e.address).jmp('jeq', 8, 2, emulatedFetchError !== undefined ? 'adjust' : 'out');
    a.label('keep');
  }
  a.ldMap(1, m.pending).mov(2, FP).alu64('add', 2, { imm: F.pendingKey }).mov(3, FP).alu64('add', 3, { imm: P }).mov(4, { imm: UPDATE.ANY }).call(HELPER.map_update_elem)
    .jmp('jeq', 0, { imm: 0 }, 'out');
  bump(a, m, MISC.records);
  if (!modeNone && emulatedFetchError !== undefined) {
    a.goto('out').label('adjust');
    key(a, TAG_ADJUST, 9);
    countKey(a, m);
  }
  a.label('out').mov(0, { imm: 0 }).exit();
  return a.build();
}

/**
 * signal_deliver of SIGSEGV: a kept fault becomes a crash (crashes[tid], and one more crash for its
 * process) unless a handler catches the signal; then it is marked, and is the crash of a SIGSEGV
 * the program raises later.
 */
export function signalProgram(m: ProgramMaps): Buffer {
  const F = FRAME.signal;
  const C = F.crash;
  const a = new Asm();
  a.mov(6, 1).ldx('dw', 2, 6, CTX.signal.sig).jmp('jne', 2, { imm: SIGSEGV }, 'out', true)
    // The action about to run: ka->sa.sa_handler (struct k_sigaction's first field, so at ka
    // itself), 0 = SIG_DFL, i.e. the process dies.
    .mov(1, FP).alu64('add', 1, { imm: F.handler }).mov(2, { imm: 8 }).ldx('dw', 3, 6, CTX.signal.ka).call(HELPER.probe_read_kernel)
    .ldx('dw', 8, FP, F.handler)
    .call(HELPER.get_current_pid_tgid).mov(7, 0)
    .stx('w', FP, F.tid, 7)
    .ldMap(1, m.pending).mov(2, FP).alu64('add', 2, { imm: F.tid }).call(HELPER.map_lookup_elem)
    .jmp('jeq', 0, { imm: 0 }, 'out')
    // A handler catches it: not a crash yet; the kept fault is marked in case the handler
    // re-raises the signal, as crash reporters do.
    .jmp('jeq', 8, { imm: 0 }, 'fatal')
    .st('w', 0, PENDING.handled, 1).goto('out')
    .label('fatal')
    .ldx('w', 1, 0, PENDING.handled).jmp('jeq', 1, { imm: 0 }, 'record', true)
    // The kept fault was handled before: this fatal SIGSEGV is its crash only if it was raised by
    // the program (si_code <= 0: kill, tgkill, raise); a fault's own signal has si_code > 0.
    .stx('dw', FP, F.savedPending, 0)
    .mov(1, FP).alu64('add', 1, { imm: F.siCode }).mov(2, { imm: 4 }).ldx('dw', 3, 6, CTX.signal.info).alu64('add', 3, { imm: SIGINFO_CODE }).call(HELPER.probe_read_kernel)
    .ldx('w', 1, FP, F.siCode).jmp('jsgt', 1, { imm: 0 }, 'handled', true)
    .ldx('dw', 0, FP, F.savedPending)
    .label('record')
    // the crash value: { u32 tgid, u32 error, u64 address, u64 ip, char comm[16] }
    .mov(1, 7).alu64('rsh', 1, { imm: 32 }).stx('w', FP, C + CRASH.tgid, 1)
    .ldx('w', 1, 0, PENDING.error).stx('w', FP, C + CRASH.error, 1)
    .ldx('dw', 1, 0, PENDING.address).stx('dw', FP, C + CRASH.address, 1)
    .ldx('dw', 1, 0, PENDING.ip).stx('dw', FP, C + CRASH.ip, 1)
    .mov(1, FP).alu64('add', 1, { imm: C + CRASH.comm }).mov(2, { imm: COMM_LEN }).call(HELPER.get_current_comm)
    .ldMap(1, m.crashes).mov(2, FP).alu64('add', 2, { imm: F.tid }).mov(3, FP).alu64('add', 3, { imm: C }).mov(4, { imm: UPDATE.ANY }).call(HELPER.map_update_elem)
    .jmp('jeq', 0, { imm: 0 }, 'stored');
  bump(a, m, MISC.records);
  a.label('stored')
    .ldMap(1, m.pending).mov(2, FP).alu64('add', 2, { imm: F.tid }).call(HELPER.map_delete_elem)
    // and one more crash for its process
    .mov(1, 7).alu64('rsh', 1, { imm: 32 }).stx('w', FP, F.key + COUNT_KEY.tgid, 1).st('w', FP, F.key + COUNT_KEY.tag, TAG_CRASH);
  countKey(a, m);
  a.goto('out')
    .label('handled')
    .ldMap(1, m.pending).mov(2, FP).alu64('add', 2, { imm: F.tid }).call(HELPER.map_delete_elem)
    .label('out').mov(0, { imm: 0 }).exit();
  return a.build();
}

/** sched_process_exit: a thread ends: its kept fault, and its membership (its id may be reused), go with it. */
export function exitProgram(m: ProgramMaps): Buffer {
  const F = FRAME.exit;
  const a = new Asm();
  a.call(HELPER.get_current_pid_tgid).stx('w', FP, F.tid, 0)
    .ldMap(1, m.pending).mov(2, FP).alu64('add', 2, { imm: F.tid }).call(HELPER.map_delete_elem);
  if (m.members) a.ldMap(1, m.members).mov(2, FP).alu64('add', 2, { imm: F.tid }).call(HELPER.map_delete_elem);
  a.mov(0, { imm: 0 }).exit();
  return a.build();
}

/**
 * sched_process_exec(p, old_pid, bprm): a thread other than the leader that execs takes the
 * leader's id (the leader's exit already dropped it): membership moves from old_pid to it.
 */
export function execProgram(m: ProgramMaps, members: BpfMap): Buffer {
  const F = FRAME.exec;
  const a = new Asm();
  a.ldx('dw', 6, 1, CTX.exec.oldPid)
    .call(HELPER.get_current_pid_tgid).jmp('jeq', 0, 6, 'out', true)
    .stx('w', FP, F.tid, 0).stx('w', FP, F.oldPid, 6)
    .ldMap(1, members).mov(2, FP).alu64('add', 2, { imm: F.oldPid }).call(HELPER.map_lookup_elem)
    .jmp('jeq', 0, { imm: 0 }, 'out')
    .st('w', FP, F.one, 1)
    .ldMap(1, members).mov(2, FP).alu64('add', 2, { imm: F.tid }).mov(3, FP).alu64('add', 3, { imm: F.one }).mov(4, { imm: UPDATE.ANY }).call(HELPER.map_update_elem)
    .jmp('jeq', 0, { imm: 0 }, 'moved');
  bump(a, m, MISC.members);
  a.label('moved')
    .ldMap(1, members).mov(2, FP).alu64('add', 2, { imm: F.oldPid }).call(HELPER.map_delete_elem)
    .label('out').mov(0, { imm: 0 }).exit();
  return a.build();
}

/**
 * sched:sched_process_fork, on the trace record (a classic tracepoint: the fields' offsets come
 * from its tracefs format): a member's child (process or thread) is a member.
 */
export function forkProgram(m: ProgramMaps, members: BpfMap, parentOff: number, childOff: number): Buffer {
  const F = FRAME.fork;
  const a = new Asm();
  a.mov(6, 1)
    .ldx('w', 2, 6, parentOff).stx('w', FP, F.parent, 2)
    .ldMap(1, members).mov(2, FP).alu64('add', 2, { imm: F.parent }).call(HELPER.map_lookup_elem)
    .jmp('jeq', 0, { imm: 0 }, 'out')
    .ldx('w', 2, 6, childOff).stx('w', FP, F.child, 2).st('w', FP, F.one, 1)
    .ldMap(1, members).mov(2, FP).alu64('add', 2, { imm: F.child }).mov(3, FP).alu64('add', 3, { imm: F.one }).mov(4, { imm: UPDATE.ANY }).call(HELPER.map_update_elem)
    .jmp('jeq', 0, { imm: 0 }, 'out');
  bump(a, m, MISC.members);
  a.label('out').mov(0, { imm: 0 }).exit();
  return a.build();
}
