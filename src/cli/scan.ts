// `vsys scan`: arguments, progress on stderr, text / NDJSON / SARIF out, exit code from --fail-on.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { isVsyscallMode, type VsyscallMode } from '../model/modes.js';
import { OUTCOME_RANK, type Outcome } from '../scan/verdict.js';
import { scanPaths, type ScanProgress, type ScanResult } from '../scan/scan.js';
import { mappedFiles } from '../scan/processes.js';
import { formatScan, formatSarif } from './format-scan.js';
import { EXIT, toJson, usageError, type Io } from './io.js';
import type { Command } from './main.js';

const HELP = `usage: vsys scan [OPTIONS] PATH...
       vsys scan --processes [OPTIONS]

Finds every use of the legacy vsyscall page (0xffffffffff600000) in ELF files and
directories (recursively), and says what happens to each file in each mode:
crash (SIGSEGV under vsyscall=none), slow (emulated by the kernel), fallback (used
only if the vDSO lacks the symbol), or ok. Dynamically linked programs are checked
through the libraries they would load from the same root (DT_NEEDED, RUNPATH,
ld.so.conf, /lib/x86_64-linux-gnu, /lib64, …).

options:
  --mode MODE          none | xonly | emulate | native | host (default: host, this
                       machine's mode): the verdict shown and used for --fail-on
  --fail-on OUTCOME    crash | slow: exit 1 when any file is that bad or worse
  --json               NDJSON: one object per ELF file, then {"summary": …}
  --sarif FILE         also write SARIF 2.1.0 (one result per finding) to FILE
  --root DIR           root the libraries are looked up in (default: the scanned
                       directory if it looks like a rootfs, else /)
  --all                list clean files too (text output)
  --processes          scan the files mapped by every running process
  --workers N          worker threads (default: one per core, max 8; 0 = none)
  --max-file-size MB   skip larger files with FILE_TOO_LARGE (default 2048)
  -h, --help           this text

exit status: 0 ok, 1 findings at or above --fail-on, 2 usage, 3 runtime error

examples:
  vsys scan /usr/bin /usr/lib/x86_64-linux-gnu
  vsys scan --mode none --fail-on crash ./rootfs        # CI gate before moving to vsyscall=none
  vsys scan --json ./rootfs | jq 'select(.class != "clean") | .path'
  vsys scan --sarif vsys.sarif ./build/out
  vsys scan --processes --mode none
`;

async function hostMode(): Promise<{ mode: VsyscallMode; source: string }> {
  const { detectVsyscallMode } = await import('../host/vsyscall-mode.js');
  const { readKconfig } = await import('../host/kconfig.js');
  const release = (await import('node:os')).release();
  const r = await detectVsyscallMode({ active: false, kconfig: readKconfig(release), kernelRelease: release });
  if (r.mode === 'unknown') return { mode: 'none', source: 'host mode unknown; assuming none, the strictest' };
  return { mode: r.mode, source: `this host, from ${r.decidedBy}` };
}

function progressBar(io: Io): ((p: ScanProgress) => void) | undefined {
  if (!io.stderr.isTTY) return undefined;
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (now - last < 100) return;
    last = now;
    const name = (p.current ?? '').slice(-50);
    io.stderr.write(`\r\x1b[2Kscanning: ${p.files} files, ${p.elfFiles} ELF, ${(p.bytes / 1e6).toFixed(0)} MB  ${name}`);
  };
}

export const scanCommand: Command = {
  summary: 'find vsyscall call sites in ELF files and directories, and what happens in each mode',
  async run(args, io) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        mode: { type: 'string' },
        'fail-on': { type: 'string' },
        json: { type: 'boolean' },
        sarif: { type: 'string' },
        root: { type: 'string' },
        all: { type: 'boolean' },
        processes: { type: 'boolean' },
        workers: { type: 'string' },
        'max-file-size': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    if (!values.processes && positionals.length === 0) throw usageError('scan: give at least one PATH (a file or directory), or --processes');
    if (values.processes && positionals.length > 0) throw usageError('scan: --processes takes no PATH');
    const modeArg = values.mode ?? 'host';
    if (modeArg !== 'host' && !isVsyscallMode(modeArg)) throw usageError(`scan: --mode must be none, xonly, emulate, native or host, not '${modeArg}'`);
    const failOn = values['fail-on'];
    if (failOn !== undefined && failOn !== 'crash' && failOn !== 'slow') throw usageError(`scan: --fail-on must be crash or slow, not '${failOn}'`);
    const workers = values.workers === undefined ? undefined : Number(values.workers);
    if (workers !== undefined && (!Number.isInteger(workers) || workers < 0 || workers > 64)) throw usageError('scan: --workers must be an integer from 0 to 64');
    const maxMb = values['max-file-size'] === undefined ? undefined : Number(values['max-file-size']);
    if (maxMb !== undefined && !(maxMb > 0)) throw usageError('scan: --max-file-size must be a positive number of megabytes');

    const { mode, source } = modeArg === 'host' ? await hostMode() : { mode: modeArg as VsyscallMode, source: 'chosen with --mode' };
    const onProgress = progressBar(io);
    let paths = positionals;
    let procs: ReturnType<typeof mappedFiles> | undefined;
    if (values.processes) {
      procs = mappedFiles();
      paths = procs.files.map((f) => f.hostPath);
    }
    const { hostSlowdowns, loadHostFigures } = await import('../bench/host-figures.js');
    const { seedSlowdowns } = await import('../scan/verdict.js');
    const result: ScanResult = await scanPaths({
      paths,
      slowdown: hostSlowdowns(loadHostFigures(), seedSlowdowns),
      ...(values.root !== undefined ? { root: values.root } : {}),
      ...(workers !== undefined ? { workers } : {}),
      ...(maxMb !== undefined ? { maxFileBytes: Math.floor(maxMb * 1024 * 1024) } : {}),
      ...(onProgress ? { onProgress } : {}),
    });
    if (onProgress) io.stderr.write('\r\x1b[2K');

    if (values.sarif) fs.writeFileSync(values.sarif, formatSarif(result, mode, '0.1.0'));
    if (values.json) {
      for (const f of result.files) io.stdout.write(toJson(f, 0) + '\n');
      for (const e of result.errors) io.stdout.write(toJson({ path: e.path, error: { code: e.code, message: e.message } }, 0) + '\n');
      io.stdout.write(toJson({ summary: { ...result.summary, mode, modeSource: source } }, 0) + '\n');
    } else {
      io.stdout.write(formatScan(result, mode, source, values.all ?? false));
      if (procs) io.stdout.write(formatProcesses(result, procs, mode));
    }
    if (values.sarif && !values.json) io.stderr.write(`SARIF written to ${values.sarif}\n`);
    if (failOn) {
      const bar = OUTCOME_RANK[failOn as Outcome];
      if (result.files.some((f) => OUTCOME_RANK[f.verdicts[mode].outcome] >= bar)) return EXIT.findings;
    }
    return EXIT.ok;
  },
};

function formatProcesses(r: ScanResult, procs: ReturnType<typeof mappedFiles>, mode: VsyscallMode): string {
  const byPath = new Map(procs.files.map((f) => [f.hostPath, f]));
  const lines = [`processes: ${procs.processes} read, ${procs.unreadable} unreadable; ${procs.files.length} distinct mapped files`];
  for (const f of r.files) {
    if (f.class === 'clean' || f.class === 'data-ref') continue;
    const m = byPath.get(f.path);
    if (!m) continue;
    const who = m.processes.slice(0, 8).map((p) => `${p.pid} (${p.comm})`).join(', ');
    lines.push(`  ${m.path}: ${f.class}, ${f.verdicts[mode].outcome} under ${mode} — used by ${who}${m.processes.length > 8 ? `, … ${m.processes.length - 8} more` : ''}`);
  }
  return lines.join('\n') + '\n';
}
