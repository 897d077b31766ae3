// Reading files into memory: the positional read loop, buffers whose start suits read(2), and the
// one reused buffer per thread that files are read (or assembled from an image's chunks) into.
// The scan of files and the image readers share these; nothing else here knows about ELF or tar.
import fs from 'node:fs';
import { loadKoffi } from './koffi.js';

/**
 * Reads `len` bytes at `pos` of `fd` into `buf` at `off`, going on after short reads; returns the
 * bytes read, fewer than `len` only where the file ends. The one read loop of the scanners.
 */
export function readUpTo(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number {
  let done = 0;
  while (done < len) {
    const n = fs.readSync(fd, buf, off + done, len - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

let addressable: boolean | undefined;

/**
 * A buffer for read(2) to fill whose start is 64-byte aligned. Node puts a large buffer 16 bytes
 * past a page start (malloc's chunk header), and the kernel's copy to user space runs several times
 * slower into a destination that is not 32-byte aligned on some CPUs (bench/README.md, "Figures
 * behind the code"). Where koffi cannot be loaded (not Linux x86-64), a plain buffer.
 */
export function alignedBuffer(size: number, align = 64): Buffer<ArrayBuffer> {
  const raw = Buffer.allocUnsafeSlow(size + align);
  if (addressable !== false) {
    try {
      const at = BigInt(loadKoffi().address(raw as never));
      addressable = true;
      const skip = Number((BigInt(align) - (at % BigInt(align))) % BigInt(align));
      return raw.subarray(skip, skip + size);
    } catch {
      addressable = false;
    }
  }
  return raw.subarray(0, size);
}

// One buffer per thread, reused from file to file (files read here, ELF files assembled from an
// image layer's chunks): analysis is synchronous and its report copies what it keeps, so nothing
// points into the buffer afterwards. Saves the allocation and the GC of a gigabyte of short-lived
// buffers over a scan of /usr or an image. Its start is 64-byte aligned (alignedBuffer).
let scratch = Buffer.allocUnsafeSlow(0);
const KEEP_LIMIT = 256 * 1024 * 1024;

/** `size` bytes of the thread's reused buffer; valid until the next call. */
export function scratchBuffer(size: number): Buffer {
  if (scratch.length < size) scratch = alignedBuffer(Math.max(size, Math.min(scratch.length * 2, KEEP_LIMIT)));
  return scratch.subarray(0, size);
}

/**
 * Lets the buffer go, whatever its size: a long-running process (the exporter's periodic scan of the
 * running programs, which meets the 95 MB node binary) would otherwise keep the largest file's
 * buffer for good, its pages resident once touched.
 */
export function releaseScratch(): void {
  scratch = Buffer.allocUnsafeSlow(0);
}

/** Bytes the thread's reused buffer holds now (for tests). */
export function scratchBytes(): number {
  return scratch.length;
}

/** After a huge file: do not keep its buffer. */
export function releaseHugeScratch(): void {
  if (scratch.length > KEEP_LIMIT) scratch = Buffer.allocUnsafeSlow(0);
}

