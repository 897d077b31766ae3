// `vsys fix IMAGE`: the image read as stored (read-image.ts) and analysed as the scan does (layers
// applied with whiteouts); every ELF file of the final filesystem with a direct call of its own is
// read back out of the layer that brought it, with its whole tar header, and rewritten (fixBytes);
// the rewritten files go into ONE added layer, with their headers but the size, and the image is
// written anew: the original layers byte for byte, the config's diff_ids and history extended, a
// new manifest (write-image.ts), as an archive and/or pushed (push.ts). The fixed image is analysed
// again, so the report says which programs a patched libc fixes and what still crashes.
import { Readable } from 'node:stream';
import fs from 'node:fs';
import os from 'node:os';
import zlib from 'node:zlib';
import { VsysError } from '../errors.js';
import { defaultWorkers, sharedPool } from '../scan/pool.js';
import type { Outcome } from '../scan/verdict.js';
import { analyseImage, type ImageReport } from '../image/analyse-image.js';
import { ImageFs } from '../image/image-fs.js';
import { readLayer, zstdStream } from '../image/read-layer.js';
import type { LayerLimits, LayerResult } from '../image/layer-builder.js';
import { compressionOf, dispose, readSourceImage, type SourceImage } from '../image/read-image.js';
import { collectLayers, layerInFile } from '../image/sources.js';
import { readEntriesAt, readEntriesStream, TarWriter, type ReadEntry } from '../image/tar-entries.js';
import { composeImage, writeImageArchive, type ArchiveFormat, type ImageToWrite } from '../image/write-image.js';
import { pushImage, type PushResult } from '../image/push.js';
import type { RegistryOptions } from '../image/registry.js';
import { fixBytes, type FileFixReport } from './fix-bytes.js';
import type { OutcomeChange } from './fix-files.js';
import type { FileReport } from '../scan/types.js';
import { callsThePage } from '../model/site-kinds.js';

export interface FixImageOptions extends RegistryOptions {
  /** -o: the archive to write. */
  output?: string;
  /** Archive format (default: docker for a docker-archive input, else oci). */
  format?: ArchiveFormat;
  /** NAME:TAG for the archive (default: the input's own name, if any). */
  tag?: string;
  /** registry://HOST/REPO:TAG to push the fixed image to. */
  push?: string;
  dryRun?: boolean;
  /** Worker threads for the analysis (default: as scan). */
  workers?: number;
  maxFileBytes?: number;
  /** RFC 3339 time recorded for the added layer (default: SOURCE_DATE_EPOCH, else now). */
  created?: string;
}

export interface FixImageRun {
  image: { ref: string; source: SourceImage['source']; platform: string; layers: number; configDigest: string };
  files: FileFixReport[];
  /** Paths in the added layer: the rewritten files, and hard links to them. */
  added: { path: string; mode: number; uid: number; gid: number; size: number; layer: number }[];
  links: { path: string; target: string }[];
  changes: OutcomeChange[];
  stillCrash: { path: string; why: string }[];
  unjudged: { path: string; code: string; message: string }[];
  /** The new image (undefined for --dry-run): its added layer, config and manifest. */
  result?: { layer?: { digest: string; size: number }; configDigest: string; manifestDigest: string; layers: string[]; diffIds: string[] };
  output?: { path: string; format: ArchiveFormat; name?: string };
  pushed?: PushResult;
}

/** Files worth rewriting: a direct (or indirect, or misaligned) call of their own; as for directories. */
function wantsFix(r: FileReport): boolean {
  return !r.error && r.findings.some((x) => callsThePage(x.kind));
}

function createdNow(o: FixImageOptions): string {
  if (o.created) return o.created;
  const epoch = process.env.SOURCE_DATE_EPOCH;
  const d = epoch && /^\d+$/.test(epoch) ? new Date(Number(epoch) * 1000) : new Date();
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** The layers analysed as the scan analyses them (workers for the big plain ones), applied in order. */
async function analyseLayers(src: SourceImage, o: FixImageOptions): Promise<LayerResult[]> {
  const workers = o.workers ?? (defaultWorkers() || (os.availableParallelism() >= 2 ? 1 : 0));
  const maxFileBytes = o.maxFileBytes ?? 512 * 1024 ** 2;
  const pool = sharedPool(workers, maxFileBytes);
  const limits: LayerLimits = {
    maxLayerBytes: 8 * 1024 ** 3, maxFileBytes,
    ...(workers > 0 ? {
      analyseAt: (file: string, entries: { base: number; size: number; name: string; fd: number }[]) => pool.analyseFiles(entries.map((e) => ({ path: file, size: e.size, inner: { base: e.base, name: e.name, fd: e.fd } })), { workersOnly: true }),
      workersReady: () => pool.readyWorkers() > 0, inflight: (workers + 1) * 2,
    } : {}),
  };
  const byDigest = new Map(src.layers.map((l) => [l.digest, l]));
  const layers = await collectLayers(src.layers.map((l) => l.digest), async (digest, what, lim) => {
    const b = (byDigest.get(digest) as SourceImage['layers'][number]).blob;
    const fd = fs.openSync(b.file, 'r');
    try {
      return await layerInFile(b.file, fd, b.start, b.size, what, lim);
    } finally {
      fs.closeSync(fd);
    }
  }, src.ref, { limits, maxImageBytes: 32 * 1024 ** 3, cache: new Map() });
  return layers.map((l) => l.result);
}

function imageFsOf(layers: readonly LayerResult[]): ImageFs {
  const f = new ImageFs();
  layers.forEach((l, i) => f.apply(l.ops, i));
  return f;
}

function report(src: SourceImage, layers: readonly LayerResult[]): ImageReport {
  return analyseImage(imageFsOf(layers), {
    ref: src.ref, source: src.source, platform: src.platform,
    layers: layers.map((l, i) => ({ digest: src.layers[i]?.digest ?? 'sha256:added', bytes: l.bytes, files: l.files, elfFiles: l.elfFiles, cached: false })),
    problems: layers.flatMap((l) => l.problems),
  });
}

/** The entries at `paths` out of layer `index`, with whole headers: by position when plain, else streamed. */
async function entriesOf(src: SourceImage, index: number, paths: ReadonlySet<string>): Promise<Map<string, ReadEntry>> {
  const l = src.layers[index] as SourceImage['layers'][number];
  const what = `${src.ref} ${l.digest.slice(0, 19)}`;
  const kind = compressionOf(l.blob);
  if (kind === 'none') {
    const fd = fs.openSync(l.blob.file, 'r');
    try {
      return await readEntriesAt(fd, l.blob.start, l.blob.size, paths, what);
    } finally {
      fs.closeSync(fd);
    }
  }
  const raw = fs.createReadStream(l.blob.file, { start: l.blob.start, end: l.blob.start + l.blob.size - 1 });
  return readEntriesStream(raw.pipe(kind === 'gzip' ? zlib.createGunzip() : zstdStream()), paths, what);
}

/** Which names go into the added layer: each rewritten file, and the hard links that name it. */
function linksTo(fsys: ImageFs, paths: ReadonlySet<string>): Map<string, { target: string; layer: number }> {
  const out = new Map<string, { target: string; layer: number }>();
  for (const [p, n] of fsys.hardlinks()) {
    const t = fsys.resolve(p);
    if (t !== undefined && paths.has(t)) out.set(p, { target: t, layer: n.layer });
  }
  return out;
}

function describe(paths: string[]): string {
  const shown = paths.slice(0, 6).join(', ');
  return paths.length > 6 ? `${shown}, … ${paths.length - 6} more` : shown;
}

/** Outcome changes under none between the image and its fixed version, and what still crashes. */
function compare(before: ImageReport, after: ImageReport, patched: ReadonlySet<string>): Pick<FixImageRun, 'changes' | 'stillCrash'> {
  const was = new Map(before.files.map((f) => [f.path, f.verdicts.none.outcome]));
  const changes: OutcomeChange[] = [];
  const stillCrash: FixImageRun['stillCrash'] = [];
  for (const f of after.files) {
    const now: Outcome = f.verdicts.none.outcome;
    if (now === 'crash') stillCrash.push({ path: f.path, why: f.verdicts.none.why });
    const old = was.get(f.path);
    if (old !== undefined && old !== now) changes.push({ path: f.path, before: old, after: now, how: patched.has(f.path) ? 'own-sites' : 'through-library' });
  }
  // Files that were affected and are no longer listed at all (clean now).
  const listed = new Set(after.files.map((f) => f.path));
  for (const f of before.files) {
    if (!listed.has(f.path) && f.verdicts.none.outcome !== 'ok') changes.push({ path: f.path, before: f.verdicts.none.outcome, after: 'ok', how: patched.has(f.path) ? 'own-sites' : 'through-library' });
  }
  changes.sort((a, b) => (a.path < b.path ? -1 : 1));
  return { changes, stillCrash };
}

/** The added layer's tar: each rewritten file with its original header (size aside), then the hard links to it. */
function buildLayer(patched: { path: string; entry: ReadEntry; output: Uint8Array }[], links: { path: string; entry: ReadEntry; target: string }[]): Buffer {
  const w = new TarWriter();
  const names = new Map<string, string>();
  for (const p of patched) {
    w.add({ ...p.entry.header, type: 'file', size: p.output.length }, p.output);
    names.set(p.path, p.entry.header.name);
  }
  for (const l of links) w.add({ ...l.entry.header, type: 'link', size: 0, linkname: names.get(l.target) ?? l.target.slice(1) });
  w.end();
  return Buffer.concat(w.chunks);
}

/** Fixes one image: see the top of this file. Nothing is written when any step fails. */
export async function fixImage(ref: string, o: FixImageOptions = {}): Promise<FixImageRun> {
  if (!o.dryRun && o.output === undefined && o.push === undefined) throw new VsysError('USAGE', 'fix: an image needs -o OUT.tar, --push registry://HOST/REPO:TAG or --dry-run');
  const src = await readSourceImage(ref, o);
  try {
    const layers = await analyseLayers(src, o);
    const fsys = imageFsOf(layers);
    const problems = layers.flatMap((l) => l.problems);
    const run: FixImageRun = {
      image: { ref: src.ref, source: src.source, platform: src.platform, layers: src.layers.length, configDigest: src.config.digest },
      files: [], added: [], links: [], changes: [], stillCrash: [], unjudged: problems.filter((p) => p.code !== 'LIBRARY_NOT_FOUND'),
    };
    // Step 1: the files to rewrite, grouped by the layer that brought them (with hard links to them).
    const todo = [...fsys.files()].filter(([, n]) => n.report && wantsFix(n.report)).map(([p, n]) => ({ path: p, layer: n.layer }));
    const links = linksTo(fsys, new Set(todo.map((t) => t.path)));
    const byLayer = new Map<number, Set<string>>();
    for (const { path: p, layer } of [...todo, ...[...links].map(([p, l]) => ({ path: p, layer: l.layer }))]) {
      let s = byLayer.get(layer);
      if (!s) byLayer.set(layer, (s = new Set()));
      s.add(p);
    }
    // Step 2: their bytes and headers, read back out of those layers; each rewritten and verified.
    const entries = new Map<string, ReadEntry>();
    for (const [layer, paths] of [...byLayer].sort((a, b) => a[0] - b[0])) {
      for (const [p, e] of await entriesOf(src, layer, paths)) entries.set(p, e);
    }
    const patched: { path: string; entry: ReadEntry; output: Uint8Array }[] = [];
    for (const t of todo) {
      const entry = entries.get(t.path);
      if (!entry) {
        run.unjudged.push({ path: t.path, code: 'IMAGE_BAD_LAYER', message: `${src.ref}: ${t.path} was not found again in layer ${t.layer}` });
        continue;
      }
      const fixed = fixBytes(entry.bytes, t.path);
      run.files.push(fixed.report);
      if (fixed.report.error) run.unjudged.push({ path: t.path, code: fixed.report.error.code, message: fixed.report.error.message });
      if (fixed.output) {
        patched.push({ path: t.path, entry, output: fixed.output });
        run.added.push({ path: t.path, mode: entry.header.mode, uid: entry.header.uid, gid: entry.header.gid, size: fixed.output.length, layer: t.layer });
      }
    }
    const patchedPaths = new Set(patched.map((p) => p.path));
    const linkEntries = [...links].filter(([, l]) => patchedPaths.has(l.target) && entries.has(l.target)).flatMap(([p, l]) => {
      const entry = entries.get(p);
      return entry ? [{ path: p, entry, target: l.target }] : [];
    });
    run.links = linkEntries.map((l) => ({ path: l.path, target: l.target }));
    // Step 3: the layer, and the image's outcome with it on top.
    const tar = patched.length > 0 ? buildLayer(patched, linkEntries) : undefined;
    const added = tar ? await readLayer(Readable.from([tar]), `${src.ref} (the added layer)`, { maxLayerBytes: tar.length, maxFileBytes: tar.length }) : undefined;
    Object.assign(run, compare(report(src, layers), report(src, added ? [...layers, added] : layers), patchedPaths));
    if (o.dryRun) return run;
    // Step 4: the new image, written and/or pushed.
    const layerNote = tar ? { tar, created: createdNow(o), createdBy: `vsys fix: patched ${patched.length} file${patched.length === 1 ? '' : 's'} (${describe(patched.map((p) => p.path))})` } : undefined;
    const archiveImg: ImageToWrite = composeImage(src, layerNote, 'oci');
    const shown = archiveImg;
    if (o.output !== undefined) {
      const format = o.format ?? (src.source === 'docker-archive' ? 'docker' : 'oci');
      const name = o.tag ?? src.names[0];
      writeImageArchive(o.output, archiveImg, format, name);
      run.output = { path: o.output, format, ...(name ? { name } : {}) };
    }
    if (o.push !== undefined) {
      const pushImg = composeImage(src, layerNote, src.family);
      run.pushed = await pushImage(o.push, pushImg, o);
    }
    run.result = {
      ...(tar ? { layer: { digest: shown.layers.at(-1)?.digest as string, size: tar.length } } : {}),
      configDigest: shown.config.digest, manifestDigest: shown.manifest.digest,
      layers: shown.layers.map((l) => l.digest), diffIds: shown.layers.map((l) => l.diffId),
    };
    return run;
  } finally {
    dispose(src);
  }
}
