// What a use of the vsyscall page found in a file is, and the file's class that its worst use gives.
// The one place where a use's evidence (how the instruction or data word uses the address) becomes a
// kind: the x86 decoder reports the evidence, the scan adds what only the whole file knows (a vDSO
// fallback slot, a function reached only through a pointer), and both ask here.
//
// Adding a kind: add it to SITE_KINDS; the compiler then names every switch and table that must
// say what the kind means (classOfKind, callsThePage, KIND_RANK here; verdictOfUse in scan/verdict.ts,
// planOne in fix/fix-bytes.ts, the SARIF rules in cli/format-scan.ts, the record schema's enum).
import { classifyVsyscallTarget } from './vsyscall-page.js';

/**
 * The kinds, worst first. `indirect`: a direct call in a function that nothing in the file calls or
 * jumps to directly and that is not exported: only its address is taken (HotSpot's
 * sched_getcpu_syscall), so it runs only when some code calls through that pointer.
 */
export const SITE_KINDS = ['misaligned', 'direct-call', 'indirect', 'fallback', 'data-ref'] as const;
export type SiteKind = (typeof SITE_KINDS)[number];

/** How the constant is used: the evidence behind the kind. */
export type SiteUse = 'register-call' | 'register-jump' | 'memory-call' | 'memory-jump' | 'cmov' | 'store' | 'compare' | 'load' | 'data-word' | 'other';

/** A file's class (the corpus' classes): the worst kind of use in it, or clean. */
export type FileClass = 'direct' | 'misaligned' | 'indirect' | 'fallback' | 'data-ref' | 'clean';

function unreachable(x: never): never {
  throw new Error(`unhandled case ${String(x)}`);
}

/**
 * The kind of a use. `vdsoSlot`: the address was loaded from a data word that glibc keeps as the
 * vDSO's fallback (its __vdso_* variable), so whatever the code does with it, the page is used only
 * when the vDSO lacks the symbol.
 */
export function siteKindOf(use: SiteUse, target: bigint, opts: { vdsoSlot?: boolean } = {}): SiteKind {
  if (opts.vdsoSlot) return 'fallback';
  switch (use) {
    case 'register-call':
    case 'register-jump':
    case 'memory-call':
    case 'memory-jump':
      return classifyVsyscallTarget(target) === 'misaligned' ? 'misaligned' : 'direct-call';
    case 'cmov':
      return 'fallback';
    case 'store':
    case 'compare':
    case 'load':
    case 'data-word':
    case 'other':
      return 'data-ref';
    default:
      return unreachable(use);
  }
}

/** The file class a kind gives when it is the file's worst. */
export function classOfKind(kind: SiteKind): FileClass {
  switch (kind) {
    case 'direct-call':
      return 'direct';
    case 'misaligned':
    case 'indirect':
    case 'fallback':
    case 'data-ref':
      return kind;
    default:
      return unreachable(kind);
  }
}

/** How bad a kind is (higher is worse): SITE_KINDS' order. */
export const KIND_RANK: Readonly<Record<SiteKind, number>> = Object.fromEntries(SITE_KINDS.map((k, i) => [k, SITE_KINDS.length - 1 - i])) as Record<SiteKind, number>;

/** The class of a file with these uses: its worst kind's, or clean. */
export function classOfKinds(kinds: Iterable<SiteKind>): FileClass {
  let worst: SiteKind | undefined;
  for (const k of kinds) if (worst === undefined || KIND_RANK[k] > KIND_RANK[worst]) worst = k;
  return worst === undefined ? 'clean' : classOfKind(worst);
}

/** Whether a use of this kind calls into the page (a crash under vsyscall=none if it runs): what `fix` rewrites. */
export function callsThePage(kind: SiteKind): boolean {
  switch (kind) {
    case 'direct-call':
    case 'indirect':
    case 'misaligned':
      return true;
    case 'fallback':
    case 'data-ref':
      return false;
    default:
      return unreachable(kind);
  }
}
