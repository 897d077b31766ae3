// The files mapped by running processes (/proc/PID/maps, fs/proc/task_mmu.c), each distinct file
// (device:inode) once, opened by a route that reaches the very file the process mapped.
//
// Paths in /proc/PID/maps are printed relative to the *reader's* root (d_path): a chroot'ed
// process's libc shows as /srv/old/lib/libc.so.6, a container's (another mount namespace, not
// reachable from ours) as /lib/libc.so.6. So the path is taken inside the process's root first
// (the maps path with readlink(/proc/PID/root) removed, under /proc/PID/root), checked by
// device:inode, then /proc/PID/map_files/<range> (the mapped file itself; needs root).
import fs from 'node:fs';

export interface MappedFile {
  /** Path to read it by: /proc/PID/root/<path inside the process's root>, or /proc/PID/map_files/<range>. */
  hostPath: string;
  /** Path as /proc/PID/maps shows it to vsys: the host path for a chroot'ed process, the path inside a container. */
  path: string;
  /** The process's root as vsys sees it (readlink /proc/PID/root), when it is not `/`: a chroot. */
  root?: string;
  processes: { pid: number; comm: string }[];
}

export interface UnresolvedFile {
  path: string;
  pid: number;
  reason: string;
}

export interface ProcessScanInput {
  files: MappedFile[];
  /** Processes whose maps were read (kernel threads, which map nothing, are not counted). */
  processes: number;
  /** Processes whose maps could not be read (exited, or no permission). */
  unreadable: number;
  /** Of those, the ones refused for lack of permission (another user's process: needs root). */
  denied: number;
  /** Mapped files no route could open (with the first process seen mapping each). */
  unresolved: UnresolvedFile[];
}

const MAPS_LINE = /^([0-9a-f]+-[0-9a-f]+) \S+ [0-9a-f]+ ([0-9a-f]+):([0-9a-f]+) (\d+)\s+(\/.*)$/;

/** Whether a stat (bigint) is the file a maps line names: Linux's dev_t encoding (new_encode_dev). */
function sameFile(st: fs.BigIntStats, major: bigint, minor: bigint, inode: bigint): boolean {
  const d = st.dev;
  const maj = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const min = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return st.ino === inode && maj === major && min === minor;
}

function statOf(p: string): fs.BigIntStats | undefined {
  try {
    const st = fs.statSync(p, { bigint: true });
    return st.isFile() ? st : undefined;
  } catch {
    return undefined;
  }
}

/** The process's root as a path prefix of what maps shows us ('' when it is our `/` or unknown). */
function rootPrefix(procRoot: string, pid: number): string {
  try {
    const r = fs.readlinkSync(`${procRoot}/${pid}/root`);
    return r === '/' ? '' : r.replace(/\/+$/, '');
  } catch {
    return '';
  }
}

/** The route to the file one maps line names, or undefined when none reaches it. */
export function resolveMapped(procRoot: string, pid: number, root: string, line: { range: string; major: bigint; minor: bigint; inode: bigint; path: string }): string | undefined {
  const inside = root !== '' && line.path.startsWith(`${root}/`) ? line.path.slice(root.length) : line.path;
  const rooted = `${procRoot}/${pid}/root${inside}`;
  const st = statOf(rooted);
  if (st && sameFile(st, line.major, line.minor, line.inode)) return rooted;
  const mapped = `${procRoot}/${pid}/map_files/${line.range}`;
  if (statOf(mapped)) return mapped;
  // Without root map_files is closed; a same-named file (overlayfs reports the lower inode) is the best left.
  return st ? rooted : undefined;
}

export function mappedFiles(procRoot = '/proc'): ProcessScanInput {
  const byKey = new Map<string, MappedFile>();
  const unresolved = new Map<string, UnresolvedFile>();
  let processes = 0;
  let unreadable = 0;
  let denied = 0;
  for (const name of fs.readdirSync(procRoot)) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    let maps: string;
    let comm = '?';
    try {
      maps = fs.readFileSync(`${procRoot}/${pid}/maps`, 'utf8');
      comm = fs.readFileSync(`${procRoot}/${pid}/comm`, 'utf8').trim();
    } catch (e) {
      unreadable++;
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') denied++;
      continue;
    }
    if (maps === '') continue; // kernel threads
    processes++;
    const root = rootPrefix(procRoot, pid);
    const seenHere = new Set<string>();
    for (const text of maps.split('\n')) {
      const m = MAPS_LINE.exec(text);
      if (!m) continue;
      const [, range, maj, min, inode, p] = m as unknown as [string, string, string, string, string, string];
      if (inode === '0' || p.endsWith(' (deleted)') || p.startsWith('/memfd:') || p.startsWith('/dev/')) continue;
      const key = `${maj}:${min}:${inode}`;
      if (seenHere.has(key)) continue;
      seenHere.add(key);
      let f = byKey.get(key);
      if (!f) {
        const hostPath = resolveMapped(procRoot, pid, root, { range, major: BigInt(`0x${maj}`), minor: BigInt(`0x${min}`), inode: BigInt(inode), path: p });
        if (hostPath === undefined) {
          if (!unresolved.has(key)) unresolved.set(key, { path: p, pid, reason: process.getuid?.() === 0 ? 'not found through /proc/PID/root or /proc/PID/map_files' : 'not found through /proc/PID/root; /proc/PID/map_files needs root' });
          continue;
        }
        f = { hostPath, path: p, ...(root ? { root } : {}), processes: [] };
        byKey.set(key, f);
        unresolved.delete(key);
      }
      f.processes.push({ pid, comm });
    }
  }
  return { files: [...byKey.values()], processes, unreadable, denied, unresolved: [...unresolved.values()] };
}
