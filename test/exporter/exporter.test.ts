// vsys exporter: the series table and labels without a kernel; then the real exporter on a free
// port, scraped by a real Prometheus (Debian's package) started here, against gcc-built programs
// that call the page an exact number of times or crash on it; /healthz; SIGTERM exits 0 and
// closes the port. Live parts need root, the emulate_vsyscall tracepoint and prometheus.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BIN, hasCommand } from '../helpers.js';
import { buildTraceFixture } from '../support/trace-fixture.js';
import { SeriesTable, emulationCostSeconds } from '../../src/exporter/series.js';
import { readPodNames } from '../../src/exporter/process-labels.js';
import { crashEntryOf } from '../../src/exporter/page-counters.js';
import { CRASH_DATA, CRASH_FETCH, CRASH_MISALIGNED } from '../../src/exporter/page-programs.js';
import { parseListen } from '../../src/cli/exporter.js';

const root = process.getuid?.() === 0;
const emulation = fs.existsSync('/sys/kernel/tracing/events/vsyscall/emulate_vsyscall');
const mapsLine = fs.readFileSync('/proc/self/maps', 'utf8').split('\n').find((l) => l.includes('[vsyscall]'));
const callsEmulated = !!mapsLine && !mapsLine.includes('---p');
const live = !root ? 'needs root' : !emulation ? 'no vsyscall:emulate_vsyscall tracepoint' : !callsEmulated ? 'vsyscall=none: nothing is emulated' : !hasCommand('prometheus') ? 'prometheus not installed (apt-get install prometheus)' : false;

const labels = (comm: string) => ({ comm, exe: '/bin/x', container: '', pod: '', namespace: '' });

test('series table: each fold adds what the kernel total grew by; gone processes are forgotten', () => {
  const t = new SeriesTable(10);
  t.fold([{ tgid: 7, kind: 'emulated', entry: 'time', value: 5 }], () => labels('a'));
  t.fold([{ tgid: 7, kind: 'emulated', entry: 'time', value: 12 }, { tgid: 7, kind: 'crash', entry: 'misaligned', value: 1 }], () => labels('never asked'));
  t.forget(7);
  // the same id, reused by another process with the same labels: its counts add to the series
  t.fold([{ tgid: 7, kind: 'emulated', entry: 'time', value: 3 }], () => labels('a'));
  const s = [...t.series.values()];
  assert.deepEqual(s.map((x) => [x.labels.entry, x.labels.comm, x.emulated, x.crashes]), [['time', 'a', 15, 0], ['misaligned', 'a', 0, 1]]);
});

test('series table: the cap refuses new label sets and counts what it refused', () => {
  const t = new SeriesTable(1);
  t.fold([{ tgid: 1, kind: 'emulated', entry: 'time', value: 4 }], () => labels('kept'));
  t.fold([{ tgid: 2, kind: 'emulated', entry: 'time', value: 9 }, { tgid: 2, kind: 'crash', entry: 'data', value: 1 }], () => labels('over'));
  t.fold([{ tgid: 2, kind: 'emulated', entry: 'time', value: 10 }], () => labels('over'));
  assert.equal(t.series.size, 1);
  assert.equal(t.droppedSeries, 2); // (over, time) and (over, data), each once
  assert.deepEqual(t.droppedCounts, { emulated: 10, crash: 1 });
});

test('a process found gone is read once more before it is forgotten: a crash counted after the first read keeps its name', async () => {
  const { foldCounts } = await import('../../src/exporter/exporter.js');
  const tgid = 999_999_999; // never a live process: found gone at once
  const emulated = { tgid, kind: 'emulated' as const, entry: 'misaligned', value: 1, key: Buffer.from('e') };
  const crash = { tgid, kind: 'crash' as const, entry: 'misaligned', value: 1, key: Buffer.from('c') };
  const reads = [[emulated], [emulated, crash]];
  let comm = 'call-misaligned';
  const forgotten: string[] = [];
  const counters = {
    read: () => reads.shift() ?? [],
    commOf: () => comm,
    forget: (_t: number, keys: Buffer[]) => {
      forgotten.push(...keys.map((k) => k.toString()));
      comm = '';
    },
  };
  const t = new SeriesTable(10);
  foldCounts(counters as never, t);
  assert.deepEqual([...t.series.values()].map((x) => [x.labels.comm, x.labels.entry, x.emulated, x.crashes]), [['call-misaligned', 'misaligned', 1, 1]]);
  assert.deepEqual(forgotten.sort(), ['c', 'e'], 'both of its kernel counts are dropped');
});

test('CPU cost per call: emulated minus vDSO, only with both figures', () => {
  assert.equal(emulationCostSeconds({ 'vsyscall-time': 502, 'vdso-time': 2 }, 'time'), 500e-9);
  assert.equal(emulationCostSeconds({ 'vsyscall-time': 502 }, 'time'), undefined);
  assert.equal(emulationCostSeconds({ 'vsyscall-time': 502, 'vdso-time': 2 }, 'misaligned'), undefined);
});

test('crash places: misaligned mark, data access where calls are emulated, entry by offset under none', () => {
  assert.equal(crashEntryOf(CRASH_MISALIGNED, true), 'misaligned');
  assert.equal(crashEntryOf(0, true), 'data');
  assert.equal(crashEntryOf(0x400, false), 'time');
  assert.equal(crashEntryOf(0x410, false), 'other');
  // From the kprobe's mark: the fault's error code decides, whatever the mode.
  assert.equal(crashEntryOf(CRASH_FETCH | 0x400, false), 'time');
  assert.equal(crashEntryOf(CRASH_FETCH | 0x800, true), 'getcpu');
  assert.equal(crashEntryOf(CRASH_FETCH | 0x10, false), 'other');
  assert.equal(crashEntryOf(CRASH_DATA | 0x400, false), 'data');
  assert.equal(crashEntryOf(CRASH_DATA, true), 'data');
});

test('pod name and namespace from a kubelet pod directory', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-kubelet-'));
  const uid = '0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011';
  fs.mkdirSync(path.join(dir, uid, 'volumes', 'kubernetes.io~projected', 'kube-api-access-x7k2p'), { recursive: true });
  fs.writeFileSync(path.join(dir, uid, 'etc-hosts'), '# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.244.1.7\tlegacy-app-6d4cf56db6-q9z8x\n');
  fs.writeFileSync(path.join(dir, uid, 'volumes', 'kubernetes.io~projected', 'kube-api-access-x7k2p', 'namespace'), 'billing');
  assert.deepEqual(readPodNames(uid, dir), { pod: 'legacy-app-6d4cf56db6-q9z8x', namespace: 'billing' });
  assert.deepEqual(readPodNames('', dir), { pod: '', namespace: '' });
  fs.rmSync(dir, { recursive: true });
});

test('--listen parsing', () => {
  assert.deepEqual(parseListen('127.0.0.1:9717'), { host: '127.0.0.1', port: 9717 });
  assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
  assert.deepEqual(parseListen(':9100'), { host: '0.0.0.0', port: 9100 });
  assert.throws(() => parseListen('localhost'), /ADDR:PORT/);
  assert.throws(() => parseListen('1.2.3.4:70000'), /ADDR:PORT/);
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function exited(c: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve) => c.once('exit', (code, signal) => resolve({ code, signal })));
}

test('a real Prometheus scrapes exact counts, crashes and this host\'s figures; SIGTERM exits 0 and closes the port', { skip: live, timeout: 180_000 }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-exporter-'));
  // Saved figures with known values: the exporter must publish them as they are.
  fs.mkdirSync(path.join(tmp, 'cache', 'vsys'), { recursive: true });
  const bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  fs.writeFileSync(path.join(tmp, 'cache', 'vsys', 'host-figures.json'), JSON.stringify({ bootId, kernel: os.release(), measuredAt: new Date().toISOString(), ns: { 'vsyscall-time': 502, 'vdso-time': 2 } }));
  // A name no other test's program has: the exporter counts every process on the host.
  const comm = `vx${process.pid}`.slice(0, 15);
  const prog = path.join(tmp, comm);
  fs.copyFileSync(buildTraceFixture(), prog);
  fs.chmodSync(prog, 0o755);
  const port = await freePort();
  const exporter = spawn(process.execPath, [BIN, 'exporter', '--listen', `127.0.0.1:${port}`, '--poll-ms', '200'], { env: { ...process.env, XDG_CACHE_HOME: path.join(tmp, 'cache') }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  exporter.stderr?.on('data', (d) => (stderr += d));
  const exporterExit = exited(exporter);
  const base = `http://127.0.0.1:${port}`;
  let prom: ChildProcess | undefined;
  try {
    await waitFor('the exporter', async () => ((await fetch(`${base}/healthz`)).status === 200 ? true : undefined));
    const metrics = await (await fetch(`${base}/metrics`)).text();
    // promtool, the Prometheus project's own linter, reads the exposition text.
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
    assert.equal(lint.status, 0, lint.stdout + lint.stderr);
    assert.equal((await fetch(`${base}/nope`)).status, 404);

    const promPort = await freePort();
    fs.writeFileSync(path.join(tmp, 'prometheus.yml'), `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vsys\n    static_configs:\n      - targets: ['127.0.0.1:${port}']\n`);
    prom = spawn('prometheus', [`--config.file=${path.join(tmp, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(tmp, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`], { stdio: 'ignore' });
    const query = async (q: string): Promise<number | undefined> => {
      const r = (await (await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as { data: { result: { value: [number, string] }[] } };
      const v = r.data.result[0]?.value[1];
      return v === undefined ? undefined : Number(v);
    };
    await waitFor('Prometheus to scrape the exporter', () => query('up{job="vsys"} == 1'));

    assert.equal(spawnSync(prog, ['time', '12345']).status, 0);
    const crash = spawnSync(prog, ['misaligned', '1']);
    assert.equal(crash.signal, 'SIGSEGV');
    const read = spawnSync(prog, ['read', '1']);
    assert.equal(read.signal, 'SIGSEGV');

    const sel = `comm="${comm}"`;
    assert.equal(await waitFor('the time calls', () => query(`vsys_vsyscall_emulated_total{${sel},entry="time"}`)), 12345);
    assert.equal(await waitFor('the misaligned crash', () => query(`vsys_vsyscall_crashes_total{${sel},entry="misaligned"}`)), 1);
    assert.equal(await waitFor('the read crash', () => query(`vsys_vsyscall_crashes_total{${sel},entry="data"}`)), 1);
    // no crash for the program that called time() 12,345 times and exited 0
    assert.equal(await query(`vsys_vsyscall_crashes_total{${sel},entry="time"}`), undefined);
    const cpu = await waitFor('the CPU cost', () => query(`vsys_vsyscall_emulation_cpu_seconds_total{${sel},entry="time"}`));
    assert.ok(Math.abs(cpu - 12345 * 500e-9) < 1e-12, `cpu ${cpu}`);
    assert.equal(await query('vsys_syscall_path_seconds{path="vsyscall-time"}'), 502e-9);
    assert.equal(await query(`vsys_vsyscall_mode{mode="${mapsLine?.includes('r-xp') ? 'emulate' : 'xonly'}"}`), 1);
    assert.equal(await query(`vsys_info{kernel="${os.release()}"}`), 1);
    // Its own process, as every exporter serves it: resident memory as the kernel counts it
    // (/proc/PID/status, read between two scrapes), its start time, and the heap.
    const rss = async () => waitFor('process_resident_memory_bytes', () => query('process_resident_memory_bytes{job="vsys"}'));
    const kb = Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${exporter.pid}/status`, 'utf8'))?.[1]);
    assert.ok(Math.abs((await rss()) / 1024 - kb) / kb < 0.25, `RSS ${await rss()} bytes scraped, ${kb} kB in /proc`);
    const started = Number(fs.readFileSync(`/proc/${exporter.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]) / 100;
    const bootTime = Number(/^btime (\d+)/m.exec(fs.readFileSync('/proc/stat', 'utf8'))?.[1]);
    assert.ok(Math.abs((await query('process_start_time_seconds{job="vsys"}'))! - (bootTime + started)) <= 2, 'process_start_time_seconds');
    assert.ok((await query('nodejs_heap_size_used_bytes{job="vsys"}'))! > 1e6);

    exporter.kill('SIGTERM');
    const end = await exporterExit;
    assert.deepEqual(end, { code: 0, signal: null }, stderr);
    await assert.rejects(fetch(`${base}/healthz`), 'the port is closed');
  } finally {
    prom?.kill('SIGTERM');
    if (exporter.exitCode === null) exporter.kill('SIGKILL');
    if (prom) await exited(prom);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
