// Streams one layer (a tar, gzip'd, zstd'd or plain) into the list of operations it makes on the
// image filesystem (OCI image spec, "Image Layer Filesystem Changeset"). ELF files are analysed as
// they pass and only their reports kept; /etc/os-release and ld.so.conf texts are kept; other data
// is discarded. Decompressed bytes are capped; hostile names are refused with a coded error each.
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { Decompress } from 'fzstd';
import { VsysError } from '../errors.js';
import { analyseBytes, type FileReport } from '../scan/analyse-file.js';
import { releaseHugeScratch, scratchBuffer } from '../scan/read-file.js';
import { normalisePath, type LayerOp } from './image-fs.js';

export interface LayerLimits {
  /** Decompressed bytes allowed for this layer. */
  maxLayerBytes: number;
  /** Largest single ELF file analysed (bigger ones are reported, not read). */
  maxFileBytes: number;
  /** Analyse ELF bytes elsewhere (worker threads); default: here, synchronously. */
  analyse?: (bytes: Buffer, path: string) => Promise<FileReport | undefined>;
  /** Files analysed at once when `analyse` is set (bounds the bytes held). */
  inflight?: number;
}

export interface LayerResult {
  ops: LayerOp[];
  /** Bytes after decompression. */
  bytes: number;
  files: number;
  elfFiles: number;
  /** Entries refused (path traversal, oversized ELF, …), with codes. */
  problems: { path: string; code: string; message: string }[];
}

const TEXT_FILES = /^\/(etc|usr\/lib)\/os-release$|^\/etc\/ld\.so\.conf(\.d\/[^/]+)?$|^\/etc\/(debian_version|redhat-release|alpine-release)$/;
const ELF = [0x7f, 0x45, 0x4c, 0x46];

/** Counts bytes through a stream and fails it once the cap is passed (a decompression bomb stops here). */
class ByteCap extends Transform {
  bytes = 0;
  constructor(private readonly cap: number, private readonly what: string) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.cap) cb(new VsysError('IMAGE_TOO_LARGE', `${this.what} expands past ${this.cap} bytes (--max-layer-size); stopped there`));
    else cb(null, chunk);
  }
}

/** zstd through fzstd's streaming decoder. */
function zstdStream(): Transform {
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

export async function readLayer(src: Readable, what: string, limits: LayerLimits): Promise<LayerResult> {
  const result: LayerResult = { ops: [], bytes: 0, files: 0, elfFiles: 0, problems: [] };
  const { streams } = await decompressor(src);
  const cap = new ByteCap(limits.maxLayerBytes, what);
  const extract = tar.extract();
  const slots = semaphore(limits.inflight ?? 4);
  const jobs: Promise<void>[] = [];
  extract.on('entry', (header, body, next) => {
    const done = (e?: unknown) => {
      body.resume();
      if (e) next(e as Error);
      else body.on('end', () => next());
    };
    const name = normalisePath(header.name);
    if (name === undefined) {
      result.problems.push({ path: header.name, code: 'IMAGE_BAD_PATH', message: `${what}: entry '${header.name}' climbs out of the image root; ignored` });
      return done();
    }
    const base = name.slice(name.lastIndexOf('/') + 1);
    const dir = name.slice(0, name.lastIndexOf('/')) || '/';
    if (base === '.wh..wh..opq') {
      result.ops.push({ op: 'opaque', dir });
      return done();
    }
    if (base.startsWith('.wh.')) {
      result.ops.push({ op: 'whiteout', path: dir === '/' ? `/${base.slice(4)}` : `${dir}/${base.slice(4)}` });
      return done();
    }
    switch (header.type) {
      case 'directory':
        result.ops.push({ op: 'add', path: name, node: { kind: 'dir', layer: 0 } });
        return done();
      case 'symlink':
        result.ops.push({ op: 'add', path: name, node: { kind: 'symlink', layer: 0, target: header.linkname ?? '' } });
        return done();
      case 'link': {
        const target = normalisePath(header.linkname ?? '');
        if (!target) {
          result.problems.push({ path: name, code: 'IMAGE_BAD_PATH', message: `${what}: hard link ${name} → '${header.linkname}' climbs out of the image root; ignored` });
          return done();
        }
        result.ops.push({ op: 'add', path: name, node: { kind: 'hardlink', layer: 0, target } });
        return done();
      }
      case 'file':
      case 'contiguous-file': {
        result.files++;
        const size = header.size ?? 0;
        const keepText = TEXT_FILES.test(name) && size <= 65536;
        const chunks: Buffer[] = [];
        let have = 0;
        let isElf: boolean | undefined;
        body.on('data', (data: unknown) => {
          const c = data as Buffer;
          if (isElf === false && !keepText) return;
          chunks.push(c);
          have += c.length;
          if (isElf === undefined && have >= 4) {
            const h = chunks.length === 1 ? c : Buffer.concat(chunks);
            isElf = ELF.every((b, i) => h[i] === b);
            if (isElf && size > limits.maxFileBytes) {
              result.problems.push({ path: name, code: 'FILE_TOO_LARGE', message: `${what}: ${name} is ${size} bytes, over the per-file limit; not analysed` });
              isElf = false;
            }
            if (!isElf && !keepText) chunks.length = 0;
          }
        });
        body.on('end', () => {
          const node: { kind: 'file'; layer: number; size: number; report?: FileReport; text?: string } = { kind: 'file', layer: 0, size };
          result.ops.push({ op: 'add', path: name, node: node as never });
          if (!isElf) {
            if (keepText) node.text = Buffer.concat(chunks, have).toString('utf8');
            next();
            return;
          }
          const fail = (e: unknown) => {
            result.problems.push({ path: name, code: 'INTERNAL_ERROR', message: `${what}: ${name}: ${(e as Error).message}` });
          };
          if (!limits.analyse) {
            // In this thread: assembled into one reused buffer (a file that arrived in one chunk is
            // read in place) and analysed at once, in the same synchronous block, so nothing else
            // can write the buffer meanwhile and no per-file allocation reaches the GC.
            try {
              const rep = analyseBytes(chunks.length === 1 ? (chunks[0] as Buffer) : assemble(chunks, have), name);
              if (rep) {
                node.report = rep;
                result.elfFiles++;
              }
            } catch (e) {
              fail(e);
            }
            releaseHugeScratch();
            next();
            return;
          }
          // A worker needs its own copy; take the next entry once a slot is free: at most `inflight`
          // files are held.
          const bytes = Buffer.concat(chunks, have);
          const analyse = limits.analyse;
          void slots.acquire().then(() => {
            jobs.push(analyse(bytes, name).then((rep) => {
              if (rep) {
                node.report = rep;
                result.elfFiles++;
              }
            }, fail).finally(() => slots.release()));
            next();
          });
        });
        body.on('error', (e) => next(e));
        return;
      }
      default:
        // Devices, fifos, pax globals: no programs there.
        return done();
    }
  });
  try {
    await (pipeline as unknown as (s: unknown[]) => Promise<void>)([...streams, cap, extract]);
  } catch (e) {
    if (e instanceof VsysError) throw e;
    throw new VsysError('IMAGE_BAD_LAYER', `${what}: ${(e as Error).message} (truncated or not a tar?)`, { cause: e });
  }
  await Promise.all(jobs);
  result.bytes = cap.bytes;
  return result;
}
