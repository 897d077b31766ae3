// `vsys scan` as a library: walk the paths, analyse every ELF file (in workers), resolve each
// dynamically linked program's libraries in its root, and give every file a verdict per mode.
import fs from 'node:fs';
import path from 'node:path';
import type { VsyscallMode } from '../model/modes.js';
import { VSYSCALL_MODES } from '../model/modes.js';
import { callerOf, type Finding } from './find-uses.js';
import { isProgram } from './identify.js';
import { createPool, defaultWorkers, type PoolFile } from './pool.js';
import { analyseFile, DEFAULT_MAX_FILE_BYTES } from './read-file.js';
import { looksLikeRoot, RootFinder } from './find-root.js';
import { hostRoot, lookupContext, resolveProgram, type LookupContext, type LoadedLibrary, type ReachThrough } from './resolve.js';
import { seedSlowdowns, verdictsOf, type ModeVerdict, type Outcome, type SlowdownFor, type Use } from './verdict.js';
import { walk, type WalkSkip } from './walk.js';
import type { FileReport, FileResult } from './types.js';

export interface ScannedFile extends FileReport {
  verdicts: Record<VsyscallMode, ModeVerdict>;
  /** The root filesystem the file was judged in (its libraries looked up there): "/" for the host. */
  root?: string;
  /** In an image: the index of the layer that brought the file. */
  layer?: number;
  /** Dynamically linked files: the libraries found in the root, and the ways to the page through them. */
  libraries?: LoadedLibrary[];
  missingLibraries?: string[];
  through?: ReachThrough[];
}

export interface ScanProgress {
  files: number;
  elfFiles: number;
  bytes: number;
  current?: string;
}

export interface ScanOptions {
  paths: string[];
  /**
   * Root every program's libraries are looked up in. Default: each file's own root, the nearest
   * directory above it holding a loader, a libc or os-release (find-root.ts), else "/".
   */
  root?: string;
  workers?: number;
  maxFileBytes?: number;
  slowdown?: SlowdownFor;
  onProgress?: (p: ScanProgress) => void;
  onSkip?: (s: WalkSkip) => void;
  /** When aborted, no more files are read; what was read is judged and returned (summary.interrupted). */
  signal?: AbortSignal;
}

export interface ScanSummary {
  files: number;
  elfFiles: number;
  notElf: number;
  errors: number;
  skipped: Record<WalkSkip['reason'], number>;
  bytes: number;
  seconds: number;
  /** The root most files were judged in; `roots` counts the files judged in each. */
  root: string;
  roots: Record<string, number>;
  /** The scan was stopped (signal) before every file was read. */
  interrupted?: boolean;
  /** Special files met (fifos, sockets, devices: no code in them), named; the first MAX_NAMED. */
  special: string[];
  byClass: Record<string, number>;
  byOutcome: Record<VsyscallMode, Record<Outcome, number>>;
}

export interface ScanResult {
  files: ScannedFile[];
  /** Non-ELF files are counted, not listed; unreadable or malformed ones are listed here. */
  errors: { path: string; code: string; message: string }[];
  /** Said once per run: libraries looked up in a root other than a file's own. */
  warnings: string[];
  summary: ScanSummary;
}

/** A single directory argument that looks like a root filesystem (find-root.ts' markers) is a root. */
export function guessRoot(paths: string[]): string | undefined {
  if (paths.length === 1) {
    const p = paths[0] as string;
    try {
      if (fs.statSync(p).isDirectory() && looksLikeRoot(fs.realpathSync(p))) return fs.realpathSync(p);
    } catch {
      // fall through
    }
  }
  return undefined;
}

/** One site as a use: a `load` of the page itself (not of a data word) reads it. */
export function useOf(x: Finding): Use {
  return { kind: x.kind, target: x.target, caller: callerOf(x), ...(x.use === 'load' && !x.dataWord ? { reads: true } : {}) };
}

/** The uses of the page that decide a file's verdict: its own findings and those reached through libraries. */
export function usesOf(f: FileReport, through: ReachThrough[] = []): Use[] {
  const uses: Use[] = f.findings.map(useOf);
  for (const t of through) {
    const inner = t.export.chain.length > 1 ? ` → ${t.export.chain.slice(1).join('() → ')}()` : '';
    const caller = t.how === 'import'
      ? `${t.symbol}() (imported from ${t.library}${inner})`
      : `${t.symbol}() (imported by ${t.importer} from ${t.library}${inner})`;
    uses.push({ kind: t.export.kind, target: t.export.target, caller });
  }
  return uses;
}

/**
 * A file's verdicts in its root: its own uses, and for a dynamically linked file the libraries it
 * would load (`reportOf` gives their analyses) and the affected functions it reaches through them.
 */
/**
 * `missingUnjudged`: a program whose libraries are not all in its root is `review` (the root may be
 * the wrong one: a directory on a host). An image is a whole root: what is not in it is nowhere, the
 * program cannot start, so cannot crash through the page; its missing libraries are only listed.
 */
export function judgeFile(r: FileReport, ctx: LookupContext, reportOf: (key: string) => FileReport | undefined, slow: SlowdownFor, missingUnjudged = true): ScannedFile {
  const s: ScannedFile = { ...r, verdicts: verdictsOf(usesOf(r), slow) };
  if (r.error) {
    s.verdicts = unjudged(s.verdicts, r.error);
    return s;
  }
  if (r.identity?.linkage === 'dynamic' && r.identity.needed.length > 0 && !r.error) {
    const res = resolveProgram(ctx, r, reportOf);
    s.libraries = res.libraries;
    if (res.through.length > 0) {
      s.through = res.through;
      s.verdicts = verdictsOf(usesOf(r, res.through), slow);
    }
    if (res.missing.length > 0) s.missingLibraries = res.missing;
    // What a program imports from a library not found is not judged: never ok on that account. (A
    // library's own needs may be met by the program that loads it, through its RUNPATH.)
    if (res.missing.length > 0 && missingUnjudged && isProgram(r.identity)) {
      s.verdicts = unjudged(s.verdicts, { code: 'LIBRARY_NOT_FOUND', message: `${res.missing.join(', ')} not found in ${ctx.root.name}` });
    }
  }
  return s;
}

/**
 * A file that could not be fully analysed is never ok, nor judged on part of it: each mode's verdict
 * is `review`, with the error and what its readable bytes show.
 */
export function unjudged(verdicts: Record<VsyscallMode, ModeVerdict>, error: { code: string; message: string }): Record<VsyscallMode, ModeVerdict> {
  const out = {} as Record<VsyscallMode, ModeVerdict>;
  for (const m of VSYSCALL_MODES) {
    const v = verdicts[m];
    out[m] = { outcome: 'review', certainty: 'unknown', why: `could not be fully analysed (${error.code}: ${error.message})${v.outcome === 'ok' ? '' : `; its readable bytes hold uses of the page: ${v.why}`}` };
  }
  return out;
}

/** Special files named in the summary (the rest are counted). */
const MAX_NAMED = 100;

/** A batch ends at this many files or bytes, whichever comes first. */
const BATCH_FILES = 48;
const BATCH_BYTES = 24 * 1024 * 1024;

/** What reading the files gave: their reports (sorted by path), and what was skipped or could not be read. */
interface TreeRead {
  reports: FileReport[];
  errors: ScanResult['errors'];
  skipped: Record<WalkSkip['reason'], number>;
  special: string[];
  progress: ScanProgress;
  notElf: number;
}

export async function scanPaths(opts: ScanOptions): Promise<ScanResult> {
  const t0 = performance.now();
  const guessed = opts.root === undefined ? guessRoot(opts.paths) : undefined;
  const maxBytes = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const slow = opts.slowdown ?? seedSlowdowns;
  const read = await readTree(opts, maxBytes);
  const { errors, progress } = read;
  const reportOf = libraryLookup(opts.paths, read.reports, maxBytes);
  const { out, roots, warnings } = judgeInRoots(read.reports, opts, guessed, reportOf, slow);
  for (const f of out) {
    if (f.missingLibraries && !f.error && isProgram(f.identity)) errors.push({ path: f.path, code: 'LIBRARY_NOT_FOUND', message: `${f.path}: needs ${f.missingLibraries.join(', ')}, not found in root ${f.root ?? '/'} (judged there; --root DIR names another)` });
  }
  const root = Object.entries(roots).sort((a, b) => b[1] - a[1])[0]?.[0] ?? (opts.root !== undefined ? path.resolve(opts.root) : guessed ?? '/');

  const byClass: Record<string, number> = {};
  const byOutcome = Object.fromEntries(VSYSCALL_MODES.map((m) => [m, { crash: 0, slow: 0, review: 0, fallback: 0, ok: 0 }])) as ScanSummary['byOutcome'];
  for (const f of out) {
    byClass[f.class] = (byClass[f.class] ?? 0) + 1;
    for (const m of VSYSCALL_MODES) byOutcome[m][f.verdicts[m].outcome]++;
  }
  return {
    files: out,
    errors,
    warnings,
    summary: {
      files: progress.files, elfFiles: progress.elfFiles, notElf: read.notElf, errors: errors.length, skipped: read.skipped, bytes: progress.bytes,
      seconds: (performance.now() - t0) / 1000, root, roots, byClass, byOutcome, special: read.special,
      ...(opts.signal?.aborted ? { interrupted: true } : {}),
    },
  };
}

/** Walks the paths and analyses every file found, in batches on the pool's threads, as the walk goes. */
async function readTree(opts: ScanOptions, maxBytes: number): Promise<TreeRead> {
  const skipped: Record<WalkSkip['reason'], number> = { symlink: 0, special: 0, 'pseudo-fs': 0, 'hard-link': 0, duplicate: 0, unreadable: 0, missing: 0, loop: 0 };
  const special: string[] = [];
  const errors: ScanResult['errors'] = [];
  const reports: FileReport[] = [];
  const progress: ScanProgress = { files: 0, elfFiles: 0, bytes: 0 };
  let notElf = 0;

  const files = walk(opts.paths, (s) => {
    skipped[s.reason]++;
    if (s.reason === 'unreadable') errors.push({ path: s.path, code: 'IO_FAILED', message: `${s.path}: ${s.message ?? 'unreadable'}` });
    if (s.reason === 'missing') errors.push({ path: s.path, code: 'FILE_NOT_FOUND', message: `${s.path}: no such file or directory` });
    if (s.reason === 'loop') errors.push({ path: s.path, code: 'FILE_SYMLINK_LOOP', message: `${s.path}: too many levels of symbolic links (a link loop)` });
    if (s.reason === 'special' && special.length < MAX_NAMED) special.push(s.path);
    opts.onSkip?.(s);
  });
  // Workers only pay off past a handful of files: a single file or two is analysed in this thread.
  const single = opts.paths.length <= 2 && opts.paths.every((p) => {
    try {
      return fs.statSync(p).isFile();
    } catch {
      return true;
    }
  });
  const workers = opts.workers ?? (single ? 0 : defaultWorkers());
  const pool = createPool(workers, maxBytes);
  try {
    const inflight = new Set<Promise<void>>();
    // Two batches queued per thread keep each busy while the walk goes on.
    const limit = pool.lanes * 2;
    const take = (batch: PoolFile[], results: FileResult[]) => {
      for (const [i, r] of results.entries()) {
        const f = batch[i] as PoolFile;
        progress.files++;
        progress.bytes += f.size;
        progress.current = f.path;
        if (r.kind === 'elf') {
          progress.elfFiles++;
          reports.push(r.report);
          if (r.report.error) errors.push({ path: r.report.path, code: r.report.error.code, message: r.report.error.message });
        } else if (r.kind === 'not-elf') notElf++;
        else errors.push({ path: f.path, code: r.error.code, message: r.error.message });
      }
      opts.onProgress?.(progress);
    };
    const dispatch = async (batch: PoolFile[]) => {
      const p = pool.analyseFiles(batch).then((r) => take(batch, r));
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
      if (inflight.size >= limit) await Promise.race(inflight);
    };
    // Files are dispatched as the walk finds them, in batches of a few dozen files or megabytes.
    let batch: PoolFile[] = [];
    let batchBytes = 0;
    for await (const f of files) {
      if (opts.signal?.aborted) break;
      batch.push(f);
      batchBytes += f.size;
      if (batch.length >= BATCH_FILES || batchBytes >= BATCH_BYTES) {
        await dispatch(batch);
        batch = [];
        batchBytes = 0;
      }
    }
    if (batch.length > 0) await dispatch(batch);
    await Promise.all(inflight);
  } finally {
    await pool.close();
  }
  reports.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { reports, errors, skipped, special, progress, notElf };
}

/**
 * The report of a library by its path on the host: one the scan read, else the file analysed now
 * (and kept). Libraries are keyed by real path, so a library reached through links is read once.
 */
function libraryLookup(paths: string[], reports: FileReport[], maxBytes: number): (hostPath: string) => FileReport | undefined {
  const byReal = new Map<string, FileReport | undefined>();
  // A file the walk found inside a directory is not a symlink, so its real path is its directory's
  // plus its name: one realpath per directory rather than a walk of every component per file.
  const args = new Set(paths);
  const realDirs = new Map<string, string>();
  const realPathOf = (p: string): string => {
    if (args.has(p)) return fs.realpathSync(p);
    const dir = path.dirname(p);
    let real = realDirs.get(dir);
    if (real === undefined) {
      real = fs.realpathSync(dir);
      realDirs.set(dir, real);
    }
    return path.join(real, path.basename(p));
  };
  for (const r of reports) {
    try {
      byReal.set(realPathOf(r.path), r);
    } catch {
      // vanished since: it is still reported, just not usable as a library
    }
  }
  const realOf = new Map<string, string | undefined>();
  return (hostPath: string): FileReport | undefined => {
    let real = realOf.get(hostPath);
    if (real === undefined) {
      try {
        // The lookup resolved every link inside the root already: only the directories can be links.
        real = realPathOf(hostPath);
      } catch {
        return undefined;
      }
      realOf.set(hostPath, real);
    }
    if (!byReal.has(real)) {
      const r = analyseFile(real, maxBytes);
      byReal.set(real, r.kind === 'elf' && !r.report.error ? r.report : undefined);
    }
    return byReal.get(real);
  };
}

/** Each file judged in its own root unless one was given (--root); lookup contexts made once per root. */
function judgeInRoots(reports: FileReport[], opts: ScanOptions, guessed: string | undefined, reportOf: (hostPath: string) => FileReport | undefined, slow: SlowdownFor): { out: ScannedFile[]; roots: Record<string, number>; warnings: string[] } {
  const finder = new RootFinder(guessed ? [guessed] : []);
  const contexts = new Map<string, LookupContext>();
  const roots: Record<string, number> = {};
  const warnings: string[] = [];
  const out = reports.map((r) => {
    const own = finder.rootOf(r.path);
    const root = opts.root !== undefined ? path.resolve(opts.root) : own;
    if (root !== own && warnings.length === 0) {
      warnings.push(`libraries are looked up in ${root} (--root), not in the root a file lives in (${r.path} is in ${own}); drop --root to judge each file in its own root`);
    }
    let ctx = contexts.get(root);
    if (!ctx) contexts.set(root, (ctx = lookupContext(hostRoot(root))));
    roots[root] = (roots[root] ?? 0) + 1;
    return { ...judgeFile(r, ctx, reportOf, slow), root };
  });
  return { out, roots, warnings };
}
