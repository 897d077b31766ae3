// The exporter over time: 10 minutes (VSYS_SOAK_SECONDS) of 100,000 emulated calls a second from one
// process, beside a churn of 100 short-lived processes a second, each with a new name (60,000 label
// sets, against --max-series 300) and one in a hundred crashing on the page, with the exporter under
// `prlimit --data` (the memory it may commit). Its resident memory must level off, every scrape
// answer, the main process's count be exact, no count be lost to a full kernel map, and series stay
// at the cap. Then it is killed with SIGKILL and started again on the same port: it serves at once,
// and counts a new program exactly (no program of the killed one left counting, no stale state).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BIN, FIXTURES, hasCommand } from '../helpers.js';
import { FIXTURE_CACHE } from '../support/fixtures.js';
import { buildTraceFixture } from '../support/trace-fixture.js';

const SECONDS = Number(process.env.VSYS_SOAK_SECONDS ?? 600);
const RATE = 100_000;
const MAX_SERIES = 300;
/** What the exporter may commit (RLIMIT_DATA): the DaemonSet's memory limit. */
const DATA_LIMIT = 384 * 1024 * 1024;

const root = process.getuid?.() === 0;
const mapsLine = fs.readFileSync('/proc/self/maps', 'utf8').split('\n').find((l) => l.includes('[vsyscall]'));
const live = !root ? 'needs root' : !fs.existsSync('/sys/kernel/tracing/events/vsyscall/emulate_vsyscall') ? 'no vsyscall:emulate_vsyscall tracepoint' : !mapsLine || mapsLine.includes('---p') ? 'vsyscall=none: nothing is emulated' : !hasCommand('prlimit') ? 'prlimit not installed (util-linux)' : false;

function buildSoak(): string {
  const src = path.join(FIXTURES, 'trace', 'soak.c');
  const out = path.join(FIXTURE_CACHE, 'soak');
  if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) {
    fs.mkdirSync(FIXTURE_CACHE, { recursive: true });
    execFileSync('gcc', ['-O2', '-o', out, src]);
  }
  return out;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The exposition's samples: `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*(?:\{.*\})?) (\S+)$/.exec(line);
    if (m?.[1] && m[2]) out.set(m[1], Number(m[2]));
  }
  return out;
}

function sum(s: Map<string, number>, name: string, labelPart = ''): number {
  let t = 0;
  for (const [k, v] of s) if ((k === name || k.startsWith(`${name}{`)) && k.includes(labelPart)) t += v;
  return t;
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1]);
}

function startExporter(port: number, cache: string): ChildProcess {
  // prlimit runs the exporter itself (exec), so the child's pid is the exporter's.
  return spawn('prlimit', [`--data=${DATA_LIMIT}`, process.execPath, BIN, 'exporter', '--listen', `127.0.0.1:${port}`, '--poll-ms', '1000', '--max-series', String(MAX_SERIES), '--scan-interval', '60'], { env: { ...process.env, XDG_CACHE_HOME: cache }, stdio: ['ignore', 'ignore', 'pipe'] });
}

async function healthy(base: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if ((await fetch(`${base}/healthz`).then((r) => r.status, () => 0)) === 200) return;
    await sleep(100);
  }
  throw new Error(`${base}/healthz did not answer within ${ms} ms`);
}

test(`soak: ${SECONDS} s of ${RATE} emulated calls/s and 100 new processes/s under prlimit --data; killed, it restarts clean`, { skip: live, timeout: (SECONDS + 300) * 1000 }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-soak-'));
  const cache = path.join(tmp, 'cache', 'vsys');
  fs.mkdirSync(cache, { recursive: true });
  // Saved figures: the exporter does not measure this host in the background during the soak.
  const bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  fs.writeFileSync(path.join(cache, 'host-figures.json'), JSON.stringify({ bootId, kernel: os.release(), measuredAt: new Date().toISOString(), ns: { 'vsyscall-time': 502, 'vdso-time': 2 } }));
  const prefix = `sk${process.pid % 100000}`;
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let exporter = startExporter(port, path.join(tmp, 'cache'));
  let stderr = '';
  exporter.stderr?.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  try {
    await healthy(base);
    const pid = exporter.pid as number;
    const soak = spawn(buildSoak(), [String(SECONDS), String(RATE), prefix], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    soak.stdout?.on('data', (d) => (out += d));
    const soakDone = new Promise<number | null>((resolve) => soak.once('exit', resolve));
    const rss: { t: number; kb: number }[] = [];
    /** The exporter's own account of its heap at each scrape (prom-client's nodejs_* metrics). */
    const heap: { used: number; external: number; cpu: number }[] = [];
    let scrapes = 0;
    const t0 = Date.now();
    let finished = false;
    void soakDone.then(() => (finished = true));
    while (!finished) {
      await sleep(5000);
      assert.equal(exporter.exitCode, null, `the exporter exited during the soak: ${stderr}`);
      rss.push({ t: (Date.now() - t0) / 1000, kb: rssKb(pid) });
      const r = await fetch(`${base}/metrics`);
      assert.equal(r.status, 200);
      const own = samples(await r.text());
      heap.push({ used: own.get('nodejs_heap_size_used_bytes') ?? NaN, external: own.get('nodejs_external_memory_bytes') ?? NaN, cpu: own.get('process_cpu_seconds_total') ?? NaN });
      scrapes++;
    }
    assert.equal(await soakDone, 0);
    const got = Object.fromEntries([...out.matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1], Number(m[2])])) as Record<string, number>;
    await sleep(3000); // two polls: the last counts folded in
    const s = samples(await (await fetch(`${base}/metrics`)).text());
    // The main process's series was made first, under the cap: its count is exact.
    assert.equal(sum(s, 'vsys_vsyscall_emulated_total', `comm="${prefix}"`), got.main);
    // 60,000 names against a cap of 300: series stay at the cap, the rest counted as dropped.
    const series = [...s.keys()].filter((k) => k.startsWith('vsys_vsyscall_emulated_total{')).length;
    assert.ok(series <= MAX_SERIES, `${series} series`);
    assert.ok(sum(s, 'vsys_exporter_dropped_series_total') > 0);
    assert.equal(sum(s, 'vsys_exporter_dropped_counts_total', 'reason="map_full"'), 0, 'no count lost to a full kernel map');
    assert.ok(sum(s, 'vsys_vsyscall_emulated_total') + sum(s, 'vsys_exporter_dropped_counts_total', 'kind="emulated"') >= (got.main ?? 0) + (got.child_calls ?? 0));
    // Every child's crash is counted, in its series or as dropped over the cap.
    assert.ok(sum(s, 'vsys_vsyscall_crashes_total', `comm="${prefix}c`) + sum(s, 'vsys_exporter_dropped_counts_total', 'kind="crash"') >= (got.crashes ?? 0), `crashes: ${got.crashes}`);
    // Memory levels off: the median of the last quarter's samples against the third quarter's
    // (medians: one periodic scan of the processes, whose size depends on what else runs here,
    // does not move them).
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? 0;
    const q3 = median(rss.filter((x) => x.t >= SECONDS / 2 && x.t < (3 * SECONDS) / 4).map((x) => x.kb));
    const q4 = median(rss.filter((x) => x.t >= (3 * SECONDS) / 4).map((x) => x.kb));
    const peak = Math.max(...rss.map((x) => x.kb));
    const fig = `RSS ${Math.min(...rss.map((x) => x.kb)) >> 10}–${peak >> 10} MB; median ${q3 >> 10} MB in the third quarter, ${q4 >> 10} MB in the last; ${scrapes} scrapes; ${got.children} processes, ${got.crashes} crashes`;
    console.log(`soak: ${fig}`);
    const perMinute = <T>(xs: T[]) => xs.filter((_, i) => i % 12 === 11);
    const mb = (b: number) => Math.round(b / 2 ** 20);
    console.log(`soak: RSS by minute (MB): ${perMinute(rss).map((x) => x.kb >> 10).join(' ')}`);
    console.log(`soak: JS heap used / external by minute (MB): ${perMinute(heap).map((x) => `${mb(x.used)}/${mb(x.external)}`).join(' ')}`);
    console.log(`soak: the exporter's CPU: ${heap.at(-1)?.cpu.toFixed(1)} s in ${SECONDS} s (process_cpu_seconds_total)`);
    // 8 MB between medians a quarter apart (150 s in the full run): a leak of ~3 MB a minute or more fails.
    assert.ok(q4 - q3 < 8 * 1024, `memory grows: ${fig}`);
    assert.ok(peak * 1024 < DATA_LIMIT, fig);

    // Killed, and started again on the same port.
    exporter.kill('SIGKILL');
    await new Promise((r) => exporter.once('exit', r));
    exporter = startExporter(port, path.join(tmp, 'cache'));
    exporter.stderr?.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    await healthy(base);
    const comm = `sr${process.pid % 100000}`;
    const prog = path.join(tmp, comm);
    fs.copyFileSync(buildTraceFixture(), prog);
    fs.chmodSync(prog, 0o755);
    assert.equal(spawnSync(prog, ['time', '12345']).status, 0);
    let n: number | undefined;
    for (let i = 0; i < 40 && n === undefined; i++) {
      await sleep(250);
      // By name: a process gone before the first poll has only its name (README, "vsys exporter").
      n = samples(await (await fetch(`${base}/metrics`)).text()).get(`vsys_vsyscall_emulated_total{entry="time",comm="${comm}",exe="",container="",pod="",namespace=""}`);
    }
    assert.equal(n, 12345, 'the restarted exporter counts exactly');
    const again = samples(await (await fetch(`${base}/metrics`)).text());
    assert.equal(sum(again, 'vsys_vsyscall_emulated_total', `comm="${prefix}"`), 0, 'nothing carried over from the killed exporter');
  } finally {
    if (exporter.exitCode === null) exporter.kill('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
