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

type Job = { base: number; size: number; name: string; node: FileNode };
type AnalyseAt = NonNullable<LayerLimits['analyseAt']>;

/**
 * Large ELF files go to the worker threads in batches; small ones are analysed here from the
 * window, unless the workers are running dry: then they take small ones too (they read them again,
 * which costs them less than the analysis saves this thread). The workers are kept `depth` batches
 * ahead; what is left when the walk ends, this thread takes too, from the back of the queue.
 */
class WorkerBatches {
  private readonly queued: Job[][] = [];
  private given = 0;
  private batch: Job[] = [];
  private batchBytes = 0;
  /** The open batch holds a large file (it closes at BATCH_*, else at SMALL_BATCH_*). */
  private batchLarge = false;
  readonly jobs: Promise<void>[] = [];

  constructor(
    private readonly file: LayerFile,
    private readonly b: LayerBuilder,
    private readonly analyseAt: AnalyseAt,
    private readonly depth: number,
    private readonly workersReady: () => boolean,
  ) {
    workersReady(); // starts them, if not yet, while the walk begins
  }

  /** Workers that have loaded and would take another batch now: nothing is waiting for them. */
  dry(): boolean {
    return this.given + this.queued.length < this.depth && this.workersReady();
  }

  add(f: Job, large: boolean): void {
    this.batch.push(f);
    this.batchBytes += f.size;
    this.batchLarge ||= large;
    if (this.batchLarge ? this.batchBytes >= BATCH_BYTES || this.batch.length >= BATCH_FILES : this.batchBytes >= SMALL_BATCH_BYTES || this.batch.length >= SMALL_BATCH_FILES) this.close();
  }

  close(): void {
    if (this.batch.length === 0) return;
    this.queued.push(this.batch);
    this.batch = [];
    this.batchBytes = 0;
    this.batchLarge = false;
    this.pump();
  }

  /** After the walk: this thread takes what the workers have not started, a batch per turn so their answers come in between. */
  async drain(here: (f: Job) => void): Promise<void> {
    this.close();
    for (let last = this.queued.pop(); last !== undefined; last = this.queued.pop()) {
      for (const f of last) here(f);
      await new Promise<void>((r) => setImmediate(r));
      this.pump(); // a worker that has become ready meanwhile
    }
  }

  private pump(): void {
    while (this.given < this.depth && this.queued.length > 0 && this.workersReady()) this.give(this.queued.shift() as Job[]);
  }

  private give(sent: Job[]): void {
    this.given++;
    const { fd, path } = this.file;
    // Workers read through this descriptor (Inner.fd): the file being scanned, even if its path is
    // given to another meanwhile (a new `docker save -o`).
    this.jobs.push(this.analyseAt(path, sent.map(({ base, size, name }) => ({ base, size, name, fd }))).then((results) => {
      results.forEach((r, i) => {
        const f = sent[i] as Job;
        if (r.kind === 'elf') this.b.analysed(f.node, r.report);
        else if (r.kind === 'error') this.b.problem(f.name, r.error);
      });
    }, (e) => {
      for (const f of sent) this.b.failed(f.name, e);
    }).finally(() => {
      this.given--;
      this.pump();
    }));
  }
}

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
  const b = new LayerBuilder(what, limits);
  // Elsewhere only from the layer size on that pays for it; else here.
  const analyseAt = size >= (limits.analyseAtFrom ?? 0) ? limits.analyseAt : undefined;
  const workers = analyseAt ? new WorkerBatches(file, b, analyseAt, limits.inflight ?? 4, () => limits.workersReady?.() ?? true) : undefined;
  const here = (f: Job) => b.analyse(f.node, f.name, () => analyseRange(fd, f.base, f.size, f.name));
  // With workers, the walk lets their answers in often, so they are never left without a batch.
  const yieldMs = workers ? YIELD_WORKERS_MS : YIELD_MS;
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
        if (small && !workers?.dry()) b.analyse(node, name, () => analyseBytes(head, name));
        else if (workers) workers.add({ base: e.dataAt, size: e.size, name, node }, !small);
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
    await workers?.drain(here);
  } finally {
    // Even when the walk failed: threads read through `fd`, which the caller closes once this returns.
    await Promise.allSettled(workers?.jobs ?? []); // each job handles its own failure: none rejects
  }
  limits.onBytes?.(size, size);
  b.result.bytes = size;
  return b.result;
}
