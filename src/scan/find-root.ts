// The root filesystem a path lives in: the nearest directory above it that holds a dynamic
// loader, a libc or an os-release file (what a chroot, container or unpacked image has at its top),
// so that a program is judged against the libraries it would load there, not the host's.
import fs from 'node:fs';
import path from 'node:path';

/** Entries whose presence makes a directory a root (lstat: a dangling absolute link still counts). */
const MARKERS = [
  'etc/os-release',
  'usr/lib/os-release',
  'lib64/ld-linux-x86-64.so.2',
  'lib/ld-linux-x86-64.so.2',
  'lib/x86_64-linux-gnu/ld-linux-x86-64.so.2',
  'usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2',
  'lib/ld-musl-x86_64.so.1',
  'lib64/libc.so.6',
  'lib/libc.so.6',
  'lib/x86_64-linux-gnu/libc.so.6',
  'usr/lib/x86_64-linux-gnu/libc.so.6',
  'usr/lib64/libc.so.6',
];

/** What a root's top looks like besides its libraries: a `usr` below such a directory is not a root. */
const TOP_LEVEL = ['etc', 'bin', 'lib', 'lib64', 'sbin'];

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** A merged /usr holds lib64/ld-linux-x86-64.so.2 too: it is part of the root above it. */
export function isUsrOfRoot(dir: string): boolean {
  const abs = path.resolve(dir);
  return path.basename(abs) === 'usr' && TOP_LEVEL.some((d) => exists(path.join(path.dirname(abs), d)));
}

export function looksLikeRoot(dir: string): boolean {
  return MARKERS.some((m) => exists(path.join(dir, m))) && !isUsrOfRoot(dir);
}

/**
 * Finds roots for paths, remembering every directory it has looked at (a directory walk asks for
 * thousands of files in a few hundred directories).
 */
export class RootFinder {
  private readonly byDir = new Map<string, string>();
  private readonly known: Set<string>;

  /** `known`: directories taken as roots whatever they hold (a directory the user named as one). */
  constructor(known: string[] = []) {
    this.known = new Set(known.map((k) => path.resolve(k)));
  }

  /** The root of `p` (a file or directory): the nearest directory at or above it that looks like one, else "/". */
  rootOf(p: string): string {
    let dir = path.resolve(p);
    try {
      if (!fs.statSync(dir).isDirectory()) dir = path.dirname(dir);
      // Through symlinked directories (ln -s ROOTFS/bin bin): the root is above where it really is.
      dir = this.real(dir);
    } catch {
      dir = path.dirname(dir);
    }
    const walked: string[] = [];
    let found = '/';
    for (let d = dir; d !== '/'; d = path.dirname(d)) {
      const known = this.byDir.get(d);
      if (known !== undefined) {
        found = known;
        break;
      }
      walked.push(d);
      if (this.known.has(d) || looksLikeRoot(d)) {
        found = d;
        break;
      }
    }
    for (const d of walked) this.byDir.set(d, found);
    return found;
  }

  private readonly reals = new Map<string, string>();

  private real(dir: string): string {
    let r = this.reals.get(dir);
    if (r === undefined) this.reals.set(dir, (r = fs.realpathSync(dir)));
    return r;
  }
}
