// The rewrite of one direct call of the vsyscall page into what the page did in native mode:
// `mov $NR,%eax; syscall` (plus `ret` for a tail jump), padded with one multi-byte NOP to the exact
// length replaced. Decided from decoded instructions only: the `mov` of the entry into a register,
// then the `call`/`jmp` through it, with nothing between them that reads or writes rax or that
// register, and no branch landing inside the bytes rewritten (checked over the whole function).
// `syscall` clobbers rax, rcx and r11, which a call clobbers anyway; the arguments are where the
// syscall wants them (rdi, rsi, rdx). Intel SDM vol. 2B, NOP: the recommended multi-byte forms.
import { loadIced } from './iced.js';
import type { CodeRegion } from './call-sites.js';

/** One contiguous byte range to replace, with objdump-style text of what it held and will hold. */
export interface PatchEdit {
  offset: number;
  before: Uint8Array;
  after: Uint8Array;
  beforeText: string[];
  afterText: string[];
}

export type PatchShape = 'adjacent' | 'apart' | 'tail';

export type PatchPlan =
  | { ok: true; shape: PatchShape; register: string; edits: PatchEdit[] }
  | { ok: false; reason: string };

/** The site as the scan found it: the offset of the instruction loading the entry, and the entry. */
export interface PatchSite {
  offset: number;
  target: bigint;
}

/** The function holding the site, as file offsets [start, end), when its extent is known. */
export interface FunctionExtent {
  start: number;
  end: number;
}

const MAX_BETWEEN = 48;
/** Registers a call may clobber (SysV ABI): what the call leaves in them is not relied on. */
const CALLER_SAVED = new Set(['RAX', 'RCX', 'RDX', 'RSI', 'RDI', 'R8', 'R9', 'R10', 'R11']);

/** Intel's recommended NOPs, 1 to 9 bytes: one instruction fills the gap. */
const NOPS: readonly (readonly number[])[] = [
  [],
  [0x90],
  [0x66, 0x90],
  [0x0f, 0x1f, 0x00],
  [0x0f, 0x1f, 0x40, 0x00],
  [0x0f, 0x1f, 0x44, 0x00, 0x00],
  [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
  [0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
  [0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

/** `n` bytes of NOPs: as few instructions as possible (one for n ≤ 9). */
export function nopBytes(n: number): number[] {
  const out: number[] = [];
  for (let left = n; left > 0;) {
    const k = Math.min(left, 9);
    out.push(...(NOPS[k] as number[]));
    left -= k;
  }
  return out;
}

/** `mov $nr,%eax` (b8 imm32): zero-extends into rax, as the page's `mov $nr,%rax` did. */
function movEax(nr: number): number[] {
  return [0xb8, nr & 0xff, (nr >>> 8) & 0xff, (nr >>> 16) & 0xff, (nr >>> 24) & 0xff];
}

const SYSCALL = [0x0f, 0x05];
const RET = [0xc3];

interface Decoded {
  offset: number;
  length: number;
  text: string;
  flow: 'next' | 'reg-call' | 'reg-jump' | 'other-branch';
  /** Full 64-bit names of the registers the instruction reads or writes, and those it only writes. */
  uses: Set<string>;
  writesOnly: Set<string>;
  reg0?: string;
  immediate?: bigint;
  mov: boolean;
  branchTarget?: number;
  /** An indirect jump (through a register or memory): a jump table or a tail call. */
  indirectJump: boolean;
}

/** Decodes instructions of `bytes` at file offsets, `ip` being the address of `base`. */
class Reader {
  private readonly iced = loadIced();
  private readonly decoder;
  private readonly instr;
  private readonly fmt;
  private readonly info;

  constructor(private readonly region: CodeRegion) {
    const iced = this.iced;
    this.decoder = new iced.Decoder(64, region.bytes.subarray(region.start, region.end), iced.DecoderOptions.None);
    this.instr = new iced.Instruction();
    this.fmt = new iced.Formatter(iced.FormatterSyntax.Gas);
    this.fmt.uppercaseHex = false;
    this.info = new iced.InstructionInfoFactory();
  }

  free(): void {
    this.decoder.free();
    this.instr.free();
    this.fmt.free();
    this.info.free();
  }

  private full(r: number): string {
    return this.iced.Register[this.iced.RegisterExt.fullRegister(r)] as string;
  }

  /** The instruction at file offset `offset`, or undefined when it is invalid or outside the region. */
  at(offset: number): Decoded | undefined {
    const { iced, instr, decoder, region } = this;
    const pos = offset - region.start;
    if (pos < 0 || pos >= region.end - region.start) return undefined;
    decoder.position = pos;
    decoder.ip = region.ip + BigInt(pos);
    decoder.decodeOut(instr);
    if (instr.isInvalid) return undefined;
    const uses = new Set<string>();
    const writesOnly = new Set<string>();
    const info = this.info.info(instr);
    try {
      for (const u of info.usedRegisters() as { register: number; access: number; free(): void }[]) {
        const name = this.full(u.register);
        uses.add(name);
        // Only a 32- or 64-bit write replaces the whole register (an 8/16-bit one keeps the rest).
        if (u.access === iced.OpAccess.Write && iced.RegisterExt.size(u.register) >= 4) writesOnly.add(name);
        u.free();
      }
    } finally {
      info.free();
    }
    const fc = instr.flowControl;
    const reg0 = instr.opCount > 0 && instr.op0Kind === iced.OpKind.Register ? this.full(instr.op0Register) : undefined;
    let flow: Decoded['flow'] = 'next';
    if (fc === iced.FlowControl.IndirectCall && reg0) flow = 'reg-call';
    else if (fc === iced.FlowControl.IndirectBranch && reg0) flow = 'reg-jump';
    else if (fc !== iced.FlowControl.Next) flow = 'other-branch';
    const d: Decoded = { offset, length: instr.length, text: this.fmt.format(instr), flow, uses, writesOnly, mov: (iced.Mnemonic[instr.mnemonic] as string) === 'Mov', indirectJump: fc === iced.FlowControl.IndirectBranch };
    if (reg0) d.reg0 = reg0;
    if (instr.opCount > 1 && (instr.op1Kind === iced.OpKind.Immediate64 || instr.op1Kind === iced.OpKind.Immediate32to64)) d.immediate = BigInt.asUintN(64, instr.immediate(1));
    if (fc === iced.FlowControl.UnconditionalBranch || fc === iced.FlowControl.ConditionalBranch || fc === iced.FlowControl.Call) {
      if (instr.op0Kind === iced.OpKind.NearBranch64) d.branchTarget = Number(instr.nearBranch64 - region.ip) + region.start;
    }
    return d;
  }

  /** Decoded text of `bytes` (the patch), for the report and its verification. */
  static texts(bytes: number[] | Uint8Array, ip: bigint): string[] {
    const iced = loadIced();
    const decoder = new iced.Decoder(64, Uint8Array.from(bytes), iced.DecoderOptions.None);
    const fmt = new iced.Formatter(iced.FormatterSyntax.Gas);
    fmt.uppercaseHex = false;
    const instr = new iced.Instruction();
    decoder.ip = ip;
    const out: string[] = [];
    try {
      while (decoder.canDecode) {
        decoder.decodeOut(instr);
        out.push(instr.isInvalid ? '(bad)' : fmt.format(instr));
      }
    } finally {
      decoder.free();
      fmt.free();
      instr.free();
    }
    return out;
  }
}

/** The instructions a patch must decode to, NOPs aside: per edit, for the entry's number and the shape. */
export function intendedTexts(nr: number, shape: PatchShape): string[][] {
  const mov = `mov $0x${nr.toString(16)},%eax`;
  const done = shape === 'tail' ? ['syscall', 'ret'] : ['syscall'];
  return shape === 'apart' ? [[mov], done] : [[mov, ...done]];
}

/** What the rewritten bytes must decode to: the report's "after" and the verification's oracle. */
export function decodeTexts(bytes: Uint8Array, ip: bigint): string[] {
  return Reader.texts(bytes, ip);
}

function edit(r: CodeRegion, from: Decoded[], after: number[]): PatchEdit {
  const offset = (from[0] as Decoded).offset;
  const end = (from.at(-1) as Decoded).offset + (from.at(-1) as Decoded).length;
  const before = r.bytes.slice(offset, end);
  if (after.length !== before.length) throw new Error(`patch-site: ${after.length} bytes for ${before.length}`);
  const ip = r.ip + BigInt(offset - r.start);
  return { offset, before, after: Uint8Array.from(after), beforeText: from.map((d) => d.text), afterText: Reader.texts(after, ip) };
}

/**
 * Where a callee-saved register loaded with the entry is dead after the call: written before it is
 * read, within the straight-line code that follows (a `pop` in the epilogue). Anything else cannot
 * be proved and refuses the site.
 */
function deadAfter(rd: Reader, from: number, reg: string, end: number): boolean {
  let pos = from;
  for (let n = 0; n < 64 && pos < end; n++) {
    const d = rd.at(pos);
    if (!d) return false;
    if (d.uses.has(reg)) return d.writesOnly.has(reg);
    if (d.flow !== 'next') return false;
    pos += d.length;
  }
  return false;
}

/**
 * Direct branch targets inside the function (a linear decode of its extent), and whether it holds
 * an indirect jump other than `use` (a jump table, whose targets cannot be read from the code).
 */
function branchTargets(rd: Reader, fn: FunctionExtent, use: number): { targets: Set<number>; tableJump: boolean } | undefined {
  const targets = new Set<number>();
  let tableJump = false;
  for (let pos = fn.start; pos < fn.end;) {
    const d = rd.at(pos);
    if (!d) return undefined;
    if (d.branchTarget !== undefined) targets.add(d.branchTarget);
    if (d.indirectJump && pos !== use) tableJump = true;
    pos += d.length;
  }
  return { targets, tableJump };
}

/**
 * Plans the rewrite of the direct call whose entry is loaded at `site.offset`: `nr` is the entry's
 * syscall number (src/model). Refuses, with the reason, anything it cannot prove equivalent.
 */
/**
 * Every direct branch target in the file's code (a linear decode of each code region): a jump from
 * anywhere, a function's `.cold` part included, may land inside the bytes to rewrite. Computed
 * once per file by the caller, only for files with sites to rewrite.
 */
export function fileBranchTargets(regions: readonly CodeRegion[]): Set<number> {
  const out = new Set<number>();
  for (const region of regions) {
    const rd = new Reader(region);
    try {
      for (let pos = region.start; pos < region.end;) {
        const d = rd.at(pos);
        if (!d) {
          pos++; // data or padding: resynchronise on the next byte
          continue;
        }
        if (d.branchTarget !== undefined) out.add(d.branchTarget);
        pos += d.length;
      }
    } finally {
      rd.free();
    }
  }
  return out;
}

export function planSitePatch(region: CodeRegion, site: PatchSite, nr: number, fn: FunctionExtent | undefined, fileTargets?: ReadonlySet<number>): PatchPlan {
  const rd = new Reader(region);
  try {
    const mov = rd.at(site.offset);
    if (!mov || !mov.mov || !mov.reg0 || mov.immediate !== site.target) {
      return { ok: false, reason: `the instruction at the site (${mov?.text ?? 'undecodable'}) is not a mov of the entry into a register` };
    }
    const reg = mov.reg0;
    const between: Decoded[] = [];
    let use: Decoded | undefined;
    for (let pos = mov.offset + mov.length, n = 0; n < MAX_BETWEEN; n++) {
      const d = rd.at(pos);
      if (!d) return { ok: false, reason: `undecodable bytes after ${mov.text}` };
      if ((d.flow === 'reg-call' || d.flow === 'reg-jump') && d.reg0 === reg) {
        use = d;
        break;
      }
      if (d.flow !== 'next') return { ok: false, reason: `a branch (${d.text}) between ${mov.text} and the call through ${reg.toLowerCase()}` };
      if (d.uses.has('RAX') || d.uses.has(reg)) {
        return { ok: false, reason: `${d.text}, between ${mov.text} and the call, ${d.uses.has('RAX') ? 'uses rax (the syscall number would be lost or read)' : `uses ${reg.toLowerCase()}`}` };
      }
      between.push(d);
      pos += d.length;
    }
    if (!use) return { ok: false, reason: `no call or jump through ${reg.toLowerCase()} within ${MAX_BETWEEN} instructions of ${mov.text}` };
    const tail = use.flow === 'reg-jump';
    if (!fn) return { ok: false, reason: 'the extent of the function holding the site is unknown (no symbol or FDE): a branch into the rewritten bytes cannot be ruled out' };
    const branches = branchTargets(rd, fn, use.offset);
    if (!branches) return { ok: false, reason: 'the function holding the site does not decode cleanly from its start: branches into the site cannot be ruled out' };
    const end = use.offset + use.length;
    for (const t of [...branches.targets, ...(fileTargets ?? [])]) if (t > mov.offset && t < end) return { ok: false, reason: `a branch lands at file offset 0x${t.toString(16)}, inside the bytes to rewrite` };
    // A jump table's targets cannot be read from the code: one may land inside the rewritten bytes.
    if (branches.tableJump) return { ok: false, reason: 'the function has an indirect jump (a jump table or a computed tail call) whose targets cannot be ruled out' };
    if (!CALLER_SAVED.has(reg)) {
      if (tail) return { ok: false, reason: `a tail jump through the callee-saved ${reg.toLowerCase()}: its value would reach the caller` };
      if (!deadAfter(rd, end, reg, fn.end)) return { ok: false, reason: `${reg.toLowerCase()} is callee-saved and may be read after the call (it would no longer hold the entry)` };
    }
    const done = [...SYSCALL, ...(tail ? RET : [])];
    if (between.length === 0) {
      const space = mov.length + use.length;
      const code = [...movEax(nr), ...done];
      if (code.length > space) return { ok: false, reason: `${space} bytes are too few for ${code.length}` };
      return { ok: true, shape: tail ? 'tail' : 'adjacent', register: reg.toLowerCase(), edits: [edit(region, [mov, use], [...code, ...nopBytes(space - code.length)])] };
    }
    // Apart: the mov's bytes load the number, the call's bytes make the syscall; what runs between
    // touches neither rax nor the register, so eax still holds the number at the syscall.
    if (use.length < done.length) return { ok: false, reason: `${use.text} is ${use.length} bytes, too few for ${tail ? 'syscall; ret' : 'syscall'} (the mov and the jump are apart)` };
    if (mov.length < 5) return { ok: false, reason: `${mov.text} is too short for mov $nr,%eax` };
    return {
      ok: true, shape: 'apart', register: reg.toLowerCase(),
      edits: [edit(region, [mov], [...movEax(nr), ...nopBytes(mov.length - 5)]), edit(region, [use], [...done, ...nopBytes(use.length - done.length)])],
    };
  } finally {
    rd.free();
  }
}
