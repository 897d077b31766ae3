// `vsys fix` for files and directories: which files to rewrite (the scan's own findings), where the
// results go (-o FILE, -o DIR as a copy of the tree, or --in-place with the originals kept), and
// what the rewrite changed for every program (a scan of the output against a scan of the input, so
// a patched libc is seen fixing the programs that import from it). Outputs are written to a
// temporary name and renamed; modes, owners and times are kept; nothing is written on failure.
import fs from 'node:fs';
import path from 'node:path';
import { VsysError } from '../errors.js';
import { scanPaths, type ScanResult } from '../scan/scan.js';
import type { Outcome } from '../scan/verdict.js';
import { fixBytes, type FileFixReport } from './fix-bytes.js';

export interface FixOptions {
  /** -o: a file (for one input file) or a directory that must not exist (for a directory). */
  output?: string;
  inPlace?: boolean;
  /** With --in-place: keep the originals under this directory (same relative paths), not as FILE.vsys-orig. */
  backupDir?: string;
  dryRun?: boolean;
  onProgress?: (done: number, total: number, current: string) => void;
}

/** A program or library whose outcome under vsyscall=none changed because of the rewrite. */
export interface OutcomeChange {
  path: string;
  before: Outcome;
  after: Outcome;
  /** Patched because of its own sites, or fixed through a patched library it loads. */
  how: 'own-sites' | 'through-library';
}

export interface FixRun {
  files: FileFixReport[];
  /** Where each rewritten file went (and its original, with --in-place). */
  written: { input: string; output: string; original?: string }[];
  unjudged: { path: string; code: string; message: string }[];
  changes: OutcomeChange[];
  /** Files that still crash under vsyscall=none after the rewrite (or would, for --dry-run). */
  stillCrash: { path: string; why: string }[];
}

/** Writes `data` to `dest` through a temporary name beside it, with `like`'s mode, owner and times. */
function writeLike(dest: string, data: Uint8Array, like: fs.Stats): void {
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.vsys-tmp-${process.pid}`);
  try {
    // Durable before it takes the name: a libc replaced in place must never be left half-written.
    const fd = fs.openSync(tmp, 'wx', like.mode & 0o7777);
    try {
      for (let at = 0; at < data.length; ) at += fs.writeSync(fd, data, at, data.length - at);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.chmodSync(tmp, like.mode & 0o7777);
    try {
      fs.chownSync(tmp, like.uid, like.gid);
    } catch {
      // not root: the file stays ours
    }
    fs.utimesSync(tmp, like.atimeMs / 1000, like.mtimeMs / 1000);
    fs.renameSync(tmp, dest);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw ioFailure(dest, e);
  }
}

function ioFailure(p: string, e: unknown): VsysError {
  const err = e as NodeJS.ErrnoException;
  return new VsysError('IO_FAILED', `${p}: ${err.message}`, { path: p, cause: e });
}

/** Input files worth rewriting: a direct call (or an indirect one) of their own. */
function candidates(scan: ScanResult): string[] {
  return scan.files.filter((f) => !f.error && f.findings.some((x) => x.kind === 'direct-call' || x.kind === 'indirect' || x.kind === 'misaligned')).map((f) => f.path);
}

const noneOf = (r: ScanResult): Map<string, { outcome: Outcome; why: string; own: boolean }> =>
  new Map(r.files.map((f) => [f.path, { outcome: f.verdicts.none.outcome, why: f.verdicts.none.why, own: f.findings.length > 0 }]));

/** The outcome changes between a scan of the input and one of the output, by path relative to their tops. */
function changesBetween(before: ScanResult, after: ScanResult, rel: (p: string, side: 'in' | 'out') => string): { changes: OutcomeChange[]; stillCrash: FixRun['stillCrash'] } {
  const b = new Map([...noneOf(before)].map(([p, v]) => [rel(p, 'in'), v]));
  const changes: OutcomeChange[] = [];
  const stillCrash: FixRun['stillCrash'] = [];
  for (const [p, v] of noneOf(after)) {
    const key = rel(p, 'out');
    const was = b.get(key);
    if (v.outcome === 'crash') stillCrash.push({ path: key, why: v.why });
    if (was && was.outcome !== v.outcome) changes.push({ path: key, before: was.outcome, after: v.outcome, how: was.own ? 'own-sites' : 'through-library' });
  }
  return { changes, stillCrash };
}

export async function fixPaths(inputs: string[], o: FixOptions): Promise<FixRun> {
  if (inputs.length !== 1 && o.output !== undefined) throw new VsysError('USAGE', 'fix: -o takes one input (a file or a directory)');
  const input = inputs[0] as string;
  const dirInput = inputs.length === 1 && isDir(input);
  if (o.output !== undefined && fs.existsSync(o.output) && dirInput) throw new VsysError('USAGE', `fix: ${o.output} exists; -o DIR makes a new copy of the tree`);
  const before = await scanPaths({ paths: inputs, workers: 0 });
  const run: FixRun = { files: [], written: [], unjudged: before.errors.filter((e) => e.code !== 'LIBRARY_NOT_FOUND'), changes: [], stillCrash: [] };
  const todo = candidates(before);
  const fixed = new Map<string, Uint8Array>();
  for (const [i, p] of todo.entries()) {
    o.onProgress?.(i, todo.length, p);
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(p);
    } catch (e) {
      run.unjudged.push({ path: p, code: 'IO_FAILED', message: (e as Error).message });
      continue;
    }
    const r = fixBytes(bytes, p);
    run.files.push(r.report);
    if (r.report.error) run.unjudged.push({ path: p, code: r.report.error.code, message: r.report.error.message });
    if (r.output) fixed.set(p, r.output);
  }
  if (o.dryRun) {
    // The prediction: each planned file's own outcome after, and what its patching does for others is
    // known only by writing it; the files left crashing are listed from the plan.
    for (const f of run.files) if (f.after.none === 'crash') run.stillCrash.push({ path: f.path, why: 'sites refused (see above)' });
    return run;
  }
  if (o.inPlace) {
    for (const [p, data] of fixed) {
      const st = fs.statSync(p);
      const orig = o.backupDir ? path.join(o.backupDir, path.relative(dirInput ? input : path.dirname(input), p)) : `${p}.vsys-orig`;
      fs.mkdirSync(path.dirname(orig), { recursive: true });
      if (fs.existsSync(orig)) throw new VsysError('USAGE', `fix: ${orig} exists already (an earlier fix?): move it away or give --backup DIR`);
      fs.copyFileSync(p, orig, fs.constants.COPYFILE_EXCL);
      fs.utimesSync(orig, st.atime, st.mtime);
      writeLike(p, data, st);
      run.written.push({ input: p, output: p, original: orig });
    }
    const after = await scanPaths({ paths: inputs, workers: 0 });
    Object.assign(run, changesBetween(before, after, (p) => p));
    return run;
  }
  if (o.output === undefined) throw new VsysError('USAGE', 'fix: give -o OUT, --in-place or --dry-run');
  if (!dirInput) {
    if (!fs.statSync(input).isFile()) throw new VsysError('USAGE', `fix: ${input} is neither a regular file nor a directory`);
    const st = fs.statSync(input);
    writeLike(o.output, fixed.get(input) ?? fs.readFileSync(input), st);
    run.written.push({ input, output: o.output });
    const after = await scanPaths({ paths: [o.output], workers: 0, root: before.files[0]?.root ?? '/' });
    Object.assign(run, changesBetween(before, after, () => path.basename(input)));
    return run;
  }
  // A directory: a copy of the tree (links copied as links, never followed), then the rewritten files.
  const out = path.resolve(o.output);
  const tmp = `${out}.vsys-tmp-${process.pid}`;
  try {
    fs.cpSync(input, tmp, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true, errorOnExist: true });
    for (const [p, data] of fixed) {
      const rel = path.relative(input, p);
      writeLike(path.join(tmp, rel), data, fs.statSync(p));
    }
    fs.renameSync(tmp, out);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e instanceof VsysError ? e : ioFailure(out, e);
  }
  for (const p of fixed.keys()) run.written.push({ input: p, output: path.join(out, path.relative(input, p)) });
  const after = await scanPaths({ paths: [out], workers: 0 });
  Object.assign(run, changesBetween(before, after, (p, side) => path.relative(side === 'in' ? path.resolve(input) : out, path.resolve(p))));
  return run;
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
