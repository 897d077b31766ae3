// A small assembler for the code vsys generates at run time (benchmark loops, probe stubs,
// the tiny i386 program). Instructions are built with iced-x86 and laid out by its BlockEncoder,
// which also resolves the labels. Only the forms vsys needs are offered.
import { VsysError } from '../errors.js';
import { loadIced } from './iced.js';

export type Reg64 = 'rax' | 'rbx' | 'rcx' | 'rdx' | 'rsi' | 'rdi' | 'rbp' | 'rsp' | 'r8' | 'r9' | 'r10' | 'r11' | 'r12' | 'r13' | 'r14' | 'r15';
export type Reg32 = 'eax' | 'ebx' | 'ecx' | 'edx' | 'esi' | 'edi' | 'ebp' | 'esp';
export type Bitness = 32 | 64;

/** A memory operand `[base + disp]`. */
export interface Mem {
  base: Reg64 | Reg32;
  disp?: number;
}

type Op =
  | { k: 'push' | 'pop' | 'callr' | 'jmpr' | 'dec' | 'inc'; r: Reg64 | Reg32 }
  | { k: 'movrr' | 'addrr' | 'subrr' | 'xorrr' | 'orrr' | 'andrr' | 'testrr'; d: Reg64 | Reg32; s: Reg64 | Reg32 }
  | { k: 'movri'; d: Reg64 | Reg32; v: bigint }
  | { k: 'shli' | 'addri' | 'subri' | 'cmpri'; d: Reg64 | Reg32; v: number }
  | { k: 'load'; d: Reg64 | Reg32; m: Mem }
  | { k: 'store'; m: Mem; s: Reg64 | Reg32 }
  | { k: 'storei'; m: Mem; v: number }
  | { k: 'lea'; d: Reg64 | Reg32; m: Mem }
  | { k: 'callm'; m: Mem }
  | { k: 'jcc'; cc: 'ne' | 'e' | 'b' | 'ae'; label: string }
  | { k: 'jmp' | 'call'; label: string }
  | { k: 'label'; name: string }
  | { k: 'int'; v: number }
  | { k: 'plain'; what: 'ret' | 'syscall' | 'sysenter' | 'rdtsc' | 'rdtscp' | 'lfence' | 'mfence' | 'cpuid' | 'int3' | 'hlt' | 'nop' | 'pushf' | 'popf' };

/** Collects instructions; `assemble()` encodes them for a given load address. */
export class Asm {
  readonly bitness: Bitness;
  private readonly ops: Op[] = [];

  constructor(bitness: Bitness = 64) {
    this.bitness = bitness;
  }

  private add(op: Op): this {
    this.ops.push(op);
    return this;
  }

  push(r: Reg64 | Reg32) { return this.add({ k: 'push', r }); }
  pop(r: Reg64 | Reg32) { return this.add({ k: 'pop', r }); }
  /** `call *%r` */
  callReg(r: Reg64 | Reg32) { return this.add({ k: 'callr', r }); }
  /** `jmp *%r` */
  jmpReg(r: Reg64 | Reg32) { return this.add({ k: 'jmpr', r }); }
  /** `call *disp(%base)` */
  callMem(m: Mem) { return this.add({ k: 'callm', m }); }
  dec(r: Reg64 | Reg32) { return this.add({ k: 'dec', r }); }
  inc(r: Reg64 | Reg32) { return this.add({ k: 'inc', r }); }
  mov(d: Reg64 | Reg32, s: Reg64 | Reg32) { return this.add({ k: 'movrr', d, s }); }
  movImm(d: Reg64 | Reg32, v: bigint | number) { return this.add({ k: 'movri', d, v: BigInt(v) }); }
  add_(d: Reg64 | Reg32, s: Reg64 | Reg32) { return this.add({ k: 'addrr', d, s }); }
  sub(d: Reg64 | Reg32, s: Reg64 | Reg32) { return this.add({ k: 'subrr', d, s }); }
  xor(d: Reg64 | Reg32, s: Reg64 | Reg32) { return this.add({ k: 'xorrr', d, s }); }
  or(d: Reg64 | Reg32, s: Reg64 | Reg32) { return this.add({ k: 'orrr', d, s }); }
  and(d: Reg64 | Reg32, s: Reg64 | Reg32) { return this.add({ k: 'andrr', d, s }); }
  test(d: Reg64 | Reg32, s: Reg64 | Reg32) { return this.add({ k: 'testrr', d, s }); }
  shlImm(d: Reg64 | Reg32, v: number) { return this.add({ k: 'shli', d, v }); }
  addImm(d: Reg64 | Reg32, v: number) { return this.add({ k: 'addri', d, v }); }
  subImm(d: Reg64 | Reg32, v: number) { return this.add({ k: 'subri', d, v }); }
  cmpImm(d: Reg64 | Reg32, v: number) { return this.add({ k: 'cmpri', d, v }); }
  load(d: Reg64 | Reg32, m: Mem) { return this.add({ k: 'load', d, m }); }
  store(m: Mem, s: Reg64 | Reg32) { return this.add({ k: 'store', m, s }); }
  /** `movl $imm, disp(%base)` (32-bit store) */
  storeImm32(m: Mem, v: number) { return this.add({ k: 'storei', m, v }); }
  lea(d: Reg64 | Reg32, m: Mem) { return this.add({ k: 'lea', d, m }); }
  jcc(cc: 'ne' | 'e' | 'b' | 'ae', label: string) { return this.add({ k: 'jcc', cc, label }); }
  jnz(label: string) { return this.jcc('ne', label); }
  jmp(label: string) { return this.add({ k: 'jmp', label }); }
  call(label: string) { return this.add({ k: 'call', label }); }
  label(name: string) { return this.add({ k: 'label', name }); }
  int(v: number) { return this.add({ k: 'int', v }); }
  ret() { return this.add({ k: 'plain', what: 'ret' }); }
  syscall() { return this.add({ k: 'plain', what: 'syscall' }); }
  sysenter() { return this.add({ k: 'plain', what: 'sysenter' }); }
  rdtsc() { return this.add({ k: 'plain', what: 'rdtsc' }); }
  rdtscp() { return this.add({ k: 'plain', what: 'rdtscp' }); }
  lfence() { return this.add({ k: 'plain', what: 'lfence' }); }
  mfence() { return this.add({ k: 'plain', what: 'mfence' }); }
  cpuid() { return this.add({ k: 'plain', what: 'cpuid' }); }
  int3() { return this.add({ k: 'plain', what: 'int3' }); }
  hlt() { return this.add({ k: 'plain', what: 'hlt' }); }
  nop() { return this.add({ k: 'plain', what: 'nop' }); }
  /** `pushfq` (`pushfd` in 32-bit code): the flags onto the stack, e.g. to set the trap flag. */
  pushf() { return this.add({ k: 'plain', what: 'pushf' }); }
  /** `popfq` (`popfd` in 32-bit code) */
  popf() { return this.add({ k: 'plain', what: 'popf' }); }

  /** Encodes the instructions as if loaded at `ip`. Throws X86_ENCODE_FAILED on an impossible form. */
  assemble(ip: bigint = 0n): Uint8Array {
    return encodeOps(this.bitness, this.ops, ip);
  }
}

type Iced = ReturnType<typeof loadIced>;
type Instr = InstanceType<Iced['Instruction']>;

/** Register, memory and form choices for one bitness: stack and branch forms follow the code's bitness, data forms the register's width. */
function operandsFor(x: Iced, bitness: Bitness) {
  const { Register, MemoryOperand } = x;
  const is64 = bitness === 64;
  const reg = (r: string): number => {
    const name = r.toUpperCase() as keyof typeof Register;
    const v = Register[name];
    if (typeof v !== 'number') throw new VsysError('X86_ENCODE_FAILED', `unknown register ${r}`);
    if (!is64 && r.startsWith('r')) throw new VsysError('X86_ENCODE_FAILED', `register ${r} does not exist in 32-bit code`);
    return v;
  };
  // iced's displacement size: 1 for a disp8; for a disp32 the address size (8 with a 64-bit base, 4 with a 32-bit one).
  const dispSize = (m: Mem) => (!m.disp ? 0 : m.disp >= -128 && m.disp <= 127 ? 1 : m.base.startsWith('r') ? 8 : 4);
  const mem = (m: Mem) => new MemoryOperand(reg(m.base), Register.None, 1, BigInt(m.disp ?? 0), dispSize(m), false, Register.None);
  const pick = (c64: number, c32: number) => (is64 ? c64 : c32);
  const byReg = (r: string, c64: number, c32: number) => (r.startsWith('r') ? c64 : c32);
  return { reg, mem, pick, byReg };
}

/**
 * Each instruction gets a unique fake IP (16 apart); a label names the IP of the instruction after
 * it. `endLabel`: a label at the very end, which needs an instruction to land on.
 */
function labelTable(ops: readonly Op[]): { target: (l: string) => bigint; endLabel: boolean } {
  const labels = new Map<string, bigint>();
  let n = 0n;
  for (const op of ops) {
    if (op.k === 'label') {
      if (labels.has(op.name)) throw new VsysError('X86_ENCODE_FAILED', `label ${op.name} defined twice`);
      labels.set(op.name, (n + 1n) * 16n);
    } else n++;
  }
  const target = (l: string): bigint => {
    const t = labels.get(l);
    if (t === undefined) throw new VsysError('X86_ENCODE_FAILED', `undefined label ${l}`);
    return t;
  };
  return { target, endLabel: [...labels.values()].some((v) => v === (n + 1n) * 16n) };
}

/** The instruction for one op (undefined for a label). */
function instructionOf(x: Iced, o: ReturnType<typeof operandsFor>, op: Op, target: (l: string) => bigint): Instr | undefined {
  const { Code, Instruction } = x;
  const { reg, mem, pick, byReg } = o;
  switch (op.k) {
    case 'label': return undefined;
    case 'push': return Instruction.createReg(pick(Code.Push_r64, Code.Push_r32), reg(op.r));
    case 'pop': return Instruction.createReg(pick(Code.Pop_r64, Code.Pop_r32), reg(op.r));
    case 'callr': return Instruction.createReg(pick(Code.Call_rm64, Code.Call_rm32), reg(op.r));
    case 'jmpr': return Instruction.createReg(pick(Code.Jmp_rm64, Code.Jmp_rm32), reg(op.r));
    case 'callm': return Instruction.createMem(pick(Code.Call_rm64, Code.Call_rm32), mem(op.m));
    case 'dec': return Instruction.createReg(byReg(op.r, Code.Dec_rm64, Code.Dec_rm32), reg(op.r));
    case 'inc': return Instruction.createReg(byReg(op.r, Code.Inc_rm64, Code.Inc_rm32), reg(op.r));
    case 'movrr': return Instruction.createRegReg(byReg(op.d, Code.Mov_r64_rm64, Code.Mov_r32_rm32), reg(op.d), reg(op.s));
    case 'addrr': return Instruction.createRegReg(byReg(op.d, Code.Add_r64_rm64, Code.Add_r32_rm32), reg(op.d), reg(op.s));
    case 'subrr': return Instruction.createRegReg(byReg(op.d, Code.Sub_r64_rm64, Code.Sub_r32_rm32), reg(op.d), reg(op.s));
    case 'xorrr': return Instruction.createRegReg(byReg(op.d, Code.Xor_r64_rm64, Code.Xor_r32_rm32), reg(op.d), reg(op.s));
    case 'orrr': return Instruction.createRegReg(byReg(op.d, Code.Or_r64_rm64, Code.Or_r32_rm32), reg(op.d), reg(op.s));
    case 'andrr': return Instruction.createRegReg(byReg(op.d, Code.And_r64_rm64, Code.And_r32_rm32), reg(op.d), reg(op.s));
    case 'testrr': return Instruction.createRegReg(byReg(op.d, Code.Test_rm64_r64, Code.Test_rm32_r32), reg(op.d), reg(op.s));
    case 'movri':
      return op.d.startsWith('r')
        ? Instruction.createRegU64(Code.Mov_r64_imm64, reg(op.d), BigInt.asUintN(64, op.v))
        : Instruction.createRegU32(Code.Mov_r32_imm32, reg(op.d), Number(BigInt.asUintN(32, op.v)));
    case 'shli': return Instruction.createRegI32(byReg(op.d, Code.Shl_rm64_imm8, Code.Shl_rm32_imm8), reg(op.d), op.v);
    case 'addri': return Instruction.createRegI32(byReg(op.d, Code.Add_rm64_imm32, Code.Add_rm32_imm32), reg(op.d), op.v);
    case 'subri': return Instruction.createRegI32(byReg(op.d, Code.Sub_rm64_imm32, Code.Sub_rm32_imm32), reg(op.d), op.v);
    case 'cmpri': return Instruction.createRegI32(byReg(op.d, Code.Cmp_rm64_imm32, Code.Cmp_rm32_imm32), reg(op.d), op.v);
    case 'load': return Instruction.createRegMem(byReg(op.d, Code.Mov_r64_rm64, Code.Mov_r32_rm32), reg(op.d), mem(op.m));
    case 'store': return Instruction.createMemReg(byReg(op.s, Code.Mov_rm64_r64, Code.Mov_rm32_r32), mem(op.m), reg(op.s));
    case 'storei': return Instruction.createMemU32(Code.Mov_rm32_imm32, mem(op.m), op.v >>> 0);
    case 'lea': return Instruction.createRegMem(byReg(op.d, Code.Lea_r64_m, Code.Lea_r32_m), reg(op.d), mem(op.m));
    case 'jcc': {
      const c = { ne: [Code.Jne_rel32_64, Code.Jne_rel32_32], e: [Code.Je_rel32_64, Code.Je_rel32_32], b: [Code.Jb_rel32_64, Code.Jb_rel32_32], ae: [Code.Jae_rel32_64, Code.Jae_rel32_32] }[op.cc];
      return Instruction.createBranch(pick(c[0]!, c[1]!), target(op.label));
    }
    case 'jmp': return Instruction.createBranch(pick(Code.Jmp_rel32_64, Code.Jmp_rel32_32), target(op.label));
    case 'call': return Instruction.createBranch(pick(Code.Call_rel32_64, Code.Call_rel32_32), target(op.label));
    case 'int': return Instruction.createI32(Code.Int_imm8, op.v);
    case 'plain': {
      const code = {
        ret: pick(Code.Retnq, Code.Retnd), syscall: Code.Syscall, sysenter: Code.Sysenter, rdtsc: Code.Rdtsc,
        rdtscp: Code.Rdtscp, lfence: Code.Lfence, mfence: Code.Mfence, cpuid: Code.Cpuid, int3: Code.Int3,
        hlt: Code.Hlt, nop: Code.Nopd, pushf: pick(Code.Pushfq, Code.Pushfd), popf: pick(Code.Popfq, Code.Popfd),
      }[op.what];
      return Instruction.create(code);
    }
  }
}

function encodeOps(bitness: Bitness, ops: readonly Op[], ip: bigint): Uint8Array {
  const x = loadIced();
  const operands = operandsFor(x, bitness);
  const { target, endLabel } = labelTable(ops);
  const enc = new x.BlockEncoder(bitness, 0);
  const made: Instr[] = [];
  try {
    let i = 0n;
    const emit = (ins: Instr) => {
      i++;
      ins.ip = i * 16n;
      made.push(ins);
      enc.add(ins);
    };
    for (const op of ops) {
      const ins = instructionOf(x, operands, op, target);
      if (ins) emit(ins);
    }
    if (endLabel) emit(x.Instruction.create(x.Code.Int3));
    return enc.encode(ip);
  } catch (e) {
    if (e instanceof VsysError) throw e;
    throw new VsysError('X86_ENCODE_FAILED', `cannot encode ${bitness}-bit code: ${String(e)}`, { cause: e });
  } finally {
    for (const ins of made) ins.free();
    enc.free();
  }
}
