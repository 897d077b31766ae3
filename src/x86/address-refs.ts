// Instructions that take the address of given functions: `lea fn(%rip),%reg` (position-independent
// code) and, in code linked at a fixed address, an immediate `mov $fn,%edi` / `movabs $fn,%rax` /
// `push $fn`. A byte search first (a RIP-relative displacement is the target minus the end of the
// instruction, so each position is checked with one addition), then the instruction covering each
// hit is decoded to confirm it, as findCodeSites does for the page's constants.
import { loadIced } from './iced.js';
import type { CodeRegion } from './call-sites.js';

export interface AddressRef {
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
  const { bytes, start, end } = region;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // disp + p must equal target - (ip - start) - 4 for the displacement at p to reach the target.
  const ipBase = Number(region.ip) - start;
  const want = targets.map((t) => t - ipBase - 4);
  const out: number[] = [];
  const stop = Math.min(end, bytes.length) - 4;
  for (let p = start; p <= stop; p++) {
    const d = dv.getInt32(p, true);
    const rel = d + p;
    for (let k = 0; k < want.length; k++) {
      if (rel === want[k]) {
        out.push(p);
        break;
      }
    }
    if (absolute) {
      const u = d >>> 0;
      for (let k = 0; k < targets.length; k++) {
        if (u === targets[k]) {
          out.push(p);
          break;
        }
      }
    }
  }
  return out;
}

/**
 * Every instruction in `region` that takes one of `targets`' addresses (function starts, as plain
 * numbers). `absolute`: the code is linked at a fixed address (ET_EXEC), so immediates count too.
 * `startOf(ip)`: the start of the function holding `ip`, when known: the instructions are then
 * decoded from there, on their real boundaries (`48 8d 05 …` is `lea …,%rax`; decoded from its
 * second byte it would read `lea …,%eax`); else from the nearest start before the hit that covers it.
 */
export function findAddressRefs(region: CodeRegion, targets: readonly number[], absolute: boolean, startOf?: (ip: number) => number | undefined): AddressRef[] {
  if (targets.length === 0 || Number(region.ip) > Number.MAX_SAFE_INTEGER) return [];
  const hits = byteHits(region, targets, absolute);
  if (hits.length === 0) return [];
  const iced = loadIced();
  const f = formatter(iced);
  const slice = region.bytes.subarray(region.start, region.end);
  const decoder = new iced.Decoder(64, slice, iced.DecoderOptions.None);
  const instr = new iced.Instruction();
  const out: AddressRef[] = [];
  const seen = new Set<number>();
  const wanted = new Set(targets);
  const ipBase = Number(region.ip) - region.start;
  const decode = (off: number): boolean => {
    decoder.position = off - region.start;
    decoder.ip = region.ip + BigInt(off - region.start);
    decoder.decodeOut(instr);
    return !instr.isInvalid;
  };
  const take = (off: number): void => {
    const target = takenAddress(iced, instr, wanted);
    if (target === undefined || seen.has(off)) return;
    seen.add(off);
    out.push({ offset: off, ip: instr.ip, target, instruction: f.format(instr) });
  };
  try {
    for (const p of hits) {
      const fnStart = startOf?.(ipBase + p);
      const from = fnStart === undefined ? undefined : fnStart - ipBase;
      if (from !== undefined && from >= region.start && from <= p && p - from <= MAX_WALK) {
        // Walk the function's instructions up to the one covering the hit.
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
      for (let back = MAX_LEN - 1; back >= 1; back--) {
        const off = p - back;
        if (off < region.start || !decode(off) || off + instr.length < p + 4) continue;
        if (takenAddress(iced, instr, wanted) === undefined) continue;
        take(off);
        break;
      }
    }
  } finally {
    instr.free();
    decoder.free();
  }
  return out.sort((a, b) => a.offset - b.offset);
}

/** The target whose address the decoded instruction takes (not a branch to it), if any. */
function takenAddress(iced: ReturnType<typeof loadIced>, instr: InstanceType<ReturnType<typeof loadIced>['Instruction']>, wanted: Set<number>): number | undefined {
  const flow = instr.flowControl;
  // A direct call or jump is a caller, not an address taken; the call graph has those.
  if (flow !== iced.FlowControl.Next) return undefined;
  if (instr.isIpRelMemoryOperand) {
    // lea: the address itself. A load from fn(%rip) reads code bytes; it takes no pointer.
    if (instr.mnemonic !== iced.Mnemonic.Lea) return undefined;
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
