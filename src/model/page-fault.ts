// x86 page-fault error code bits, from arch/x86/include/asm/trap_pf.h,
// and the names sysdig prints for them (seed 003).

export const PF = {
  PROT: 0x1,
  WRITE: 0x2,
  USER: 0x4,
  RSVD: 0x8,
  INSTR: 0x10,
  PK: 0x20,
  SHSTK: 0x40,
  SGX: 0x8000,
} as const;

export type PageFaultFlag = keyof typeof PF;

/** Flag names of an error code, e.g. 0x14 → ['USER', 'INSTR']. */
export function decodePageFaultFlags(code: number): PageFaultFlag[] {
  return (Object.keys(PF) as PageFaultFlag[]).filter((k) => (code & PF[k]) !== 0);
}

/**
 * sysdig-style description, e.g. 0x14 → PAGE_NOT_PRESENT|READ_ACCESS|USER_FAULT|INSTRUCTION_FETCH.
 * Absent bits are named too (not-present, read, kernel), as sysdig does.
 */
export function describePageFault(code: number): string {
  const parts = [
    code & PF.PROT ? 'PROTECTION_VIOLATION' : 'PAGE_NOT_PRESENT',
    code & PF.WRITE ? 'WRITE_ACCESS' : 'READ_ACCESS',
    code & PF.USER ? 'USER_FAULT' : 'SUPERVISOR_FAULT',
  ];
  if (code & PF.RSVD) parts.push('RESERVED_PAGE');
  if (code & PF.INSTR) parts.push('INSTRUCTION_FETCH');
  if (code & PF.PK) parts.push('PROTECTION_KEYS');
  if (code & PF.SHSTK) parts.push('SHADOW_STACK');
  return parts.join('|');
}

/**
 * The error code of a user-mode instruction fetch from the vsyscall page: USER|INSTR, plus PROT
 * where the page is mapped (emulate maps it readable, not executable); xonly leaves it unmapped,
 * so the fault is "not present" (0x14, what this host reports for every call).
 */
export function emulatedFetchError(mode: 'xonly' | 'emulate-or-native'): number {
  return PF.USER | PF.INSTR | (mode === 'xonly' ? 0 : PF.PROT);
}
