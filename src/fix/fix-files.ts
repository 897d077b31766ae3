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
import { callsThePage } from '../model/site-kinds.js';

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
  /** The output was written and scanned again (stillCrash is a scan's, not a prediction). */
  rescanned: boolean;
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
    // chown first: it clears the setuid and setgid bits, which chmod then puts back.
    try {
      fs.chownSync(tmp, like.uid, like.gid);
    } catch {
      // not root: the file stays ours
    }
    fs.chmodSync(tmp, like.mode & 0o7777);
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
  return scan.files.filter((f) => !f.error && f.findings.some((x) => callsThePage(x.kind))).map((f) => f.path);
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

/** Every name under `top` of each inode in `inodes` ("dev:ino"): hard links are patched together. */
function namesOf(top: string, inodes: Set<string>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const st = fs.lstatSync(p);
        const key = `${st.dev}:${st.ino}`;
        if (inodes.has(key)) out.set(key, [...(out.get(key) ?? []), p]);
      }
    }
  };
  walk(top);
  return out;
}

const inodeOf = (p: string): string => {
  const st = fs.statSync(p);
  return `${st.dev}:${st.ino}`;
};

/** Backups and vsys' own temporaries are never inputs. */
const isOurs = (p: string, backupDir: string | undefined): boolean =>
  p.endsWith('.vsys-orig') || /\.vsys-tmp-\d+$/.test(p) || (backupDir !== undefined && !path.relative(path.resolve(backupDir), path.resolve(p)).startsWith('..'));

function checkOutput(input: string, dirInput: boolean, output: string): void {
  const out = path.resolve(output);
  const real = (p: string) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  if (real(out) === real(input)) throw new VsysError('USAGE', `fix: -o ${output} is the input itself; use --in-place (it keeps the original)`);
  if (dirInput) {
    if (fs.existsSync(out)) throw new VsysError('USAGE', `fix: ${output} exists; -o DIR makes a new copy of the tree`);
    if (!path.relative(real(input), real(path.dirname(out))).startsWith('..')) throw new VsysError('USAGE', `fix: -o ${output} is inside the input tree; put the copy elsewhere`);
  } else if (isDir(out)) {
    throw new VsysError('USAGE', `fix: -o ${output} is a directory; give the path of the file to write`);
  }
}

/** --in-place: every backup made before the first file is replaced; a name taken already stops the run first. */
function fixInPlace(fixed: Map<string, Uint8Array>, names: Map<string, string[]>, top: string, o: FixOptions): FixRun['written'] {
  const plan = [...fixed].map(([p, data]) => ({ p, data, st: fs.statSync(p), orig: o.backupDir ? path.join(o.backupDir, path.relative(top, p)) : `${p}.vsys-orig` }));
  for (const x of plan) {
    if (fs.existsSync(x.orig)) throw new VsysError('USAGE', `fix: ${x.orig} exists already (an earlier fix?): move it away or give --backup DIR; nothing was changed`);
  }
  for (const x of plan) {
    fs.mkdirSync(path.dirname(x.orig), { recursive: true });
    fs.copyFileSync(x.p, x.orig, fs.constants.COPYFILE_EXCL);
    fs.chmodSync(x.orig, x.st.mode & 0o7777);
    fs.utimesSync(x.orig, x.st.atimeMs / 1000, x.st.mtimeMs / 1000);
  }
  const written: FixRun['written'] = [];
  for (const x of plan) {
    const others = (names.get(`${x.st.dev}:${x.st.ino}`) ?? []).filter((n) => n !== x.p);
    try {
      writeLike(x.p, x.data, x.st);
    } catch (e) {
      const done = written.map((w) => w.output).join(', ') || 'none';
      throw new VsysError('IO_FAILED', `${(e as Error).message}; files rewritten before this one: ${done}; every original is kept (${o.backupDir ?? 'FILE.vsys-orig'})`, { path: x.p });
    }
    // The other names of a hard-linked file are pointed at the new one (a link made, then renamed over).
    for (const n of others) {
      const tmp = `${n}.vsys-tmp-${process.pid}`;
      fs.linkSync(x.p, tmp);
      fs.renameSync(tmp, n);
    }
    written.push({ input: x.p, output: x.p, original: x.orig });
  }
  return written;
}

export async function fixPaths(inputs: string[], o: FixOptions): Promise<FixRun> {
  if (inputs.length !== 1 && o.output !== undefined) throw new VsysError('USAGE', 'fix: -o takes one input (a file or a directory)');
  const input = inputs[0] as string;
  const dirInput = inputs.length === 1 && isDir(input);
  if (o.output !== undefined) checkOutput(input, dirInput, o.output);
  const ours = (p: string) => isOurs(p, o.backupDir);
  const before = await scanPaths({ paths: inputs, workers: 0 });
  before.files = before.files.filter((f) => !ours(f.path));
  const run: FixRun = { files: [], written: [], unjudged: before.errors.filter((e) => e.code !== 'LIBRARY_NOT_FOUND' && !ours(e.path)), changes: [], stillCrash: [], rescanned: false };
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
    // The prediction: each planned file's own outcome after; what a patched library does for the
    // programs that load it is known by writing it (the report of a real run names them).
    for (const f of run.files) if (f.after.none === 'crash') run.stillCrash.push({ path: f.path, why: 'sites refused (see above)' });
    return run;
  }
  const top = dirInput ? input : path.dirname(input);
  const names = namesOf(top, new Set([...fixed.keys()].map(inodeOf)));
  const afterScan = async (paths: string[], root?: string) => {
    const r = await scanPaths({ paths, workers: 0, ...(root ? { root } : {}) });
    r.files = r.files.filter((f) => !ours(f.path));
    run.rescanned = true;
    return r;
  };
  if (o.inPlace) {
    run.written = fixInPlace(fixed, names, top, o);
    Object.assign(run, changesBetween(before, await afterScan(inputs), (p) => p));
    return run;
  }
  if (o.output === undefined) throw new VsysError('USAGE', 'fix: give -o OUT, --in-place or --dry-run');
  if (!dirInput) {
    if (!fs.statSync(input).isFile()) throw new VsysError('USAGE', `fix: ${input} is neither a regular file nor a directory`);
    // An input that could not be judged is not copied out as if it were fixed.
    if (run.unjudged.length > 0) return run;
    writeLike(o.output, fixed.get(input) ?? fs.readFileSync(input), fs.statSync(input));
    run.written.push({ input, output: o.output });
    Object.assign(run, changesBetween(before, await afterScan([o.output], before.files[0]?.root ?? '/'), () => path.basename(input)));
    return run;
  }
  // A directory: a copy of the tree (links copied as links, never followed), then the rewritten
  // files, every name of a hard-linked one linked to the same new file.
  const out = path.resolve(o.output);
  const tmp = `${out}.vsys-tmp-${process.pid}`;
  try {
    fs.cpSync(input, tmp, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true, errorOnExist: true });
    for (const [p, data] of fixed) {
      const dest = path.join(tmp, path.relative(input, p));
      writeLike(dest, data, fs.statSync(p));
      for (const n of names.get(inodeOf(p)) ?? []) {
        if (n === p) continue;
        const other = path.join(tmp, path.relative(input, n));
        fs.rmSync(other, { force: true });
        fs.linkSync(dest, other);
      }
    }
    fs.renameSync(tmp, out);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e instanceof VsysError ? e : ioFailure(out, e);
  }
  for (const p of fixed.keys()) run.written.push({ input: p, output: path.join(out, path.relative(input, p)) });
  Object.assign(run, changesBetween(before, await afterScan([out]), (p, side) => path.relative(side === 'in' ? path.resolve(input) : out, path.resolve(p))));
  return run;
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
