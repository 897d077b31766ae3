// The facts vsys stands on, as typed data: the single source every command uses.
export * from './vsyscall-page.js';
export * from './modes.js';
export * from './syscalls.js';
export * from './page-fault.js';
export * from './figures.js';
export * from './remedies.js';
export * from './site-kinds.js';
export * from './seccomp.js';
