// The 32-bit programs that measure the i386 entry paths, generated with the assembler: a prologue
// that finds AT_SYSINFO and AT_SYSINFO_EHDR in the auxiliary vector (the ELF loader's initial
// stack), timed rounds of one path's call, the sysenter stub of arch/x86/entry/vdso/vdso32/
// system_call.S, and the probe that dumps the 32-bit vDSO. Numbers come from src/model.
import { Asm } from '../x86/assemble.js';
import { AT_SYSINFO, AT_SYSINFO_EHDR, CLOCK_IDS, SYS_I386 } from '../model/syscalls.js';
import { buildI386Elf, I386_BSS_ADDRESS, I386_CODE_ADDRESS } from './i386-elf.js';

export type I386Path = 'int80' | 'sysenter' | 'kernel-vsyscall' | 'vdso32-gettimeofday' | 'vdso32-clock_gettime';
export const I386_PATHS: readonly I386Path[] = ['int80', 'sysenter', 'kernel-vsyscall', 'vdso32-gettimeofday', 'vdso32-clock_gettime'];

export const PAGE = 4096;

// What every generated program writes first, as u32 words at the start of its bss; timed
// repeats follow as (start lo, start hi, end lo, end hi) TSC words.
export const H = { magic: 0, status: 4, sysinfo: 8, ehdr: 12, ret: 16, out0: 20, out1: 24, fn: 28, size: 32 } as const;
export const MAGIC = 0x56535953; // "SYSV" read as bytes: a sanity mark for the parent
export const STATUS = { ok: 0, noSysinfo: 1, noEhdr: 2 } as const;
export const ROUND = 16;

/** What a call does between the timing reads; `needs` says which auxv entry it depends on. */
export interface Body {
  needs?: 'sysinfo' | 'ehdr';
  /** Offset of the vDSO function from the vDSO base (for 'ehdr'). */
  vdsoOffset?: number;
  emit(a: Asm): void;
}

/** Labels must be unique within one program. */
let labelSeq = 0;
const uid = (s: string) => `${s}_${++labelSeq}`;

/** Finds AT_SYSINFO and AT_SYSINFO_EHDR on the initial stack: argc, argv[], NULL, envp[], NULL, auxv pairs. */
function emitPrologue(a: Asm): void {
  const env = uid('env'), aux = uid('aux'), notSysinfo = uid('ns'), next = uid('next'), done = uid('auxdone');
  a.movImm('edi', I386_BSS_ADDRESS).storeImm32({ base: 'edi', disp: H.magic }, MAGIC);
  a.load('eax', { base: 'esp' }).shlImm('eax', 2).add_('eax', 'esp').addImm('eax', 8); // &envp[0]
  a.label(env).load('ecx', { base: 'eax' }).addImm('eax', 4).test('ecx', 'ecx').jnz(env);
  a.label(aux).load('ecx', { base: 'eax' }).test('ecx', 'ecx').jcc('e', done);
  a.cmpImm('ecx', AT_SYSINFO).jcc('ne', notSysinfo);
  a.load('edx', { base: 'eax', disp: 4 }).store({ base: 'edi', disp: H.sysinfo }, 'edx');
  a.label(notSysinfo).cmpImm('ecx', AT_SYSINFO_EHDR).jcc('ne', next);
  a.load('edx', { base: 'eax', disp: 4 }).store({ base: 'edi', disp: H.ehdr }, 'edx');
  a.label(next).addImm('eax', 8).jmp(aux);
  a.label(done);
  // The stack is 16-aligned at entry; keep it so at every call the psABI way (two pushed args + 8).
  a.subImm('esp', 8);
}

/** write(1, ptr, len) until done; jumps to `fail` on an error or a zero-byte write. Clobbers eax–edx, esi. */
function emitWriteAll(a: Asm, ptr: 'edi' | 'ecx', len: number, fail: string): void {
  const loop = uid('write');
  if (ptr === 'edi') a.mov('ecx', 'edi');
  a.movImm('esi', len);
  a.label(loop).movImm('eax', SYS_I386.write).movImm('ebx', 1).mov('edx', 'esi').int(0x80);
  a.test('eax', 'eax').jcc('e', fail);
  a.cmpImm('eax', -4095).jcc('ae', fail); // -4095..-1: errno
  a.add_('ecx', 'eax').sub('esi', 'eax').jnz(loop);
}

function emitExit(a: Asm, status: number): void {
  a.movImm('eax', SYS_I386.exit_group).movImm('ebx', status).int(0x80);
}

function emitTSC(a: Asm): void {
  a.lfence().rdtsc().lfence();
}

/** The timing program: prologue, prerequisite check, warm-up, `repeats` timed rounds, write, exit. */
export function timingProgram(body: Body, iterations: number, repeats: number): Uint8Array {
  const a = new Asm(32);
  const out = uid('out'), exit = uid('exit');
  const size = H.size + repeats * ROUND;
  emitPrologue(a);
  if (body.needs) {
    const ok = uid('have');
    a.load('ecx', { base: 'edi', disp: body.needs === 'sysinfo' ? H.sysinfo : H.ehdr }).test('ecx', 'ecx').jnz(ok);
    a.storeImm32({ base: 'edi', disp: H.status }, body.needs === 'sysinfo' ? STATUS.noSysinfo : STATUS.noEhdr).jmp(out);
    a.label(ok);
    // The vDSO's address is randomized per process; the function's offset from its base is not.
    if (body.needs === 'ehdr') a.addImm('ecx', body.vdsoOffset ?? 0).store({ base: 'edi', disp: H.fn }, 'ecx');
  }
  const warm = uid('warm');
  a.movImm('esi', Math.min(iterations, 1000));
  a.label(warm);
  body.emit(a);
  a.dec('esi').jnz(warm);

  const round = uid('round'), inner = uid('inner');
  a.lea('ebx', { base: 'edi', disp: H.size });
  a.label(round);
  emitTSC(a);
  a.store({ base: 'ebx' }, 'eax').store({ base: 'ebx', disp: 4 }, 'edx');
  a.movImm('esi', iterations);
  a.label(inner);
  body.emit(a);
  a.dec('esi').jnz(inner);
  a.store({ base: 'edi', disp: H.ret }, 'eax');
  emitTSC(a);
  a.store({ base: 'ebx', disp: 8 }, 'eax').store({ base: 'ebx', disp: 12 }, 'edx');
  a.addImm('ebx', ROUND).cmpImm('ebx', I386_BSS_ADDRESS + size).jcc('ne', round);

  a.label(out);
  emitWriteAll(a, 'edi', size, exit);
  a.label(exit);
  emitExit(a, 0);
  // Reached by `call`: the stub of __kernel_vsyscall before its sysenter. The kernel resumes at the
  // vDSO's landing pad (it uses ebp as the user stack), which pops ebp, edx, ecx and returns to our caller.
  a.label('sysenter_stub').push('ecx').push('edx').push('ebp').mov('ebp', 'esp').sysenter();
  a.hlt();
  return buildI386Elf(a.assemble(BigInt(I386_CODE_ADDRESS)), { bssSize: align(size, PAGE) });
}

/** The probe: writes its header and `pages` pages of its vDSO (stopping at the first unreadable one), then reads the TSC. */
export function probeProgram(pages: number): Uint8Array {
  const a = new Asm(32);
  const exit = uid('exit'), dumped = uid('dumped'), page = uid('page'), header = uid('header');
  emitPrologue(a);
  a.load('ecx', { base: 'edi', disp: H.ehdr }).test('ecx', 'ecx').jnz(header);
  a.storeImm32({ base: 'edi', disp: H.status }, STATUS.noEhdr);
  a.label(header);
  emitWriteAll(a, 'edi', H.size, exit);
  a.load('ecx', { base: 'edi', disp: H.ehdr }).test('ecx', 'ecx').jcc('e', dumped);
  a.movImm('ebp', pages);
  a.label(page);
  emitWriteAll(a, 'ecx', PAGE, dumped);
  a.dec('ebp').jnz(page);
  a.label(dumped);
  // Last, so that output already written shows the fault (CR4.TSD) came from rdtsc.
  emitTSC(a);
  a.label(exit);
  emitExit(a, 0);
  return buildI386Elf(a.assemble(BigInt(I386_CODE_ADDRESS)), { bssSize: PAGE });
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

export const BODIES: Record<I386Path, (vdsoOffset?: number) => Body> = {
  int80: () => ({ emit: (a) => a.movImm('eax', SYS_I386.getpid).int(0x80) }),
  'kernel-vsyscall': () => ({ needs: 'sysinfo', emit: (a) => a.movImm('eax', SYS_I386.getpid).callMem({ base: 'edi', disp: H.sysinfo }) }),
  // The landing pad is in the vDSO, so sysenter needs it mapped as much as __kernel_vsyscall does.
  sysenter: () => ({ needs: 'sysinfo', emit: (a) => a.movImm('eax', SYS_I386.getpid).call('sysenter_stub') }),
  // cdecl: arguments pushed right to left, the caller pops them; eax, ecx, edx are clobbered.
  'vdso32-gettimeofday': (vdsoOffset) => ({
    needs: 'ehdr', vdsoOffset,
    emit: (a) => a.xor('eax', 'eax').push('eax').lea('eax', { base: 'edi', disp: H.out0 }).push('eax')
      .callMem({ base: 'edi', disp: H.fn }).addImm('esp', 8),
  }),
  'vdso32-clock_gettime': (vdsoOffset) => ({
    needs: 'ehdr', vdsoOffset,
    emit: (a) => a.lea('eax', { base: 'edi', disp: H.out0 }).push('eax').movImm('eax', CLOCK_IDS.MONOTONIC).push('eax')
      .callMem({ base: 'edi', disp: H.fn }).addImm('esp', 8),
  }),
};
