// From an image's final filesystem to its report: OS, libc, every file that uses the page (with
// the libraries its programs would load inside the image), and one verdict per mode.

import { lookupContext, type RootView } from '../scan/resolve.js';
import { judgeFile, type ScannedFile } from '../scan/scan.js';
import { OUTCOME_RANK, seedSlowdowns, verdictsOf, type ModeVerdict, type Outcome, type SlowdownFor } from '../scan/verdict.js';
import { VSYSCALL_MODES, type VsyscallMode } from '../model/modes.js';
import type { ImageFs } from './image-fs.js';
import { isProgram } from '../scan/identify.js';
import type { ImageRun } from './manifests.js';
import type { FileReport } from '../scan/types.js';
import { DEFAULT_PATH } from '../scan/root-path.js';

/**
 * The image's command judged by name: argv[0] on the config's PATH, a `#!` script's interpreter in
 * its place. `listed` finds a file already judged; `judge` judges any other.
 */
function judgeEntrypoint(fs: ImageFs, run: ImageRun, listed: (p: string) => ScannedFile | undefined, judge: (p: string) => ScannedFile | undefined): ImageEntrypoint {
  const argv = [...run.entrypoint, ...run.cmd];
  const argv0 = argv[0] ?? '';
  const found = findProgram(fs, argv0, run.path);
  if (!found) return { argv, verdicts: unknownVerdicts(`${argv0} is not in the image (looked on ${run.path ?? DEFAULT_PATH})`) };
  let judged = found;
  const node = fs.get(found);
  if (node?.kind === 'file' && !node.report && node.interpreter) {
    const interp = fs.resolve(node.interpreter);
    if (interp === undefined) return { argv, path: found, verdicts: unknownVerdicts(`${found} is a script for ${node.interpreter}, which is not in the image`) };
    judged = interp;
  }
  const f = listed(judged) ?? judge(judged);
  if (!f) return { argv, path: found, judged, verdicts: unknownVerdicts(`${judged} is not an ELF program vsys could judge (a script without a #! line, or data)`) };
  return { argv, path: found, judged, verdicts: f.verdicts };
}

export interface ImageReport {
  ref: string;
  /** The argument it was read from (IMAGE.tar, oci:DIR, registry://…): what `vsys run --image` takes. */
  input?: string;
  source: 'docker-archive' | 'oci-archive' | 'oci-dir' | 'registry';
  digest?: string;
  /** Read from a registry by tag: the digest the tag named then (the index's, for a multi-platform image), as `docker pull` prints it. */
  tagDigest?: string;
  platform?: string;
  skippedPlatforms?: string[];
  os?: { id?: string; versionId?: string; prettyName?: string };
  libc?: { path: string; name: string; version?: string };
  layers: { digest: string; bytes: number; files: number; elfFiles: number; cached: boolean }[];
  elfFiles: number;
  /** Files that use the page or reach it through a library, with verdicts per mode. */
  files: ScannedFile[];
  /** What the image runs (config Entrypoint + Cmd), judged first and by name. */
  entrypoint?: ImageEntrypoint;
  verdicts: Record<VsyscallMode, ModeVerdict>;
  problems: { path: string; code: string; message: string }[];
}

export interface ImageEntrypoint {
  argv: string[];
  /** The program the kernel executes, found on the config's PATH; a script's interpreter after it. */
  path?: string;
  /** The file judged: the program, or the interpreter of a `#!` script. */
  judged?: string;
  verdicts: Record<VsyscallMode, ModeVerdict>;
  /** What running it as a vsyscall=none kernel would did (`scan --run-entrypoint`). */
  run?: EntrypointRun;
}

/** The entrypoint run under `vsys run --as none`: its status, and the first call of the page that killed it. */
export interface EntrypointRun {
  status: number;
  wouldCrash: boolean;
  /** Stopped after the time allowed (a server): calls after that were not seen. */
  timedOut: boolean;
  seconds: number;
  first?: { entry: string; process: string; file?: string; address?: string; function?: string };
  /** Why it could not be run (the scan's verdict stands alone). */
  error?: string;
}

/** argv[0] of the image's command as the runtime finds it: a path, or the first hit on PATH. */
function findProgram(fs: ImageFs, argv0: string, pathVar: string | undefined): string | undefined {
  const candidates = argv0.includes('/') ? [argv0.startsWith('/') ? argv0 : `/${argv0}`] : (pathVar ?? DEFAULT_PATH).split(':').filter((d) => d.startsWith('/')).map((d) => `${d.replace(/\/$/, '')}/${argv0}`);
  for (const c of candidates) {
    const key = fs.resolve(c);
    if (key !== undefined && fs.get(key)?.kind === 'file') return key;
  }
  return undefined;
}

function unknownVerdicts(why: string): Record<VsyscallMode, ModeVerdict> {
  return Object.fromEntries(VSYSCALL_MODES.map((m) => [m, { outcome: 'review', why, certainty: 'unknown' }])) as Record<VsyscallMode, ModeVerdict>;
}

export function imageRoot(fs: ImageFs, name: string): RootView {
  return {
    name,
    fileKey(inner) {
      const r = fs.resolve(inner);
      return r !== undefined && fs.get(r)?.kind === 'file' ? r : undefined;
    },
    readText(inner) {
      const n = fs.file(inner);
      return n?.text;
    },
    list: (dir) => {
      const r = fs.resolve(dir);
      return r === undefined ? [] : fs.list(r);
    },
    innerOf: (report: FileReport) => report.path,
  };
}

function parseOsRelease(text: string | undefined): ImageReport['os'] {
  if (!text) return undefined;
  const get = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?$`, 'm').exec(text)?.[1];
  const os: NonNullable<ImageReport['os']> = {};
  const id = get('ID');
  const v = get('VERSION_ID');
  const p = get('PRETTY_NAME');
  if (id) os.id = id;
  if (v) os.versionId = v;
  if (p) os.prettyName = p;
  return os;
}

const LIBC_PATHS = ['/lib/x86_64-linux-gnu/libc.so.6', '/lib64/libc.so.6', '/usr/lib64/libc.so.6', '/lib/libc.so.6', '/usr/lib/libc.so.6', '/lib/ld-musl-x86_64.so.1'];

export interface AnalyseImageOptions {
  /** Keep every ELF file's record, clean ones too (--all). */
  all?: boolean;
  run?: ImageRun;
}

export function analyseImage(fs: ImageFs, base: Omit<ImageReport, 'files' | 'verdicts' | 'elfFiles' | 'os' | 'libc' | 'entrypoint'>, slow?: SlowdownFor, o: AnalyseImageOptions = {}): ImageReport {
  const root = imageRoot(fs, base.ref);
  const ctx = lookupContext(root);
  const reportOf = (key: string): FileReport | undefined => {
    const n = fs.get(key);
    return n?.kind === 'file' ? n.report : undefined;
  };
  const files: ScannedFile[] = [];
  const judged = [...fs.files()].filter(([, node]) => node.report !== undefined);
  const elfFiles = judged.length;
  // A file with no use of its own reaches the page only through a library exporting an affected
  // function. In an image with none (most images), such a file's verdicts are those of no use at
  // all, so its libraries need not be looked up: a third of a big image's verdict time.
  const viaLibraries = judged.some(([, node]) => (node.report?.affectedExports.length ?? 0) > 0);
  const noUse = verdictsOf([], slow ?? seedSlowdowns);
  const unused = VSYSCALL_MODES.every((m) => noUse[m].outcome === 'ok');
  for (const [p, node] of judged) {
    const r = node.report as FileReport;
    const clean = !viaLibraries && unused && r.findings.length === 0 && !r.error;
    if (clean && !o.all) continue;
    const s: ScannedFile = clean ? { ...r, path: p, verdicts: noUse } : judgeFile(r.path === p ? r : { ...r, path: p }, ctx, reportOf, slow ?? seedSlowdowns, false);
    s.layer = node.layer;
    if (o.all || s.class !== 'clean' || (s.through?.length ?? 0) > 0 || VSYSCALL_MODES.some((m) => s.verdicts[m].outcome !== 'ok')) files.push(s);
  }
  files.sort((a, b) => (a.path < b.path ? -1 : 1));
  const verdicts = {} as Record<VsyscallMode, ModeVerdict>;
  for (const m of VSYSCALL_MODES) {
    let worst: { outcome: Outcome; f?: ScannedFile } = { outcome: 'ok' };
    // The headline names a program when one is affected (bash → libc time()), not the library.
    for (const f of files) {
      const o = f.verdicts[m].outcome;
      if (OUTCOME_RANK[o] > OUTCOME_RANK[worst.outcome] || (o === worst.outcome && worst.f && !isProgram(worst.f.identity) && isProgram(f.identity))) worst = { outcome: o, f };
    }
    const f = worst.f;
    if (!f) verdicts[m] = { outcome: 'ok', why: 'no file in the image uses the vsyscall page', certainty: 'certain' };
    else {
      const via = f.through?.[0];
      const what = via ? `${f.path} → ${via.library} ${via.symbol}()` : f.path;
      const word = { crash: 'crashes', slow: 'runs slowly', review: 'needs review', fallback: 'falls back', ok: 'runs' }[worst.outcome];
      verdicts[m] = { ...f.verdicts[m], outcome: worst.outcome, why: `${word} under vsyscall=${m}: ${what} (${f.verdicts[m].why})` };
    }
  }
  const out: ImageReport = { ...base, elfFiles, files, verdicts };
  if (o.run) out.entrypoint = judgeEntrypoint(fs, o.run, (p) => files.find((f) => f.path === p), (p) => {
    const n = fs.get(p);
    if (n?.kind !== 'file' || !n.report) return undefined;
    const s = judgeFile(n.report.path === p ? n.report : { ...n.report, path: p }, ctx, reportOf, slow ?? seedSlowdowns, false);
    s.layer = n.layer;
    return s;
  });
  // The headline names the entrypoint when it is as bad as the worst file: that is what runs.
  const ep = out.entrypoint;
  if (ep) {
    for (const m of VSYSCALL_MODES) {
      const e = ep.verdicts[m];
      if (e.outcome !== 'ok' && e.outcome === verdicts[m].outcome) {
        const word = { crash: 'crashes', slow: 'runs slowly', review: 'needs review', fallback: 'falls back', ok: 'runs' }[e.outcome];
        verdicts[m] = { ...e, why: `${word} under vsyscall=${m}: the entrypoint ${ep.judged ?? ep.path ?? ep.argv[0]} (${e.why})` };
      }
    }
  }
  const os = parseOsRelease(root.readText('/etc/os-release') ?? root.readText('/usr/lib/os-release'));
  if (os) out.os = os;
  for (const p of LIBC_PATHS) {
    const key = root.fileKey(p);
    const rep = key ? reportOf(key) : undefined;
    if (rep) {
      out.libc = { path: key as string, name: rep.identity?.libc?.name ?? (p.includes('musl') ? 'musl' : 'unknown'), ...(rep.identity?.libc?.version ? { version: rep.identity.libc.version } : {}) };
      break;
    }
  }
  return out;
}
