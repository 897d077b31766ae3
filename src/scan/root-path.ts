// Path resolution confined to a root directory, as the dynamic loader would see it inside a
// chroot or container: absolute symlink targets restart at the root, `..` never climbs above it,
// and link chains are bounded (ELOOP after 40, as the kernel does).
import fs from 'node:fs';
import path from 'node:path';

const MAX_LINKS = 40;

/**
 * Resolves `inner` (an absolute path inside the root) to a real host path that stays inside `root`,
 * or undefined when it does not exist, loops, or would escape.
 */
export function resolveInRoot(root: string, inner: string): string | undefined {
  const rootAbs = path.resolve(root);
  let pending = inner.split('/').filter((c) => c !== '' && c !== '.');
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const c = pending.shift() as string;
    if (c === '..') {
      done.pop();
      continue;
    }
    const host = path.join(rootAbs, ...done, c);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(host);
    } catch {
      return undefined;
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) return undefined;
      let target: string;
      try {
        target = fs.readlinkSync(host);
      } catch {
        return undefined;
      }
      const parts = target.split('/').filter((x) => x !== '' && x !== '.');
      if (target.startsWith('/')) done.length = 0;
      pending = [...parts, ...pending];
      continue;
    }
    done.push(c);
  }
  return path.join(rootAbs, ...done);
}

/** The path of `hostPath` as seen from inside `root` ("/lib/libc.so.6"), or undefined if outside. */
export function innerPath(root: string, hostPath: string): string | undefined {
  const rel = path.relative(path.resolve(root), path.resolve(hostPath));
  if (rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  return `/${rel}`;
}
