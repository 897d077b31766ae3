// One layer from a stream (readLayer: a tar, gzip'd, zstd'd or plain, from any stream) into the
// operations it makes on the image filesystem; layer-builder.ts keeps the result, read-layer-at.ts
// reads a plain tar in a local file by position. Decompressed bytes are capped; hostile names are
// refused with a coded error each.
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { Decompress } from 'fzstd';
import { VsysError } from '../errors.js';
import { analyseBytes } from '../scan/analyse-file.js';
import { isElf } from '../elf/read-elf.js';
import { releaseHugeScratch, scratchBuffer } from '../native/file-read.js';
import { TarEndGuard } from './tar-index.js';
import { DigestStream } from './verify-blob.js';

import { LayerBuilder, type LayerLimits, type LayerResult } from './layer-builder.js';

/** Counts bytes through a stream and fails it once the cap is passed (a decompression bomb stops here). */
export class ByteCap extends Transform {
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
export async function decompressor(src: Readable): Promise<{ streams: (Readable | Transform)[]; kind: 'gzip' | 'zstd' | 'none' }> {
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
  const input = blobHash ? hashedInput(src, blobHash) : src;
  const { streams, kind } = await decompressor(input);
  const tarHash = blobHash && kind !== 'none' ? new DigestStream(what) : undefined;
  const cap = new ByteCap(limits.maxLayerBytes, what, limits.onBytes);
  const extract = tar.extract();
  const jobs: Promise<void>[] = [];
  extract.on('entry', entryReader(b, limits, semaphore(limits.inflight ?? 4), jobs));
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

/** The source piped through the blob's hash; a failure on either side ends the other. */
function hashedInput(src: Readable, blobHash: DigestStream): Readable {
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
  return src.pipe(blobHash);
}

type EntryHandler = (...args: tar.ExtractEvents['entry']) => void;

/**
 * What happens to each tar entry: recorded in the layer (`b`); an ELF file's bytes gathered and
 * analysed (here, or on a worker through `limits.analyse`, at most `slots` at once, its promise in
 * `jobs`); a text file the image verdict reads kept; the rest drained.
 */
function entryReader(b: LayerBuilder, limits: LayerLimits, slots: ReturnType<typeof semaphore>, jobs: Promise<void>[]): EntryHandler {
  return (header, body, next) => {
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
  };
}
