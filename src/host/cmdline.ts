// Parser for /proc/cmdline: the parameters that decide syscall paths (vsyscall=, pti, vdso=, ia32_emulation=).
// As the kernel does for early_param, the last occurrence of a parameter wins.
import { isVsyscallMode, type VsyscallMode } from '../model/modes.js';

export interface CmdlineFacts {
  /** Value of the last `vsyscall=`; `invalid` when it names no mode. */
  vsyscall: VsyscallMode | 'invalid' | null;
  vsyscallRaw: string | null;
  pti: 'on' | 'off' | 'auto' | null;
  mitigations: string | null;
  vdso: string | null;
  ia32Emulation: boolean | null;
}

export function parseCmdline(text: string): CmdlineFacts {
  const params = new Map<string, string | true>();
  // The kernel stops at "--": what follows goes to init.
  for (const tok of text.trim().split(/\s+/)) {
    if (tok === '--') break;
    if (!tok) continue;
    const eq = tok.indexOf('=');
    if (eq < 0) params.set(tok, true);
    else params.set(tok.slice(0, eq), tok.slice(eq + 1).replace(/^"|"$/g, ''));
  }
  const str = (k: string) => {
    const v = params.get(k);
    return typeof v === 'string' ? v : null;
  };
  const raw = str('vsyscall');
  let pti: CmdlineFacts['pti'] = null;
  if (params.has('nopti')) pti = 'off';
  const p = str('pti');
  if (p === 'on' || p === 'off' || p === 'auto') pti = p;
  const ia32 = str('ia32_emulation');
  return {
    vsyscall: raw === null ? null : isVsyscallMode(raw) ? raw : 'invalid',
    vsyscallRaw: raw,
    pti,
    mitigations: str('mitigations'),
    vdso: str('vdso'),
    ia32Emulation: ia32 === null ? null : ['1', 'y', 'Y', 'on', 'true'].includes(ia32),
  };
}
