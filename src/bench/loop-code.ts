// The machine code of one benchmark loop, generated with the assembler (iced-x86): n calls of a path
// with the target in a register, as a C loop compiled -O2 would run. Generated function:
// void loop(uint64_t n, void *buf). The caller times it; cycles come from the TSC rate (tscStub).
// No rdtsc inside: on this AMD guest, code that merged rdtsc's halves (or rax,rdx) before a loop of
// `syscall`s ran each call ~25% slower than the same loop without it, in C and in vsys alike.
import { Asm } from '../x86/assemble.js';
import type { ArgShape } from './paths.js';

export interface LoopSpec {
  args: ArgShape;
  /** Call through %r13 to this address… */
  target?: bigint;
  /** …or this instruction form. */
  inline?: { k: 'syscall' | 'int80'; nr: number };
  /** Address of the scratch buffer to pass; for int 0x80 it must lie below 4 GiB. 0 = use the `buf` argument. */
  fixedBuffer?: bigint;
  /** Store each call's %rax at buf+48 (for checking a single call; not used when timing). */
  storeResult?: boolean;
}

/** Scratch buffer layout: [0,16) timespec/timeval or getcpu's cpu, [16,20) getcpu's node, [48,56) last %rax. */
export const BUF_SIZE = 64;
export const RESULT_OFFSET = 48;

function setupArgs(a: Asm, args: ArgShape, int80: boolean): void {
  // r14 holds the buffer. For int 0x80 the i386 ABI wants ebx, ecx, edx.
  switch (args.k) {
    case 'clock_gettime':
      if (int80) a.movImm('ebx', args.clock).mov('rcx', 'r14');
      else a.movImm('edi', args.clock).mov('rsi', 'r14');
      break;
    case 'gettimeofday':
      if (int80) a.mov('rbx', 'r14').xor('ecx', 'ecx');
      else a.mov('rdi', 'r14').xor('esi', 'esi');
      break;
    case 'time':
      if (int80) a.xor('ebx', 'ebx');
      else a.xor('edi', 'edi');
      break;
    case 'getcpu':
      a.mov('rdi', 'r14').lea('rsi', { base: 'r14', disp: 16 }).xor('edx', 'edx');
      break;
    case 'none':
      break;
  }
}

export function loopCode(spec: LoopSpec, ip: bigint): Uint8Array {
  const a = new Asm(64);
  // Callee-saved registers we use, plus alignment: 6 pushes + the return address = 56 bytes, so
  // 8 more keep %rsp 16-byte aligned at each call, as the ABI requires of the vDSO and libc.
  for (const r of ['rbx', 'rbp', 'r12', 'r13', 'r14', 'r15'] as const) a.push(r);
  a.subImm('rsp', 8);
  a.mov('r12', 'rdi');
  if (spec.fixedBuffer !== undefined) a.movImm('r14', spec.fixedBuffer);
  else a.mov('r14', 'rsi');
  if (spec.target !== undefined) a.movImm('r13', spec.target);
  a.label('loop');
  setupArgs(a, spec.args, spec.inline?.k === 'int80');
  if (spec.inline) {
    a.movImm('eax', spec.inline.nr);
    if (spec.inline.k === 'syscall') a.syscall();
    else a.int(0x80);
  } else {
    a.callReg('r13');
  }
  if (spec.storeResult) a.store({ base: 'r14', disp: RESULT_OFFSET }, 'rax');
  a.dec('r12').jnz('loop');
  a.xor('eax', 'eax');
  a.addImm('rsp', 8);
  for (const r of ['r15', 'r14', 'r13', 'r12', 'rbp', 'rbx'] as const) a.pop(r);
  a.ret();
  return a.assemble(ip);
}

/** uint64_t tsc(void): the time-stamp counter, serialised with lfence on both sides. */
export function tscStub(ip: bigint): Uint8Array {
  return new Asm(64).lfence().rdtsc().lfence().shlImm('rdx', 32).or('rax', 'rdx').ret().assemble(ip);
}
