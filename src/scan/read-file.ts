// Reads one file for analysis: the 4-byte magic first (most files in /usr are not ELF and are
// skipped after one small read), then the whole file, up to a size cap.
import fs from 'node:fs';
import { VsysError } from '../errors.js';
import { analyseBytes } from './analyse-file.js';
import { identify, type Identity } from './identify.js';
import { isElf, readElf } from '../elf/read-elf.js';
import type { Searched } from './find-uses.js';
import { HoleRead } from '../elf/bytes.js';
import { fillHoles, readSparse, unreadRanges, type Hole } from './sparse-read.js';
import { readUpTo, releaseHugeScratch, scratchBuffer } from '../native/file-read.js';
import type { FileReport, FileResult } from './types.js';

export const DEFAULT_MAX_FILE_BYTES = 2 * 1024 ** 3 - 1;


/** The file's `size` bytes from `base` on in `fd`, into the reused buffer; shorter if the file ends first. */
function readAll(fd: number, size: number, base = 0): Buffer {
  const buf = scratchBuffer(size);
  const got = readUpTo(fd, buf, 0, size, base);
  return got === size ? buf : buf.subarray(0, got);
}

/** Files from this size on are read sparsely (sparse-read.ts); smaller ones whole, into a buffer that stays in cache. */
export const SPARSE_MIN = 1024 * 1024;

/**
 * A large file: sparse read, and its analysis kept only when it can have read nothing from a hole —
 * no read of one (HoleRead), no finding (those need the function index, .eh_frame, the call graph),
 * no error or warning, and not a libc, Go or static file. Else the holes are filled and the file
 * analysed whole, as a small one. `how` says which (tests check that large files do go sparse).
 */
export function analyseSparse(fd: number, size: number, path: string, scratch: (n: number) => Buffer = scratchBuffer, base = 0): { report: FileReport | undefined; how: 'sparse' | 'whole' | 'bounded' } {
  if (size > WHOLE_MAX) return { report: analyseBounded(fd, size, path, base), how: 'bounded' };
  const sparse = readSparse(fd, size, scratch, { base, wholeIf: (bytes, holes) => !identityAllowsSparse(bytes, holes, path) });
  const whole = (): { report: FileReport | undefined; how: 'whole' } => ({
    report: sparse && fillHoles(fd, sparse) ? analyseBytes(sparse.bytes, path) : analyseBytes(readAll(fd, size, base), path),
    how: 'whole',
  });
  if (!sparse || sparse.holes.length === 0) return whole(); // read whole already when it has no holes
  const searched: Searched = new Map(sparse.holes.filter((h) => h.searched).map((h) => [h.start, h]));
  let report: FileReport | undefined;
  try {
    report = analyseBytes(sparse.bytes, path, { holes: sparse.holes.map((h) => [h.start, h.end] as const), searched });
  } catch (e) {
    if (!(e instanceof HoleRead)) throw e;
    return whole(); // something this file's analysis reads lies in a hole
  }
  const id = report?.identity;
  if (report && report.findings.length === 0 && !report.error && id && sparseIdentity(id)) return { report, how: 'sparse' };
  return whole();
}

/**
 * Files larger than this are never read whole, whatever they are (static, Go, libc, with findings):
 * memory stays under ~WHOLE_MAX plus the tables. A static Go binary of 700 MB is common in images.
 */
export const WHOLE_MAX = 128 * 1024 * 1024;
/** A bounded file's analysis may ask for this many more pieces of its holes (64 KiB each) before it is given up. */
const MAX_FETCHES = 64;
const FETCH = 64 * 1024;

/**
 * A file over WHOLE_MAX: read sparsely whatever its identity (sparse-read.ts `bounded`), its findings
 * taken from the decode windows kept, and any other bytes its analysis meets in a hole (a Go version
 * string, the bytes between sections) read 64 KiB at a time and the analysis run again. What needs
 * the whole code (the indirect-site check, the exports reaching a use, code loading a page word) is
 * skipped with a warning (analyse-file.ts). Its buffer is its own, zeroed by the kernel, not kept.
 */
function analyseBounded(fd: number, size: number, path: string, base: number): FileReport | undefined {
  const sparse = readSparse(fd, size, (n) => Buffer.alloc(n), { base, bounded: true });
  if (!sparse) throw new VsysError('FILE_TOO_LARGE', `${path}: ${size} bytes, over the ${WHOLE_MAX}-byte bound for a whole read, and its layout cannot be read in parts (no usable section headers, too many large sections or possible page words)`, { path });
  const searched: Searched = new Map(sparse.holes.filter((h) => h.searched).map((h) => [h.start, h]));
  const at = { fd, base };
  const bounded = `${size} bytes is over the ${WHOLE_MAX}-byte bound for reading a file whole`;
  for (let fetches = 0; ; fetches++) {
    try {
      return analyseBytes(sparse.bytes, path, { holes: unreadRanges(sparse.holes), searched, bounded });
    } catch (e) {
      if (!(e instanceof HoleRead)) throw e;
      // The first byte not read at or after the offset of the read that met it.
      const gap = unreadRanges(sparse.holes).find(([, z]) => z > e.offset);
      const first = gap ? Math.max(gap[0], e.offset) : -1;
      const hole = sparse.holes.find((h) => h.start <= first && first < h.end);
      if (!hole || fetches >= MAX_FETCHES) throw new VsysError('FILE_TOO_LARGE', `${path}: ${bounded}, and its analysis needs more of it than the parts read (offset ${e.offset})`, { path });
      fetch(at, sparse.bytes, hole, first);
    }
  }
}

/** Reads the 64 KiB piece of `hole` around `offset` into the buffer and marks it kept. */
function fetch(at: { fd: number; base: number }, bytes: Buffer, hole: Hole, offset: number): void {
  const s = Math.max(hole.start, offset - (offset % FETCH));
  const e = Math.min(hole.end, s + FETCH);
  if (readUpTo(at.fd, bytes, s, e - s, at.base + s) !== e - s) throw new VsysError('ELF_TRUNCATED', `file ended inside bytes [${s}, ${e})`);
  hole.kept.push([s, e]);
}

/** An identity whose analysis reads nothing a sparse read leaves out: dynamic, no warnings, not Go, not a libc. */
function sparseIdentity(id: Identity): boolean {
  return id.linkage === 'dynamic' && id.warnings.length === 0 && id.go === undefined && id.libc?.source !== 'banner' && !/^libc[.-]/.test(id.soname ?? '');
}

/**
 * Decided from the tables alone, before the big sections are streamed: whether the file's identity
 * lets a sparse analysis stand. When not (a libc, a static or Go file, a data-only library with no
 * dependencies), its holes are read straight away, not streamed first and read again.
 */
function identityAllowsSparse(bytes: Buffer, holes: readonly (readonly [number, number])[], path: string): boolean {
  try {
    return sparseIdentity(identify(readElf(bytes, path, holes)));
  } catch {
    return false; // a hole met, or something odd: the whole-file analysis says what
  }
}

const head = Buffer.alloc(4);

/**
 * The ELF file whose `size` bytes start at `base` in `fd` (a file: 0; an entry of an uncompressed
 * tar: its data offset): small ones read whole into the reused buffer, large ones sparsely.
 * Undefined when the bytes are not ELF. Throws what analysis throws (callers make it a coded error).
 */
export function analyseRange(fd: number, base: number, size: number, path: string): FileReport | undefined {
  const report = size >= SPARSE_MIN ? analyseSparse(fd, size, path, scratchBuffer, base).report : analyseBytes(readAll(fd, size, base), path);
  releaseHugeScratch();
  return report;
}

/** An OS error (it has a syscall and an errno code) as vsys' IO_FAILED for `path`; undefined for anything else. */
export function ioError(e: unknown, path: string): { code: 'IO_FAILED'; message: string } | undefined {
  const err = e as NodeJS.ErrnoException;
  if (typeof err?.code === 'string' && typeof err.syscall === 'string') return { code: 'IO_FAILED', message: `${path}: ${err.syscall}: ${err.message}` };
  return undefined;
}

/**
 * A file inside another: its bytes start at `base` in the file opened, and it is reported as `name`.
 * `fd`: that file, open already. Descriptors belong to the process, so a worker thread reads through
 * the one the caller opened: no open and close per file, and the very file the caller has open, even
 * if its path now names another (a new `docker save -o`). The caller keeps it open until answered.
 */
export interface Inner {
  base: number;
  name: string;
  fd?: number;
}

/**
 * Never throws: I/O failures and analysis bugs become a coded error for this file. `sizeHint`: the
 * size the walk saw; a file that is not ELF is then answered without an fstat (half of /usr is not
 * ELF). An ELF file's size is always taken from the open file, except for an `inner` one (an entry
 * of an uncompressed layer), whose size is its entry's.
 */
export function analyseFile(path: string, maxBytes = DEFAULT_MAX_FILE_BYTES, sizeHint?: number, inner?: Inner): FileResult {
  let fd: number | undefined;
  let size = sizeHint ?? 0;
  const name = inner?.name ?? path;
  const base = inner?.base ?? 0;
  try {
    fd = inner?.fd ?? fs.openSync(path, 'r');
    const elf = fs.readSync(fd, head, 0, 4, base) === 4 && isElf(head);
    if (!inner && (elf || sizeHint === undefined)) size = fs.fstatSync(fd).size;
    if (!elf) return { kind: 'not-elf', path: name, size };
    if (size > maxBytes) {
      throw new VsysError('FILE_TOO_LARGE', `${name}: ${size} bytes is over the ${maxBytes}-byte limit (--max-file-size)`, { path: name });
    }
    const report = analyseRange(fd, base, size, name);
    return report ? { kind: 'elf', report } : { kind: 'not-elf', path: name, size };
  } catch (e) {
    if (e instanceof VsysError) return { kind: 'error', path: name, size, error: { code: e.code, message: e.message } };
    const io = ioError(e, name);
    if (io) return { kind: 'error', path: name, size, error: io };
    return { kind: 'error', path: name, size, error: { code: 'INTERNAL_ERROR', message: `${name}: ${(e as Error)?.stack ?? String(e)}` } };
  } finally {
    if (fd !== undefined && fd !== inner?.fd) fs.closeSync(fd);
  }
}

/** Bytes already in memory (an ELF file out of an image layer): the same never-throwing contract. */
export function analyseBuffer(bytes: Uint8Array, path: string): FileResult {
  try {
    const report = analyseBytes(bytes, path);
    return report ? { kind: 'elf', report } : { kind: 'not-elf', path, size: bytes.length };
  } catch (e) {
    return { kind: 'error', path, size: bytes.length, error: { code: 'INTERNAL_ERROR', message: `${path}: ${(e as Error).stack ?? String(e)}` } };
  }
}
