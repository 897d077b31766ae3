// Parser for the kernel configuration (/proc/config.gz or /boot/config-RELEASE): the options
// that decide the vsyscall page (arch/x86/Kconfig: LEGACY_VSYSCALL_*, X86_VSYSCALL_EMULATION) and 32-bit paths.
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import type { VsyscallMode } from '../model/modes.js';

export interface KconfigFacts {
  source: string;
  vsyscallEmulation: boolean | null;
  /** Default mode chosen at build time (before vsyscall= on the command line). */
  legacyVsyscallDefault: VsyscallMode | null;
  ia32Emulation: boolean | null;
  ia32EmulationDefaultDisabled: boolean | null;
  pti: boolean | null;
}

export function parseKconfig(text: string, source: string): KconfigFacts {
  const opts = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(CONFIG_\w+)=(.*)$/.exec(line);
    if (m) opts.set(m[1]!, m[2]!);
    const n = /^# (CONFIG_\w+) is not set/.exec(line);
    if (n) opts.set(n[1]!, 'n');
  }
  const flag = (k: string): boolean | null => {
    const v = opts.get(k);
    return v === undefined ? null : v === 'y' || v === 'm';
  };
  let def: VsyscallMode | null = null;
  if (flag('CONFIG_LEGACY_VSYSCALL_NONE')) def = 'none';
  else if (flag('CONFIG_LEGACY_VSYSCALL_XONLY')) def = 'xonly';
  else if (flag('CONFIG_LEGACY_VSYSCALL_EMULATE')) def = 'emulate';
  else if (flag('CONFIG_LEGACY_VSYSCALL_NATIVE')) def = 'native';
  return {
    source,
    vsyscallEmulation: flag('CONFIG_X86_VSYSCALL_EMULATION'),
    legacyVsyscallDefault: def,
    ia32Emulation: flag('CONFIG_IA32_EMULATION'),
    ia32EmulationDefaultDisabled: flag('CONFIG_IA32_EMULATION_DEFAULT_DISABLED'),
    pti: flag('CONFIG_PAGE_TABLE_ISOLATION') ?? flag('CONFIG_MITIGATION_PAGE_TABLE_ISOLATION'),
  };
}

/** Reads the running kernel's config; null when neither source exists (say so, don't guess). */
export function readKconfig(release: string): KconfigFacts | null {
  const candidates = ['/proc/config.gz', `/boot/config-${release}`];
  for (const path of candidates) {
    if (!existsSync(path)) continue;
    try {
      const raw = readFileSync(path);
      const text = path.endsWith('.gz') ? gunzipSync(raw).toString('utf8') : raw.toString('utf8');
      return parseKconfig(text, path);
    } catch {
      continue;
    }
  }
  return null;
}
