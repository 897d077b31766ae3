// A layer's result, built entry by entry as either reader meets it (OCI image spec, "Image Layer
// Filesystem Changeset"): names checked, whiteouts and links recorded, ELF files analysed and only
// their reports kept, /etc/os-release and ld.so.conf texts kept; the limits both readers obey.
import { VsysError } from '../errors.js';
import { ioError } from '../scan/read-file.js';
import { normalisePath, type LayerOp } from './image-fs.js';
import type { BlobDigest } from './verify-blob.js';
import type { FileReport, FileResult } from '../scan/types.js';

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

/** A layer's result, built entry by entry (names checked, whiteouts, links): shared by both readers. */
export class LayerBuilder {
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

export type FileNode = { kind: 'file'; layer: number; size: number; report?: FileReport; text?: string; interpreter?: string };

