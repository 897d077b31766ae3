// What `vsys scan` reports, as plain records shared by directories and images (the NDJSON lines of
// --json, described by schema/scan-record.schema.json): one per ELF file with its outcome in the
// chosen mode, one per image, one per input that could not be read or judged, then a summary.
// Also the grouping of programs by the library function that decides their outcome.
import type { ImageReport } from '../image/analyse-image.js';
import { VSYSCALL_MODES, type VsyscallMode } from '../model/modes.js';
import { isProgram } from '../scan/identify.js';
import type { ScannedFile, ScanResult } from '../scan/scan.js';
import { OUTCOME_RANK, verdictOfUse, type Certainty, type Outcome, type SlowdownFor } from '../scan/verdict.js';

/** Where an unjudged input came from: a path on this host, or a file or layer inside an image. */
export interface Unjudged {
  path?: string;
  image?: string;
  code: string;
  message: string;
}

export interface FileRecord extends Omit<ScannedFile, 'layer'> {
  record: 'file';
  /** The outcome in the chosen mode, and how sure it is (`verdicts[mode]` in short). */
  mode: VsyscallMode;
  outcome: Outcome;
  certainty: Certainty;
  condition?: string;
  why: string;
  /** In an image: its reference and the layer that brought the file. */
  image?: string;
  layer?: { index: number; digest: string };
}

export interface ImageRecord extends Omit<ImageReport, 'files'> {
  record: 'image';
  mode: VsyscallMode;
  outcome: Outcome;
  why: string;
  /** Files listed as their own records (affected ones; every one with --all). */
  filesListed: number;
  causes: Cause[];
}

export interface ErrorRecord extends Unjudged {
  record: 'error';
}

/** Programs (and libraries) whose outcome in the chosen mode comes from one function of one library. */
export interface Cause {
  outcome: Outcome;
  /** The library holding the site (basename) and its path. */
  library: string;
  libraryPath: string;
  /** The function holding the site (`time`), and the entry it calls. */
  function: string;
  entry: string;
  programs: string[];
  libraries: string[];
}

export function fileRecord(f: ScannedFile, mode: VsyscallMode, image?: ImageReport): FileRecord {
  const { layer, ...rest } = f;
  const v = f.verdicts[mode];
  const rec: FileRecord = { record: 'file', ...rest, mode, outcome: v.outcome, certainty: v.certainty, why: v.why };
  if (v.condition !== undefined) rec.condition = v.condition;
  if (image) {
    rec.image = image.ref;
    const l = layer === undefined ? undefined : image.layers[layer];
    if (layer !== undefined && l) rec.layer = { index: layer, digest: l.digest };
  }
  return rec;
}

/**
 * The use that decides a file's outcome in `mode` when it comes through a library (the file has no
 * worse use of its own): the first import whose verdict is the file's.
 */
function causeOf(f: ScannedFile, mode: VsyscallMode, slow: SlowdownFor | undefined): { library: string; libraryPath: string; function: string; entry: string } | undefined {
  const outcome = f.verdicts[mode].outcome;
  for (const t of f.through ?? []) {
    const v = verdictOfUse({ kind: t.export.kind, target: t.export.target, caller: t.symbol }, mode, slow);
    if (v.outcome === outcome) return { library: t.library, libraryPath: t.libraryPath, function: t.export.chain.at(-1) ?? t.symbol, entry: t.export.entry };
  }
  return undefined;
}

/**
 * Groups the files whose outcome in `mode` (not ok) comes through a library function: "158 programs
 * crash through libc-2.13.so time()". Files with their own sites are not grouped; worst first.
 */
export function causesOf(files: readonly ScannedFile[], mode: VsyscallMode, slow?: SlowdownFor): { causes: Cause[]; grouped: Set<ScannedFile> } {
  const byKey = new Map<string, Cause>();
  const grouped = new Set<ScannedFile>();
  for (const f of files) {
    const outcome = f.verdicts[mode].outcome;
    if (outcome === 'ok' || f.findings.length > 0 || f.error) continue;
    const c = causeOf(f, mode, slow);
    if (!c) continue;
    const key = `${outcome}\0${c.libraryPath}\0${c.function}`;
    let cause = byKey.get(key);
    if (!cause) byKey.set(key, (cause = { outcome, ...c, programs: [], libraries: [] }));
    (isProgram(f.identity) ? cause.programs : cause.libraries).push(f.path);
    grouped.add(f);
  }
  const causes = [...byKey.values()].sort((a, b) => OUTCOME_RANK[b.outcome] - OUTCOME_RANK[a.outcome] || b.programs.length + b.libraries.length - (a.programs.length + a.libraries.length));
  return { causes, grouped };
}

export function imageRecord(img: ImageReport, mode: VsyscallMode, filesListed: number, slow?: SlowdownFor): ImageRecord {
  const { files, ...rest } = img;
  const v = img.verdicts[mode];
  return { record: 'image', ...rest, mode, outcome: v.outcome, why: v.why, filesListed, causes: causesOf(files, mode, slow).causes };
}

/** Every input that could not be read or judged, in the order met: walk and ELF errors, image errors, problems inside images. */
export function unjudgedOf(r: ScanResult, images: readonly ImageReport[], imageErrors: readonly { ref: string; code: string; message: string }[]): Unjudged[] {
  const out: Unjudged[] = r.errors.map((e) => ({ path: e.path, code: e.code, message: e.message }));
  for (const e of imageErrors) out.push({ image: e.ref, code: e.code, message: e.message });
  for (const img of images) for (const p of img.problems) out.push({ image: img.ref, path: p.path, code: p.code, message: p.message });
  // An ELF file with an error inside an image is judged `review`: list it too, once.
  for (const img of images) {
    for (const f of img.files) {
      if (f.error && !img.problems.some((p) => p.path === f.path)) out.push({ image: img.ref, path: f.path, code: f.error.code, message: f.error.message });
    }
  }
  return out;
}

/** Counts of outcomes in every mode, over the files of a directory scan and of every image. */
export function countOutcomes(files: Iterable<ScannedFile>): Record<VsyscallMode, Record<Outcome, number>> {
  const by = Object.fromEntries(VSYSCALL_MODES.map((m) => [m, { crash: 0, slow: 0, review: 0, fallback: 0, ok: 0 }])) as Record<VsyscallMode, Record<Outcome, number>>;
  for (const f of files) for (const m of VSYSCALL_MODES) by[m][f.verdicts[m].outcome]++;
  return by;
}
