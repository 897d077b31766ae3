// Steps a call of the vsyscall page's `time` entry with the trap flag (EFLAGS.TF) set and counts the
// single-step traps whose saved RIP is inside the page, as the kernel's selftest does
// (tools/testing/selftests/x86/test_vsyscall.c). All of it is generated machine code: the SIGTRAP
// handler, its restorer (rt_sigreturn) and the stepped call. Runs only in a child process
// (host/vsyscall-child.ts): where calls of the page crash, this process dies.
import { VSYSCALL_PAGE_ADDR, VSYSCALL_PAGE_SIZE, vsyscallEntry } from '../model/vsyscall-page.js';
import { callPointer, ExecPage } from '../native/memory.js';
import { Asm } from '../x86/assemble.js';

/**
 * ucontext_t on x86-64 (include/uapi/asm-generic/ucontext.h, arch/x86/include/uapi/asm/sigcontext.h):
 * uc_flags, uc_link and a 24-byte stack_t come before uc_mcontext, whose general registers start
 * with r8..r15 and have rip at index 16 (glibc's REG_* numbering). Checked against gcc's offsetof.
 */
export const UCONTEXT = { mcontext: 40, REG_R14: 6, REG_R15: 7, REG_RIP: 16 } as const;
export const gregOffset = (reg: number): number => UCONTEXT.mcontext + 8 * reg;

/** struct sigaction as rt_sigaction(2) takes it on x86-64 (the kernel's layout, not glibc's). */
export const KERNEL_SIGACTION = { handler: 0, flags: 8, restorer: 16, mask: 24, size: 32 } as const;

// arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/signal*.h, arch/x86/include/uapi/asm/processor-flags.h
const NR_RT_SIGACTION = 13;
const NR_RT_SIGRETURN = 15;
const SIGTRAP = 5;
const SA_SIGINFO = 0x4;
const SA_RESTORER = 0x04000000;
const X86_EFLAGS_TF = 0x100;

/** Where each piece sits in the code page. */
const AT = { restorer: 0, handler: 64, main: 256 } as const;

/** The result words the stepped function writes to its `out` argument. */
export const OUT = { install: 0, inPage: 8, total: 16, time: 24, restore: 32, flagsAfter: 40, size: 48 } as const;

/** The restorer the kernel returns to after the handler: rt_sigreturn, as glibc's __restore_rt. */
function restorerCode(ip: bigint): Uint8Array {
  return new Asm(64).movImm('eax', NR_RT_SIGRETURN).syscall().assemble(ip);
}

/**
 * handler(sig, info, uc): counts every trap in the saved r14 and a trap inside the page in the saved
 * r15; rt_sigreturn then puts both back in the stepped code's registers, so no memory is written.
 */
function handlerCode(ip: bigint): Uint8Array {
  const a = new Asm(64);
  a.load('rcx', { base: 'rdx', disp: gregOffset(UCONTEXT.REG_R14) }).inc('rcx').store({ base: 'rdx', disp: gregOffset(UCONTEXT.REG_R14) }, 'rcx');
  a.load('rax', { base: 'rdx', disp: gregOffset(UCONTEXT.REG_RIP) });
  a.movImm('rcx', VSYSCALL_PAGE_ADDR).sub('rax', 'rcx').cmpImm('rax', VSYSCALL_PAGE_SIZE).jcc('ae', 'out');
  a.load('rcx', { base: 'rdx', disp: gregOffset(UCONTEXT.REG_R15) }).inc('rcx').store({ base: 'rdx', disp: gregOffset(UCONTEXT.REG_R15) }, 'rcx');
  a.label('out').ret();
  return a.assemble(ip);
}

/** rt_sigaction(SIGTRAP, act or NULL, oldact or NULL, 8) with act/oldact at [rsp+actDisp]/[rsp+oldDisp]. */
function sigaction(a: Asm, act: number | null, old: number | null): void {
  a.movImm('eax', NR_RT_SIGACTION).movImm('edi', SIGTRAP);
  if (act === null) a.xor('esi', 'esi');
  else a.lea('rsi', { base: 'rsp', disp: act });
  if (old === null) a.xor('edx', 'edx');
  else a.lea('rdx', { base: 'rsp', disp: old });
  a.movImm('r10', 8).syscall();
}

/**
 * void step(uint64_t out[6]): installs the handler, sets TF, calls the time entry, clears TF, puts the
 * old SIGTRAP action back, and writes what happened to `out` (OUT's offsets).
 */
function mainCode(ip: bigint, handler: bigint, restorer: bigint): Uint8Array {
  const a = new Asm(64);
  const saved = ['rbx', 'rbp', 'r12', 'r13', 'r14', 'r15'] as const;
  for (const r of saved) a.push(r);
  // 6 pushes + the return address: 72 more keep %rsp 16-byte aligned at the call of the page.
  const act = 0;
  const old = KERNEL_SIGACTION.size;
  a.subImm('rsp', 72).mov('rbx', 'rdi');
  a.movImm('rax', handler).store({ base: 'rsp', disp: act + KERNEL_SIGACTION.handler }, 'rax');
  a.movImm('rax', SA_SIGINFO | SA_RESTORER).store({ base: 'rsp', disp: act + KERNEL_SIGACTION.flags }, 'rax');
  a.movImm('rax', restorer).store({ base: 'rsp', disp: act + KERNEL_SIGACTION.restorer }, 'rax');
  a.xor('eax', 'eax').store({ base: 'rsp', disp: act + KERNEL_SIGACTION.mask }, 'rax');
  sigaction(a, act, old);
  a.store({ base: 'rbx', disp: OUT.install }, 'rax').test('rax', 'rax').jnz('done');
  a.xor('r14', 'r14').xor('r15', 'r15').movImm('r13', vsyscallEntry('time').address);
  a.movImm('r12', X86_EFLAGS_TF).pushf().pop('rax').or('rax', 'r12').push('rax').popf();
  a.xor('edi', 'edi').callReg('r13').mov('rbp', 'rax');
  a.movImm('r12', ~BigInt(X86_EFLAGS_TF)).pushf().pop('rax').and('rax', 'r12').push('rax').popf();
  a.pushf().pop('rax').store({ base: 'rbx', disp: OUT.flagsAfter }, 'rax');
  a.store({ base: 'rbx', disp: OUT.inPage }, 'r15').store({ base: 'rbx', disp: OUT.total }, 'r14').store({ base: 'rbx', disp: OUT.time }, 'rbp');
  sigaction(a, old, null);
  a.store({ base: 'rbx', disp: OUT.restore }, 'rax');
  a.label('done').addImm('rsp', 72);
  for (const r of [...saved].reverse()) a.pop(r);
  a.ret();
  return a.assemble(ip);
}

/** The three pieces laid out for a page at `base`: what the page holds and where `step` starts. */
export function trapFlagCode(base: bigint): { bytes: Uint8Array; main: number } {
  const restorer = restorerCode(base + BigInt(AT.restorer));
  const handler = handlerCode(base + BigInt(AT.handler));
  const main = mainCode(base + BigInt(AT.main), base + BigInt(AT.handler), base + BigInt(AT.restorer));
  if (restorer.length > AT.handler - AT.restorer || handler.length > AT.main - AT.handler || AT.main + main.length > 4096) {
    throw new RangeError(`trap-flag code does not fit its slots (${restorer.length}, ${handler.length}, ${main.length} bytes)`);
  }
  const bytes = new Uint8Array(AT.main + main.length);
  bytes.set(restorer, AT.restorer);
  bytes.set(handler, AT.handler);
  bytes.set(main, AT.main);
  return { bytes, main: AT.main };
}

/** What the stepped call left in `out`, as numbers (time and counts are far below 2^53). */
export interface TrapFlagRaw {
  /** rt_sigaction's result installing the handler (0, or -errno). */
  install: number;
  inPage: number;
  total: number;
  /** What time() returned. */
  time: number;
  /** rt_sigaction's result putting the old action back. */
  restore: number;
  /** EFLAGS after TF was cleared (TF must be 0). */
  flagsAfter: number;
}

/** Runs the step in this process. Dies of SIGSEGV where calls of the page crash: call it in a child. */
export function stepTimeEntry(): TrapFlagRaw {
  const code = new ExecPage(4096);
  const out = new ExecPage(4096);
  try {
    const { bytes, main } = trapFlagCode(code.address);
    code.write(bytes);
    code.seal();
    callPointer(code.at(main), 'void (void *)', out.at(0));
    const v = new DataView(out.read(0, OUT.size).buffer);
    const word = (o: number) => Number(v.getBigInt64(o, true));
    return { install: word(OUT.install), inPage: word(OUT.inPage), total: word(OUT.total), time: word(OUT.time), restore: word(OUT.restore), flagsAfter: word(OUT.flagsAfter) };
  } finally {
    code.free();
    out.free();
  }
}
