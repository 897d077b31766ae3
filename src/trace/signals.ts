// Signal numbers as the kernel's tracepoints report them on x86-64
// (arch/x86/include/uapi/asm/signal.h), with the names the event lines print.
export const SIGILL = 4;
export const SIGABRT = 6;
export const SIGBUS = 7;
export const SIGSEGV = 11;

export const SIGNAL_NAMES: Readonly<Record<number, string>> = { [SIGSEGV]: 'SIGSEGV', [SIGBUS]: 'SIGBUS', [SIGILL]: 'SIGILL', [SIGABRT]: 'SIGABRT' };
