// vsys as a library: the supported API, what `import ... from 'vsys'` gives. The CLI (src/cli/) is
// built on the same functions; anything not exported here is internal and may change.
//
//   import { scanPaths, scanImageRefs, probeHost, fixPaths } from 'vsys';
//   const r = await scanPaths({ paths: ['/opt/app'] });
//   for (const f of r.files) if (f.verdicts.none.outcome === 'crash') console.log(f.path, f.verdicts.none.why);

// The facts: vsyscall page entries, modes and what each does, syscall numbers, published figures.
export * from './model/index.js';
export { VsysError, isVsysError, type ErrorCode } from './errors.js';

// probe: this host's vsyscall mode (with its evidence), vDSO, clocksource, KPTI, perf access.
export { probeHost, type ProbeOptions, type HostReport } from './host/probe.js';
export { detectVsyscallMode, type VsyscallModeReport, type ModeEvidence } from './host/vsyscall-mode.js';

// bench: what each system-call path costs on this host.
export { runBench, type BenchOptions, type BenchReport, type BenchResult } from './bench/run-bench.js';
export { BENCH_PATHS, selectPaths, type BenchPath } from './bench/paths.js';
export { loadHostFigures, hostSlowdowns, type HostFigures } from './bench/host-figures.js';

// scan: files and directories (with each program's libraries), one file's bytes, images.
export { scanPaths, type ScanOptions, type ScanResult, type ScanSummary, type ScannedFile } from './scan/scan.js';
export { analyseFile, analyseBuffer } from './scan/read-file.js';
export type { FileReport, FileResult } from './scan/types.js';
export type { Finding } from './scan/find-uses.js';
export type { Identity } from './scan/identify.js';
export { verdictsOf, verdictOfUse, seedSlowdowns, type ModeVerdict, type Outcome, type Certainty, type SlowdownFor, type Use } from './scan/verdict.js';
export { scanImageRefs, isImageRef, type ImageScanOptions } from './image/scan-image.js';
export type { ImageReport } from './image/analyse-image.js';

// trace: live processes' vsyscalls and crashes (root: perf events, eBPF).
export { runTrace, type TraceOptions, type TraceSummary } from './trace/session.js';

// fix: rewrite direct calls of the page as system calls, in files, root filesystems and images.
export { fixPaths, type FixOptions, type FixRun } from './fix/fix-files.js';
export { fixImage, type FixImageOptions, type FixImageRun } from './fix/fix-image.js';
export { fixBytes, type FileFixReport, type SiteFix } from './fix/fix-bytes.js';
