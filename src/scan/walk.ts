// The files under the paths given: recursive, symlinks inside directories never followed (the
// file they point to is scanned where it lives), hard links scanned once, pseudo filesystems
// (/proc, /sys, …) skipped. Paths named on the command line are followed.
import fs from 'node:fs';
import path from 'node:path';

export interface WalkFile {
  path: string;
  size: number;
}

export interface WalkSkip {
  path: string;
  reason: 'symlink' | 'special' | 'pseudo-fs' | 'hard-link' | 'duplicate' | 'unreadable' | 'missing' | 'loop';
  message?: string;
}

// statfs f_type of filesystems that hold no programs: proc, sysfs, devpts, cgroup, cgroup2, debugfs, tracefs, securityfs, bpf.
const PSEUDO_FS = new Set([0x9fa0, 0x62656572, 0x1cd1, 0x27e0eb, 0x63677270, 0x64626720, 0x74726163, 0x73636673, 0xcafe4a11]);

function isPseudo(dir: string): boolean {
  try {
    return PSEUDO_FS.has(fs.statfsSync(dir).type);
  } catch {
    return false;
  }
}

/**
 * A file's identity within one walk: device and inode, and for a file with one name also its
 * change time and size, so an inode number freed by a file deleted during the walk and reused by a
 * new one is not taken for the same file (hard links share all of these).
 */
function fileKey(st: fs.Stats): string {
  return st.nlink > 1 ? `${st.dev}:${st.ino}` : `${st.dev}:${st.ino}:${st.ctimeMs}:${st.size}`;
}

/** Yields regular files; reports skipped entries (and arguments that do not exist) through `onSkip`. */
export async function* walk(paths: string[], onSkip: (s: WalkSkip) => void = () => {}): AsyncGenerator<WalkFile> {
  const seen = new Set<string>();
  for (const arg of paths) {
    let st: fs.Stats;
    try {
      st = fs.statSync(arg);
    } catch (e) {
      // One bad argument does not stop the others; what went wrong is kept (a link loop, no permission, nothing there).
      const code = (e as NodeJS.ErrnoException).code;
      onSkip({ path: arg, reason: code === 'ELOOP' ? 'loop' : code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : 'unreadable', message: (e as Error).message });
      continue;
    }
    if (st.isFile()) {
      const key = fileKey(st);
      if (!seen.has(key)) {
        seen.add(key);
        yield { path: arg, size: st.size };
      }
      continue;
    }
    if (!st.isDirectory()) {
      onSkip({ path: arg, reason: 'special' });
      continue;
    }
    const stack = [arg];
    while (stack.length > 0) {
      const dir = stack.pop() as string;
      // A directory reached twice (overlapping arguments, a bind mount) is walked once.
      try {
        const dst = fs.statSync(dir);
        const dkey = `d${dst.dev}:${dst.ino}`;
        if (seen.has(dkey)) continue;
        seen.add(dkey);
      } catch {
        // it goes: readdir below reports it
      }
      if (isPseudo(dir)) {
        onSkip({ path: dir, reason: 'pseudo-fs' });
        continue;
      }
      let entries: fs.Dirent[];
      try {
        entries = await fs.promises.readdir(dir, { withFileTypes: true });
      } catch (e) {
        onSkip({ path: dir, reason: 'unreadable', message: (e as Error).message });
        continue;
      }
      entries.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
      for (const ent of entries) {
        const p = path.join(dir, ent.name);
        if (ent.isSymbolicLink()) {
          onSkip({ path: p, reason: 'symlink' });
        } else if (ent.isDirectory()) {
          stack.push(p);
        } else if (ent.isFile()) {
          let fst: fs.Stats;
          try {
            fst = fs.lstatSync(p);
          } catch (e) {
            onSkip({ path: p, reason: 'unreadable', message: (e as Error).message });
            continue;
          }
          const key = fileKey(fst);
          if (seen.has(key)) {
            onSkip({ path: p, reason: fst.nlink > 1 ? 'hard-link' : 'duplicate' });
            continue;
          }
          seen.add(key);
          yield { path: p, size: fst.size };
        } else {
          onSkip({ path: p, reason: 'special' });
        }
      }
    }
  }
}
