// The command line: picks a command, runs it, maps errors to exit codes. Nothing here measures
// or analyses; commands live in their own modules and are loaded only when asked for.
import { VsysError } from '../errors.js';
import { EXIT, type Command, type Io } from './io.js';
import { VSYS_VERSION } from '../version.js';

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  doctor: { summary: 'one screen about this host (the default)', load: async () => (await import('./doctor.js')).doctorCommand },
  scan: { summary: 'find vsyscall call sites in ELF files and directories, and what happens in each mode', load: async () => (await import('./scan.js')).scanCommand },
  bench: { summary: 'the cost of each syscall path here, beside published figures', load: async () => (await import('./bench.js')).benchCommand },
  fix: { summary: 'rewrite vsyscall calls so files and root filesystems run on vsyscall=none kernels', load: async () => (await import('./fix.js')).fixCommand },
  run: { summary: 'run a command or an image as a vsyscall=none kernel would: see what really crashes', load: async () => (await import('./run.js')).runCommand },
  trace: { summary: 'which live processes use the vsyscall page, how often, which crashed', load: async () => (await import('./trace.js')).traceCommand },
  exporter: { summary: 'a Prometheus exporter: vsyscall mode, costs, emulations and crashes per workload', load: async () => (await import('./exporter.js')).exporterCommand },
  probe: { summary: 'host facts: vsyscall mode with evidence, vDSO, clocksource, KPTI, perf', load: async () => (await import('./probe.js')).probeCommand },
};

export function formatTopHelp(): string {
  const lines = [
    'vsys — find, measure and fix programs that depend on the legacy vsyscall page',
    '',
    'usage: vsys [COMMAND] [OPTIONS]',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`),
    '',
    'With no command, vsys runs the doctor. Every command takes --help and --json.',
    '',
    'examples:',
    '  vsys                 # what this host does with old programs',
    '  vsys probe --json    # the host facts as one JSON document',
    '  vsys scan --mode none --fail-on crash ./rootfs   # which programs die under vsyscall=none',
    '  vsys bench           # what each syscall path costs here',
    '  vsys run --as none -- ./old-app   # what a vsyscall=none kernel really does to it',
    '',
  ];
  return lines.join('\n');
}

export async function main(argv: string[], io: Io): Promise<number> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h' || first === 'help') {
    io.stdout.write(formatTopHelp());
    return EXIT.ok;
  }
  if (first === '--version') {
    io.stdout.write(`vsys ${VSYS_VERSION}\n`);
    return EXIT.ok;
  }
  const name = first === undefined || first.startsWith('-') ? 'doctor' : first;
  const args = first === undefined || first.startsWith('-') ? argv : rest;
  const entry = COMMANDS[name];
  if (!entry) {
    io.stderr.write(`vsys: unknown command '${name}'\n\n${formatTopHelp()}`);
    return EXIT.usage;
  }
  try {
    const cmd = await entry.load();
    return await cmd.run(args, io);
  } catch (e) {
    return reportError(e, io);
  }
}

export function reportError(e: unknown, io: Io): number {
  if (e instanceof VsysError) {
    io.stderr.write(`vsys: ${e.message}${e.code === 'USAGE' ? '\n(try --help)' : ''}\n`);
    if (e.code === 'USAGE') return EXIT.usage;
    if (e.code === 'UNSUPPORTED_HOST' || e.code === 'PERF_NO_PERMISSION' || e.code === 'PERF_UNAVAILABLE') return EXIT.unsupported;
    return EXIT.runtime;
  }
  // Argument errors from util.parseArgs carry this code.
  if (e instanceof Error && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    io.stderr.write(`vsys: ${e.message}\n(try --help)\n`);
    return EXIT.usage;
  }
  io.stderr.write(`vsys: internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  return EXIT.runtime;
}
