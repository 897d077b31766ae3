// Writing an image's layers into a directory, entry by entry: OCI whiteouts and opaque directories,
// regular files, directories, symlinks, hard links and device nodes, with modes, owners and times.
// Nothing is written outside the directory: every parent is checked with lstat (a symlink an image
// made is never followed), and names or hard links that climb out ('..') are refused.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type tar from 'tar-stream';
import { VsysError } from '../errors.js';
import { normalisePath } from '../image/image-fs.js';

/** Entries written without something, or not at all. */
export interface UnpackSkipped {
  /** Character and block devices not created (unprivileged, or mknod refused). */
  devices: number;
  fifos: number;
  /** Entries whose owner could not be set (privileged, but in a user namespace that does not map it). */
  owners: number;
  /** Entries written without their extended attributes (pax SCHILY.xattr.*). */
  xattrs: number;
  /** Entries of a type vsys does not create (GNU sparse files, unknown typeflags). */
  other: number;
}

interface DirAttrs {
  mode: number;
  uid: number;
  gid: number;
  mtime?: Date;
}

const IMPLICIT: DirAttrs = { mode: 0o755, uid: 0, gid: 0 };
const NODE_KIND: Record<string, string> = { 'character-device': 'c', 'block-device': 'b', fifo: 'p' };

type EntryBody = tar.ExtractEvents['entry'][1];

function lstat(p: string): fs.Stats | undefined {
  return fs.lstatSync(p, { throwIfNoEntry: false });
}

function child(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/**
 * The tree being written, entry by entry. Paths are the image's ('/usr/bin/x'); `root` + path is the
 * host's. Directories are made 0700 and given their own mode, owner and time at the end, deepest
 * first, so that a read-only directory can still be filled by a later layer.
 */
export class TreeWriter {
  readonly skipped: UnpackSkipped = { devices: 0, fifos: 0, owners: 0, xattrs: 0, other: 0 };
  files = 0;
  what = '';
  private readonly dirs = new Map<string, DirAttrs>();
  /** Paths checked to be real directories (cleared whenever a directory is removed). */
  private known = new Set<string>(['/']);
  /** Paths this layer wrote: its own whiteouts and opaque markers do not hide them (image-spec layer.md). */
  private readonly layer = new Set<string>();
  private entries = 0;
  private layerEntries = 0;

  constructor(private readonly root: string, private readonly privileged: boolean, private readonly maxLayerEntries: number, private readonly maxImageEntries: number) {}

  startLayer(what: string): void {
    this.what = what;
    this.layer.clear();
    this.layerEntries = 0;
  }

  private host(p: string): string {
    return p === '/' ? this.root : this.root + p;
  }

  /** tar-stream's entry handler: the entry applied, a file's body written as it streams. */
  entry(h: tar.Header, body: EntryBody, next: (e?: Error | null) => void, signal: AbortSignal | undefined): void {
    let fd: number | undefined;
    // A failure anywhere destroys the entry's stream with it; the pipeline reports it.
    body.on('error', () => undefined);
    try {
      signal?.throwIfAborted();
      fd = this.apply(h);
    } catch (e) {
      next(signal?.aborted ? (e as Error) : this.coded(e, h.name));
      return;
    }
    if (fd === undefined) {
      body.on('end', () => next());
      body.resume();
      return;
    }
    const file = fd;
    let open = true;
    const done = (e?: unknown) => {
      if (!open) return;
      open = false;
      try {
        if (!e) this.finishFile(file, h);
      } catch (err) {
        e = err;
      } finally {
        fs.closeSync(file);
      }
      next(e === undefined ? undefined : this.coded(e, h.name));
    };
    body.on('data', (data: unknown) => {
      const c = data as Buffer;
      try {
        for (let at = 0; at < c.length; ) at += fs.writeSync(file, c, at, c.length - at);
      } catch (e) {
        body.destroy(this.coded(e, h.name));
      }
    });
    body.on('end', () => done());
    body.on('error', (e) => done(e));
  }

  private coded(e: unknown, name: string): Error {
    if (e instanceof VsysError) return e;
    const err = e as NodeJS.ErrnoException;
    if (typeof err.code === 'string' && typeof err.syscall === 'string') return new VsysError('IO_FAILED', `${this.what}: entry '${name}': ${err.message}`, { syscall: err.syscall, ...(err.path ? { path: err.path } : {}), cause: e });
    return new VsysError('IMAGE_BAD_LAYER', `${this.what}: entry '${name}': ${err?.message ?? String(e)}`, { cause: e });
  }

  private bad(name: string, why: string): VsysError {
    return new VsysError('IMAGE_BAD_PATH', `${this.what}: entry '${name}' ${why}; refused (the layer is broken or hostile)`);
  }

  /** Applies one entry; for a regular file, the descriptor its body is written to. */
  private apply(h: tar.Header): number | undefined {
    if (++this.layerEntries > this.maxLayerEntries) throw new VsysError('IMAGE_TOO_LARGE', `${this.what} has more than ${this.maxLayerEntries} entries (--max-layer-entries); stopped there`);
    if (++this.entries > this.maxImageEntries) throw new VsysError('IMAGE_TOO_LARGE', `${this.what}: the image's layers hold more than ${this.maxImageEntries} entries (--max-image-entries); stopped there`);
    const p = normalisePath(h.name);
    if (p === undefined) throw this.bad(h.name, "climbs out of the image root ('..')");
    const base = path.posix.basename(p);
    if (base === '.wh..wh..opq') return void this.opaque(path.posix.dirname(p), h.name);
    if (base.startsWith('.wh.')) return void this.whiteout(path.posix.dirname(p), base.slice(4), h.name);
    if (p === '/' && h.type !== 'directory') throw this.bad(h.name, 'would replace the image root');
    if (h.pax && typeof h.pax === 'object' && Object.keys(h.pax).some((k) => k.startsWith('SCHILY.xattr.'))) this.skipped.xattrs++;
    switch (h.type) {
      case 'directory':
        this.dir(p, h);
        return undefined;
      case 'file':
      case 'contiguous-file':
        this.place(p, false, h.name);
        this.files++;
        return fs.openSync(this.host(p), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
      case 'symlink':
        this.symlink(p, h);
        return undefined;
      case 'link':
        this.hardlink(p, h);
        return undefined;
      case 'character-device':
      case 'block-device':
      case 'fifo':
        this.node(p, h);
        return undefined;
      default:
        this.skipped.other++;
        return undefined;
    }
  }

  /**
   * Makes sure every parent of `p` is a real directory inside the root: made when missing (`create`),
   * refused when it is a symlink or something else. False when one is missing and `create` is not set.
   */
  private parents(p: string, create: boolean, name: string): boolean {
    let at = '';
    const parts = p.split('/');
    for (let i = 1; i < parts.length - 1; i++) {
      at += `/${parts[i] as string}`;
      if (this.known.has(at)) continue;
      const st = lstat(this.host(at));
      if (!st) {
        if (!create) return false;
        fs.mkdirSync(this.host(at), 0o700);
        this.dirs.set(at, IMPLICIT);
        this.layer.add(at);
      } else if (st.isSymbolicLink()) {
        throw this.bad(name, `lies under ${at}, a symlink (to ${fs.readlinkSync(this.host(at))}) the image made; vsys does not write through an image's symlinks`);
      } else if (!st.isDirectory()) {
        throw new VsysError('IMAGE_BAD_LAYER', `${this.what}: entry '${name}' lies under ${at}, which is not a directory`);
      }
      this.known.add(at);
    }
    return true;
  }

  /** Clears the way for an entry at `p`: its parents made, what is there removed (a directory kept when `keepDir`). */
  private place(p: string, keepDir: boolean, name: string): boolean {
    this.parents(p, true, name);
    this.layer.add(p);
    const st = lstat(this.host(p));
    if (!st) return false;
    if (keepDir && st.isDirectory()) return true;
    this.remove(p, st);
    return false;
  }

  private remove(p: string, st: fs.Stats): void {
    // rm does not follow symlinks, at the top or below.
    fs.rmSync(this.host(p), { recursive: st.isDirectory(), force: true });
    if (st.isDirectory()) this.known = new Set(['/']);
  }

  private owner(p: string, h: { uid?: number | null; gid?: number | null }): void {
    if (!this.privileged) return;
    try {
      fs.lchownSync(this.host(p), h.uid ?? 0, h.gid ?? 0);
    } catch {
      this.skipped.owners++;
    }
  }

  private dir(p: string, h: tar.Header): void {
    if (p !== '/' && !this.place(p, true, h.name)) fs.mkdirSync(this.host(p), 0o700);
    this.known.add(p);
    this.dirs.set(p, { mode: (h.mode ?? 0o755) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0, ...(h.mtime ? { mtime: h.mtime } : {}) });
  }

  /** A file's owner, then its mode (chown clears set-id bits), then its time. */
  private finishFile(fd: number, h: tar.Header): void {
    if (this.privileged) {
      try {
        fs.fchownSync(fd, h.uid ?? 0, h.gid ?? 0);
      } catch {
        this.skipped.owners++;
      }
    }
    fs.fchmodSync(fd, (h.mode ?? 0o644) & 0o7777);
    if (h.mtime) fs.futimesSync(fd, h.mtime, h.mtime);
  }

  private symlink(p: string, h: tar.Header): void {
    if (!h.linkname) throw new VsysError('IMAGE_BAD_LAYER', `${this.what}: symlink '${h.name}' has no target`);
    this.place(p, false, h.name);
    fs.symlinkSync(h.linkname, this.host(p));
    this.owner(p, h);
    if (h.mtime) fs.lutimesSync(this.host(p), h.mtime, h.mtime);
  }

  /** A hard link to an entry this layer or a lower one wrote, found inside the root without following links. */
  private hardlink(p: string, h: tar.Header): void {
    const target = normalisePath(h.linkname ?? '');
    if (target === undefined || target === '/') throw this.bad(h.name, `is a hard link to '${h.linkname ?? ''}', outside the image root`);
    if (target === p) return;
    this.place(p, false, h.name);
    const st = this.parents(target, false, h.name) ? lstat(this.host(target)) : undefined;
    if (!st) throw new VsysError('IMAGE_BAD_LAYER', `${this.what}: hard link '${h.name}' names ${target}, which no earlier entry made`);
    if (st.isDirectory()) throw new VsysError('IMAGE_BAD_LAYER', `${this.what}: hard link '${h.name}' names ${target}, a directory`);
    fs.linkSync(this.host(target), this.host(p));
  }

  /** A device or FIFO: made with mknod(1) when privileged (Node has no mknod), else counted. */
  private node(p: string, h: tar.Header): void {
    const type = h.type as string;
    const count = () => (type === 'fifo' ? this.skipped.fifos++ : this.skipped.devices++);
    this.place(p, false, h.name);
    if (!this.privileged) return void count();
    const mode = (h.mode ?? 0o600) & 0o7777;
    try {
      execFileSync('mknod', ['-m', mode.toString(8), this.host(p), NODE_KIND[type] as string, ...(type === 'fifo' ? [] : [String(h.devmajor ?? 0), String(h.devminor ?? 0)])], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch {
      return void count();
    }
    this.owner(p, h);
    fs.chmodSync(this.host(p), mode);
    if (h.mtime) fs.lutimesSync(this.host(p), h.mtime, h.mtime);
  }

  /** `.wh.NAME`: NAME removed, as a lower layer left it. */
  private whiteout(dir: string, name: string, raw: string): void {
    if (name === '' || name === '.' || name === '..') throw this.bad(raw, 'is a whiteout of no entry');
    const p = child(dir, name);
    if (this.layer.has(p) || !this.parents(p, false, raw)) return;
    const st = lstat(this.host(p));
    if (st) this.remove(p, st);
  }

  /** `.wh..wh..opq`: what lower layers put in `dir` removed, what this layer put there kept. */
  private opaque(dir: string, raw: string): void {
    this.parents(child(dir, '.wh..wh..opq'), true, raw);
    const clear = (d: string): void => {
      for (const name of fs.readdirSync(this.host(d))) {
        const c = child(d, name);
        const st = fs.lstatSync(this.host(c));
        if (!this.layer.has(c)) this.remove(c, st);
        else if (st.isDirectory()) clear(c);
      }
    };
    clear(dir);
  }

  /** Whether `p` is still a real directory reached through real directories (a later layer may have replaced one). */
  private realDir(p: string): boolean {
    let at = '';
    for (const part of p.split('/').slice(1)) {
      if (part === '') continue;
      at += `/${part}`;
      if (!lstat(this.host(at))?.isDirectory()) return false;
    }
    return true;
  }

  /** Directories' owners, modes and times, deepest first. */
  finish(): void {
    const depth = (p: string) => (p === '/' ? 0 : p.split('/').length);
    for (const [p, a] of [...this.dirs].sort((x, y) => depth(y[0]) - depth(x[0]))) {
      if (!this.realDir(p)) continue;
      this.owner(p, a);
      fs.chmodSync(this.host(p), a.mode);
      if (a.mtime) fs.utimesSync(this.host(p), a.mtime, a.mtime);
    }
  }
}
