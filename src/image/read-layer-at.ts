// One layer stored uncompressed in a local file, read by position: its tar headers walked where they
// lie (tar-index.ts), a body read only when it is an ELF file or a text the report keeps, large ELF
// files analysed on worker threads when there are some. The same result as the streamed reader.
import { VsysError } from '../errors.js';
import { analyseBytes } from '../scan/analyse-file.js';
import { isElf } from '../elf/read-elf.js';
import { analyseRange, SPARSE_MIN } from '../scan/read-file.js';
import { walkTar, WINDOW } from './tar-index.js';

import { LayerBuilder, type FileNode, type LayerLimits, type LayerResult } from './layer-builder.js';

/** A layer stored uncompressed at [start, start + size) of an open file (a docker-archive, an OCI blob). */
export interface LayerFile {
  fd: number;
  path: string;
  start: number;
  size: number;
}

/** ELF entries sent to `analyseAt` at a time: a batch ends at this many bytes or files. */
const BATCH_BYTES = 8 * 1024 * 1024;
const BATCH_FILES = 64;
/** …or, while it holds small files only (given to workers running dry), at these: they get work soon. */
const SMALL_BATCH_BYTES = 2 * 1024 * 1024;
const SMALL_BATCH_FILES = 24;
/** The walk gives the event loop a turn this often (progress, other images, Ctrl-C). */
const YIELD_MS = 50;
/** …and this often while worker threads take batches: their answers come in on those turns. */
const YIELD_WORKERS_MS = 5;

/**
 * The same result as readLayer for a layer that is a plain tar inside a file, read by position
 * (tar-index.ts): a body is read only when it is an ELF file or a text the report keeps, and an ELF
 * file's bytes only by its analysis (large ones sparsely, as a scan of a directory reads them), so
 * the layer is never copied through stream chunks. The layer's bytes are its size: the cap applies
 * before anything is read.
 */
export async function readLayerAt(file: LayerFile, what: string, limits: LayerLimits): Promise<LayerResult> {
  if (file.size > limits.maxLayerBytes) throw new VsysError('IMAGE_TOO_LARGE', `${what} expands past ${limits.maxLayerBytes} bytes (--max-layer-size); stopped there`);
  const { fd, start, size } = file;
  // Elsewhere only from the layer size on that pays for it; else here.
  const analyseAt = size >= (limits.analyseAtFrom ?? 0) ? limits.analyseAt : undefined;
  const b = new LayerBuilder(what, limits);
  const jobs: Promise<void>[] = [];
  // Large ELF files go to the worker threads in batches; small ones are analysed here from the
  // window, unless the workers are running dry: then they take small ones too (they read them
  // again, which costs them less than the analysis saves this thread). The workers are kept `depth`
  // batches ahead; what is left when the walk ends, this thread takes too, from the back of the queue.
  type Job = { base: number; size: number; name: string; node: FileNode };
  const depth = limits.inflight ?? 4;
  const queued: Job[][] = [];
  let given = 0;
  let batch: Job[] = [];
  let batchBytes = 0;
  /** The open batch holds a large file (it closes at BATCH_*, else at SMALL_BATCH_*). */
  let batchLarge = false;
  const give = (sent: Job[]) => {
    given++;
    // Workers read through this descriptor (Inner.fd): the file being scanned, even if its path is
    // given to another meanwhile (a new `docker save -o`).
    jobs.push((analyseAt as NonNullable<typeof analyseAt>)(file.path, sent.map(({ base, size, name }) => ({ base, size, name, fd }))).then((results) => {
      results.forEach((r, i) => {
        const f = sent[i] as Job;
        if (r.kind === 'elf') b.analysed(f.node, r.report);
        else if (r.kind === 'error') b.problem(f.name, r.error);
      });
    }, (e) => {
      for (const f of sent) b.failed(f.name, e);
    }).finally(() => {
      given--;
      pump();
    }));
  };
  const ready = () => limits.workersReady?.() ?? true;
  const pump = () => {
    while (given < depth && queued.length > 0 && ready()) give(queued.shift() as Job[]);
  };
  if (analyseAt) ready(); // starts them, if not yet, while the walk begins
  const close = () => {
    if (batch.length === 0) return;
    queued.push(batch);
    batch = [];
    batchBytes = 0;
    batchLarge = false;
    pump();
  };
  const add = (f: Job, large: boolean) => {
    batch.push(f);
    batchBytes += f.size;
    batchLarge ||= large;
    if (batchLarge ? batchBytes >= BATCH_BYTES || batch.length >= BATCH_FILES : batchBytes >= SMALL_BATCH_BYTES || batch.length >= SMALL_BATCH_FILES) close();
  };
  /** Workers that have loaded and would take another batch now: nothing is waiting for them. */
  const dry = () => analyseAt !== undefined && given + queued.length < depth && ready();
  const here = (f: Job) => b.analyse(f.node, f.name, () => analyseRange(fd, f.base, f.size, f.name));
  // With workers, the walk lets their answers in often, so they are never left without a batch.
  const yieldMs = analyseAt ? YIELD_WORKERS_MS : YIELD_MS;
  let turn = performance.now();
  const walked = walkTar(fd, start, start + size, what, (e, w) => {
    const name = b.entry(e.name, e.type, e.linkname);
    if (name !== undefined) {
      const node = b.file(name, e.size);
      // A small body comes with the window (read once, analysed in place); a big one is only peeked
      // at, and read by its analysis, on a worker thread when there are some.
      const small = e.size < SPARSE_MIN;
      const head = small ? w.at(e.dataAt, e.size) : w.peek(e.dataAt, 4);
      if (small && head.length < e.size) throw new VsysError('IMAGE_BAD_LAYER', `${what}: ${name} is cut short (truncated?)`);
      // As the streaming reader: ELF first (an ELF file at a kept text's path is analysed), then texts.
      if (isElf(head) && b.admitsElf(name, e.size)) {
        if (small && !dry()) b.analyse(node, name, () => analyseBytes(head, name));
        else if (analyseAt) add({ base: e.dataAt, size: e.size, name, node }, !small);
        else here({ base: e.dataAt, size: e.size, name, node });
      } else {
        if (small && LayerBuilder.keepsText(name, e.size)) node.text = head.toString('utf8');
        const interp = small ? LayerBuilder.shebang(head) : undefined;
        if (interp) node.interpreter = interp;
      }
    }
    const now = performance.now();
    if (now - turn < yieldMs) return undefined;
    limits.onBytes?.(e.dataAt + e.size - start, size);
    return new Promise<void>((r) => setImmediate(() => {
      turn = performance.now();
      r();
    }));
  }, WINDOW);
  try {
    await walked;
    close();
    // This thread helps with what the workers have not started, a batch per turn so their answers
    // (and the next batches given to them) come in between.
    for (let last = queued.pop(); last !== undefined; last = queued.pop()) {
      for (const f of last) here(f);
      await new Promise<void>((r) => setImmediate(r));
      pump(); // a worker that has become ready meanwhile
    }
  } finally {
    // Even when the walk failed: threads read through `fd`, which the caller closes once this returns.
    await Promise.allSettled(jobs); // each job handles its own failure: none rejects
  }
  limits.onBytes?.(size, size);
  b.result.bytes = size;
  return b.result;
}

