// Direct control transfers of a code region (call rel32, jmp rel32/rel8, jcc), for building a
// library's call graph: which functions reach a vsyscall call site. Linear decode with one reused
// Instruction (iced-x86's decodeOut), positions as plain numbers so the hot loop makes no bigints.
import { loadIced } from './iced.js';
import type { CodeRegion } from './call-sites.js';

export interface BranchEdges {
  /** Region-relative offsets of the branch instructions… */
  from: Int32Array;
  /** …and of their targets (may lie outside the region: then negative or ≥ its length). */
  to: Float64Array;
  /** 1 for a call, 0 for a jump (tail call when it leaves the function). */
  isCall: Uint8Array;
  count: number;
  /** Region-relative offsets of instructions after which control may leave the function normally: ret and indirect jmp. */
  exits: Int32Array;
}

export function findBranches(region: CodeRegion): BranchEdges {
  const iced = loadIced();
  const len = region.end - region.start;
  const slice = region.bytes.subarray(region.start, region.end);
  // Decode with ip = 0 so positions and targets are region-relative; branch targets are
  // computed modulo 2^64 and read back as a signed number.
  const decoder = new iced.Decoder(64, slice, iced.DecoderOptions.None);
  const instr = new iced.Instruction();
  let from = new Int32Array(1024);
  let to = new Float64Array(1024);
  let isCall = new Uint8Array(1024);
  let count = 0;
  const exits: number[] = [];
  const CALL = iced.FlowControl.Call;
  const JMP = iced.FlowControl.UnconditionalBranch;
  const JCC = iced.FlowControl.ConditionalBranch;
  const RET = iced.FlowControl.Return;
  const IJMP = iced.FlowControl.IndirectBranch;
  try {
    decoder.ip = 0n;
    let pos = 0;
    while (pos < len) {
      decoder.decodeOut(instr);
      const here = pos;
      pos = decoder.position;
      const flow = instr.flowControl;
      if (flow === RET || flow === IJMP) {
        exits.push(here);
        continue;
      }
      if (flow !== CALL && flow !== JMP && flow !== JCC) continue;
      const kind = instr.op0Kind;
      if (kind !== iced.OpKind.NearBranch64) continue;
      if (count === from.length) {
        const f2 = new Int32Array(count * 2);
        f2.set(from);
        from = f2;
        const t2 = new Float64Array(count * 2);
        t2.set(to);
        to = t2;
        const c2 = new Uint8Array(count * 2);
        c2.set(isCall);
        isCall = c2;
      }
      from[count] = here;
      to[count] = Number(BigInt.asIntN(64, instr.nearBranch64));
      isCall[count] = flow === CALL ? 1 : 0;
      count++;
    }
  } finally {
    instr.free();
    decoder.free();
  }
  return { from, to, isCall, count, exits: Int32Array.from(exits) };
}
