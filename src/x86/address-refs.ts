// Instructions that take the address of given functions: `lea fn(%rip),%reg` (position-independent
// code) and, in code linked at a fixed address, an immediate `mov $fn,%edi` / `movabs $fn,%rax` /
// `push $fn`; and, from the same search, direct calls and jumps to them with a rel32. A byte search first (a RIP-relative displacement is the target minus the end of the
// instruction, so each position is checked with one addition), then the instruction covering each
// hit is decoded to confirm it, as findCodeSites does for the page's constants.
import { loadIced } from './iced.js';
import type { CodeRegion } from './call-sites.js';

export interface AddressRef {
  /**
   * `taken`: the instruction takes the address (lea, immediate); `branch`: a direct call, jump or
   * jcc with a 32-bit displacement to it, found by the same byte search (a cheap first look for
   * callers, before the whole code is decoded).
   */
  how: 'taken' | 'branch';
  /** File offset and virtual address of the instruction. */
  offset: number;
  ip: bigint;
  /** The function address it takes. */
  target: number;
  /** In AT&T syntax as objdump prints it: `lea -0x4cc7(%rip),%rax`. */
  instruction: string;
}

/** Longest x86 instruction; a displacement or immediate starts at most this far into one. */
const MAX_LEN = 15;
/** Bytes of a function walked from its start to a hit; past this (a mis-sized range) the hit is decoded on its own. */
const MAX_WALK = 1 << 20;

let fmt: InstanceType<ReturnType<typeof loadIced>['Formatter']> | undefined;

function formatter(iced: ReturnType<typeof loadIced>): NonNullable<typeof fmt> {
  if (!fmt) {
    fmt = new iced.Formatter(iced.FormatterSyntax.Gas);
    fmt.uppercaseHex = false;
    fmt.ripRelativeAddresses = true; // -0x4cc7(%rip), as objdump, not the resolved address
  }
  return fmt;
}

/**
 * Offsets p of `region` where the 4 bytes at p, read as a RIP-relative displacement ending at p+4,
 * point at a target; or (`absolute`) hold a target as a 32-bit immediate.
 */
function byteHits(region: CodeRegion, targets: readonly number[], absolute: boolean): number[] {
  const { bytes, start } = region;
  const stop = Math.min(region.end, bytes.length) - 4;
  if (stop < start) return [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // disp + p must equal target - (ip - start) - 4 for the displacement at p to reach the target.
  const ipBase = Number(region.ip) - start;
  const out: number[] = [];
  // One tight pass over every byte of the code (tens of megabytes in a large library), for all
  // targets at once: there are one or two in nearly every file.
  const wants = targets.map((t) => t - ipBase - 4);
  for (let k = 0; k < wants.length; k += 2) relHits(dv, start, stop, wants[k] as number, wants[k + 1] ?? (wants[k] as number), out);
  if (absolute) {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).subarray(0, stop + 4);
    const word = Buffer.alloc(4);
    for (const t of targets) {
      if (t > 0xffffffff) continue;
      word.writeUInt32LE(t);
      for (let p = buf.indexOf(word, start); p !== -1; p = buf.indexOf(word, p + 1)) out.push(p);
    }
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

/** Positions p in [start, stop] where the displacement at p plus p is `a` or `b`. */
function relHits(dv: DataView, start: number, stop: number, a: number, b: number, out: number[]): void {
  for (let p = start; p <= stop; p++) {
    const x = dv.getInt32(p, true) + p;
    if (x === a || x === b) out.push(p);
  }
}

/**
 * Every instruction in `region` that takes one of `targets`' addresses (function starts, as plain
 * numbers). `absolute`: the code is linked at a fixed address (ET_EXEC), so immediates count too.
 * `startOf(ip)`: the start of the function holding `ip`, when known: the instructions are then
 * decoded from there, on their real boundaries (`48 8d 05 …` is `lea …,%rax`; decoded from its
 * second byte it would read `lea …,%eax`); else from the nearest start before the hit that covers it.
 */
export function findAddressRefs(
  region: CodeRegion,
  targets: readonly number[],
  absolute: boolean,
  startOf?: (ip: number) => number | undefined,
  /** Called with each reference found; true when nothing more about its target is wanted (its hits left are skipped). */
  enough?: (r: AddressRef) => boolean,
): AddressRef[] {
  if (targets.length === 0 || Number(region.ip) > Number.MAX_SAFE_INTEGER) return [];
  const hits = byteHits(region, targets, absolute);
  if (hits.length === 0) return [];
  const iced = loadIced();
  const f = formatter(iced);
  const instr = new iced.Instruction();
  const out: AddressRef[] = [];
  const seen = new Set<number>();
  const wanted = new Set(targets);
  const ipBase = Number(region.ip) - region.start;
  // A decoder over the bytes around one hit, not the whole region (a decoder copies its bytes).
  let decoder: InstanceType<typeof iced.Decoder> | undefined;
  let windowStart = 0;
  const window = (from: number, to: number): void => {
    decoder?.free();
    windowStart = Math.max(region.start, from);
    decoder = new iced.Decoder(64, region.bytes.subarray(windowStart, Math.min(region.end, to)), iced.DecoderOptions.None);
  };
  const decode = (off: number): boolean => {
    const d = decoder as InstanceType<typeof iced.Decoder>;
    d.position = off - windowStart;
    d.ip = region.ip + BigInt(off - region.start);
    d.decodeOut(instr);
    return !instr.isInvalid;
  };
  const take = (off: number): void => {
    const branch = branchTarget(iced, instr, wanted);
    const target = branch ?? takenAddress(iced, instr, wanted);
    if (target === undefined || seen.has(off)) return;
    seen.add(off);
    const r: AddressRef = { how: branch === undefined ? 'taken' : 'branch', offset: off, ip: instr.ip, target, instruction: f.format(instr) };
    out.push(r);
    if (enough?.(r)) wanted.delete(target);
  };
  try {
    for (const p of hits) {
      if (wanted.size === 0) break;
      const fnStart = startOf?.(ipBase + p);
      const from = fnStart === undefined ? undefined : fnStart - ipBase;
      if (from !== undefined && from >= region.start && from <= p && p - from <= MAX_WALK) {
        // Walk the function's instructions up to the one covering the hit.
        window(from, p + MAX_LEN);
        let off = from;
        while (off <= p && decode(off)) {
          if (off + instr.length >= p + 4) {
            take(off);
            break;
          }
          off += instr.length;
        }
        continue;
      }
      window(p - MAX_LEN, p + MAX_LEN);
      for (let back = MAX_LEN - 1; back >= 1; back--) {
        const off = p - back;
        if (off < region.start || !decode(off) || off + instr.length < p + 4) continue;
        if (takenAddress(iced, instr, wanted) === undefined && branchTarget(iced, instr, wanted) === undefined) continue;
        take(off);
        break;
      }
    }
  } finally {
    instr.free();
    decoder?.free();
  }
  return out.sort((a, b) => a.offset - b.offset);
}

/** The target a decoded direct call, jump or jcc goes to, if it is one of `wanted`. */
function branchTarget(iced: ReturnType<typeof loadIced>, instr: InstanceType<ReturnType<typeof loadIced>['Instruction']>, wanted: Set<number>): number | undefined {
  const flow = instr.flowControl;
  if (flow !== iced.FlowControl.Call && flow !== iced.FlowControl.UnconditionalBranch && flow !== iced.FlowControl.ConditionalBranch) return undefined;
  if (instr.op0Kind !== iced.OpKind.NearBranch64) return undefined;
  const t = Number(instr.nearBranch64);
  return wanted.has(t) ? t : undefined;
}

/** The target whose address the decoded instruction takes (not a branch to it), if any. */
function takenAddress(iced: ReturnType<typeof loadIced>, instr: InstanceType<ReturnType<typeof loadIced>['Instruction']>, wanted: Set<number>): number | undefined {
  const flow = instr.flowControl;
  // A direct call or jump is a caller, not an address taken; the call graph has those.
  if (flow !== iced.FlowControl.Next) return undefined;
  if (instr.isIpRelMemoryOperand && instr.mnemonic === iced.Mnemonic.Lea) {
    // lea: the address itself. A load from fn(%rip) reads code bytes and takes no pointer, but a
    // store of an immediate to a RIP-relative word can (movq $fn,hook(%rip)): checked below.
    const a = Number(instr.ipRelMemoryAddress);
    return wanted.has(a) ? a : undefined;
  }
  for (let i = 0; i < instr.opCount; i++) {
    const k = instr.opKind(i);
    if (k === iced.OpKind.Immediate32 || k === iced.OpKind.Immediate32to64 || k === iced.OpKind.Immediate64) {
      const v = instr.immediate(i);
      if (v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER) && wanted.has(Number(v))) return Number(v);
    }
  }
  return undefined;
}
