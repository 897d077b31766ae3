// Path resolution confined to a root directory, as the dynamic loader would see it inside a
// chroot or container: absolute symlink targets restart at the root, `..` never climbs above it,
// and link chains are bounded (ELOOP after 40, as the kernel does).
import fs from 'node:fs';
import path from 'node:path';

const MAX_LINKS = 40;

/** The PATH a container runtime gives a command when the image sets none (and `vsys run` a root without one). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What the walk finds at a path: nothing, a link to follow (its target), or something to step into. */
export type LinkStep = 'missing' | 'other' | { link: string };

/**
 * The link walk shared by the host and image roots: follows `inner` component by component,
 * restarting at the root for absolute targets, never climbing above it, at most 40 links.
 * `step` is asked about each prefix ("/a", "/a/b"); returns the canonical components.
 */
export function walkLinks(inner: string, step: (prefix: string[]) => LinkStep): string[] | undefined {
  let pending = inner.split('/').filter((c) => c !== '' && c !== '.');
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const c = pending.shift() as string;
    if (c === '..') {
      done.pop();
      continue;
    }
    const s = step([...done, c]);
    if (s === 'missing') return undefined;
    if (s !== 'other') {
      if (++links > MAX_LINKS) return undefined;
      if (s.link.startsWith('/')) done.length = 0;
      pending = [...s.link.split('/').filter((x) => x !== '' && x !== '.'), ...pending];
      continue;
    }
    done.push(c);
  }
  return done;
}

/**
 * Resolves `inner` (an absolute path inside the root) to a real host path that stays inside `root`,
 * or undefined when it does not exist, loops, or would escape. `seen` remembers what each host path
 * was (a library search asks about /usr, /usr/lib, … for every name it tries).
 */
export function resolveInRoot(root: string, inner: string, seen?: Map<string, LinkStep>): string | undefined {
  const rootAbs = path.resolve(root);
  const done = walkLinks(inner, (prefix) => {
    const host = path.join(rootAbs, ...prefix);
    const known = seen?.get(host);
    if (known !== undefined) return known;
    let step: LinkStep;
    try {
      step = fs.lstatSync(host).isSymbolicLink() ? { link: fs.readlinkSync(host) } : 'other';
    } catch {
      step = 'missing';
    }
    seen?.set(host, step);
    return step;
  });
  return done === undefined ? undefined : path.join(rootAbs, ...done);
}

/** The path of `hostPath` as seen from inside `root` ("/lib/libc.so.6"), or undefined if outside. */
export function innerPath(root: string, hostPath: string): string | undefined {
  const rel = path.relative(path.resolve(root), path.resolve(hostPath));
  if (rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  return `/${rel}`;
}
