// The eBPF instruction assembler: registers, sizes, ALU and jump opcodes, and Asm, which builds a
// program with named labels (resolved to offsets in build()). Loading and attaching are in bpf.ts.
import { VsysError } from '../errors.js';
import type { BpfMap } from './bpf.js';

export type Reg = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;
export const FP: Reg = 10;
export type Size = 'b' | 'h' | 'w' | 'dw';
const SIZE = { w: 0x00, h: 0x08, b: 0x10, dw: 0x18 } as const;
export const ALU = { add: 0x00, sub: 0x10, mul: 0x20, or: 0x40, and: 0x50, lsh: 0x60, rsh: 0x70, mov: 0xb0, arsh: 0xc0 } as const;
export const JMP = { jeq: 0x10, jgt: 0x20, jge: 0x30, jset: 0x40, jne: 0x50, jsgt: 0x60, jsge: 0x70, jlt: 0xa0, jle: 0xb0, jslt: 0xc0, jsle: 0xd0 } as const;
const PSEUDO_MAP_FD = 1;

type Item = { code: number; dst: number; src: number; off: number; imm: number; label?: string } | { mark: string };

/** Builds a program with named labels; jumps are resolved to instruction offsets in build(). */
export class Asm {
  private readonly items: Item[] = [];
  private seq = 0;

  private ins(code: number, dst: number, src: number, off: number, imm: number, label?: string): this {
    this.items.push(label === undefined ? { code, dst, src, off, imm } : { code, dst, src, off, imm, label });
    return this;
  }

  /** A label name unique in this program. */
  fresh(base: string): string {
    return `${base}#${this.seq++}`;
  }

  label(name: string): this {
    this.items.push({ mark: name });
    return this;
  }

  alu64(op: keyof typeof ALU, dst: Reg, srcOrImm: Reg | { imm: number }): this {
    return typeof srcOrImm === 'number' ? this.ins(0x07 | ALU[op] | 0x08, dst, srcOrImm, 0, 0) : this.ins(0x07 | ALU[op], dst, 0, 0, srcOrImm.imm);
  }

  alu32(op: keyof typeof ALU, dst: Reg, srcOrImm: Reg | { imm: number }): this {
    return typeof srcOrImm === 'number' ? this.ins(0x04 | ALU[op] | 0x08, dst, srcOrImm, 0, 0) : this.ins(0x04 | ALU[op], dst, 0, 0, srcOrImm.imm);
  }

  mov(dst: Reg, srcOrImm: Reg | { imm: number }): this {
    return this.alu64('mov', dst, srcOrImm);
  }

  /** dst = a 64-bit constant (two instruction slots). */
  ld64(dst: Reg, value: bigint): this {
    const v = BigInt.asUintN(64, value);
    this.ins(0x18, dst, 0, 0, Number(BigInt.asIntN(32, v & 0xffffffffn)));
    return this.ins(0, 0, 0, 0, Number(BigInt.asIntN(32, v >> 32n)));
  }

  /** dst = the map's address (the loader rewrites the fd). */
  ldMap(dst: Reg, map: BpfMap): this {
    this.ins(0x18, dst, PSEUDO_MAP_FD, 0, map.fd);
    return this.ins(0, 0, 0, 0, 0);
  }

  ldx(size: Size, dst: Reg, src: Reg, off: number): this {
    return this.ins(0x01 | 0x60 | SIZE[size], dst, src, off, 0);
  }

  stx(size: Size, dst: Reg, off: number, src: Reg): this {
    return this.ins(0x03 | 0x60 | SIZE[size], dst, src, off, 0);
  }

  st(size: Size, dst: Reg, off: number, imm: number): this {
    return this.ins(0x02 | 0x60 | SIZE[size], dst, 0, off, imm);
  }

  /** lock *(u64 *)(dst + off) += src */
  atomicAdd64(dst: Reg, off: number, src: Reg): this {
    return this.ins(0x03 | 0xc0 | SIZE.dw, dst, src, off, 0);
  }

  /** if (dst OP src|imm) goto label; 64-bit compare, or 32-bit with `w: true`. */
  jmp(op: keyof typeof JMP, dst: Reg, srcOrImm: Reg | { imm: number }, label: string, w = false): this {
    const cls = w ? 0x06 : 0x05;
    return typeof srcOrImm === 'number' ? this.ins(cls | JMP[op] | 0x08, dst, srcOrImm, 0, 0, label) : this.ins(cls | JMP[op], dst, 0, 0, srcOrImm.imm, label);
  }

  goto(label: string): this {
    return this.ins(0x05, 0, 0, 0, 0, label);
  }

  call(helper: number): this {
    return this.ins(0x85, 0, 0, 0, helper);
  }

  exit(): this {
    return this.ins(0x95, 0, 0, 0, 0);
  }

  build(): Buffer {
    const at = new Map<string, number>();
    let n = 0;
    for (const it of this.items) {
      if ('mark' in it) {
        if (at.has(it.mark)) throw new VsysError('BPF_UNAVAILABLE', `label ${it.mark} defined twice`);
        at.set(it.mark, n);
      } else n++;
    }
    const out = Buffer.alloc(n * 8);
    let i = 0;
    for (const it of this.items) {
      if ('mark' in it) continue;
      let off = it.off;
      if (it.label !== undefined) {
        const target = at.get(it.label);
        if (target === undefined) throw new VsysError('BPF_UNAVAILABLE', `jump to undefined label ${it.label}`);
        off = target - (i + 1);
      }
      out.writeUInt8(it.code, i * 8);
      out.writeUInt8((it.src << 4) | it.dst, i * 8 + 1);
      out.writeInt16LE(off, i * 8 + 2);
      out.writeInt32LE(it.imm, i * 8 + 4);
      i++;
    }
    return out;
  }
}
