// The files of an OCI image layout directory (image-spec image-layout.md), opened so that what a
// layout names cannot make vsys read elsewhere or wait: the real path stays inside the layout (a
// blob symlinked to /dev/zero or /etc/passwd is refused), the file is opened non-blocking (a FIFO
// does not hang the open) and must be a regular file, and JSON is read only up to its cap.
import fs from 'node:fs';
import path from 'node:path';
import { VsysError } from '../errors.js';
import { readUpTo } from '../native/file-read.js';

/** Whether `real` is `root` or lies beneath it. */
function inside(root: string, real: string): boolean {
  return real === root || real.startsWith(root.endsWith('/') ? root : `${root}/`);
}

function escapes(dir: string, rel: string, real: string): VsysError {
  return new VsysError('IMAGE_BLOB_OUTSIDE', `${dir}: ${rel} resolves to ${real}, outside the layout; a layout's blobs are its own files`, { path: path.join(dir, rel) });
}

/**
 * `rel` of the layout `dir` opened for reading: a regular file whose real path lies inside `dir`.
 * Missing: IMAGE_MISSING_BLOB naming `what`. The caller closes the descriptor.
 */
export function openLayoutFile(dir: string, rel: string, what: string): number {
  const p = path.join(dir, rel);
  let root: string;
  let real: string;
  try {
    root = fs.realpathSync(dir);
    real = fs.realpathSync(p);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new VsysError('IMAGE_MISSING_BLOB', `${dir}: ${what} names ${rel}, which is missing`, { path: p });
    throw new VsysError(err.code === 'ELOOP' ? 'FILE_SYMLINK_LOOP' : 'IO_FAILED', `${p}: ${err.message}`, { path: p, cause: e });
  }
  // Checked before the open too, so that a device outside is never opened (a tape rewinds on open).
  if (!inside(root, real)) throw escapes(dir, rel, real);
  let fd: number;
  try {
    fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new VsysError(err.code === 'ENOENT' ? 'IMAGE_MISSING_BLOB' : 'IO_FAILED', `${p}: ${err.message}`, { path: p, cause: e });
  }
  try {
    // …and after it, on what was opened (a link changed in between is caught here).
    let opened = real;
    try {
      opened = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      // no /proc: the check before the open stands
    }
    if (!inside(root, opened)) throw escapes(dir, rel, opened);
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new VsysError('IMAGE_BLOB_NOT_FILE', `${p}: not a regular file (${kind(st)}); a layout's blobs are files`, { path: p });
    return fd;
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

function kind(st: fs.Stats): string {
  return st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : st.isSocket() ? 'a socket' : st.isDirectory() ? 'a directory' : 'not a file';
}

/** A JSON file of the layout whole, at most `max` bytes (one more is read to know it is over). */
export function readLayoutJson(dir: string, rel: string, what: string, max: number): Buffer {
  const fd = openLayoutFile(dir, rel, what);
  const p = path.join(dir, rel);
  try {
    const buf = Buffer.alloc(Math.min(fs.fstatSync(fd).size, max) + 1);
    const n = readUpTo(fd, buf, 0, buf.length, 0);
    if (n > max) throw new VsysError('IMAGE_BAD_MANIFEST', `${p} is over ${max} bytes, too large for a manifest or config`, { path: p });
    return buf.subarray(0, n);
  } catch (e) {
    if (e instanceof VsysError) throw e;
    throw new VsysError('IO_FAILED', `${p}: ${(e as Error).message}`, { path: p, cause: e });
  } finally {
    fs.closeSync(fd);
  }
}
