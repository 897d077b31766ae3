// `vsys scan`: arguments, progress on stderr, text / NDJSON / SARIF out, exit code from --fail-on.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { isVsyscallMode, type VsyscallMode } from '../model/modes.js';
import { OUTCOME_RANK, type Outcome, type SlowdownFor } from '../scan/verdict.js';
import { scanPaths, type ScanResult } from '../scan/scan.js';
import type { ImageReport } from '../image/analyse-image.js';
import type { ImageScanOptions } from '../image/scan-image.js';
import { VsysError } from '../errors.js';
import { mappedFiles } from '../scan/processes.js';
import { formatSarif, formatScanText } from './format-scan.js';
import { jsonRecords } from './scan-json.js';
import { unjudgedOf, type Unjudged } from './scan-records.js';
import { EXIT, numberOption, toJson, usageError, type Io, type Command } from './io.js';
import { VSYS_VERSION } from '../version.js';
import { confirmEntrypoints, runScans, type Scans } from './scan-run.js';
import { BoundedLayerCache } from '../image/layer-cache.js';
import { prepareImageRefs, repoGlobs, sortErrors, sortImages } from './scan-registry.js';

const HELP = `usage: vsys scan [OPTIONS] PATH|IMAGE...
       vsys scan --processes [OPTIONS]
       vsys scan [OPTIONS] registry://HOST[:PORT] [--repos GLOB] [--shard K/N] [--state FILE]
       vsys scan --merge [OPTIONS] STATE-FILE...

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
  --repos GLOB         with registry://HOST: only repositories matching GLOB
                       (repeat or comma-separate; 'team-a/*', '**/base')
  --shard K/N          with registry://HOST: only this shard's share of the catalog
                       (whole repositories, by a hash of the name: stable across
                       runs; K from 0, as a Kubernetes Indexed Job's index)
  --state FILE         record each image judged in FILE (NDJSON) as it finishes; run
                       again with the same FILE, a stopped scan goes on where it
                       stopped (images that failed are tried again)
  --merge              report the --state FILEs of several runs (the shards of one
                       registry) as one run; scans nothing
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
  vsys scan --mode none registry://registry.internal:5000 --repos 'legacy/*' --state scan.ndjson
  vsys scan registry://registry.internal:5000 --shard 2/8 --state shard-2.ndjson  # one of 8
  vsys scan --merge --mode none --fail-on crash shard-*.ndjson   # the 8 as one report

A whole registry (registry://HOST with no repository) is read through its catalog
(/v2/_catalog and each /v2/NAME/tags/list, page by page): every tag is scanned, a
layer shared by several images analysed once, --concurrency images at a time,
one line per image on stderr. deploy/kubernetes/registry-scan-job.yaml runs the
shards as an Indexed Job.
`;

async function hostMode(): Promise<{ mode: VsyscallMode; source: string }> {
  const { detectVsyscallMode } = await import('../host/vsyscall-mode.js');
  const { readKconfig } = await import('../host/kconfig.js');
  const release = (await import('node:os')).release();
  const r = await detectVsyscallMode({ active: false, kconfig: readKconfig(release), kernelRelease: release });
  if (r.mode === 'unknown') return { mode: 'none', source: 'host mode unknown; assuming none, the strictest' };
  return { mode: r.mode, source: `this host, from ${r.decidedBy}` };
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
      repos: { type: 'string', multiple: true },
      shard: { type: 'string' },
      state: { type: 'string' },
      merge: { type: 'boolean' },
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
  if (values.merge) checkMergeArgs(values, positionals);
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

type Parsed = Exclude<ReturnType<typeof parseScanArgs>, 'help'>;

export const scanCommand: Command = {
  summary: 'find vsyscall call sites in ELF files and directories, and what happens in each mode',
  async run(args, io) {
    const parsed = parseScanArgs(args);
    if (parsed === 'help') {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    const { values, modeArg } = parsed;
    const { mode, source } = modeArg === 'host' ? await hostMode() : { mode: modeArg as VsyscallMode, source: 'chosen with --mode' };
    const { hostSlowdowns, loadHostFigures } = await import('../bench/host-figures.js');
    const { seedSlowdowns } = await import('../scan/verdict.js');
    if (values.sarif !== undefined) checkWritable(values.sarif);
    const slowdown = hostSlowdowns(loadHostFigures(), seedSlowdowns);
    const scans = values.merge ? await mergedScans(parsed.positionals) : await scanInputs(io, parsed, slowdown, mode);
    const { result, imageScan, procs } = scans;
    const unjudged = [...unjudgedOf(result, imageScan.images, imageScan.errors), ...(procs ? processesUnjudged(procs) : [])];
    const exit = exitStatus(scans.interrupted, parsed.failOn as Outcome | undefined, mode, result, imageScan.images, unjudged);
    const warnings = [...result.warnings, ...scans.warnings];
    for (const w of warnings) io.stderr.write(`vsys: warning: ${w}\n`);

    const shared = { result, images: imageScan.images, imageErrors: imageScan.errors, unjudged, mode, modeSource: source, all: values.all ?? false, slow: slowdown, warnings, showPaths: scans.showPaths };
    if (values.json) {
      for (const line of jsonRecords({ ...shared, exit })) io.stdout.write(toJson(line, 0) + '\n');
    } else {
      io.stdout.write(formatScanText(shared));
      if (procs) io.stdout.write(formatProcesses(result, procs, mode));
    }
    // After stdout: a SARIF file that cannot be written loses no result.
    if (values.sarif) writeSarif(values.sarif, formatSarif(result, mode, VSYS_VERSION, imageScan.images, unjudged, slowdown));
    if (values.sarif && !values.json) io.stderr.write(`SARIF written to ${values.sarif}\n`);
    if (scans.interrupted && scans.images) {
      // Images still being read would keep the process alive: end once the report is out.
      if (io.stdout === process.stdout) await new Promise((resolve) => process.stdout.write('', resolve));
      process.exit(exit);
    }
    return exit;
  },
};

interface AllScans extends Scans {
  procs?: ReturnType<typeof mappedFiles>;
  warnings: string[];
  showPaths: boolean;
  /** Images were asked for. */
  images: boolean;
}

/** --merge FILE…: the state files' images, reported as one run (no paths). */
async function mergedScans(files: string[]): Promise<AllScans> {
  const { mergeStates } = await import('./scan-registry.js');
  const m = await mergeStates(files);
  const result = await scanPaths({ paths: [] });
  return { result, imageScan: { images: m.images, errors: m.errors }, interrupted: false, warnings: m.warnings, showPaths: false, images: true };
}

/** Entries of shared layers a long scan keeps (~100–200 MB, layer-builder.ts' MAX_ENTRIES). */
const LAYER_CACHE_ENTRIES = 500_000;

/** The paths, images, registries (or running processes) named, scanned. */
async function scanInputs(io: Io, parsed: Parsed, slowdown: SlowdownFor, mode: VsyscallMode): Promise<AllScans> {
  const { values, positionals, workers, maxMb } = parsed;
  const { isImageRef } = await import('../image/scan-image.js');
  const imageRefs = positionals.filter(isImageRef);
  let paths = positionals.filter((p) => !imageRefs.includes(p));
  let procs: ReturnType<typeof mappedFiles> | undefined;
  if (values.processes) {
    procs = mappedFiles();
    paths = procs.files.map((f) => f.hostPath);
  }
  const creds = values.creds ?? process.env.VSYS_REGISTRY_CREDS;
  const registry = { ...(creds ? { creds } : {}), ...(values.insecure ? { insecure: true } : {}) };
  const repos = repoGlobs(values.repos);
  const prepared = await prepareImageRefs(io, imageRefs, { ...registry, ...(repos ? { repos } : {}), ...(values.shard !== undefined ? { shard: values.shard } : {}), ...(values.state !== undefined ? { state: values.state } : {}) });
  // A registry or a resumable list: one line per image as it is judged, one order at the end, and
  // a bound on the layers kept for sharing (a registry's would not fit in memory).
  const { long } = prepared;
  let n = prepared.total - prepared.refs.length;
  let scans: Awaited<ReturnType<typeof runScans>>;
  try {
    scans = await runScans(io, prepared.refs, paths, {
      ...imageScanOptions(parsed),
      ...registry,
      slowdown,
      ...(long ? { cache: new BoundedLayerCache(LAYER_CACHE_ENTRIES) } : {}),
      ...(long ? {
        onRefDone: (ref, images, errors) => {
          prepared.writer?.add({ record: 'done', ref, images, errors });
          if (long) io.stderr.write(`vsys: [${++n}/${prepared.total}] ${ref}: ${errors.length ? `not judged (${errors[0]?.code})` : images.map((i) => `${i.verdicts[mode].outcome} under ${mode}`).join(', ')}\n`);
        },
      } satisfies Partial<ImageScanOptions> : {}),
    }, { slowdown, ...(values.root !== undefined ? { root: values.root } : {}), ...(workers !== undefined ? { workers } : {}), ...(maxMb !== undefined ? { maxFileBytes: mb(maxMb) } : {}) });
    if (prepared.writer && !scans.interrupted && !prepared.catalogFailed) prepared.writer.complete();
  } finally {
    // Closed (and unlocked) whatever happened.
    prepared.writer?.close();
  }
  if (prepared.writer?.failed) scans.imageScan.errors.push({ ref: values.state as string, code: 'IO_FAILED', message: `--state ${values.state} could not be written (${prepared.writer.failed}); the images judged after that are in this report only` });
  const { imageScan } = scans;
  imageScan.images.push(...prepared.prior);
  imageScan.errors.unshift(...prepared.errors);
  if (long) {
    sortImages(imageScan.images);
    sortErrors(imageScan.errors);
  }
  if (values['run-entrypoint'] && !scans.interrupted) {
    const timeout = numberOption('scan', 'run-timeout', values['run-timeout'], { positive: 'seconds' }) ?? 10;
    await confirmEntrypoints(imageScan.images, timeout, io, registry, values['no-verify'] !== true);
  }
  const warnings = values['no-verify'] && imageRefs.length > 0 ? ['--no-verify: image blobs were not checked against their digests, sizes and diff_ids; a corrupted or altered image is reported as if it were the image its manifest names'] : [];
  return { ...scans, ...(procs ? { procs } : {}), warnings, showPaths: paths.length > 0 || imageRefs.length === 0, images: imageRefs.length > 0 };
}

/** Megabytes on the command line, as bytes. */
const mb = (n: number): number => Math.floor(n * 1024 * 1024);

/** The image options of the command line (sizes in MB made bytes). */
function imageScanOptions(p: Parsed): ImageScanOptions {
  const { values, workers, maxLayerMb, maxImageMb, maxEntries, maxImageEntries, conc } = p;
  return {
    ...(maxLayerMb !== undefined ? { maxLayerBytes: mb(maxLayerMb) } : {}),
    ...(maxImageMb !== undefined ? { maxImageBytes: mb(maxImageMb) } : {}),
    ...(maxEntries !== undefined ? { maxLayerEntries: maxEntries } : {}),
    ...(maxImageEntries !== undefined ? { maxImageEntries } : {}),
    ...(conc !== undefined ? { concurrency: conc } : {}),
    ...(workers !== undefined ? { workers } : {}),
    ...(values.all ? { all: true } : {}),
    ...(values['no-verify'] ? { verify: false } : {}),
  };
}

/** --merge FILE…: state files and the report's own options, nothing that scans. */
function checkMergeArgs(values: Record<string, unknown>, positionals: string[]): void {
  if (positionals.length === 0) throw usageError('scan: --merge takes the --state files to merge (FILE…)');
  const scanning = ['processes', 'root', 'repos', 'shard', 'state', 'run-entrypoint', 'from', 'creds', 'insecure'].filter((k) => values[k] !== undefined);
  if (scanning.length) throw usageError(`scan: --merge reports what state files hold; it does not scan (drop --${scanning.join(', --')})`);
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
