// The exporter's eBPF programs: counts of emulations and crashes that fire only for the vsyscall
// page (issue 22, item 2), unlike `vsys trace`'s fault hook, which runs on every user page fault.
// Emulations: the emulate_vsyscall raw tracepoint (arch/x86/entry/vsyscall/vsyscall_64.c), fired
// only by a fetch fault in the page. Crashes: signal_deliver (include/trace/events/signal.h), which
// runs for every delivered signal (rare beside page faults) and leaves at once unless it is SIGSEGV
// with the default action. What the page did to the thread comes, where the kernel allows kprobes,
// from a kprobe on the function the fault path calls for the page alone (emulate_vsyscall, or
// emulate_vsyscall_pf on kernels with LASS support): the faulting ip tells a call (an instruction
// fetch at the address) from a read or write, at which offset. Without kprobes, from the signal: its
// si_addr in the page (README, "vsys exporter", says what that loses).
import { HELPER, UPDATE, type BpfMap } from '../native/bpf.js';
import { Asm, FP } from '../native/bpf-asm.js';
import { COUNT_KEY, SHARED, TAG_CRASH, TAG_EMULATE, countKey, key, type ProgramMaps } from '../trace/bpf-programs.js';
import { SIGSEGV } from '../trace/signals.js';
import { VSYSCALL_PAGE_ADDR } from '../model/vsyscall-page.js';

/** Crash key low bits for a misaligned call the kernel emulated into a SIGSEGV (si_addr is 0 then). */
export const CRASH_MISALIGNED = 0x1000;
/** Crash key low bits from the kprobe: an instruction fetch (a call or jump) at the offset in the low 12 bits… */
export const CRASH_FETCH = 0x2000;
/** …or a read or write of the page at that offset. */
export const CRASH_DATA = 0x4000;
/** struct pt_regs (arch/x86/include/asm/ptrace.h): the probed function's arguments, and the faulting ip in the regs it is given. */
const PT_REGS = { dx: 96, si: 104, ip: 128 } as const;
/** si_code of a signal the kernel sends itself (force_sig): a misaligned call's SIGSEGV. */
const SI_KERNEL = 0x80;

/** The maps both programs use: the counts and comms of `vsys trace`'s layout, and one mark per thread. */
export interface PageMaps {
  counts: BpfMap;
  misc: BpfMap;
  comms: BpfMap;
  /**
   * tid → what the page last did to the thread, as crash key low bits: CRASH_MISALIGNED (a
   * misaligned call, whose SIGSEGV carries no address), or from the kprobe CRASH_FETCH or
   * CRASH_DATA with the offset. An emulated call clears it when the kprobe is in use.
   */
  marks: BpfMap;
}

/** Stack slots beside the shared helpers' (bpf-programs.ts SHARED: -64 … -1). */
const SLOT = { handler: -56, tid: -68, one: -72, addr: -80, siCode: -84 } as const;

/** Raw tracepoint arguments, one u64 each. */
const CTX = { emulateNr: 0, sig: 0, info: 8, ka: 16 } as const;
/** struct kernel_siginfo: si_code at 8; the union (si_addr for a fault) at 16, after padding. */
const SIGINFO = { code: 8, addr: 16 } as const;

/** countKey() reads counts, misc and comms only. */
function sharedMaps(m: PageMaps): ProgramMaps {
  return { counts: m.counts, misc: m.misc, comms: m.comms, pending: m.marks, crashes: m.marks };
}

/**
 * emulate_vsyscall(nr): counts[(tgid, EMULATE | nr)] += 1; a misaligned call (nr < 0) marks its
 * thread. With `clearsMarks` (the kprobe marks every fault in the page), an emulated call clears
 * the kprobe's mark: the call was answered, it is not what a later SIGSEGV comes from.
 */
export function pageEmulateProgram(m: PageMaps, clearsMarks = false): Buffer {
  const a = new Asm();
  a.ldx('dw', 6, 1, CTX.emulateNr);
  key(a, TAG_EMULATE, 6);
  countKey(a, sharedMaps(m));
  a.stx('w', FP, SLOT.tid, 7).jmp('jsge', 6, { imm: 0 }, 'emulated', true)
    .st('w', FP, SLOT.one, CRASH_MISALIGNED)
    .ldMap(1, m.marks).mov(2, FP).alu64('add', 2, { imm: SLOT.tid }).mov(3, FP).alu64('add', 3, { imm: SLOT.one }).mov(4, { imm: UPDATE.ANY }).call(HELPER.map_update_elem)
    .goto('out')
    .label('emulated');
  if (clearsMarks) a.ldMap(1, m.marks).mov(2, FP).alu64('add', 2, { imm: SLOT.tid }).call(HELPER.map_delete_elem);
  a.label('out').mov(0, { imm: 0 }).exit();
  return a.build();
}

/**
 * kprobe on emulate_vsyscall(error_code, regs, address) (or emulate_vsyscall_pf): the fault path
 * calls it for faults in the page only, in every mode (under none it refuses them all). Marks the
 * thread with what the fault was, CRASH_FETCH (the faulting ip is the address: a call or jump) or
 * CRASH_DATA, and the offset. The fetch is told by the ip, as the kernel itself now does, not by
 * the error code's instruction bit, which CPUs without NX or SMEP do not set. An address outside the
 * page (a kernel whose function takes other arguments) marks nothing: the signal's own address
 * decides then, as without kprobes.
 */
export function pageKprobeProgram(m: PageMaps): Buffer {
  const a = new Asm();
  a.ldx('dw', 7, 1, PT_REGS.si).ldx('dw', 9, 1, PT_REGS.dx)
    .mov(2, 9).alu64('and', 2, { imm: -4096 }).ld64(3, VSYSCALL_PAGE_ADDR).jmp('jne', 2, 3, 'out')
    .st('dw', FP, SLOT.addr, 0)
    .mov(1, FP).alu64('add', 1, { imm: SLOT.addr }).mov(2, { imm: 8 }).mov(3, 7).alu64('add', 3, { imm: PT_REGS.ip }).call(HELPER.probe_read_kernel)
    .call(HELPER.get_current_pid_tgid).stx('w', FP, SLOT.tid, 0)
    .mov(1, 9).alu64('and', 1, { imm: 0xfff }).alu64('or', 1, { imm: CRASH_DATA })
    .ldx('dw', 2, FP, SLOT.addr).jmp('jne', 2, 9, 'mark')
    .mov(1, 9).alu64('and', 1, { imm: 0xfff }).alu64('or', 1, { imm: CRASH_FETCH })
    .label('mark').stx('w', FP, SLOT.one, 1)
    .ldMap(1, m.marks).mov(2, FP).alu64('add', 2, { imm: SLOT.tid }).mov(3, FP).alu64('add', 3, { imm: SLOT.one }).mov(4, { imm: UPDATE.ANY }).call(HELPER.map_update_elem)
    .label('out').mov(0, { imm: 0 }).exit();
  return a.build();
}

/**
 * signal_deliver(sig, info, ka), SIGSEGV with the default action (the process dies):
 * counts[(tgid, CRASH | mark)] when the thread is marked (a misaligned call; with the kprobe, any
 * fault in the page not emulated) and the signal is the one the mark announces, else
 * counts[(tgid, CRASH | offset in the page)] when the fault's address is in the page. A caught SIGSEGV is not a crash; its mark is dropped all the same.
 */
export function pageSignalProgram(m: PageMaps): Buffer {
  const a = new Asm();
  a.mov(6, 1).ldx('dw', 2, 6, CTX.sig).jmp('jne', 2, { imm: SIGSEGV }, 'out', true)
    // ka->sa.sa_handler (k_sigaction's first field): 0 = SIG_DFL
    .mov(1, FP).alu64('add', 1, { imm: SLOT.handler }).mov(2, { imm: 8 }).ldx('dw', 3, 6, CTX.ka).call(HELPER.probe_read_kernel)
    .st('w', FP, SLOT.siCode, 0).st('dw', FP, SLOT.addr, 0)
    .mov(1, FP).alu64('add', 1, { imm: SLOT.siCode }).mov(2, { imm: 4 }).ldx('dw', 3, 6, CTX.info).alu64('add', 3, { imm: SIGINFO.code }).call(HELPER.probe_read_kernel)
    .mov(1, FP).alu64('add', 1, { imm: SLOT.addr }).mov(2, { imm: 8 }).ldx('dw', 3, 6, CTX.info).alu64('add', 3, { imm: SIGINFO.addr }).call(HELPER.probe_read_kernel)
    .call(HELPER.get_current_pid_tgid).mov(7, 0).stx('w', FP, SLOT.tid, 7)
    .ldx('dw', 8, FP, SLOT.handler)
    .mov(9, { imm: 0xffff })
    // A marked thread: the page's fault is what this SIGSEGV comes from (a misaligned call's
    // force_sig has si_code SI_KERNEL and no address; the kprobe's mark says fetch or data).
    .ldMap(1, m.marks).mov(2, FP).alu64('add', 2, { imm: SLOT.tid }).call(HELPER.map_lookup_elem)
    .jmp('jeq', 0, { imm: 0 }, 'nomark')
    .ldx('w', 9, 0, 0)
    .ldMap(1, m.marks).mov(2, FP).alu64('add', 2, { imm: SLOT.tid }).call(HELPER.map_delete_elem)
    // A mark is believed only when this signal is the one it announces (a mark left by a thread
    // whose signal never came, its id since reused, must not make a null pointer a vsyscall crash):
    // a misaligned call's force_sig (SI_KERNEL), or a fault (si_code > 0) at an address in the page.
    .jmp('jne', 9, { imm: CRASH_MISALIGNED }, 'faultmark')
    .ldx('w', 1, FP, SLOT.siCode).jmp('jeq', 1, { imm: SI_KERNEL }, 'decide', true)
    .goto('unmarked')
    .label('faultmark')
    .ldx('w', 1, FP, SLOT.siCode).jmp('jsle', 1, { imm: 0 }, 'unmarked', true)
    .ldx('dw', 1, FP, SLOT.addr).alu64('and', 1, { imm: -4096 }).ld64(3, VSYSCALL_PAGE_ADDR).jmp('jeq', 1, 3, 'decide')
    .label('unmarked').mov(9, { imm: 0xffff })
    .label('nomark')
    // A fault's own signal (si_code > 0) at an address in the page.
    .ldx('w', 1, FP, SLOT.siCode).jmp('jsle', 1, { imm: 0 }, 'decide', true)
    .ldx('dw', 1, FP, SLOT.addr).mov(2, 1).alu64('and', 2, { imm: -4096 }).ld64(3, VSYSCALL_PAGE_ADDR).jmp('jne', 2, 3, 'decide')
    .mov(9, 1).alu64('and', 9, { imm: 0xfff })
    .label('decide')
    .jmp('jeq', 9, { imm: 0xffff }, 'out')
    .jmp('jne', 8, { imm: 0 }, 'out')
    .mov(1, 7).alu64('rsh', 1, { imm: 32 }).stx('w', FP, SHARED.key + COUNT_KEY.tgid, 1)
    .mov(1, 9).alu64('or', 1, { imm: TAG_CRASH }).stx('w', FP, SHARED.key + COUNT_KEY.tag, 1);
  countKey(a, sharedMaps(m));
  a.label('out').mov(0, { imm: 0 }).exit();
  return a.build();
}
