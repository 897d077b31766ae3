// Which exported functions of a library reach a vsyscall use, through direct calls and tail jumps
// inside the library: a reverse walk of the call graph built from the decoded code.
import { findBranches, type BranchEdges } from '../x86/call-graph.js';
import { KIND_RANK, type SiteKind } from '../model/site-kinds.js';
import type { Finding, EntryName, Regions } from './find-uses.js';
import type { FunctionIndex } from './functions.js';

/** Propagated kinds, worst first. Data references are not calls and do not propagate. */
/**
 * Longest call chain followed: the export itself, one internal helper, the function with the site
 * (syslog → __vsyslog_chk → time; pthread_mutex_timedlock → _L_timedlock → __lll_timedlock_wait).
 * Longer chains in old glibc run only through error reporting (malloc → malloc_printerr →
 * __libc_message → vsyslog → time) and would mark nearly every export; Debian wheezy's dash,
 * which imports malloc and runs under vsyscall=none, shows they do not decide the outcome.
 */
const MAX_CHAIN = 3;


export interface Reach {
  kind: SiteKind;
  entry: EntryName;
  target: bigint;
  /** Function names from this one down to the one holding the site: ["clock", "time"]. */
  chain: string[];
}

export interface AffectedExport extends Reach {
  name: string;
  /** Version names the symbol is exported with (GLIBC_2.2.5). */
  versions: string[];
}

function nameOf(fns: FunctionIndex, i: number): string {
  const f = fns.functions[i];
  if (!f) return '?';
  return f.name ?? `fn@0x${f.start.toString(16)}`;
}

/**
 * The direct branches of each code region, decoded on first use and kept: the reachability walk and
 * the indirect-site check (indirect-sites.ts) share one decode of a file's code.
 */
export function branchesOf(regions: Regions): (i: number) => BranchEdges {
  const done: BranchEdges[] = [];
  return (i) => (done[i] ??= findBranches(regions.code[i] as Regions['code'][number]));
}

/** Maps each function index to the worst use it reaches. Decodes the code only when there are uses. */
export function reachingFunctions(findings: Finding[], fns: FunctionIndex, regions: Regions, branches = branchesOf(regions)): Map<number, Reach> {
  const reach = new Map<number, Reach>();
  const queue: number[] = [];
  for (const f of findings) {
    if (KIND_RANK[f.kind] === 0 || f.address > BigInt(Number.MAX_SAFE_INTEGER)) continue;
    const i = fns.find(Number(f.address));
    if (i < 0) continue;
    const prev = reach.get(i);
    if (!prev || KIND_RANK[f.kind] > KIND_RANK[prev.kind]) {
      reach.set(i, { kind: f.kind, entry: f.entry, target: f.target, chain: [nameOf(fns, i)] });
      queue.push(i);
    }
  }
  if (reach.size === 0) return reach;
  // Reverse edges: callee → callers. A function that can neither return nor tail-jump out
  // (abort, __libc_fatal, __assert_fail, __chk_fail) ends the process: calls to it are error
  // paths, and what it reaches (vsyslog → time) is not charged to its callers.
  const callers = new Map<number, Set<number>>();
  const mayReturn = new Uint8Array(fns.functions.length);
  const edges: [number, number, number][] = [];
  for (const [ri, region] of regions.code.entries()) {
    const e = branches(ri);
    const base = Number(region.ip);
    for (const x of e.exits) {
      const i = fns.find(base + x);
      if (i >= 0) mayReturn[i] = 1;
    }
    for (let k = 0; k < e.count; k++) {
      const from = fns.find(base + (e.from[k] as number));
      const to = fns.find(base + (e.to[k] as number));
      if (from < 0 || to < 0 || from === to) continue;
      edges.push([from, to, e.isCall[k] as number]);
    }
  }
  // Tail jumps and calls out of a function are how it may "return" through another one.
  for (const [from, , call] of edges) if (!call) mayReturn[from] = 1;
  for (const [from, to] of edges) {
    if (!mayReturn[to]) continue;
    let s = callers.get(to);
    if (!s) callers.set(to, (s = new Set()));
    s.add(from);
  }
  while (queue.length > 0) {
    const callee = queue.shift() as number;
    const r = reach.get(callee) as Reach;
    if (r.chain.length >= MAX_CHAIN) continue;
    for (const caller of callers.get(callee) ?? []) {
      const prev = reach.get(caller);
      if (prev && KIND_RANK[prev.kind] >= KIND_RANK[r.kind]) continue;
      reach.set(caller, { ...r, chain: [nameOf(fns, caller), ...r.chain] });
      queue.push(caller);
    }
  }
  return reach;
}

/** The exported functions among those that reach a use, with their exported names and versions. */
export function affectedExports(
  reach: Map<number, Reach>,
  fns: FunctionIndex,
  exportsAt: Map<number, { name: string; version?: string }[]>,
): AffectedExport[] {
  const out: AffectedExport[] = [];
  for (const [i, r] of reach) {
    const f = fns.functions[i];
    if (!f) continue;
    const syms = exportsAt.get(f.start) ?? [];
    const byName = new Map<string, string[]>();
    for (const s of syms) {
      const v = byName.get(s.name) ?? [];
      if (s.version !== undefined) v.push(s.version);
      byName.set(s.name, v);
    }
    for (const [name, versions] of byName) out.push({ ...r, name, versions });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
