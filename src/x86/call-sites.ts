// Confirms and classifies references to the vsyscall page found by the byte search: decodes the
// instruction that carries the constant, then follows the register it lands in for a few dozen
// instructions (call/jmp through it → direct call; cmov with it → vDSO fallback; stored or compared
// → data reference). Uses iced-x86's decoder; returns plain objects.
import { isInVsyscallPage } from '../model/vsyscall-page.js';
import { siteKindOf, type SiteKind, type SiteUse } from '../model/site-kinds.js';
import { loadIced } from './iced.js';
import { findImm32Candidates, imm32Value } from './candidates.js';

export interface CodeSite {
  kind: SiteKind;
  use: SiteUse;
  /** Offset in the buffer of the instruction (or data word) that holds the address. */
  offset: number;
  /** Its virtual address. */
  ip: bigint;
  /** The address in the page it refers to. */
  target: bigint;
  /** The instruction holding the constant, in AT&T syntax as objdump prints it. */
  instruction: string;
  /** The instruction that uses it (the call, the cmov, the store), when different. */
  useInstruction?: string;
  useIp?: bigint;
}

/** A code region: bytes[start, end) are loaded at `ip` (start maps to ip). */
export interface CodeRegion {
  bytes: Uint8Array;
  start: number;
  end: number;
  ip: bigint;
}

const MAX_FOLLOW = 48;
const CALLER_SAVED = ['RAX', 'RCX', 'RDX', 'RSI', 'RDI', 'R8', 'R9', 'R10', 'R11'];

interface Ctx {
  iced: ReturnType<typeof loadIced>;
  decoder: InstanceType<ReturnType<typeof loadIced>['Decoder']>;
  instr: InstanceType<ReturnType<typeof loadIced>['Instruction']>;
  fmt: InstanceType<ReturnType<typeof loadIced>['Formatter']>;
  region: CodeRegion;
}

// The instruction and the formatter hold no state between uses: one of each per thread, not one per
// decode window (a large library has hundreds of windows, and each WebAssembly object costs).
let shared: { instr: Ctx['instr']; fmt: Ctx['fmt'] } | undefined;

function withDecoder<T>(region: CodeRegion, fn: (c: Ctx) => T): T {
  const iced = loadIced();
  if (!shared) {
    const fmt = new iced.Formatter(iced.FormatterSyntax.Gas);
    fmt.uppercaseHex = false; // as objdump prints: $0xffffffffff600400
    shared = { instr: new iced.Instruction(), fmt };
  }
  const slice = region.bytes.subarray(region.start, region.end);
  const decoder = new iced.Decoder(64, slice, iced.DecoderOptions.None);
  try {
    return fn({ iced, decoder, instr: shared.instr, fmt: shared.fmt, region });
  } finally {
    decoder.free();
  }
}

function decodeAt(c: Ctx, offset: number): boolean {
  const pos = offset - c.region.start;
  if (pos < 0 || pos >= c.region.end - c.region.start) return false;
  c.decoder.position = pos;
  c.decoder.ip = c.region.ip + BigInt(pos);
  c.decoder.decodeOut(c.instr);
  return !c.instr.isInvalid;
}

/** The 64-bit value of the instruction's page constant (immediate or displacement), if it has one. */
function pageConstant(c: Ctx): bigint | undefined {
  const { iced, instr } = c;
  for (let i = 0; i < instr.opCount; i++) {
    const k = instr.opKind(i);
    if (k === iced.OpKind.Immediate64 || k === iced.OpKind.Immediate32to64) {
      const v = BigInt.asUintN(64, instr.immediate(i));
      if (isInVsyscallPage(v)) return v;
    } else if (k === iced.OpKind.Memory && !instr.isIpRelMemoryOperand && instr.memoryBase === iced.Register.None) {
      const v = BigInt.asUintN(64, instr.memoryDisplacementU64);
      if (isInVsyscallPage(v)) return v;
    }
  }
  return undefined;
}

/** Finds the instruction that covers the constant at `p`: the nearest start within 15 bytes before it. */
function instructionCovering(c: Ctx, p: number): { offset: number; value: bigint } | undefined {
  for (let back = 1; back <= 14; back++) {
    const off = p - back;
    if (off < c.region.start) break;
    if (!decodeAt(c, off)) continue;
    if (off + c.instr.length < p + 4) continue;
    const value = pageConstant(c);
    if (value !== undefined && value === imm32Value(c.region.bytes, p)) return { offset: off, value };
  }
  return undefined;
}

function regName(c: Ctx, r: number): string {
  // Full 64-bit register name: eax → RAX, so a 32-bit write is seen to clobber it.
  return c.iced.Register[c.iced.RegisterExt.fullRegister(r)] as string;
}

interface Followed {
  use: SiteUse;
  useInstruction?: string;
  useIp?: bigint;
}

/** Follows the register that received the constant until it is called, cmov'd, stored or lost. */
function follow(c: Ctx, offset: number, reg: string): Followed {
  const { iced, instr } = c;
  const tainted = new Set([reg]);
  let pos = offset + instr.length;
  for (let n = 0; n < MAX_FOLLOW && tainted.size > 0; n++) {
    if (!decodeAt(c, pos)) break;
    pos += instr.length;
    const flow = instr.flowControl;
    const op0Reg = instr.opCount > 0 && instr.op0Kind === iced.OpKind.Register ? regName(c, instr.op0Register) : undefined;
    const op1Reg = instr.opCount > 1 && instr.op1Kind === iced.OpKind.Register ? regName(c, instr.op1Register) : undefined;
    const text = (): Followed['useInstruction'] => c.fmt.format(instr);
    if (flow === iced.FlowControl.IndirectCall || flow === iced.FlowControl.IndirectBranch) {
      if (op0Reg && tainted.has(op0Reg)) {
        return { use: flow === iced.FlowControl.IndirectCall ? 'register-call' : 'register-jump', useInstruction: text(), useIp: instr.ip };
      }
      if (flow === iced.FlowControl.IndirectBranch) break;
      for (const r of CALLER_SAVED) tainted.delete(r);
      continue;
    }
    if (flow === iced.FlowControl.Return || flow === iced.FlowControl.UnconditionalBranch || flow === iced.FlowControl.Interrupt) break;
    if (flow === iced.FlowControl.Call) {
      for (const r of CALLER_SAVED) tainted.delete(r);
      continue;
    }
    const mnem = iced.Mnemonic[instr.mnemonic] as string;
    if (mnem.startsWith('Cmov')) {
      if ((op0Reg && tainted.has(op0Reg)) || (op1Reg && tainted.has(op1Reg))) return { use: 'cmov', useInstruction: text(), useIp: instr.ip };
      continue;
    }
    if (mnem === 'Mov' && instr.op0Kind === iced.OpKind.Memory && op1Reg && tainted.has(op1Reg)) {
      return { use: 'store', useInstruction: text(), useIp: instr.ip };
    }
    if ((mnem === 'Cmp' || mnem === 'Test') && ((op0Reg && tainted.has(op0Reg)) || (op1Reg && tainted.has(op1Reg)))) {
      return { use: 'compare', useInstruction: text(), useIp: instr.ip };
    }
    if (mnem === 'Mov' && op0Reg && op1Reg) {
      if (tainted.has(op1Reg)) tainted.add(op0Reg);
      else tainted.delete(op0Reg);
      continue;
    }
    if (mnem === 'Xchg' && op0Reg && op1Reg) {
      const a = tainted.has(op0Reg);
      const b = tainted.has(op1Reg);
      if (a !== b) {
        if (a) { tainted.delete(op0Reg); tainted.add(op1Reg); } else { tainted.delete(op1Reg); tainted.add(op0Reg); }
      }
      continue;
    }
    if (mnem === 'Push' || mnem === 'Bt') continue;
    // Any other write to a tainted register replaces (or mangles) the address.
    if (op0Reg && tainted.has(op0Reg)) tainted.delete(op0Reg);
  }
  return { use: 'other' };
}

/** Classifies the instruction at `offset` that holds page address `target` (already decoded into c.instr). */
function classifyDecoded(c: Ctx, offset: number, target: bigint): CodeSite {
  const { iced, instr } = c;
  const instruction = c.fmt.format(instr);
  const ip = instr.ip;
  const mnem = iced.Mnemonic[instr.mnemonic] as string;
  let f: Followed = { use: 'other' };
  let absMem = false;
  for (let i = 0; i < instr.opCount; i++) {
    if (instr.opKind(i) === iced.OpKind.Memory && !instr.isIpRelMemoryOperand && instr.memoryBase === iced.Register.None
      && isInVsyscallPage(BigInt.asUintN(64, instr.memoryDisplacementU64))) absMem = true;
  }
  if (absMem) {
    // The page itself is read as data (movzbl 0xffffffffff600000,%esi; call *0xffffffffff600400
    // fetches its target from the page too): a data access, decided by the mode's read rule.
    f = { use: 'load' };
  } else if (mnem === 'Mov' && instr.op0Kind === iced.OpKind.Register) {
    if (instr.op1Kind === iced.OpKind.Memory) f = { use: 'load' };
    else f = follow(c, offset, regName(c, instr.op0Register));
  } else if (mnem === 'Mov' && instr.op0Kind === iced.OpKind.Memory) {
    f = { use: 'store' };
  } else if (mnem === 'Cmp' || mnem === 'Test') {
    f = { use: 'compare' };
  }
  const site: CodeSite = { kind: siteKindOf(f.use, target), use: f.use, offset, ip, target, instruction };
  if (f.useInstruction !== undefined) site.useInstruction = f.useInstruction;
  if (f.useIp !== undefined) site.useIp = f.useIp;
  return site;
}

/**
 * The bytes [start, end) decoded for a candidate at `p` in a region [regionStart, regionEnd): the
 * instruction can start 14 bytes before the constant, and following the register reads at most
 * MAX_FOLLOW instructions of ≤ 15 bytes after it. Nothing outside it is read.
 */
export function decodeWindowOf(p: number, regionStart: number, regionEnd: number): [number, number] {
  return [Math.max(regionStart, p - 16), Math.min(regionEnd, p + 4 + (MAX_FOLLOW + 1) * 15)];
}

/**
 * All instructions in the region that carry a vsyscall-page constant, classified: the byte search's
 * candidates (or `candidates` found already, e.g. while streaming the file), each decoded in its
 * window rather than handing the whole text, often tens of megabytes, to the decoder.
 */
export function findCodeSites(region: CodeRegion, candidates = findImm32Candidates(region.bytes, region.start, region.end)): CodeSite[] {
  if (candidates.length === 0) return [];
  const seen = new Set<number>();
  const out: CodeSite[] = [];
  for (const p of candidates) {
    const [start, end] = decodeWindowOf(p, region.start, region.end);
    const window: CodeRegion = { bytes: region.bytes, start, end, ip: region.ip + BigInt(start - region.start) };
    const site = withDecoder(window, (c) => {
      const hit = instructionCovering(c, p);
      if (!hit || seen.has(hit.offset)) return undefined;
      seen.add(hit.offset);
      decodeAt(c, hit.offset);
      return classifyDecoded(c, hit.offset, hit.value);
    });
    if (site) out.push(site);
  }
  return out;
}

/** A data word holding a page address, and where code loads it, when that was found. */
export interface WordUse {
  /** Address of the data word. */
  word: bigint;
  site: CodeSite;
}

/**
 * Decodes the whole region linearly and reports every instruction whose memory operand addresses one
 * of `words` (RIP-relative or absolute), classified by what is done with the loaded value.
 * `values` gives the page address stored in each word.
 */
export function findWordUses(region: CodeRegion, values: Map<bigint, bigint>): WordUse[] {
  if (values.size === 0) return [];
  return withDecoder(region, (c) => {
    const { iced, instr, decoder } = c;
    const out: WordUse[] = [];
    decoder.position = 0;
    decoder.ip = region.ip;
    while (decoder.canDecode) {
      decoder.decodeOut(instr);
      if (instr.isInvalid) continue;
      let addr: bigint | undefined;
      if (instr.isIpRelMemoryOperand) addr = instr.ipRelMemoryAddress;
      else if (instr.memoryBase === iced.Register.None && instr.memoryIndex === iced.Register.None && instr.memoryDisplSize >= 4) {
        // An absolute [disp32] operand (non-PIE code, e.g. old Go binaries).
        let hasMem = false;
        for (let i = 0; i < instr.opCount; i++) if (instr.opKind(i) === iced.OpKind.Memory) hasMem = true;
        if (hasMem) addr = BigInt.asUintN(64, instr.memoryDisplacementU64);
      }
      if (addr === undefined) continue;
      const target = values.get(addr);
      if (target === undefined) continue;
      const nextPos = decoder.position;
      const offset = region.start + Number(instr.ip - region.ip);
      const flow = instr.flowControl;
      const mnem = iced.Mnemonic[instr.mnemonic] as string;
      let f: Followed = { use: 'other' };
      if (flow === iced.FlowControl.IndirectCall) f = { use: 'memory-call' };
      else if (flow === iced.FlowControl.IndirectBranch) f = { use: 'memory-jump' };
      else if (mnem === 'Mov' && instr.op0Kind === iced.OpKind.Register) f = follow(c, offset, regName(c, instr.op0Register));
      else if (mnem === 'Mov' && instr.op0Kind === iced.OpKind.Memory) f = { use: 'store' };
      else if (mnem === 'Cmp') f = { use: 'compare' };
      // follow() moved the decoder: decode the loading instruction again for its text, then resume.
      decodeAt(c, offset);
      const site: CodeSite = { kind: siteKindOf(f.use, target), use: f.use, offset, ip: instr.ip, target, instruction: c.fmt.format(instr) };
      if (f.useInstruction !== undefined) site.useInstruction = f.useInstruction;
      if (f.useIp !== undefined) site.useIp = f.useIp;
      out.push({ word: addr, site });
      decoder.position = nextPos;
      decoder.ip = region.ip + BigInt(nextPos);
    }
    return out;
  });
}
