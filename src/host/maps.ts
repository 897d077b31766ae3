// Parser for /proc/PID/maps lines (fs/proc/task_mmu.c show_map_vma format):
// start-end perms offset dev inode [name]
export interface MapsEntry {
  start: bigint;
  end: bigint;
  perms: string;
  offset: bigint;
  dev: string;
  inode: number;
  name: string;
}

const LINE = /^([0-9a-f]+)-([0-9a-f]+)\s+([-r][-w][-x][-ps])\s+([0-9a-f]+)\s+(\S+)\s+(\d+)\s*(.*)$/;

export function parseMaps(text: string): MapsEntry[] {
  const out: MapsEntry[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line.trim());
    if (!m) continue;
    out.push({
      start: BigInt('0x' + m[1]!),
      end: BigInt('0x' + m[2]!),
      perms: m[3]!,
      offset: BigInt('0x' + m[4]!),
      dev: m[5]!,
      inode: Number(m[6]!),
      name: m[7]!.trim(),
    });
  }
  return out;
}

/** The `[vsyscall]` line, if any. */
export function findVsyscallLine(entries: MapsEntry[]): MapsEntry | undefined {
  return entries.find((e) => e.name === '[vsyscall]');
}
