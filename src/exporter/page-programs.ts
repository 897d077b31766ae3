// The exporter's eBPF programs: counts of emulations and crashes that fire only for the vsyscall
// page (issue 22, item 2), unlike `vsys trace`'s fault hook, which runs on every user page fault.
// Emulations: the emulate_vsyscall raw tracepoint (arch/x86/entry/vsyscall/vsyscall_64.c), fired
// only by a fetch fault in the page. Crashes: signal_deliver (include/trace/events/signal.h), which
// runs for every delivered signal (rare beside page faults) and leaves at once unless it is SIGSEGV.
// This kernel has no kprobes (no kprobe PMU, no kprobe_events), so emulate_vsyscall itself cannot
// be hooked; a SIGSEGV counts when the kernel says the page caused it (README, "vsys exporter").
import { HELPER, UPDATE, type BpfMap } from '../native/bpf.js';
import { Asm, FP } from '../native/bpf-asm.js';
import { COUNT_KEY, SHARED, TAG_CRASH, TAG_EMULATE, countKey, key, type ProgramMaps } from '../trace/bpf-programs.js';
import { SIGSEGV } from '../trace/signals.js';
import { VSYSCALL_PAGE_ADDR } from '../model/vsyscall-page.js';

/** Crash key low bits for a misaligned call the kernel emulated into a SIGSEGV (si_addr is 0 then). */
export const CRASH_MISALIGNED = 0x1000;

/** The maps both programs use: the counts and comms of `vsys trace`'s layout, and one mark per thread. */
export interface PageMaps {
  counts: BpfMap;
  misc: BpfMap;
  comms: BpfMap;
  /** tid → 1: the thread's last emulation was a misaligned call, whose SIGSEGV carries no address. */
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

/** emulate_vsyscall(nr): counts[(tgid, EMULATE | nr)] += 1; a misaligned call (nr < 0) marks its thread. */
export function pageEmulateProgram(m: PageMaps): Buffer {
  const a = new Asm();
  a.ldx('dw', 6, 1, CTX.emulateNr);
  key(a, TAG_EMULATE, 6);
  countKey(a, sharedMaps(m));
  a.jmp('jsge', 6, { imm: 0 }, 'out', true)
    .stx('w', FP, SLOT.tid, 7).st('w', FP, SLOT.one, 1)
    .ldMap(1, m.marks).mov(2, FP).alu64('add', 2, { imm: SLOT.tid }).mov(3, FP).alu64('add', 3, { imm: SLOT.one }).mov(4, { imm: UPDATE.ANY }).call(HELPER.map_update_elem)
    .label('out').mov(0, { imm: 0 }).exit();
  return a.build();
}

/**
 * signal_deliver(sig, info, ka), SIGSEGV with the default action (the process dies):
 * counts[(tgid, CRASH | offset in the page)] when the fault's address is in the page, or
 * counts[(tgid, CRASH | CRASH_MISALIGNED)] when the thread is marked. A caught SIGSEGV is not a
 * crash; its mark is dropped all the same.
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
    // A marked thread: this is its misaligned call's SIGSEGV (force_sig: si_code SI_KERNEL, no address).
    .ldMap(1, m.marks).mov(2, FP).alu64('add', 2, { imm: SLOT.tid }).call(HELPER.map_lookup_elem)
    .jmp('jeq', 0, { imm: 0 }, 'nomark')
    .ldMap(1, m.marks).mov(2, FP).alu64('add', 2, { imm: SLOT.tid }).call(HELPER.map_delete_elem)
    .mov(9, { imm: CRASH_MISALIGNED })
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
