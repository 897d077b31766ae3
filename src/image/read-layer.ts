// One layer into the list of operations it makes on the image filesystem (OCI image spec, "Image
// Layer Filesystem Changeset"), two ways with one result: streamed (readLayer: a tar, gzip'd, zstd'd
// or plain, from any stream) or read by position (readLayerAt: a plain tar inside a local file). ELF
// files are analysed and only their reports kept; /etc/os-release and ld.so.conf texts are kept;
// other data is discarded. Decompressed bytes are capped; hostile names are refused with a coded
// error each.
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { Decompress } from 'fzstd';
import { VsysError } from '../errors.js';
import { analyseBytes, type FileReport } from '../scan/analyse-file.js';
import { isElf } from '../elf/read-elf.js';
import { analyseRange, ioError, releaseHugeScratch, scratchBuffer, SPARSE_MIN, type FileResult } from '../scan/read-file.js';
import { TarEndGuard, walkTar, WINDOW } from './tar-index.js';
import { normalisePath, type LayerOp } from './image-fs.js';
import { DigestStream, type BlobDigest } from './verify-blob.js';

export interface LayerLimits {
  /** Decompressed bytes allowed for this layer. */
  maxLayerBytes: number;
  /** Largest single ELF file analysed (bigger ones are reported, not read). */
  maxFileBytes: number;
  /**
   * Entries allowed in this layer (default MAX_ENTRIES): each is kept as an operation on the image's
   * filesystem, so a layer of millions of empty files would otherwise hold gigabytes.
   */
  maxEntries?: number;
  /** Analyse ELF bytes elsewhere (worker threads); default: here, synchronously. */
  analyse?: (bytes: Buffer, path: string) => Promise<FileReport | undefined>;
  /** Files analysed at once when `analyse` is set (bounds the bytes held). */
  inflight?: number;
  /**
   * A layer stored uncompressed in a file (readLayerAt): analyse a batch of its ELF entries
   * elsewhere (worker threads, each reading them from `file` itself); default: here.
   */
  analyseAt?: (file: string, entries: { base: number; size: number; name: string; fd: number }[]) => Promise<FileResult[]>;
  /** Layers smaller than this are analysed here even when `analyseAt` is set. */
  analyseAtFrom?: number;
  /**
   * Whether a worker can take work now (asking starts them). Until one can, batches wait here and
   * this thread may take them itself: it never waits for a worker that is still starting.
   */
  workersReady?: () => boolean;
  /**
   * Progress within a layer: bytes passed so far and the layer's size (undefined for a compressed
   * layer, whose expanded size is known only at its end). Called now and then, not per chunk.
   */
  onBytes?: (done: number, total: number | undefined) => void;
  /** Hash the layer as it is read (its blob and, when compressed, its uncompressed tar): `LayerResult.digests`. */
  verify?: boolean;
}

export interface LayerResult {
  ops: LayerOp[];
  /** Bytes after decompression. */
  bytes: number;
  files: number;
  elfFiles: number;
  /** Entries refused (path traversal, oversized ELF, …), with codes. */
  problems: { path: string; code: string; message: string }[];
  /** With `verify`: the stored blob's sha256 and size, and the sha256 of the uncompressed tar (its diff_id). */
  digests?: { blob: BlobDigest; diffId: string };
}

/** Entries a layer may hold by default: ~200 bytes each kept; real layers have up to a few hundred thousand. */
/**
 * Each entry is held in memory (~400 bytes: its operation and its node in the image's tree) until the
 * image is judged: 500,000 keep a scan under ~300 MB; 2 million took 846 MB (issue 23).
 */
export const MAX_ENTRIES = 500_000;

const TEXT_FILES = /^\/(etc|usr\/lib)\/os-release$|^\/etc\/ld\.so\.conf(\.d\/[^/]+)?$|^\/etc\/(debian_version|redhat-release|alpine-release)$/;

/** Counts bytes through a stream and fails it once the cap is passed (a decompression bomb stops here). */
class ByteCap extends Transform {
  bytes = 0;
  private said = 0;
  constructor(private readonly cap: number, private readonly what: string, private readonly onBytes?: (done: number, total: undefined) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.onBytes && this.bytes - this.said >= 16 * 1024 * 1024) {
      this.said = this.bytes;
      this.onBytes(this.bytes, undefined);
    }
    if (this.bytes > this.cap) cb(new VsysError('IMAGE_TOO_LARGE', `${this.what} expands past ${this.cap} bytes (--max-layer-size); stopped there`));
    else cb(null, chunk);
  }
}

/** zstd through fzstd's streaming decoder. */
export function zstdStream(): Transform {
  let out: Transform;
  const d = new Decompress((chunk) => {
    out.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  });
  out = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        d.push(chunk);
        cb();
      } catch (e) {
        cb(new VsysError('IMAGE_BAD_LAYER', `zstd: ${(e as Error).message}`));
      }
    },
    flush(cb) {
      try {
        d.push(new Uint8Array(0), true);
        cb();
      } catch (e) {
        cb(new VsysError('IMAGE_BAD_LAYER', `zstd: ${(e as Error).message}`));
      }
    },
  });
  return out;
}

/** The first chunk of a stream, put back so the stream still yields everything. */
function peekHead(src: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      src.off('data', onData);
      src.off('end', onEnd);
      src.off('error', onErr);
    };
    const onData = (chunk: Buffer) => {
      src.pause();
      cleanup();
      src.unshift(chunk);
      resolve(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.alloc(0));
    };
    const onErr = (e: Error) => {
      cleanup();
      reject(e);
    };
    src.on('data', onData);
    src.once('end', onEnd);
    src.once('error', onErr);
  });
}

/** Picks the decompressor by magic: gzip 1f 8b, zstd 28 b5 2f fd, else a plain tar. */
async function decompressor(src: Readable): Promise<{ streams: (Readable | Transform)[]; kind: 'gzip' | 'zstd' | 'none' }> {
  const head = await peekHead(src);
  if (head[0] === 0x1f && head[1] === 0x8b) return { streams: [src, zlib.createGunzip()], kind: 'gzip' };
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return { streams: [src, zstdStream()], kind: 'zstd' };
  return { streams: [src], kind: 'none' };
}

function semaphore(n: number): { acquire(): Promise<void>; release(): void } {
  let free = n;
  const waiting: (() => void)[] = [];
  return {
    acquire() {
      if (free > 0) {
        free--;
        return Promise.resolve();
      }
      return new Promise((r) => waiting.push(r));
    },
    release() {
      const w = waiting.shift();
      if (w) w();
      else free++;
    },
  };
}

/** The chunks copied into the thread's reused buffer (scratchBuffer). */
function assemble(chunks: Buffer[], have: number): Buffer {
  const buf = scratchBuffer(have);
  let at = 0;
  for (const c of chunks) {
    c.copy(buf, at);
    at += c.length;
  }
  return buf;
}

/** A layer's result, built entry by entry (names checked, whiteouts, links): shared by both readers. */
class LayerBuilder {
  readonly result: LayerResult = { ops: [], bytes: 0, files: 0, elfFiles: 0, problems: [] };
  private entries = 0;
  constructor(private readonly what: string, private readonly limits: LayerLimits) {}

  /**
   * Records an entry that is not a regular file. For a regular file returns its path in the image
   * (the caller reads it, then calls `file`); undefined when there is nothing more to do.
   */
  entry(raw: string, type: string | null | undefined, linkname: string | null | undefined): string | undefined {
    const { result, what } = this;
    const max = this.limits.maxEntries ?? MAX_ENTRIES;
    if (++this.entries > max) throw new VsysError('IMAGE_TOO_LARGE', `${what} has more than ${max} entries, the cap that keeps a scan's memory bounded (each entry is held in memory until the image is judged); stopped there (raise it with --max-layer-entries N, or maxLayerEntries in the library)`);
    const name = normalisePath(raw);
    if (name === undefined) {
      result.problems.push({ path: raw, code: 'IMAGE_BAD_PATH', message: `${what}: entry '${raw}' climbs out of the image root; ignored` });
      return undefined;
    }
    const base = name.slice(name.lastIndexOf('/') + 1);
    const dir = name.slice(0, name.lastIndexOf('/')) || '/';
    if (base === '.wh..wh..opq') {
      result.ops.push({ op: 'opaque', dir });
      return undefined;
    }
    if (base.startsWith('.wh.')) {
      result.ops.push({ op: 'whiteout', path: dir === '/' ? `/${base.slice(4)}` : `${dir}/${base.slice(4)}` });
      return undefined;
    }
    switch (type) {
      case 'directory':
        result.ops.push({ op: 'add', path: name, node: { kind: 'dir', layer: 0 } });
        return undefined;
      case 'symlink':
        result.ops.push({ op: 'add', path: name, node: { kind: 'symlink', layer: 0, target: linkname ?? '' } });
        return undefined;
      case 'link': {
        const target = normalisePath(linkname ?? '');
        if (!target) {
          result.problems.push({ path: name, code: 'IMAGE_BAD_PATH', message: `${what}: hard link ${name} → '${linkname}' climbs out of the image root; ignored` });
          return undefined;
        }
        result.ops.push({ op: 'add', path: name, node: { kind: 'hardlink', layer: 0, target } });
        return undefined;
      }
      case 'file':
      case 'contiguous-file':
        result.files++;
        return name;
      default:
        // Devices, fifos: no programs there.
        return undefined;
    }
  }

  /** Small texts the report reads (os-release, ld.so.conf): kept whole. */
  static keepsText(name: string, size: number): boolean {
    return size <= 65536 && TEXT_FILES.test(name);
  }

  /** A script's interpreter from its `#!` line (what runs when the image's entrypoint is a script). */
  static shebang(head: Uint8Array): string | undefined {
    if (head[0] !== 0x23 || head[1] !== 0x21) return undefined;
    const text = Buffer.from(head.buffer, head.byteOffset, Math.min(head.length, 256)).toString('latin1');
    const line = text.slice(2).split('\n')[0]?.trim() ?? '';
    return /^\/\S+/.exec(line)?.[0];
  }

  /** Whether an ELF file of this size is analysed; else a FILE_TOO_LARGE problem says why not. */
  admitsElf(name: string, size: number): boolean {
    if (size <= this.limits.maxFileBytes) return true;
    this.result.problems.push({ path: name, code: 'FILE_TOO_LARGE', message: `${this.what}: ${name} is ${size} bytes, over the per-file limit; not analysed` });
    return false;
  }

  /** The file's node, added in archive order; its report or text is filled in when known. */
  file(name: string, size: number): FileNode {
    const node: FileNode = { kind: 'file', layer: 0, size };
    this.result.ops.push({ op: 'add', path: name, node });
    return node;
  }

  analysed(node: FileNode, report: FileReport | undefined): void {
    if (!report) return;
    node.report = report;
    this.result.elfFiles++;
  }

  /** Runs a file's analysis here: its report on the node, or what it threw as a problem. */
  analyse(node: FileNode, name: string, run: () => FileReport | undefined): void {
    try {
      this.analysed(node, run());
    } catch (e) {
      this.failed(name, e);
    }
  }

  /** An analysis that threw: its code when it is vsys' own error, IO_FAILED for an OS error, else INTERNAL_ERROR. */
  failed(name: string, e: unknown): void {
    this.problem(name, ioError(e, name) ?? { code: e instanceof VsysError ? e.code : 'INTERNAL_ERROR', message: `${name}: ${(e as Error)?.message ?? String(e)}` });
  }

  /** A file's coded error (its message names the file) as a problem of this layer. */
  problem(name: string, error: { code: string; message: string }): void {
    this.result.problems.push({ path: name, code: error.code, message: `${this.what}: ${error.message}` });
  }
}

type FileNode = { kind: 'file'; layer: number; size: number; report?: FileReport; text?: string; interpreter?: string };

/**
 * A layer from a stream. `size`: what its descriptor says the blob is; verified, the read stops
 * with IMAGE_SIZE_MISMATCH at the first byte past it (a source that sends more is not read on).
 */
export async function readLayer(src: Readable, what: string, limits: LayerLimits, size?: number): Promise<LayerResult> {
  const b = new LayerBuilder(what, limits);
  const result = b.result;
  // Verified: the blob hashed as it arrives, and its tar after decompression (the same bytes, and
  // one hash, when it is stored plain). Both see every byte, what follows the tar's end too.
  const blobHash = limits.verify ? new DigestStream(what, size) : undefined;
  let input: Readable = src;
  if (blobHash) {
    src.once('error', (e) => blobHash.destroy(e));
    // A failure downstream ends the source as the pipeline would have (not a source read to its end).
    // A stream over a descriptor its caller owns (autoClose false) is only stopped: destroy() would
    // close the descriptor under the caller, whose own close then fails with EBADF and hides the
    // layer's coded error (IMAGE_TOO_LARGE, say).
    blobHash.once('close', () => {
      if (src.readableEnded) return;
      if ((src as { autoClose?: boolean }).autoClose === false) {
        src.unpipe(blobHash);
        src.pause();
        src.on('error', () => undefined); // a read in flight when the caller closes: nothing to report
      } else src.destroy();
    });
    input = src.pipe(blobHash);
  }
  const { streams, kind } = await decompressor(input);
  const tarHash = blobHash && kind !== 'none' ? new DigestStream(what) : undefined;
  const cap = new ByteCap(limits.maxLayerBytes, what, limits.onBytes);
  const extract = tar.extract();
  const slots = semaphore(limits.inflight ?? 4);
  const jobs: Promise<void>[] = [];
  extract.on('entry', (header, body, next) => {
    let name: string | undefined;
    try {
      name = b.entry(header.name, header.type, header.linkname);
    } catch (e) {
      next(e as Error);
      return;
    }
    if (name === undefined) {
      body.resume();
      body.on('end', () => next());
      return;
    }
    const size = header.size ?? 0;
    const keepText = LayerBuilder.keepsText(name, size);
    const chunks: Buffer[] = [];
    let have = 0;
    let elf: boolean | undefined;
    let interpreter: string | undefined;
    body.on('data', (data: unknown) => {
      const c = data as Buffer;
      if (elf === false && !keepText) return;
      chunks.push(c);
      have += c.length;
      if (elf === undefined && have >= 4) {
        const head = chunks.length === 1 ? c : Buffer.concat(chunks);
        elf = isElf(head) && b.admitsElf(name, size);
        if (!elf) interpreter = LayerBuilder.shebang(head);
        if (!elf && !keepText) chunks.length = 0;
      }
    });
    body.on('end', () => {
      const node = b.file(name, size);
      if (!elf) {
        if (keepText) node.text = Buffer.concat(chunks, have).toString('utf8');
        if (interpreter) node.interpreter = interpreter;
        next();
        return;
      }
      if (!limits.analyse) {
        // In this thread: assembled into one reused buffer (a file that arrived in one chunk is
        // read in place) and analysed at once, in the same synchronous block, so nothing else
        // can write the buffer meanwhile and no per-file allocation reaches the GC.
        b.analyse(node, name, () => analyseBytes(chunks.length === 1 ? (chunks[0] as Buffer) : assemble(chunks, have), name));
        releaseHugeScratch();
        next();
        return;
      }
      // A worker needs its own copy; take the next entry once a slot is free: at most `inflight`
      // files are held.
      const bytes = Buffer.concat(chunks, have);
      const analyse = limits.analyse;
      void slots.acquire().then(() => {
        jobs.push(analyse(bytes, name).then((rep) => b.analysed(node, rep), (e) => b.failed(name, e)).finally(() => slots.release()));
        next();
      });
    });
    body.on('error', (e) => next(e));
  });
  try {
    await (pipeline as unknown as (s: unknown[]) => Promise<void>)([...streams, cap, ...(tarHash ? [tarHash] : []), new TarEndGuard(), extract]);
  } catch (e) {
    if (e instanceof VsysError) throw e;
    throw new VsysError('IMAGE_BAD_LAYER', `${what}: ${(e as Error).message} (truncated or not a tar?)`, { cause: e });
  }
  await Promise.all(jobs);
  result.bytes = cap.bytes;
  if (blobHash) result.digests = { blob: blobHash.result(), diffId: (tarHash ?? blobHash).result().digest };
  limits.onBytes?.(cap.bytes, cap.bytes);
  return result;
}

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
