// `vsys bench`: what each syscall path costs on this host, beside the seeds' figures.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { runBench } from '../bench/run-bench.js';
import { selectPaths, BENCH_PATHS } from '../bench/paths.js';
import { SEED000_CEP } from '../model/figures.js';
import { formatBench, formatBenchSvg } from './format-bench.js';
import { EXIT, numberOption, toJson, usageError } from './io.js';
import type { Command } from './main.js';

const HELP = `usage: vsys bench [--paths LIST] [--json] [--svg FILE] [--budget MS] [--repeats N] [--cpu N]
       vsys bench --scenario cep [--json]

Measures the cost of each syscall path on this host with machine code vsys generates
itself (no compiler): the vDSO's clocks, time, gettimeofday and getcpu; libc's; the
syscall instruction; the vsyscall page (where the mode allows a call); int 0x80 from
64-bit code; and from a tiny 32-bit program vsys writes: int 0x80, sysenter,
__kernel_vsyscall and the 32-bit vDSO. Paths that can fault run in child processes
and are reported unavailable with the reason. The seeds' figures are shown beside
the matching rows; the results are saved for 'vsys scan' and the doctor.

options:
  --paths LIST      ids or groups, comma-separated: vdso, libc, syscall, vsyscall,
                    int80-64, i386, or ids such as vdso-time,vsyscall-time
  --json            one JSON document with the same fields
  --svg FILE        bar chart (log scale): this host against seed 004
  --budget MS       timed budget per path (default 300)
  --repeats N       timed repeats per path (default 7); min, median and p95 are shown
  --cpu N           pin to CPU N (default: the current one)
  --no-save         do not keep the figures for scan and the doctor
  --scenario cep    seed 000: 10,000,000 time() calls through vDSO, syscall, vsyscall
  -h, --help        this text

paths: ${BENCH_PATHS.map((p) => p.id).join(', ')}

examples:
  vsys bench
  vsys bench --paths vdso-time,vsyscall-time --json
  vsys bench --svg paths.svg
  vsys bench --scenario cep
`;

export const benchCommand: Command = {
  summary: 'the cost of each syscall path here (vDSO, syscall, vsyscall, int 0x80, sysenter), beside the seeds',
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
      if (values.scenario !== 'cep') throw usageError(`bench: unknown scenario '${values.scenario}' (known: cep)`);
      const { runCep } = await import('../bench/scenario-cep.js');
      io.stderr.write(`running ${SEED000_CEP.calls.toLocaleString('en')} time() calls per path…\n`);
      const r = await runCep();
      if (values.json) io.stdout.write(toJson(r) + '\n');
      else {
        const lines = [`seed 000 on this host: ${r.calls.toLocaleString('en')} time() calls`, ''];
        for (const row of r.rows) {
          lines.push(row.seconds === undefined
            ? `  ${row.label.padEnd(16)} unavailable: ${row.reason}`
            : `  ${row.label.padEnd(16)} ${row.seconds.toFixed(3).padStart(8)} s  ${(row.ratio ?? 0).toFixed(0).padStart(5)}×${row.check && !row.check.ok ? `  ✗ ${row.check.detail}` : ''}`);
        }
        lines.push('', `seed 000 (${SEED000_CEP.calls.toLocaleString('en')} calls, CentOS 5 on Linux 3.8): vsyscall emulated ${SEED000_CEP.seconds['vsyscall-emulated']} s, vDSO ${SEED000_CEP.seconds.vdso} s: ${Math.round(SEED000_CEP.seconds['vsyscall-emulated'] / SEED000_CEP.seconds.vdso)}×`);
        io.stdout.write(lines.join('\n') + '\n');
      }
      return EXIT.ok;
    }
    if (values.paths !== undefined && selectPaths(values.paths).length === 0) throw usageError(`bench: --paths '${values.paths}' matches no path (see --help for the list)`);
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
