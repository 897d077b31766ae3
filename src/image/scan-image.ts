// `vsys scan` for container images: each reference (archive, oci:DIR, registry://) resolved to its
// images, layers applied in order to an in-memory filesystem, the result analysed; several images
// at once with a bound, identical layers analysed once.
import fs from 'node:fs';
import { VsysError } from '../errors.js';
import os from 'node:os';
import { defaultWorkers, sharedPool } from '../scan/pool.js';
import { tuneAllocatorForStreaming } from '../native/libc.js';
import type { SlowdownFor } from '../scan/verdict.js';
import { analyseImage, type ImageReport } from './analyse-image.js';
import { ImageFs } from './image-fs.js';
import type { LayerResult } from './layer-builder.js';
import type { LayerCache } from './layer-cache.js';
import { readRegistry } from './registry.js';
import { readArchive, readOciDir, type LayerProgress, type ResolvedImage, type SourceOptions } from './sources.js';
import type { FileReport } from '../scan/types.js';

export interface ImageScanOptions {
  maxLayerBytes?: number;
  maxImageBytes?: number;
  maxFileBytes?: number;
  /** Entries a layer may hold (default MAX_ENTRIES, 500,000): each is kept in memory. */
  maxLayerEntries?: number;
  /** Entries all layers of an image may hold together (default MAX_IMAGE_ENTRIES, 1,000,000). */
  maxImageEntries?: number;
  concurrency?: number;
  /**
   * Worker threads for ELF analysis beside this thread (default: imageWorkers(), on two cores only
   * for plain layers of 128 MiB and more; 0 = this thread alone).
   */
  workers?: number;
  insecure?: boolean;
  creds?: string;
  /**
   * Check every blob against its descriptor's size and digest and every layer against its diff_id
   * (default true). False trusts the image's claims: the caller should say so.
   */
  verify?: boolean;
  slowdown?: SlowdownFor;
  onLayer?: (ref: string, key: string, bytes: number) => void;
  /** Keep every ELF file's record, clean ones too. */
  all?: boolean;
  /** Each image's report, and each reference's error, as soon as it is known (an interrupted run reports these). */
  onImage?: (img: ImageReport) => void;
  onImageError?: (e: ImageError) => void;
  /** A reference finished: its images and errors (after their onImage and onImageError calls). */
  onRefDone?: (ref: string, images: ImageReport[], errors: ImageError[]) => void;
  /** Layers already analysed: shared between calls, and bounded (default: a map for this call alone). */
  cache?: LayerCache;
  /** Progress inside an image's layers, now and then. */
  onProgress?: (ref: string, p: LayerProgress) => void;
}

/** Is this argument an image reference rather than a path to walk? */
export function isImageRef(arg: string): boolean {
  if (arg.startsWith('oci:') || arg.startsWith('registry://')) return true;
  try {
    const st = fs.statSync(arg);
    if (!st.isFile() || st.size < 4) return false;
    const fd = fs.openSync(arg, 'r');
    try {
      const b = Buffer.alloc(8);
      // A compressed archive (docker save | gzip): taken as an image so that it is refused by name
      // (IMAGE_COMPRESSED_ARCHIVE), not walked as a file that is not ELF and passed over.
      fs.readSync(fd, b, 0, 4, 0);
      if (compressedMagic(b) !== undefined) return true;
      if (st.size < 1024) return false;
      fs.readSync(fd, b, 0, 8, 257);
      return b.toString('latin1', 0, 5) === 'ustar';
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** gzip (1f 8b) or zstd (28 b5 2f fd) magic at the start of a file. */
export function compressedMagic(head: Uint8Array): 'gzip' | 'zstd' | undefined {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return undefined;
}

/** Worker threads for image scans: as for directories (defaultWorkers), and one on two cores too. */
export function imageWorkers(): number {
  return defaultWorkers() || (os.availableParallelism() >= 2 ? 1 : 0);
}

/**
 * On two cores, the smallest plain layer a worker is started for by default. It takes work only
 * once its code has loaded (this thread never waits for it to start): the large ELF files, and small
 * ones when it runs dry. Below this size its start-up and compilation cost more than it saves
 * (bench/README.md, "Figures behind the code").
 */
const TWO_CORE_WORKER_FROM = 128 * 1024 ** 2;

export interface ImageError {
  ref: string;
  code: string;
  message: string;
}

export async function scanImageRefs(refs: string[], o: ImageScanOptions = {}): Promise<{ images: ImageReport[]; errors: ImageError[] }> {
  tuneAllocatorForStreaming();
  const cache = o.cache ?? new Map<string, Promise<LayerResult>>();
  // ELF files out of the layers are analysed on worker threads as well as here. A layer stored
  // plainly in a file costs a worker nothing to reach (it reads its share by position), so one
  // pays even on two cores. A streamed layer's files must be copied to a worker: on two cores the
  // copies cost what the worker saves (bench/image.mjs), so there they stay here.
  const workers = o.workers ?? imageWorkers();
  const streamedToWorkers = o.workers !== undefined ? workers > 0 : defaultWorkers() > 0;
  const maxFileBytes = o.maxFileBytes ?? 512 * 1024 ** 2;
  const pool = sharedPool(workers, maxFileBytes);
  const analyse = async (bytes: Buffer, p: string): Promise<FileReport | undefined> => {
    const r = await pool.analyseBytes(p, bytes);
    if (r.kind === 'elf') return r.report;
    if (r.kind === 'error') throw new VsysError(r.error.code as never, r.error.message);
    return undefined;
  };
  const workerFrom = o.workers === undefined && os.availableParallelism() <= 2 ? TWO_CORE_WORKER_FROM : 0;
  const analyseAt = (file: string, entries: { base: number; size: number; name: string; fd: number }[]) =>
    pool.analyseFiles(entries.map((e) => ({ path: file, size: e.size, inner: { base: e.base, name: e.name, fd: e.fd } })), { workersOnly: true });
  const images: ImageReport[] = [];
  const errors: ImageError[] = [];
  const one = async (ref: string): Promise<void> => {
    const so: SourceOptions = {
      limits: { maxLayerBytes: o.maxLayerBytes ?? 8 * 1024 ** 3, maxFileBytes, ...(o.verify !== false ? { verify: true } : {}), ...(o.maxLayerEntries !== undefined ? { maxEntries: o.maxLayerEntries } : {}), ...(streamedToWorkers ? { analyse } : {}), ...(workers > 0 ? { analyseAt, analyseAtFrom: workerFrom, workersReady: () => pool.readyWorkers() > 0, inflight: (workers + 1) * 2 } : {}) },
      maxImageBytes: o.maxImageBytes ?? 32 * 1024 ** 3,
      ...(o.maxImageEntries !== undefined ? { maxImageEntries: o.maxImageEntries } : {}),
      cache,
      onLayer: (key, bytes) => o.onLayer?.(ref, key, bytes),
      ...(o.onProgress ? { onProgress: (p: LayerProgress) => o.onProgress?.(ref, p) } : {}),
    };
    const mine: ImageReport[] = [];
    const myErrors: ImageError[] = [];
    try {
      let resolved: ResolvedImage[];
      if (ref.startsWith('registry://')) resolved = await readRegistry(ref, { ...so, ...(o.insecure ? { insecure: true } : {}), ...(o.creds ? { creds: o.creds } : {}) });
      else if (ref.startsWith('oci:')) resolved = await readOciDir(ref.slice(4), so);
      else resolved = await readArchive(ref, so);
      for (const img of resolved) {
        const ifs = new ImageFs();
        img.layers.forEach((l, i) => ifs.apply(l.result.ops, i));
        const problems = img.layers.flatMap((l) => l.result.problems);
        const report = analyseImage(ifs, {
          ref: img.ref, input: ref, source: img.source, ...(img.digest ? { digest: img.digest } : {}), ...(img.tagDigest ? { tagDigest: img.tagDigest } : {}), platform: img.platform,
          ...(img.skippedPlatforms.length ? { skippedPlatforms: img.skippedPlatforms } : {}),
          layers: img.layers.map((l) => ({ digest: l.key, bytes: l.result.bytes, files: l.result.files, elfFiles: l.result.elfFiles, cached: l.cached })),
          problems,
        }, o.slowdown, { ...(o.all ? { all: true } : {}), ...(img.run ? { run: img.run } : {}) });
        images.push(report);
        mine.push(report);
        o.onImage?.(report);
      }
    } catch (e) {
      const err = e instanceof VsysError ? { ref, code: e.code, message: e.message } : { ref, code: 'INTERNAL_ERROR', message: (e as Error).stack ?? String(e) };
      errors.push(err);
      myErrors.push(err);
      o.onImageError?.(err);
    }
    o.onRefDone?.(ref, mine, myErrors);
  };
  const limit = Math.max(1, o.concurrency ?? 2);
  const queue = [...refs];
  try {
    await Promise.all(Array.from({ length: Math.min(limit, queue.length) }, async () => {
      for (let r = queue.shift(); r !== undefined; r = queue.shift()) await one(r);
    }));
  } finally {
    await pool.close();
  }
  return { images, errors };
}
