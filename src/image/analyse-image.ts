// From an image's final filesystem to its report: OS, libc, every file that uses the page (with
// the libraries its programs would load inside the image), and one verdict per mode.
import type { FileReport } from '../scan/analyse-file.js';
import { lookupContext, type RootView } from '../scan/resolve.js';
import { judgeFile, type ScannedFile } from '../scan/scan.js';
import { OUTCOME_RANK, seedSlowdowns, verdictsOf, type ModeVerdict, type Outcome, type SlowdownFor } from '../scan/verdict.js';
import { VSYSCALL_MODES, type VsyscallMode } from '../model/modes.js';
import type { ImageFs } from './image-fs.js';
import { isProgram } from '../scan/identify.js';

export interface ImageReport {
  ref: string;
  source: 'docker-archive' | 'oci-archive' | 'oci-dir' | 'registry';
  digest?: string;
  platform?: string;
  skippedPlatforms?: string[];
  os?: { id?: string; versionId?: string; prettyName?: string };
  libc?: { path: string; name: string; version?: string };
  layers: { digest: string; bytes: number; files: number; elfFiles: number; cached: boolean }[];
  elfFiles: number;
  /** Files that use the page or reach it through a library, with verdicts per mode. */
  files: ScannedFile[];
  verdicts: Record<VsyscallMode, ModeVerdict>;
  problems: { path: string; code: string; message: string }[];
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

export function analyseImage(fs: ImageFs, base: Omit<ImageReport, 'files' | 'verdicts' | 'elfFiles' | 'os' | 'libc'>, slow?: SlowdownFor): ImageReport {
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
    if (!viaLibraries && unused && r.findings.length === 0) continue;
    const s = judgeFile(r.path === p ? r : { ...r, path: p }, ctx, reportOf, slow ?? seedSlowdowns);
    if (s.class !== 'clean' || (s.through?.length ?? 0) > 0 || VSYSCALL_MODES.some((m) => s.verdicts[m].outcome !== 'ok')) files.push(s);
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
