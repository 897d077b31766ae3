#!/usr/bin/env node
// Benchmark of `vsys scan` against `objdump -d | grep` on the same files, measured in the same run:
// throughput (MB/s) of both, their ratio, and whether vsys finds every page reference objdump shows.
// Not a test: it prints figures; it exits 1 only when vsys misses a site objdump found.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HELP = `usage: node bench/scan.mjs [options] [DIR...]

Benchmarks vsys scan over DIR... (default: /usr/bin /usr/lib/x86_64-linux-gnu) and compares it
with objdump -d --no-show-raw-insn FILE | grep -E 'ff60(0000|0400|0800)' on the ELF files.

options:
  --runs R               timed runs with the default worker count (default 3), plus one run with the
                         other choice (one worker if the default is none, else none)
  --baseline-sample MB   run objdump on a sample of about MB megabytes of ELF files (every k-th by path);
                         "all" for every ELF file (default: all if the ELF files total under 200 MB, else 150)
  --json                 print the figures as one JSON object (bigints as hex strings)
  -h, --help             this text

example:
  node bench/scan.mjs --baseline-sample 50 /usr/bin`;

const MB = 1e6;
const SAMPLE_ALL_UNDER = 200 * MB;
const SAMPLE_DEFAULT = 150 * MB;
const TARGET_RATIO = 100;
const TARGET_MBPS = 500;
const GREP = "ff60(0000|0400|0800)";

function usage(message) {
  process.stderr.write(`bench/scan.mjs: ${message}\n${HELP}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { dirs: [], runs: 3, sampleBytes: undefined, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    if (a === '-h' || a === '--help') {
      process.stdout.write(`${HELP}\n`);
      process.exit(0);
    } else if (a === '--json') o.json = true;
    else if (a === '--runs') {
      o.runs = Number(value());
      if (!Number.isInteger(o.runs) || o.runs < 1) usage('--runs takes a whole number ≥ 1');
    } else if (a === '--baseline-sample') {
      const v = value();
      if (v === 'all') o.sampleBytes = Infinity;
      else {
        const n = Number(v);
        if (!(n > 0)) usage('--baseline-sample takes a size in MB (> 0) or "all"');
        o.sampleBytes = n * MB;
      }
    } else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else o.dirs.push(a);
  }
  if (o.dirs.length === 0) o.dirs = ['/usr/bin', '/usr/lib/x86_64-linux-gnu'];
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const isTTY = process.stderr.isTTY === true;
const say = (line) => {
  if (!opts.json) process.stdout.write(`${line}\n`);
};
const progress = (line) => {
  if (isTTY) process.stderr.write(`\r\x1b[K${line}`);
};
const progressDone = () => {
  if (isTTY) process.stderr.write('\r\x1b[K');
};
const mb = (bytes) => (bytes / MB).toFixed(1);
const secs = (s) => (s < 10 ? s.toFixed(2) : s.toFixed(1));
const rate = (bytes, s) => bytes / MB / s;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const ordinal = (n) => `${n}${n % 100 >= 11 && n % 100 <= 13 ? 'th' : ['th', 'st', 'nd', 'rd'][n % 10] ?? 'th'}`;
const hex = (b) => `0x${b.toString(16)}`;

// 1. Build if needed.
const scanJs = path.join(repo, 'dist/src/scan/scan.js');
if (!fs.existsSync(scanJs)) {
  process.stderr.write('dist/src/scan/scan.js is missing: building with npx tsc -p .\n');
  const r = spawnSync('npx', ['tsc', '-p', '.'], { cwd: repo, stdio: 'inherit' });
  if (r.status !== 0 || !fs.existsSync(scanJs)) {
    process.stderr.write('bench/scan.mjs: the build failed; fix it and run again\n');
    process.exit(3);
  }
}
const { scanPaths } = await import(pathToFileURL(scanJs).href);
const { defaultWorkers } = await import(pathToFileURL(path.join(repo, 'dist/src/scan/pool.js')).href);

// 2. The file set: regular files, symlinks not followed, each inode once (as vsys scan counts them).
function listFiles(dirs) {
  const out = [];
  const seen = new Set();
  const add = (p, st) => {
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ path: p, size: st.size, key, elf: false });
  };
  for (const d of dirs) {
    let st;
    try {
      st = fs.statSync(d);
    } catch (e) {
      usage(`${d}: ${e.message}`);
    }
    if (st.isFile()) {
      add(d, st);
      continue;
    }
    const stack = [d];
    while (stack.length > 0) {
      const dir = stack.pop();
      let entries;
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const ent of entries) {
        const p = path.join(dir, ent.name);
        if (ent.isDirectory()) stack.push(p);
        else if (ent.isFile()) {
          try {
            add(p, fs.lstatSync(p));
          } catch {
            // vanished or unreadable: vsys reports it as an error, it adds nothing here
          }
        }
      }
    }
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

const loadBefore = os.loadavg()[0];
const tList = performance.now();
const files = listFiles(opts.dirs);
const totalBytes = files.reduce((n, f) => n + f.size, 0);

// Warm the page cache (and read the ELF magic on the way) so both tools read from memory.
const buf = Buffer.allocUnsafe(4 << 20);
let unreadable = 0;
for (const f of files) {
  let fd;
  try {
    fd = fs.openSync(f.path, 'r');
    let n;
    let first = true;
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) {
      if (first) f.elf = n >= 4 && buf[0] === 0x7f && buf[1] === 0x45 && buf[2] === 0x4c && buf[3] === 0x46;
      first = false;
    }
  } catch {
    unreadable++;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
const warmSeconds = (performance.now() - tList) / 1000;
const elfFiles = files.filter((f) => f.elf);
const elfBytes = elfFiles.reduce((n, f) => n + f.size, 0);
say(`files: ${files.length} regular files (symlinks skipped, hard links once) in ${opts.dirs.join(' ')}: ${mb(totalBytes)} MB, ${elfFiles.length} ELF (${mb(elfBytes)} MB)${unreadable ? `, ${unreadable} unreadable` : ''}`);
say(`page cache warmed by reading every file once (${secs(warmSeconds)} s; ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM)`);
if (totalBytes > os.totalmem() / 2) process.stderr.write(`warning: the files (${mb(totalBytes)} MB) are over half the RAM; they may not all stay in the page cache\n`);

// 3. vsys scan: R runs with the default workers, one with the other choice (none ⇔ one).
async function timeScan(workers) {
  const t0 = performance.now();
  const r = await scanPaths(workers === undefined ? { paths: opts.dirs } : { paths: opts.dirs, workers });
  return { seconds: (performance.now() - t0) / 1000, result: r };
}
const findingCount = (r) => r.files.reduce((n, f) => n + f.findings.length, 0);

const runs = [];
let last;
for (let i = 0; i < opts.runs; i++) {
  progress(`vsys scan run ${i + 1}/${opts.runs} …`);
  const { seconds, result } = await timeScan(undefined);
  progressDone();
  runs.push({ seconds, findings: findingCount(result), files: result.summary.files, bytes: result.summary.bytes, errors: result.errors.length });
  say(`vsys scan run ${i + 1}: ${secs(seconds)} s (${rate(totalBytes, seconds).toFixed(0)} MB/s), ${runs.at(-1).findings} findings, ${result.errors.length} errors`);
  last = result;
}
const defaultCount = defaultWorkers();
const altWorkers = defaultCount === 0 ? 1 : 0;
const altLabel = altWorkers === 0 ? 'single thread (workers: 0)' : 'with one worker beside the main thread (workers: 1)';
progress(`vsys scan ${altLabel} …`);
const single = await timeScan(altWorkers);
progressDone();
const singleRun = { seconds: single.seconds, findings: findingCount(single.result), errors: single.result.errors.length };
say(`vsys scan ${altLabel}: ${secs(single.seconds)} s (${rate(totalBytes, single.seconds).toFixed(0)} MB/s), ${singleRun.findings} findings`);
single.result = undefined;

const times = runs.map((r) => r.seconds);
const vsys = {
  files: files.length,
  elfFiles: elfFiles.length,
  bytes: totalBytes,
  summaryFiles: last.summary.files,
  summaryElfFiles: last.summary.elfFiles,
  summaryBytes: last.summary.bytes,
  errors: last.errors.length,
  errorCodes: last.errors.reduce((m, e) => ({ ...m, [e.code]: (m[e.code] ?? 0) + 1 }), {}),
  workers: defaultCount, // scanPaths' default (pool.ts defaultWorkers)
  altWorkers,
  runs: times,
  minSeconds: Math.min(...times),
  medianSeconds: median(times),
  minMBps: rate(totalBytes, Math.min(...times)),
  medianMBps: rate(totalBytes, median(times)),
  altSeconds: singleRun.seconds,
  altMBps: rate(totalBytes, singleRun.seconds),
  findings: runs.at(-1).findings,
  findingsStable: runs.every((r) => r.findings === runs[0].findings) && singleRun.findings === runs[0].findings,
};
if (vsys.summaryFiles !== files.length || vsys.summaryBytes !== totalBytes) {
  say(`note: vsys counted ${vsys.summaryFiles} files / ${mb(vsys.summaryBytes)} MB, this script ${files.length} / ${mb(totalBytes)} MB; MB/s uses this script's count`);
}
if (!vsys.findingsStable) say('note: the runs did not all report the same number of findings');

// vsys findings by inode, so that a hard link scanned under another name still matches.
const vsysByKey = new Map();
for (const f of last.files) {
  try {
    const st = fs.statSync(f.path);
    vsysByKey.set(`${st.dev}:${st.ino}`, f);
  } catch {
    // vanished since the scan
  }
}
last = undefined;

// 4. Baseline: objdump -d | grep on (a sample of) the ELF files, as many at once as there are CPUs.
const cpus = os.availableParallelism();
const wantSample = opts.sampleBytes ?? (elfBytes < SAMPLE_ALL_UNDER ? Infinity : SAMPLE_DEFAULT);
// Every k-th ELF file by path from the r-th on, with the k and r whose sample comes closest to the
// size wanted: one big library more or less moves a sample by 100 MB, so elfBytes / wanted alone
// can land far off.
const everyKth = (k, r) => elfFiles.filter((_, i) => i % k === r);
const bytesOf = (list) => list.reduce((n, f) => n + f.size, 0);
let k = 1;
let r = 0;
if (wantSample < elfBytes) {
  let best = Infinity;
  for (let c = 2; c <= Math.max(2, Math.ceil((2 * elfBytes) / wantSample)); c++) {
    for (let o = 0; o < c; o++) {
      const off = Math.abs(bytesOf(everyKth(c, o)) - wantSample);
      if (off < best) [best, k, r] = [off, c, o];
    }
  }
}
const sample = everyKth(k, r);
const sampleBytes = bytesOf(sample);
const isSample = k > 1;

function objdumpGrep(file) {
  return new Promise((resolve) => {
    // The file name goes in as $1, never into the script text.
    const child = spawn('sh', ['-c', `objdump -d --no-show-raw-insn "$1" | grep -E '${GREP}'`, 'sh', file.path], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('close', (code) => resolve({ file, code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
  });
}

say(`objdump baseline: ${isSample ? `a sample, every ${ordinal(k)} ELF file by path from the ${ordinal(r + 1)} on: ${sample.length} of ${elfFiles.length} files, ${mb(sampleBytes)} of ${mb(elfBytes)} MB` : `all ${sample.length} ELF files, ${mb(sampleBytes)} MB`}, ${cpus} at a time`);
const tBase = performance.now();
const results = [];
let nextIndex = 0;
let doneBytes = 0;
await Promise.all(Array.from({ length: Math.min(cpus, sample.length) }, async () => {
  while (nextIndex < sample.length) {
    const f = sample[nextIndex++];
    results.push(await objdumpGrep(f));
    doneBytes += f.size;
    progress(`objdump: ${results.length}/${sample.length} files, ${mb(doneBytes)}/${mb(sampleBytes)} MB, ${secs((performance.now() - tBase) / 1000)} s`);
  }
}));
progressDone();
const baseSeconds = (performance.now() - tBase) / 1000;
const objdumpFailed = results.filter((r) => r.stderr.trim() !== '').map((r) => ({ path: r.file.path, message: r.stderr.trim().split('\n')[0] }));
const baseline = {
  sample: isSample,
  every: k,
  firstIndex: r, // 0-based: the sample is files firstIndex, firstIndex + every, … of the ELF files sorted by path
  files: sample.length,
  bytes: sampleBytes,
  elfFiles: elfFiles.length,
  elfBytes,
  concurrency: cpus,
  seconds: baseSeconds,
  MBps: rate(sampleBytes, baseSeconds),
  objdumpErrors: objdumpFailed.length,
};
say(`objdump -d | grep: ${secs(baseSeconds)} s (${baseline.MBps.toFixed(2)} MB/s)${objdumpFailed.length ? `; objdump complained about ${objdumpFailed.length} files, e.g. ${objdumpFailed[0].message}` : ''}`);

// 5. Agreement on the baseline's files: every grep hit that names the page must be a vsys code finding.
// The files where vsys reported uses are added (objdump run on them after the timing, not timed), so
// that a sample that happens to hold none still checks what vsys found.
const inSample = new Set(sample.map((f) => f.key));
const extra = elfFiles.filter((f) => !inSample.has(f.key) && (vsysByKey.get(f.key)?.findings.length ?? 0) > 0);
for (const f of extra) results.push(await objdumpGrep(f));
const checked = [...sample, ...extra];
// A grep hit whose line does not hold a page address (an address or offset that merely contains
// ff600400) is counted apart: it is not a reference to the page.
const PAGE_IN_LINE = /0xffffffffff60[0-9a-f]{4}\b/;
const hits = [];
const noise = [];
for (const r of results) {
  for (const line of r.stdout.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^\s*([0-9a-f]+):/.exec(line);
    if (m && PAGE_IN_LINE.test(line)) hits.push({ path: r.file.path, key: r.file.key, address: BigInt(`0x${m[1]}`), line: line.trim() });
    else noise.push({ path: r.file.path, line: line.trim() });
  }
}
const missed = [];
let alsoFound = 0;
const hitSet = new Set(hits.map((h) => `${h.key}@${h.address}`));
let dataWordUses = 0;
let vsysOnlyCode = 0;
for (const f of checked) {
  const v = vsysByKey.get(f.key);
  if (!v) continue;
  for (const x of v.findings) {
    if (x.dataWord !== undefined || x.use === 'data-word') dataWordUses++;
    else if (!hitSet.has(`${f.key}@${x.address}`)) vsysOnlyCode++;
  }
}
for (const h of hits) {
  const v = vsysByKey.get(h.key);
  const found = v?.findings.some((x) => x.use !== 'data-word' && x.address === h.address);
  if (found) alsoFound++;
  else missed.push({ path: h.path, address: hex(h.address), line: h.line });
}
let dataWordUsesAll = 0;
for (const v of vsysByKey.values()) for (const x of v.findings) if (x.dataWord !== undefined || x.use === 'data-word') dataWordUsesAll++;
const agreement = {
  files: checked.length,
  sampleFiles: sample.length,
  extraFilesWithVsysFindings: extra.length,
  objdumpHits: hits.length,
  vsysFound: alsoFound,
  missed,
  grepNoise: noise.length,
  dataWordUses,
  dataWordUsesAllFiles: dataWordUsesAll,
  vsysOnlyCodeFindings: vsysOnlyCode,
};

const ratio = vsys.minMBps / baseline.MBps;
const figures = {
  date: new Date().toISOString(),
  host: { cpus, loadAverage1m: { before: loadBefore, after: os.loadavg()[0] }, totalMemBytes: os.totalmem(), node: process.version, objdump: spawnSync('objdump', ['--version'], { encoding: 'utf8' }).stdout?.split('\n')[0] },
  dirs: opts.dirs,
  pageCacheWarmed: true,
  vsys,
  baseline,
  ratio: { vsysMinOverObjdump: ratio, target: TARGET_RATIO, meetsTarget: ratio >= TARGET_RATIO, vsysMBpsTarget: TARGET_MBPS, meetsMBps: vsys.minMBps >= TARGET_MBPS },
  agreement,
};

if (opts.json) {
  process.stdout.write(`${JSON.stringify(figures, (_, v) => (typeof v === 'bigint' ? hex(v) : v === Infinity ? null : v), 2)}\n`);
} else {
  for (const m of missed) say(`MISSED by vsys: ${m.path}: ${m.line}`);
  if (noise.length > 0) say(`grep lines without a page address (not references, not compared): ${noise.length}, e.g. ${noise[0].path}: ${noise[0].line}`);
  say('');
  say(`vsys scan: ${files.length} files, ${elfFiles.length} ELF, ${mb(totalBytes)} MB — min ${secs(vsys.minSeconds)} s (${vsys.minMBps.toFixed(0)} MB/s), median ${secs(vsys.medianSeconds)} s (${vsys.medianMBps.toFixed(0)} MB/s); ${vsys.workers} worker(s) by default; with ${altWorkers}: ${secs(vsys.altSeconds)} s (${vsys.altMBps.toFixed(0)} MB/s)`);
  say(`objdump -d | grep: ${mb(sampleBytes)} MB ${isSample ? 'sample' : '(all ELF files)'} (${sample.length} ELF files) in ${secs(baseSeconds)} s (${baseline.MBps.toFixed(2)} MB/s), ${cpus} at a time`);
  say(`ratio: vsys is ${ratio.toFixed(0)}× objdump's throughput (target ≥ ${TARGET_RATIO}×: ${ratio >= TARGET_RATIO ? 'yes' : 'no'}); vsys ≥ ${TARGET_MBPS} MB/s: ${vsys.minMBps >= TARGET_MBPS ? 'yes' : 'no'}`);
  say(`agreement checked on ${checked.length} ELF files: the ${sample.length} of the baseline and ${extra.length} more where vsys reported uses (objdump run on them untimed)`);
  say(`agreement: objdump found ${hits.length} sites, vsys found ${missed.length === 0 ? 'all ' : ''}${alsoFound}${missed.length ? ` (missed ${missed.length})` : ''}; vsys also found ${dataWordUses} data-word uses objdump cannot see (${dataWordUsesAll} in all files) and ${vsysOnlyCode} other code sites objdump's grep does not match`);
  if (hits.length === 0) say('note: objdump found no sites in these files, so the agreement check had nothing to compare');
  say(`(machine: ${cpus} CPUs, shared, 1-min load average ${loadBefore.toFixed(1)} before and ${os.loadavg()[0].toFixed(1)} after; page cache warm; figures from this one run. objdump's grep sees only code, and only page addresses ending in 0000/0400/0800.)`);
}
process.exitCode = missed.length > 0 ? 1 : 0;
