// `vsys bench`: what each syscall path costs on this host, beside the published figures (seeds 000–004).
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { runBench } from '../bench/run-bench.js';
import { selectPaths, pathNames, BENCH_PATHS, PATH_GROUPS } from '../bench/paths.js';
import { SEED000_CEP, SEEDS } from '../model/figures.js';
import { formatBench, formatBenchSvg } from './format-bench.js';
import { EXIT, numberOption, toJson, usageError, type Command } from './io.js';

const HELP = `usage: vsys bench [--paths LIST] [--json] [--svg FILE] [--budget MS] [--repeats N] [--cpu N]
       vsys bench --scenario appnexus [--json]

Measures the cost of each syscall path on this host with machine code vsys generates
itself (no compiler): the vDSO's clocks, time, gettimeofday and getcpu; libc's; the
syscall instruction; the vsyscall page (where the mode allows a call); int 0x80 from
64-bit code; and from a tiny 32-bit program vsys writes: int 0x80, sysenter,
__kernel_vsyscall and the 32-bit vDSO. Paths that can fault run in child processes
and are reported unavailable with the reason. Each path is compared with the vDSO
call of the same function ("vs vDSO"), and published figures are shown beside the
matching rows, named by article and year; the results are saved for 'vsys scan'
and the doctor.

options:
  --paths LIST      ids or groups, comma-separated. An id runs exactly that row
                    (vdso-clock_gettime-monotonic, not its -raw and -coarse siblings);
                    a group all of its rows: ${PATH_GROUPS.join(', ')};
                    an unknown name is a usage error
  --json            one JSON document with the same fields
  --svg FILE        bar chart (log scale): this host against the Habr 2018 table
                    (gettimeofday per path on a 2015 laptop)
  --budget MS       timed budget per path (default 300)
  --repeats N       timed repeats per path (default 7); min, median and p95 are shown
  --cpu N           pin to CPU N (default: the current one)
  --no-save         do not keep the figures for scan and the doctor
  --scenario appnexus
                    the AppNexus engineering blog's experiment (2014, CentOS 5 on
                    Linux 3.8): 10,000,000 time() calls through the vDSO, the
                    syscall instruction and the vsyscall page, in seconds
  -h, --help        this text

paths: ${BENCH_PATHS.map((p) => p.id).join(', ')}

examples:
  vsys bench
  vsys bench --paths vdso-time,vsyscall-time --json
  vsys bench --svg paths.svg
  vsys bench --scenario appnexus
`;

/** Scenario names: 'cep' (the article's "complex event processor") stays accepted, unlisted. */
const SCENARIOS: Record<string, 'appnexus'> = { appnexus: 'appnexus', cep: 'appnexus' };

export const benchCommand: Command = {
  summary: 'the cost of each syscall path here (vDSO, syscall, vsyscall, int 0x80, sysenter), beside published figures',
  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: {
        paths: { type: 'string' },
        json: { type: 'boolean' },
        svg: { type: 'string' },
        budget: { type: 'string' },
        repeats: { type: 'string' },
        cpu: { type: 'string' },
        'no-save': { type: 'boolean' },
        scenario: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    if (values.scenario !== undefined) {
      if (SCENARIOS[values.scenario] === undefined) throw usageError(`bench: unknown scenario '${values.scenario}' (known: appnexus)`);
      const { runAppNexus } = await import('../bench/scenario-appnexus.js');
      io.stderr.write(`running ${SEED000_CEP.calls.toLocaleString('en')} time() calls per path…\n`);
      const r = await runAppNexus();
      if (values.json) io.stdout.write(toJson(r) + '\n');
      else {
        const lines = [`The ${SEEDS.s000.cite} experiment on this host: ${r.calls.toLocaleString('en')} time() calls per path`, ''];
        for (const row of r.rows) {
          lines.push(row.seconds === undefined
            ? `  ${row.label.padEnd(16)} unavailable: ${row.reason}`
            : `  ${row.label.padEnd(16)} ${row.seconds.toFixed(3).padStart(8)} s  ${(row.ratio ?? 0).toFixed(0).padStart(5)}× vDSO time${row.check && !row.check.ok ? `  ✗ ${row.check.detail}` : ''}`);
        }
        const pub = r.published;
        lines.push('', `Published (${pub.source}; ${pub.setup}): ${pub.calls.toLocaleString('en')} calls, vsyscall emulated ${pub.seconds['vsyscall-emulated']} s, vDSO ${pub.seconds.vdso} s: ${Math.round(pub.seconds['vsyscall-emulated'] / pub.seconds.vdso)}×`);
        io.stdout.write(lines.join('\n') + '\n');
      }
      return EXIT.ok;
    }
    if (values.paths !== undefined) {
      if (pathNames(values.paths).length === 0) throw usageError(`bench: --paths '${values.paths}' names no path (see --help for the list)`);
      try {
        selectPaths(values.paths);
      } catch (e) {
        throw usageError(`bench: --paths: ${(e as Error).message}`);
      }
    }
    const budgetMs = numberOption('bench', 'budget', values.budget, { range: [1, 60_000] });
    const repeats = numberOption('bench', 'repeats', values.repeats, { range: [1, 1000] });
    const cpu = numberOption('bench', 'cpu', values.cpu, { range: [0, 4095] });
    const progress = io.stderr.isTTY
      ? (done: number, total: number, p: { label: string }) => io.stderr.write(`\r\x1b[2Kmeasuring ${done + 1}/${total}: ${p.label}`)
      : undefined;
    const report = await runBench({
      ...(values.paths !== undefined ? { paths: values.paths } : {}),
      ...(budgetMs !== undefined ? { budgetMs } : {}),
      ...(repeats !== undefined ? { repeats } : {}),
      ...(cpu !== undefined ? { cpu } : {}),
      save: !values['no-save'],
      ...(progress ? { onProgress: progress } : {}),
    });
    if (progress) io.stderr.write('\r\x1b[2K');
    if (values.svg) fs.writeFileSync(values.svg, formatBenchSvg(report));
    io.stdout.write(values.json ? toJson(report) + '\n' : formatBench(report));
    if (values.svg && !values.json) io.stderr.write(`chart written to ${values.svg}\n`);
    return EXIT.ok;
  },
};
