// What /proc/PID/maps says of the vsyscall mode: the permissions of its [vsyscall] line, as
// fs/proc/task_mmu.c (show_map_vma) prints them; the mapsPerms column of modes.ts's MODE_BEHAVIOUR.
// Pure, for the layers that cannot ask host/ (trace/): host/vsyscall-mode.ts weighs it with the rest.

/** Readable and callable look alike in emulate and native mode: maps alone cannot tell them apart. */
export type MapsModeSays = 'none' | 'xonly' | 'emulate-or-native' | 'unknown';

/** start-end perms offset dev inode [name], the line format host/maps.ts parses. */
const LINE = /^([0-9a-f]+)-([0-9a-f]+)\s+([-r][-w][-x][-ps])\s+([0-9a-f]+)\s+(\S+)\s+(\d+)\s*(.*)$/;

/** The permissions of the `[vsyscall]` line of a maps text (e.g. '--xp'); undefined when there is none. */
export function vsyscallPermsOfMaps(mapsText: string): string | undefined {
  for (const line of mapsText.split('\n')) {
    const m = LINE.exec(line.trim());
    if (m && m[7]!.trim() === '[vsyscall]') return m[3]!;
  }
  return undefined;
}

/** The mode a `[vsyscall]` line's permissions say (undefined: no line, no page). */
export function modeOfVsyscallPerms(perms: string | undefined): MapsModeSays {
  if (perms === undefined) return 'none';
  if (perms.startsWith('--x')) return 'xonly';
  if (perms.startsWith('r-x')) return 'emulate-or-native';
  return 'unknown';
}

/** What a maps text says of the vsyscall mode. */
export function modeOfMaps(mapsText: string): MapsModeSays {
  return modeOfVsyscallPerms(vsyscallPermsOfMaps(mapsText));
}
