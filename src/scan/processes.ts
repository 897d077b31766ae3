// The files mapped by running processes (/proc/PID/maps), read through /proc/PID/root so files of
// processes in containers are the container's, each distinct file (device:inode) once.
import fs from 'node:fs';

export interface MappedFile {
  /** Path to read it by: /proc/PID/root/<path> of the first process seen mapping it. */
  hostPath: string;
  /** Path as the processes see it. */
  path: string;
  processes: { pid: number; comm: string }[];
}

export interface ProcessScanInput {
  files: MappedFile[];
  processes: number;
  /** Processes whose maps could not be read (exited, or no permission). */
  unreadable: number;
}

const MAPS_LINE = /^[0-9a-f]+-[0-9a-f]+ \S+ [0-9a-f]+ ([0-9a-f]+:[0-9a-f]+) (\d+)\s+(\/.*)$/;

export function mappedFiles(procRoot = '/proc'): ProcessScanInput {
  const byKey = new Map<string, MappedFile>();
  let processes = 0;
  let unreadable = 0;
  for (const name of fs.readdirSync(procRoot)) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    let maps: string;
    let comm = '?';
    try {
      maps = fs.readFileSync(`${procRoot}/${pid}/maps`, 'utf8');
      comm = fs.readFileSync(`${procRoot}/${pid}/comm`, 'utf8').trim();
    } catch {
      unreadable++;
      continue;
    }
    if (maps === '') continue; // kernel threads
    processes++;
    const seenHere = new Set<string>();
    for (const line of maps.split('\n')) {
      const m = MAPS_LINE.exec(line);
      if (!m) continue;
      const [, dev, inode, p] = m as unknown as [string, string, string, string];
      if (inode === '0' || p.endsWith(' (deleted)') || p.startsWith('/memfd:') || p.startsWith('/dev/')) continue;
      const key = `${dev}:${inode}`;
      if (seenHere.has(key)) continue;
      seenHere.add(key);
      let f = byKey.get(key);
      if (!f) {
        f = { hostPath: `${procRoot}/${pid}/root${p}`, path: p, processes: [] };
        byKey.set(key, f);
      }
      f.processes.push({ pid, comm });
    }
  }
  return { files: [...byKey.values()], processes, unreadable };
}
