// `vsys fix` for one ELF file's bytes: plan (which sites can be rewritten, from the scan's own
// findings and decoding), rewrite (src/elf/patch.ts), verify (each patched site decodes as
// intended, every other byte is the input's, and a fresh scan finds no direct call left where the
// plan patched one). Pure: bytes in, a report and the new bytes out; never throws for bad input.
import { isVsysError, VsysError } from '../errors.js';
import { readElf, type ElfFile } from '../elf/read-elf.js';
import { applyEdits } from '../elf/patch.js';
import { VSYSCALL_MODES, type VsyscallMode } from '../model/modes.js';
import { vsyscallEntry } from '../model/vsyscall-page.js';
import { analyseBytes } from '../scan/analyse-file.js';
import { regionsOf, type Finding } from '../scan/find-uses.js';
import { useOf } from '../scan/scan.js';
import { verdictsOf, type Outcome } from '../scan/verdict.js';
import type { CodeRegion } from '../x86/call-sites.js';
import { decodeTexts, fileBranchTargets, intendedTexts, planSitePatch, type PatchEdit, type PatchShape } from '../x86/patch-site.js';
import type { FileReport } from '../scan/types.js';

export type SiteStatus = 'patched' | 'refused' | 'left';

export interface SiteFix {
  kind: Finding['kind'];
  entry: Finding['entry'];
  /** Virtual address and file offset of the instruction that loads the entry. */
  address: bigint;
  offset: number;
  function?: string;
  status: SiteStatus;
  /** Why a site is refused (it still crashes under none) or left (it does not). */
  reason?: string;
  shape?: PatchShape;
  register?: string;
  edits?: { offset: number; before: string; after: string; beforeText: string[]; afterText: string[] }[];
}

export interface FileFixReport {
  path: string;
  sites: SiteFix[];
  patched: number;
  /** Sites that would still crash under none (refused rewrites). */
  refused: number;
  /** The file's own outcome per mode before and after the rewrite. */
  before: Record<VsyscallMode, Outcome>;
  after: Record<VsyscallMode, Outcome>;
  error?: { code: string; message: string };
}

export interface FixedFile {
  path: string;
  report: FileFixReport;
  /** The rewritten bytes; undefined when nothing was patched (or the file could not be judged). */
  output?: Uint8Array;
}

const hexBytes = (b: Uint8Array): string => Buffer.from(b).toString('hex').replace(/(..)(?!$)/g, '$1 ');

function outcomes(findings: Finding[]): Record<VsyscallMode, Outcome> {
  const v = verdictsOf(findings.map(useOf));
  return Object.fromEntries(VSYSCALL_MODES.map((m) => [m, v[m].outcome])) as Record<VsyscallMode, Outcome>;
}

/** The code region holding file offset `offset`. */
function regionAt(regions: CodeRegion[], offset: number): CodeRegion | undefined {
  return regions.find((r) => offset >= r.start && offset < r.end);
}

/** The function extent as file offsets inside the site's region, when the scan placed the site in one. */
function extentOf(f: Finding, r: CodeRegion): { start: number; end: number } | undefined {
  if (!f.function) return undefined;
  const start = Number(f.function.start - r.ip) + r.start;
  const end = Number(f.function.end - r.ip) + r.start;
  return start >= r.start && end <= r.end && start < end ? { start, end } : undefined;
}

/** What to do with one finding: a plan with edits, or why not. */
function planOne(f: Finding, regions: CodeRegion[], targets: () => Set<number>): { fix: SiteFix; edits: PatchEdit[] } {
  const fix: SiteFix = { kind: f.kind, entry: f.entry, address: f.address, offset: f.offset, status: 'left' };
  if (f.function?.name) fix.function = f.function.name;
  const done = (status: SiteStatus, reason: string) => ({ fix: { ...fix, status, reason }, edits: [] });
  switch (f.kind) {
    case 'fallback':
      return done('left', 'used only when the vDSO lacks the symbol: works under vsyscall=none while the vDSO has it');
    case 'data-ref':
      return done('left', f.use === 'load' && !f.dataWord ? 'a read of the page as data: not a call, nothing to rewrite into a syscall' : 'the address is held as data; no call through it was found');
    case 'misaligned':
      return done('refused', 'a call into the page that is not an entry start: it crashes in every mode, and there is no system call to rewrite it into');
    case 'direct-call':
    case 'indirect':
      break;
  }
  if (f.entry === 'misaligned') return done('refused', 'not an entry start');
  if (f.dataWord || (f.use !== 'register-call' && f.use !== 'register-jump')) {
    const how = f.dataWord ? `a call through the data word at 0x${f.dataWord.address.toString(16)}` : f.use === 'memory-call' || f.use === 'memory-jump' ? 'a call through memory' : 'an address reaching the call in a way not followed';
    return done('refused', `${how}: not rewritten in place (the word or the code computing the address would have to change)`);
  }
  const r = regionAt(regions, f.offset);
  if (!r) return done('refused', 'the site is not inside a code region of the file');
  const plan = planSitePatch(r, { offset: f.offset, target: f.target }, vsyscallEntry(f.entry).syscall, extentOf(f, r), targets());
  if (!plan.ok) return done('refused', plan.reason);
  return {
    fix: {
      ...fix, status: 'patched', shape: plan.shape, register: plan.register,
      edits: plan.edits.map((e) => ({ offset: e.offset, before: hexBytes(e.before), after: hexBytes(e.after), beforeText: e.beforeText, afterText: e.afterText })),
    },
    edits: plan.edits,
  };
}

/**
 * Checks the rewritten bytes: each edit decodes to what the plan said (`mov $nr,%eax`, `syscall`,
 * NOPs), nothing else changed, and the scan of the output finds no direct call at a patched site.
 * Returns that scan of the output.
 */
function verify(elf: ElfFile, out: Uint8Array, sites: { fix: SiteFix; edits: PatchEdit[] }[], patchedOffsets: number[]): FileReport {
  const fail = (why: string): never => {
    throw new VsysError('FIX_VERIFY_FAILED', `${elf.path}: the rewrite did not verify: ${why}; nothing written`, { path: elf.path });
  };
  if (out.length !== elf.bytes.length) fail('the size changed');
  const inEdit = new Uint8Array(out.length);
  for (const { fix, edits } of sites) {
    // What the output holds there, decoded anew, against what the entry and shape call for (not the plan's own bytes).
    const want = intendedTexts(vsyscallEntry(fix.entry as 'time').syscall, fix.shape as PatchShape);
    if (want.length !== edits.length) fail(`site 0x${fix.address.toString(16)} has ${edits.length} edit(s) for a ${fix.shape} rewrite`);
    for (const [i, e] of edits.entries()) {
      const texts = decodeTexts(out.subarray(e.offset, e.offset + e.after.length), 0n);
      const w = want[i] as string[];
      const nops = texts.slice(w.length);
      if (texts.slice(0, w.length).join('; ') !== w.join('; ') || !nops.every((t) => /^(nop[wl]?\b|xchg %ax,%ax$)/.test(t))) {
        fail(`the bytes at 0x${e.offset.toString(16)} decode as ${texts.join('; ')}, not ${w.join('; ')} and NOPs`);
      }
      inEdit.fill(1, e.offset, e.offset + e.after.length);
    }
  }
  for (let i = 0; i < out.length; i++) if (inEdit[i] === 0 && out[i] !== elf.bytes[i]) fail(`byte 0x${i.toString(16)} outside the planned ranges changed`);
  const again = analyseBytes(out, elf.path);
  if (!again || again.error) fail(`the output no longer reads as the same ELF file (${again?.error?.code ?? 'not ELF'})`);
  const left = (again as FileReport).findings.filter((f) => (f.kind === 'direct-call' || f.kind === 'indirect') && patchedOffsets.includes(f.offset));
  if (left.length > 0) fail(`a direct call remains at 0x${left[0]?.address.toString(16)}`);
  return again as FileReport;
}

/** Plans, rewrites and verifies one file. */
export function fixBytes(bytes: Uint8Array, path: string): FixedFile {
  const none = Object.fromEntries(VSYSCALL_MODES.map((m) => [m, 'ok'])) as Record<VsyscallMode, Outcome>;
  const report: FileFixReport = { path, sites: [], patched: 0, refused: 0, before: none, after: none };
  let scanned: FileReport | undefined;
  try {
    scanned = analyseBytes(bytes, path);
  } catch (e) {
    report.error = { code: 'INTERNAL_ERROR', message: `${path}: ${(e as Error).message}` };
    return { path, report };
  }
  if (!scanned) return { path, report };
  if (scanned.error) {
    report.error = { ...scanned.error, message: `${scanned.error.message} (not patched: the file could not be read whole)` };
    return { path, report };
  }
  report.before = outcomes(scanned.findings);
  report.after = report.before;
  if (scanned.findings.length === 0) return { path, report };
  try {
    const elf = readElf(bytes, path);
    const regions = regionsOf(elf).code;
    let targets: Set<number> | undefined;
    const planned = scanned.findings.map((f) => planOne(f, regions, () => (targets ??= fileBranchTargets(regions))));
    report.sites = planned.map((p) => p.fix);
    report.patched = report.sites.filter((s) => s.status === 'patched').length;
    report.refused = report.sites.filter((s) => s.status === 'refused').length;
    const edits = planned.flatMap((p) => p.edits);
    if (edits.length === 0) return { path, report };
    const output = applyEdits(elf, edits);
    // The scan of the output that verification made gives the outcomes after, too.
    const after = verify(elf, output, planned.filter((p) => p.fix.status === 'patched'), report.sites.filter((s) => s.status === 'patched').map((s) => s.offset));
    report.after = outcomes(after.findings);
    return { path, report, output };
  } catch (e) {
    if (!isVsysError(e)) throw e;
    report.error = { code: e.code, message: e.message };
    return { path, report };
  }
}
