// `vsys scan`: arguments, progress on stderr, text / NDJSON / SARIF out, exit code from --fail-on.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { isVsyscallMode, type VsyscallMode } from '../model/modes.js';
import { OUTCOME_RANK, type Outcome } from '../scan/verdict.js';
import { scanPaths, type ScanOptions, type ScanProgress, type ScanResult } from '../scan/scan.js';
import type { ImageReport } from '../image/analyse-image.js';
import type { ImageError, ImageScanOptions } from '../image/scan-image.js';
import { VsysError } from '../errors.js';
import { mappedFiles } from '../scan/processes.js';
import { formatSarif, formatScanText } from './format-scan.js';
import { jsonRecords } from './scan-json.js';
import { unjudgedOf, type Unjudged } from './scan-records.js';
import { EXIT, numberOption, toJson, usageError, type Io, type Command } from './io.js';
import { VSYS_VERSION } from '../version.js';
import type { LayerProgress } from '../image/sources.js';

const HELP = `usage: vsys scan [OPTIONS] PATH|IMAGE...
       vsys scan --processes [OPTIONS]

IMAGE is a 'docker save' archive or an OCI layout packed in a tar (IMAGE.tar),
oci:DIR (an OCI image layout directory), or registry://HOST[:PORT]/REPO[:TAG|@DIGEST].
Layers are streamed (nothing is extracted to disk), whiteouts applied, and every
program checked against the libraries it would load inside the image.

Finds every use of the legacy vsyscall page (0xffffffffff600000) in ELF files and
directories (recursively), and says what happens to each file in each mode:
crash (SIGSEGV under vsyscall=none), slow (emulated by the kernel), fallback (used
only if the vDSO lacks the symbol), or ok. Dynamically linked programs are checked
through the libraries they would load from the same root (DT_NEEDED, RUNPATH,
ld.so.conf, /lib/x86_64-linux-gnu, /lib64, …).

options:
  --mode MODE          none | xonly | emulate | native | host (default: host, this
                       machine's mode): the verdict shown and used for --fail-on
  --fail-on OUTCOME    crash | slow: exit 1 when any file is that bad or worse
  --json               NDJSON records (schema/scan-record.schema.json): one per image
                       and ELF file ("record": "file", with "outcome" in the chosen
                       mode), one per input not judged ("error"), then "summary"
  --sarif FILE         also write SARIF 2.1.0 (one result per finding) to FILE
  --root DIR           root the libraries are looked up in (default: the scanned
                       directory if it looks like a rootfs, else /)
  --all                list clean files too (text; for images also --json)
  --processes          scan the files mapped by every running process
  --workers N          worker threads beside the main one (default: one per core
                       but one, max 8; for directories none on 2 cores or fewer,
                       where they cost more than they save; 0 = none)
  --max-file-size MB   skip larger files with FILE_TOO_LARGE (default 2048)
  --from FILE          read more PATHs/IMAGEs from FILE, one per line
  --max-layer-size MB  cap on a layer's decompressed bytes (default 8192)
  --max-image-size MB  cap on an image's decompressed bytes (default 32768)
  --max-layer-entries N  cap on a layer's entries, each held in memory until the
                       image is judged (default 500000: a scan stays under ~512 MB)
  --max-image-entries N  cap on the entries of all of an image's layers (default 1000000)
  --concurrency N      images scanned at once (default 2)
  --creds USER:PASS    registry credentials (or VSYS_REGISTRY_CREDS)
  --insecure           allow plain http to registries other than localhost
  --run-entrypoint     run each image's Entrypoint+Cmd under 'vsys run --as none'
                       (the image unpacked to a temporary root) to confirm its
                       verdict: what a vsyscall=none kernel really does to it
  --run-timeout S      stop an entrypoint still running after S seconds (a server;
                       default 10): what it does later is not seen
  --no-verify          do not check image blobs against their digests and sizes, nor
                       layers against their diff_ids (faster; said in the warnings)
  -h, --help           this text

Each file is judged in the root it lives in: the nearest directory above it that
holds a dynamic loader, a libc or etc/os-release (else /); --root overrides that.
Programs that crash only through a library function are grouped by that function.
Verdicts are predictions: "crashes if time() is called" (vsys trace -- CMD shows
what a command really calls).

exit status:
  0  every input judged, nothing at or above --fail-on
  1  something at or above --fail-on (wins over 3)
  2  usage error
  3  some input could not be read or judged (listed at the end; the rest reported)
  4  unsupported host

examples:
  vsys scan /usr/bin /usr/lib/x86_64-linux-gnu
  vsys scan --mode none --fail-on crash ./rootfs        # CI gate before moving to vsyscall=none
  vsys scan --mode none --json ./rootfs | jq -r 'select(.record == "file" and .outcome == "crash") | .path'
  vsys scan --sarif vsys.sarif ./build/out
  vsys scan --processes --mode none
  vsys scan --mode none redis-2.8.22.tar           # docker save redis:2.8.22 > redis-2.8.22.tar
  vsys scan registry://localhost:5000/app:1.4 oci:./layout
`;

async function hostMode(): Promise<{ mode: VsyscallMode; source: string }> {
  const { detectVsyscallMode } = await import('../host/vsyscall-mode.js');
  const { readKconfig } = await import('../host/kconfig.js');
  const release = (await import('node:os')).release();
  const r = await detectVsyscallMode({ active: false, kconfig: readKconfig(release), kernelRelease: release });
  if (r.mode === 'unknown') return { mode: 'none', source: 'host mode unknown; assuming none, the strictest' };
  return { mode: r.mode, source: `this host, from ${r.decidedBy}` };
}

function progressBar(io: Io): ((p: ScanProgress) => void) | undefined {
  if (!io.stderr.isTTY) return undefined;
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (now - last < 100) return;
    last = now;
    const name = (p.current ?? '').slice(-50);
    io.stderr.write(`\r\x1b[2Kscanning: ${p.files} files, ${p.elfFiles} ELF, ${(p.bytes / 1e6).toFixed(0)} MB  ${name}`);
  };
}

/** The arguments checked (usage errors thrown), or 'help'. */
function parseScanArgs(args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      mode: { type: 'string' },
      'fail-on': { type: 'string' },
      json: { type: 'boolean' },
      sarif: { type: 'string' },
      root: { type: 'string' },
      all: { type: 'boolean' },
      processes: { type: 'boolean' },
      workers: { type: 'string' },
      'max-file-size': { type: 'string' },
      from: { type: 'string' },
      'max-layer-size': { type: 'string' },
      'max-image-size': { type: 'string' },
      'max-layer-entries': { type: 'string' },
      'max-image-entries': { type: 'string' },
      concurrency: { type: 'string' },
      creds: { type: 'string' },
      insecure: { type: 'boolean' },
      'no-verify': { type: 'boolean' },
      'run-entrypoint': { type: 'boolean' },
      'run-timeout': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  if (values.from !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(values.from, 'utf8');
    } catch (e) {
      throw usageError(`scan: cannot read --from ${values.from}: ${(e as Error).message}`);
    }
    positionals.push(...text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')));
  }
  if (!values.processes && positionals.length === 0) throw usageError('scan: give at least one PATH (a file or directory), IMAGE, or --processes');
  if (values.processes && positionals.length > 0) throw usageError('scan: --processes takes no PATH');
  if (values['run-timeout'] !== undefined && !values['run-entrypoint']) throw usageError('scan: --run-timeout goes with --run-entrypoint');
  numberOption('scan', 'run-timeout', values['run-timeout'], { positive: 'seconds' }); // checked before the scan, used after
  const modeArg = values.mode ?? 'host';
  if (modeArg !== 'host' && !isVsyscallMode(modeArg)) throw usageError(`scan: --mode must be none, xonly, emulate, native or host, not '${modeArg}'`);
  const failOn = values['fail-on'];
  if (failOn !== undefined && failOn !== 'crash' && failOn !== 'slow') throw usageError(`scan: --fail-on must be crash or slow, not '${failOn}'`);
  if (values.root !== undefined && !isDirectory(values.root)) throw usageError(`scan: --root ${values.root} is not a directory`);
  const workers = numberOption('scan', 'workers', values.workers, { integer: [0, 64] });
  const maxMb = numberOption('scan', 'max-file-size', values['max-file-size'], { positive: 'megabytes' });
  const maxLayerMb = numberOption('scan', 'max-layer-size', values['max-layer-size'], { positive: 'megabytes' });
  const maxImageMb = numberOption('scan', 'max-image-size', values['max-image-size'], { positive: 'megabytes' });
  const maxEntries = numberOption('scan', 'max-layer-entries', values['max-layer-entries'], { integer: [1, 100_000_000] });
  const maxImageEntries = numberOption('scan', 'max-image-entries', values['max-image-entries'], { integer: [1, 1_000_000_000] });
  const conc = numberOption('scan', 'concurrency', values.concurrency, { integer: [1, 64] });
  return { values, positionals, modeArg, failOn, workers, maxMb, maxLayerMb, maxImageMb, maxEntries, maxImageEntries, conc };
}

export const scanCommand: Command = {
  summary: 'find vsyscall call sites in ELF files and directories, and what happens in each mode',
  async run(args, io) {
    const parsed = parseScanArgs(args);
    if (parsed === 'help') {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    const { values, positionals, modeArg, failOn, workers, maxMb, maxLayerMb, maxImageMb, maxEntries, maxImageEntries, conc } = parsed;
    const mb = (n: number) => Math.floor(n * 1024 * 1024);

    const { mode, source } = modeArg === 'host' ? await hostMode() : { mode: modeArg as VsyscallMode, source: 'chosen with --mode' };
    const { isImageRef } = await import('../image/scan-image.js');
    const { hostSlowdowns, loadHostFigures } = await import('../bench/host-figures.js');
    const { seedSlowdowns } = await import('../scan/verdict.js');
    const imageRefs = positionals.filter(isImageRef);
    let paths = positionals.filter((p) => !imageRefs.includes(p));
    let procs: ReturnType<typeof mappedFiles> | undefined;
    if (values.processes) {
      procs = mappedFiles();
      paths = procs.files.map((f) => f.hostPath);
    }
    if (values.sarif !== undefined) checkWritable(values.sarif);
    const slowdown = hostSlowdowns(loadHostFigures(), seedSlowdowns);
    const creds = values.creds ?? process.env.VSYS_REGISTRY_CREDS;
    const scans = await runScans(io, imageRefs, paths, {
      ...(maxLayerMb !== undefined ? { maxLayerBytes: mb(maxLayerMb) } : {}),
      ...(maxImageMb !== undefined ? { maxImageBytes: mb(maxImageMb) } : {}),
      ...(maxEntries !== undefined ? { maxLayerEntries: maxEntries } : {}),
      ...(maxImageEntries !== undefined ? { maxImageEntries } : {}),
      ...(conc !== undefined ? { concurrency: conc } : {}),
      ...(values.insecure ? { insecure: true } : {}),
      ...(creds ? { creds } : {}),
      ...(workers !== undefined ? { workers } : {}),
      ...(values.all ? { all: true } : {}),
      ...(values['no-verify'] ? { verify: false } : {}),
      slowdown,
    }, {
      slowdown,
      ...(values.root !== undefined ? { root: values.root } : {}),
      ...(workers !== undefined ? { workers } : {}),
      ...(maxMb !== undefined ? { maxFileBytes: mb(maxMb) } : {}),
    });
    const { result, imageScan } = scans;
    if (values['run-entrypoint'] && !scans.interrupted) {
      const timeout = numberOption('scan', 'run-timeout', values['run-timeout'], { positive: 'seconds' }) ?? 10;
      await confirmEntrypoints(imageScan.images, timeout, io, { ...(creds ? { creds } : {}), ...(values.insecure ? { insecure: true } : {}) }, values['no-verify'] !== true);
    }
    const unjudged = [...unjudgedOf(result, imageScan.images, imageScan.errors), ...(procs ? processesUnjudged(procs) : [])];
    const exit = exitStatus(scans.interrupted, failOn as Outcome | undefined, mode, result, imageScan.images, unjudged);
    const warnings = result.warnings;
    if (values['no-verify'] && imageRefs.length > 0) warnings.push('--no-verify: image blobs were not checked against their digests, sizes and diff_ids; a corrupted or altered image is reported as if it were the image its manifest names');
    for (const w of warnings) io.stderr.write(`vsys: warning: ${w}\n`);

    const showPaths = paths.length > 0 || imageRefs.length === 0;
    const shared = { result, images: imageScan.images, imageErrors: imageScan.errors, unjudged, mode, modeSource: source, all: values.all ?? false, slow: slowdown, warnings, showPaths };
    if (values.json) {
      for (const line of jsonRecords({ ...shared, exit })) io.stdout.write(toJson(line, 0) + '\n');
    } else {
      io.stdout.write(formatScanText(shared));
      if (procs) io.stdout.write(formatProcesses(result, procs, mode));
    }
    // After stdout: a SARIF file that cannot be written loses no result.
    if (values.sarif) writeSarif(values.sarif, formatSarif(result, mode, VSYS_VERSION, imageScan.images, unjudged, slowdown));
    if (values.sarif && !values.json) io.stderr.write(`SARIF written to ${values.sarif}\n`);
    if (scans.interrupted && imageRefs.length > 0) {
      // Images still being read would keep the process alive: end once the report is out.
      if (io.stdout === process.stdout) await new Promise((resolve) => process.stdout.write('', resolve));
      process.exit(exit);
    }
    return exit;
  },
};

/**
 * --run-entrypoint: each image's entrypoint run as a vsyscall=none kernel would run it (vsys run),
 * its own output discarded, stopped after `timeoutS`; the result kept on the entrypoint.
 */
async function confirmEntrypoints(images: ImageReport[], timeoutS: number, io: Io, registry: { creds?: string; insecure?: boolean }, verify: boolean): Promise<void> {
  const { runCommandAs } = await import('../run/run-command.js');
  for (const img of images) {
    const ep = img.entrypoint;
    if (!ep) continue;
    io.stderr.write(`vsys: running the entrypoint of ${img.ref} as a vsyscall=none kernel would (vsys run --as none, at most ${timeoutS} s)…\n`);
    const t0 = performance.now();
    try {
      const r = await runCommandAs({ as: 'none', image: img.input ?? img.ref, cmd: [], stdio: 'ignore', timeoutMs: timeoutS * 1000, registry, verify });
      const i = r.outcome.calls.findIndex((c) => c.answer === 'sigsegv');
      const c = r.outcome.calls[i];
      const named = i >= 0 ? r.callers[i] : undefined;
      ep.run = {
        status: r.outcome.status, wouldCrash: i >= 0, timedOut: r.outcome.timedOut === true, seconds: Math.round((performance.now() - t0) / 100) / 10,
        ...(c ? { first: { entry: c.entry, process: c.comm ?? String(c.pid), ...(named ? { file: named.file.startsWith(`${r.root}/`) ? named.file.slice(r.root!.length) : named.file } : {}), ...(named?.address !== undefined ? { address: `0x${named.address.toString(16)}` } : {}), ...(named?.function ? { function: named.function } : {}) } } : {}),
      };
    } catch (e) {
      ep.run = { status: -1, wouldCrash: false, timedOut: false, seconds: Math.round((performance.now() - t0) / 100) / 10, error: (e as Error).message };
    }
  }
}

/** 1 when something is at or above --fail-on (wins over 3: the gate fails either way, and 1 says why), 3 when an input was not judged, 130 when interrupted. */
function exitStatus(interrupted: boolean, failOn: Outcome | undefined, mode: VsyscallMode, result: ScanResult, images: ImageReport[], unjudged: Unjudged[]): number {
  if (interrupted) return EXIT.interrupted;
  const bar = failOn ? OUTCOME_RANK[failOn] : undefined;
  if (bar !== undefined && (result.files.some((f) => OUTCOME_RANK[f.verdicts[mode].outcome] >= bar) || images.some((i) => OUTCOME_RANK[i.verdicts[mode].outcome] >= bar))) return EXIT.findings;
  return unjudged.length > 0 ? EXIT.runtime : EXIT.ok;
}

/** Processes this user may not read, and mapped files no route could open, were not judged. */
function processesUnjudged(procs: ReturnType<typeof mappedFiles>): Unjudged[] {
  const out: Unjudged[] = [];
  if (procs.denied > 0) out.push({ path: '/proc', code: 'PROC_DENIED', message: `${procs.denied} of ${procs.processes + procs.unreadable} processes could not be read (permission denied${process.getuid?.() === 0 ? ' even to root: not dumpable, or no CAP_SYS_PTRACE' : ': root is needed'})` });
  for (const u of procs.unresolved) out.push({ path: u.path, code: 'PROC_FILE_UNREADABLE', message: `mapped by ${u.pid}: ${u.reason}` });
  return out;
}

interface Scans {
  result: ScanResult;
  imageScan: { images: ImageReport[]; errors: ImageError[] };
  interrupted: boolean;
}

/**
 * The images, then the paths, with progress on a terminal. Ctrl-C stops reading: what was judged
 * is reported (the images done, the files read) and the run exits 130; a second Ctrl-C ends at once.
 */
async function runScans(io: Io, imageRefs: string[], paths: string[], imageOpts: ImageScanOptions, pathOpts: Omit<ScanOptions, 'paths'>): Promise<Scans> {
  const onProgress = progressBar(io);
  const stop = new AbortController();
  let stopImages: (() => void) | undefined;
  const onInt = (): void => {
    if (io.stderr.isTTY) io.stderr.write('\r\x1b[2K');
    if (stop.signal.aborted) {
      io.stderr.write('vsys: interrupted\n');
      process.exit(EXIT.interrupted);
    }
    stop.abort();
    stopImages?.();
    io.stderr.write('vsys: interrupted; reporting what was scanned so far (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onInt);
  try {
    const done: Scans['imageScan'] = { images: [], errors: [] };
    if (imageRefs.length > 0) {
      const { scanImageRefs } = await import('../image/scan-image.js');
      const all = scanImageRefs(imageRefs, {
        ...imageOpts,
        onImage: (i) => done.images.push(i),
        onImageError: (e) => done.errors.push(e),
        ...(io.stderr.isTTY ? { onProgress: imageProgress(io) } : {}),
      });
      // An image being read is not stopped midway: an interrupted run reports the images finished.
      await Promise.race([all, new Promise<void>((resolve) => (stopImages = resolve))]);
      if (io.stderr.isTTY) io.stderr.write('\r\x1b[2K');
    }
    const result = await scanPaths({ ...pathOpts, paths: stop.signal.aborted ? [] : paths, signal: stop.signal, ...(onProgress ? { onProgress } : {}) });
    if (stop.signal.aborted) result.summary.interrupted = true;
    if (onProgress) io.stderr.write('\r\x1b[2K');
    return { result, imageScan: done, interrupted: stop.signal.aborted };
  } finally {
    process.off('SIGINT', onInt);
  }
}

function checkWritable(file: string): void {
  try {
    fs.closeSync(fs.openSync(file, 'a'));
  } catch (e) {
    throw usageError(`scan: cannot write --sarif ${file}: ${(e as Error).message}`);
  }
}

function writeSarif(file: string, text: string): void {
  try {
    fs.writeFileSync(file, text);
  } catch (e) {
    throw new VsysError('IO_FAILED', `scan: the SARIF could not be written to ${file}: ${(e as Error).message} (the results above are complete)`, { path: file });
  }
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** One line on stderr, redrawn at most 10 times a second: "IMAGE: layer 2/5 sha256:abcd… 340/1091 MB". */
function imageProgress(io: Io): (ref: string, p: LayerProgress) => void {
  let last = 0;
  return (ref, p) => {
    const now = performance.now();
    if (now - last < 100 && p.done !== p.total) return;
    last = now;
    const mb = (n: number) => (n / 1e6).toFixed(0);
    io.stderr.write(`\r\x1b[2K${ref}: layer ${p.index + 1}/${p.layers} ${p.key.slice(0, 19)} ${mb(p.done)}${p.total === undefined ? '' : `/${mb(p.total)}`} MB`);
  };
}

function formatProcesses(r: ScanResult, procs: ReturnType<typeof mappedFiles>, mode: VsyscallMode): string {
  const byPath = new Map(procs.files.map((f) => [f.hostPath, f]));
  const lines = [`processes: ${procs.processes} read, ${procs.unreadable} unreadable (${procs.denied} refused); ${procs.files.length} distinct mapped files${procs.unresolved.length ? `, ${procs.unresolved.length} that could not be opened` : ''}`];
  for (const f of r.files) {
    if (f.verdicts[mode].outcome === 'ok' && (f.class === 'clean' || f.class === 'data-ref')) continue;
    const m = byPath.get(f.path);
    if (!m) continue;
    const who = m.processes.slice(0, 8).map((p) => `${p.pid} (${p.comm})`).join(', ');
    lines.push(`  ${m.path}: ${f.class}, ${f.verdicts[mode].outcome} under ${mode} — used by ${who}${m.processes.length > 8 ? `, … ${m.processes.length - 8} more` : ''}`);
  }
  return lines.join('\n') + '\n';
}
