// `vsys scan`'s long work: the images and paths read with progress on a terminal and Ctrl-C
// reporting what was done, and --run-entrypoint's runs.
import type { ImageReport } from '../image/analyse-image.js';
import type { ImageError, ImageScanOptions } from '../image/scan-image.js';
import type { LayerProgress } from '../image/sources.js';
import { scanPaths, type ScanOptions, type ScanProgress, type ScanResult } from '../scan/scan.js';
import { EXIT, type Io } from './io.js';

export function progressBar(io: Io): ((p: ScanProgress) => void) | undefined {
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

/**
 * --run-entrypoint: each image's entrypoint run as a vsyscall=none kernel would run it (vsys run),
 * its own output discarded, stopped after `timeoutS`; the result kept on the entrypoint.
 */
export async function confirmEntrypoints(images: ImageReport[], timeoutS: number, io: Io, registry: { creds?: string; insecure?: boolean }, verify: boolean): Promise<void> {
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

export interface Scans {
  result: ScanResult;
  imageScan: { images: ImageReport[]; errors: ImageError[] };
  interrupted: boolean;
}

/**
 * The images, then the paths, with progress on a terminal. Ctrl-C stops reading: what was judged
 * is reported (the images done, the files read) and the run exits 130; a second Ctrl-C ends at once.
 */
export async function runScans(io: Io, imageRefs: string[], paths: string[], imageOpts: ImageScanOptions, pathOpts: Omit<ScanOptions, 'paths'>): Promise<Scans> {
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

/** One line on stderr, redrawn at most 10 times a second: "IMAGE: layer 2/5 sha256:abcd… 340/1091 MB". */
export function imageProgress(io: Io): (ref: string, p: LayerProgress) => void {
  let last = 0;
  return (ref, p) => {
    const now = performance.now();
    if (now - last < 100 && p.done !== p.total) return;
    last = now;
    const mb = (n: number) => (n / 1e6).toFixed(0);
    io.stderr.write(`\r\x1b[2K${ref}: layer ${p.index + 1}/${p.layers} ${p.key.slice(0, 19)} ${mb(p.done)}${p.total === undefined ? '' : `/${mb(p.total)}`} MB`);
  };
}

