// The exporter's always-on cost (issue 22 item 2): a page-fault-heavy workload that never touches
// the vsyscall page, timed alone and with `vsys exporter` running (its eBPF programs attached), in
// alternating rounds of the same run; beside it, the same workload under `vsys trace`, whose
// page-fault hook fires on every fault. Target: the exporter costs such a workload ≤ 1.01×.
// Needs root (eBPF), gcc (builds the workload) and the vsyscall tracepoints.
// usage: node bench/exporter.mjs [--rounds N (default 7)] [--json]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const rounds = Number(args.includes('--rounds') ? args[args.indexOf('--rounds') + 1] : 7);
const json = args.includes('--json');
const BIN = path.join(ROOT, 'bin', 'vsys.js');

if (process.getuid?.() !== 0) {
  console.error('bench/exporter.mjs: needs root (the exporter attaches eBPF programs)');
  process.exit(4);
}

// The workload: 64 MiB mapped, every page touched (a page fault each), unmapped; 40 times: ~650k faults.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-bench-exporter-'));
const work = path.join(dir, 'faults');
fs.writeFileSync(`${work}.c`, `#include <sys/mman.h>
int main(void) {
  for (int r = 0; r < 40; r++) {
    volatile char *p = mmap(0, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (long i = 0; i < (64 << 20); i += 4096) p[i] = 1;
    munmap((void *)p, 64 << 20);
  }
  return 0;
}
`);
execFileSync('gcc', ['-O2', '-o', work, `${work}.c`]);
// The counting cost per emulated call: 1,000,000 calls of the time entry, timed inside the program
// (CALL_N_TIME: only the calls, not start-up nor a tracer's attach).
const callN = path.join(dir, 'call-n');
execFileSync('gcc', ['-O2', '-pthread', '-o', callN, path.join(ROOT, 'test', 'fixtures', 'trace', 'call-n.c')]);
const CALLS = 1_000_000;
const callsFile = path.join(dir, 'calls-seconds');
const timeCalls = (prefix) => {
  fs.rmSync(callsFile, { force: true });
  const r = spawnSync(prefix[0] ?? callN, [...prefix.slice(1), ...(prefix.length ? [callN] : []), 'time', String(CALLS)], { stdio: 'ignore', env: { ...process.env, CALL_N_TIME: callsFile } });
  if (r.status !== 0) throw new Error(`call-n exited ${r.status}`);
  return (Number(fs.readFileSync(callsFile, 'utf8').trim().split('\n').at(-1)) / CALLS) * 1e9;
};

const time = (argv) => {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
};

async function withExporter(fn) {
  const x = spawn(process.execPath, [BIN, 'exporter', '--listen', '127.0.0.1:0', '--scan-interval', '0', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    x.stdout.on('data', (d) => {
      out += d;
      const m = /"url":\s*"([^"]+)"/.exec(out);
      if (m) resolve(m[1]);
    });
    x.on('exit', (c) => reject(new Error(`vsys exporter exited ${c}`)));
  });
  try {
    // Ready: the programs are attached before it listens.
    await fetch(`${url}/healthz`);
    return fn();
  } finally {
    x.kill('SIGTERM');
    await new Promise((r) => x.on('exit', r));
  }
}

/** The control: an idle node process beside the workload (what any second process costs on 2 CPUs). */
async function withIdleNode(fn) {
  const x = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  try {
    return fn();
  } finally {
    x.kill('SIGKILL');
    await new Promise((r) => x.on('exit', r));
  }
}

const callAlone = [];
const callExported = [];
const callTraced = [];
const alone = [];
const exported = [];
const traced = [];
const idle = [];
time([work]); // warm
for (let i = 0; i < rounds; i++) {
  const order = i % 2 ? ['exporter', 'idle', 'alone', 'trace'] : ['alone', 'trace', 'idle', 'exporter'];
  for (const which of order) {
    if (which === 'alone') alone.push(time([work]));
    else if (which === 'idle') idle.push(await withIdleNode(() => time([work])));
    else if (which === 'trace') traced.push(time([process.execPath, BIN, 'trace', '-o', '/dev/null', '--', work]) - 0); // includes node's start-up; compared below by its own control
    else exported.push(await withExporter(() => time([work])));
  }
  callAlone.push(timeCalls([]));
  callExported.push(await withExporter(() => timeCalls([])));
  callTraced.push(timeCalls([process.execPath, BIN, 'trace', '-o', '/dev/null', '--']));
}
// vsys trace's figure includes its own start-up; its control is a traced `true`.
const traceStart = Math.min(...Array.from({ length: 3 }, () => time([process.execPath, BIN, 'trace', '-o', '/dev/null', '--', '/bin/true'])));
fs.rmSync(dir, { recursive: true, force: true });

const min = (a) => Math.min(...a);
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const ratios = alone.map((a, i) => exported[i] / a);
const res = {
  rounds, aloneSeconds: min(alone), exporterSeconds: min(exported), traceSeconds: min(traced) - traceStart,
  ratioByMinima: min(exported) / min(alone), ratioMedianOfRounds: median(ratios),
  traceRatio: (min(traced) - traceStart) / min(alone),
  idleNodeSeconds: min(idle), idleNodeRatio: min(idle) / min(alone), exporterOverIdle: min(exported) / min(idle),
};
res.met = res.ratioByMinima <= 1.01;
res.perCall = { aloneNs: min(callAlone), exporterNs: min(callExported), traceNs: min(callTraced) };
res.perCall.exporterCountingNs = res.perCall.exporterNs - res.perCall.aloneNs;
res.perCall.traceCountingNs = res.perCall.traceNs - res.perCall.aloneNs;
if (json) console.log(JSON.stringify(res));
else {
  console.log(`page-fault workload (~650k faults, never touches the vsyscall page), min of ${rounds} alternating rounds:`);
  console.log(`  alone                          ${res.aloneSeconds.toFixed(3)} s`);
  console.log(`  with vsys exporter running     ${res.exporterSeconds.toFixed(3)} s  ${res.ratioByMinima.toFixed(3)}× (median of the rounds' ratios ${res.ratioMedianOfRounds.toFixed(3)}×; target ≤ 1.01×: ${res.met ? 'met' : 'MISSED'})`);
  console.log(`  control: an idle node process beside it ${res.idleNodeSeconds.toFixed(3)} s  ${res.idleNodeRatio.toFixed(3)}× (the exporter over this control: ${res.exporterOverIdle.toFixed(3)}×: its hooks' own share)`);
  console.log(`  under vsys trace (fault hook)  ${res.traceSeconds.toFixed(3)} s  ${res.traceRatio.toFixed(3)}× (its start-up, ${traceStart.toFixed(2)} s, taken out)`);
  const c = res.perCall;
  console.log(`one emulated time() call (${CALLS} calls timed inside the program, min of ${rounds} rounds):`);
  console.log(`  alone ${c.aloneNs.toFixed(0)} ns · with vsys exporter ${c.exporterNs.toFixed(0)} ns (counting: ${c.exporterCountingNs.toFixed(0)} ns a call) · under vsys trace ${c.traceNs.toFixed(0)} ns (counting: ${c.traceCountingNs.toFixed(0)} ns a call)`);
}
