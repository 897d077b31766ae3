// `vsys exporter`: serves /metrics and /healthz until SIGTERM or SIGINT, then closes the server,
// detaches the counters and exits 0.
import { parseArgs } from 'node:util';
import { startExporter } from '../exporter/exporter.js';
import { EXIT, numberOption, toJson, usageError, type Command } from './io.js';

const HELP = `usage: vsys exporter [--listen ADDR:PORT] [--max-series N] [--poll-ms MS] [--scan-interval S] [--json]

A Prometheus exporter: this host's vsyscall mode and syscall-path costs, and exact
counts of vsyscall emulations and of crashes the page caused, per workload
(entry, comm, exe, container, pod, namespace). Only events of the vsyscall page are
hooked (README, "vsys exporter"). Needs root or CAP_BPF + CAP_PERFMON.

options:
  --listen ADDR:PORT  where to serve /metrics and /healthz (default 0.0.0.0:9717;
                      port 0 picks a free one, printed on start)
  --max-series N      cap on label sets of the per-workload metrics (default 10000);
                      what is refused is counted in vsys_exporter_dropped_series_total
  --poll-ms MS        how often kernel counts are folded in (default 1000)
  --scan-interval S   how often the files of the running processes are scanned for
                      vsys_running_programs_using_vsyscall (default 300; 0: never)
  --json              the start line as JSON: {"url": ...}
  -h, --help          this text

examples:
  vsys exporter --listen 127.0.0.1:9717
  curl -s localhost:9717/metrics | grep vsys_vsyscall_emulated_total
`;

/** ADDR:PORT, [V6ADDR]:PORT or :PORT. */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(s);
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port > 65535) throw usageError(`exporter: --listen must be ADDR:PORT (e.g. 127.0.0.1:9717), not '${s}'`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export const exporterCommand: Command = {
  summary: 'a Prometheus exporter: vsyscall mode, costs, emulations and crashes per workload',
  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: {
        listen: { type: 'string' },
        'max-series': { type: 'string' },
        'poll-ms': { type: 'string' },
        'scan-interval': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    const listen = parseListen(values.listen ?? '0.0.0.0:9717');
    const maxSeries = numberOption('exporter', 'max-series', values['max-series'], { integer: [1, 10_000_000] });
    const pollMs = numberOption('exporter', 'poll-ms', values['poll-ms'], { integer: [10, 3_600_000] });
    const scanS = numberOption('exporter', 'scan-interval', values['scan-interval'], { range: [0, 86_400] });
    const exporter = await startExporter({
      ...listen, ...(maxSeries !== undefined ? { maxSeries } : {}), ...(pollMs !== undefined ? { pollMs } : {}),
      ...(scanS !== undefined ? { scanIntervalMs: scanS * 1000 } : {}),
      onWarning: (m) => io.stderr.write(`vsys exporter: ${m}\n`),
    });
    io.stdout.write(values.json ? `${toJson({ url: exporter.url }, undefined)}\n` : `vsys exporter: listening on ${exporter.url}/metrics\n`);
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      process.once('SIGINT', () => resolve('SIGINT'));
    });
    await exporter.close();
    io.stderr.write(`vsys exporter: ${signal}: closed\n`);
    return EXIT.ok;
  },
};
