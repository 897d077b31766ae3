// Direct calls of the page in functions reached only through a pointer: not exported, not the
// target of any direct call or jump in the file (PLT stubs and tail jumps included), not a start-up
// root (entry point, DT_INIT/DT_FINI, init/fini arrays, an IFUNC resolver), and whose address is
// taken somewhere (lea, an immediate, a data word, a relocation). HotSpot's sched_getcpu_syscall
// is one: sched_getcpu_init takes its address and calls it only if libc's sched_getcpu fails.
// Such a site is kind `indirect` (verdict `review`), with where its address is taken.
import type { ElfFile } from '../elf/read-elf.js';
import { offsetToVaddr } from '../elf/read-elf.js';
import type { ElfSymbol } from '../elf/types.js';
import { DT, ET, R_X86_64, SHT } from '../elf/constants.js';
import { readDynamic } from '../elf/dynamic.js';
import { visitRelocations } from '../elf/relocations.js';
import { isVsysError } from '../errors.js';
import type { BranchEdges } from '../x86/call-graph.js';
import { findAddressRefs, type AddressRef } from '../x86/address-refs.js';
import { dataSymbolAt, type AddressTaken, type Finding, type Regions } from './find-uses.js';
import type { FunctionIndex, FunctionInfo } from './functions.js';

/** Address-taken places listed per site; a function pointer stored in many tables is one finding. */
const MAX_REFS = 16;

interface Candidate {
  fn: FunctionInfo;
  refs: AddressTaken[];
  /** Reached without a pointer (a direct branch, a start-up root): stays a direct call. */
  direct: boolean;
}

/** Virtual address ranges [start, end) the loader calls through at start-up and exit. */
function startupArrays(elf: ElfFile, dynamic: () => ReturnType<typeof readDynamic>): [number, number][] {
  const secs = elf.sections.filter((s) => s.type === SHT.INIT_ARRAY || s.type === SHT.FINI_ARRAY || s.type === SHT.PREINIT_ARRAY);
  if (secs.length > 0) return secs.map((s) => [Number(s.addr), Number(s.addr) + s.size]);
  const out: [number, number][] = [];
  const entries = dynamic()?.entries ?? [];
  const tag = (t: number) => entries.find((e) => e.tag === BigInt(t))?.value;
  for (const [at, size] of [[DT.INIT_ARRAY, DT.INIT_ARRAYSZ], [DT.FINI_ARRAY, DT.FINI_ARRAYSZ], [DT.PREINIT_ARRAY, DT.PREINIT_ARRAYSZ]] as const) {
    const a = tag(at);
    const n = tag(size);
    if (a !== undefined && n !== undefined) out.push([Number(a), Number(a) + Number(n)]);
  }
  return out;
}

function within(ranges: [number, number][], a: number): boolean {
  return ranges.some(([s, e]) => a >= s && a < e);
}

/**
 * Makes `direct-call` findings `indirect` where their function is reached only through a pointer,
 * and records where its address is taken. `branches(i)`: the direct branches of `regions.code[i]`
 * (decoded once, shared with the reachability walk). Only called for files with a direct call.
 */
export function markIndirectSites(
  findings: Finding[],
  elf: ElfFile,
  fns: FunctionIndex,
  regions: Regions,
  branches: (i: number) => BranchEdges,
  dataSymbols: () => ElfSymbol[],
): void {
  const cands = candidatesOf(findings, fns);
  if (cands.size === 0) return;
  let dyn: ReturnType<typeof readDynamic> | null = null;
  const dynamic = () => {
    if (dyn === null) {
      try {
        dyn = readDynamic(elf);
      } catch (e) {
        if (!isVsysError(e)) throw e;
        dyn = undefined;
      }
    }
    return dyn;
  };
  const open = () => [...cands.values()].filter((c) => !c.direct);
  // 1. Start-up roots: the entry point, DT_INIT, DT_FINI.
  const roots = [elf.header.entry];
  for (const e of dynamic()?.entries ?? []) if (e.tag === BigInt(DT.INIT) || e.tag === BigInt(DT.FINI)) roots.push(e.value);
  for (const c of open()) if (roots.some((r) => r >= BigInt(c.fn.start) && r < BigInt(c.fn.end))) c.direct = true;
  // 2. A byte search for rel32 displacements to the starts: calls and jumps to them (most
  // candidates end here, without decoding the whole code: the static busyboxes' time()), and leas.
  if (open().length === 0) return;
  const refs = codeRefs(open(), elf, fns, regions);
  // 3. Any direct branch into the function from outside it (calls, jumps, tail jumps, PLT stubs,
  // rel8 and into its middle too), from the decoded code, shared with the reachability walk.
  if (open().length > 0) reachedByBranch(open(), regions, branches);
  if (open().length === 0) return;
  // 4. Where the remaining functions' addresses are taken.
  findRefs(open(), elf, fns, regions, refs, dataSymbols, dynamic, roots);
  for (const c of cands.values()) {
    if (c.direct || c.refs.length === 0) continue; // no pointer found either: nothing shows how it runs
    c.refs.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    for (const f of findings) {
      if (f.kind !== 'direct-call' || f.address < BigInt(c.fn.start) || f.address >= BigInt(c.fn.end)) continue;
      f.kind = 'indirect';
      f.addressTakenAt = c.refs.slice(0, MAX_REFS);
    }
  }
}

/** The functions holding direct calls of the page that are neither exported nor IFUNC resolvers. */
function candidatesOf(findings: Finding[], fns: FunctionIndex): Map<number, Candidate> {
  const out = new Map<number, Candidate>();
  for (const f of findings) {
    if (f.kind !== 'direct-call' || f.address > BigInt(Number.MAX_SAFE_INTEGER)) continue;
    const i = fns.find(Number(f.address));
    const fn = fns.functions[i];
    if (!fn || fn.exported || fn.ifunc || out.has(i)) continue;
    out.set(i, { fn, refs: [], direct: false });
  }
  return out;
}

function reachedByBranch(cands: Candidate[], regions: Regions, branches: (i: number) => BranchEdges): void {
  for (const [ri, region] of regions.code.entries()) {
    const e = branches(ri);
    const base = Number(region.ip);
    for (let k = 0; k < e.count; k++) {
      const to = base + (e.to[k] as number);
      for (const c of cands) {
        if (c.direct || to < c.fn.start || to >= c.fn.end) continue;
        const from = base + (e.from[k] as number);
        if (from >= c.fn.start && from < c.fn.end) continue; // its own loops and branches
        c.direct = true;
      }
    }
  }
}

/** Instructions with a rel32 (or, at a fixed address, an immediate) to a candidate's start; the callers among them settle it. */
function codeRefs(cands: Candidate[], elf: ElfFile, fns: FunctionIndex, regions: Regions): AddressRef[] {
  const targets = cands.map((c) => c.fn.start);
  const absolute = elf.header.type === ET.EXEC;
  const startOf = (ip: number) => fns.functions[fns.find(ip)]?.start;
  const out: AddressRef[] = [];
  const settle = (r: AddressRef): boolean => {
    const c = cands.find((x) => x.fn.start === r.target) as Candidate;
    const ip = Number(r.ip);
    if (r.how === 'branch' && (ip < c.fn.start || ip >= c.fn.end)) c.direct = true;
    return c.direct; // one caller settles it: its other hits are not decoded
  };
  for (const region of regions.code) {
    const open = targets.filter((t) => !(cands.find((x) => x.fn.start === t) as Candidate).direct);
    for (const r of findAddressRefs(region, open, absolute, startOf, settle)) if (r.how === 'taken') out.push(r);
  }
  return out;
}

/**
 * How far past the entry point its code may take an address that the C runtime then calls: _start
 * hands main (and init/fini) to __libc_start_main by address, within its first few dozen bytes.
 */
const START_CODE = 128;

function findRefs(cands: Candidate[], elf: ElfFile, fns: FunctionIndex, regions: Regions, code: AddressRef[], dataSymbols: () => ElfSymbol[], dynamic: () => ReturnType<typeof readDynamic>, roots: bigint[]): void {
  const byStart = new Map(cands.map((c) => [c.fn.start, c]));
  const targets = [...byStart.keys()];
  const arrays = startupArrays(elf, dynamic);
  const seen = new Set<string>();
  const add = (start: number, ref: AddressTaken) => {
    const c = byStart.get(start);
    const key = `${start}:${ref.address}`;
    if (!c || seen.has(key)) return;
    seen.add(key);
    // A pointer the loader calls (an init/fini array) is a start-up root.
    if (within(arrays, Number(ref.address))) c.direct = true;
    c.refs.push(ref);
  };
  // Relocations: a pointer in data (RELATIVE, or a symbol-less 64-bit word); IRELATIVE's addend is
  // an IFUNC resolver, which the loader calls.
  const resolvers = new Set<number>();
  try {
    visitRelocations(elf, (offset, type, sym, addend) => {
      if (type === R_X86_64.IRELATIVE) resolvers.add(addend);
      if (!byStart.has(addend) || !(type === R_X86_64.RELATIVE || (type === R_X86_64.R64 && sym === 0))) return;
      const ref: AddressTaken = { address: BigInt(offset), instruction: `.quad 0x${addend.toString(16)} (${type === R_X86_64.RELATIVE ? 'R_X86_64_RELATIVE' : 'R_X86_64_64'})` };
      const holder = dataSymbolAt(dataSymbols(), BigInt(offset));
      if (holder !== undefined) ref.function = holder;
      add(addend, ref);
    });
  } catch (e) {
    if (!isVsysError(e)) throw e; // a broken relocation table only costs evidence
  }
  for (const t of targets) if (resolvers.has(t)) (byStart.get(t) as Candidate).direct = true;
  // Instructions: lea fn(%rip), or an immediate in code linked at a fixed address.
  for (const r of code) {
    if (!byStart.has(r.target)) continue;
    const holder = fns.functions[fns.find(Number(r.ip))];
    const ref: AddressTaken = { address: r.ip, instruction: r.instruction };
    if (holder?.name !== undefined) ref.function = holder.name;
    // Taken by an IFUNC resolver: the implementation the loader binds an export to.
    if (holder && (holder.ifunc || resolvers.has(holder.start))) (byStart.get(r.target) as Candidate).direct = true;
    // Taken by start-up code (the entry point's _start passing main to __libc_start_main, DT_INIT):
    // the C runtime calls it. The function holding a root, or, where _start has no FDE or symbol,
    // the bytes just after the root up to the next known function (gcc puts main right after _init).
    const fromRoot = roots.some((root) => (holder !== undefined && root >= BigInt(holder.start) && root < BigInt(holder.end))
      || (r.ip >= root && r.ip < root + BigInt(START_CODE) && (holder === undefined || BigInt(holder.start) <= root)));
    if (fromRoot) (byStart.get(r.target) as Candidate).direct = true;
    add(r.target, ref);
  }
  // Data words holding the address (8-byte aligned, as pointers are): in the data sections, or,
  // when there are only segments, in the code segments too (they hold .rodata).
  const bySegments = !elf.sections.some((s) => s.type === SHT.PROGBITS);
  for (const region of bySegments ? [...regions.data, ...regions.code] : regions.data) {
    const buf = Buffer.from(region.bytes.buffer, region.bytes.byteOffset, region.bytes.byteLength).subarray(0, Math.min(region.end, region.bytes.length));
    for (const t of targets) {
      const word = Buffer.alloc(8);
      word.writeBigUInt64LE(BigInt(t));
      for (let p = buf.indexOf(word, region.start); p !== -1; p = buf.indexOf(word, p + 1)) {
        const address = offsetToVaddr(elf, p) ?? region.ip + BigInt(p - region.start);
        if ((address & 7n) !== 0n) continue;
        const ref: AddressTaken = { address, instruction: `.quad 0x${t.toString(16)}` };
        const holder = dataSymbolAt(dataSymbols(), address);
        if (holder !== undefined) ref.function = holder;
        add(t, ref);
      }
    }
  }
}
