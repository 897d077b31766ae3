// The hostile-input campaign of issue 23, reproducible: real ELF files from the corpus mutated by a
// seeded generator (byte flips, truncations, boundary values in every header and table field,
// table entries pointed at each other), each analysed by analyseBytes in child processes with a
// kill timer, its time and peak memory measured. Prints inputs, coded errors, crashes (an exception
// that is not a coded error), hangs, the worst time and memory, and the seed of every failure;
// exits 1 when anything crashed or hung.
// usage: node bench/fuzz.mjs [--inputs N (default 10000)] [--seed S (default 1)] [--jobs J] [--timeout-ms T (default 10000)] [--json]
//        node bench/fuzz.mjs --replay SEED:INDEX     (one input, in this process, with its stack)
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CORPUS = path.resolve(ROOT, '..', 'shared', 'corpus');
const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);

/** The seed inputs: every ELF file of the corpus (symlinks stored as text are not ELF and drop out). */
export function seeds() {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && fs.statSync(p).size > 64) {
        const head = Buffer.alloc(4);
        const fd = fs.openSync(p, 'r');
        fs.readSync(fd, head, 0, 4, 0);
        fs.closeSync(fd);
        if (head.toString('latin1') === '\x7fELF') out.push(p);
      }
    }
  };
  walk(CORPUS);
  return out.sort();
}

/** mulberry32: a small, fast, seeded generator (the same input for the same seed on every machine). */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BOUNDARY = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff];

/**
 * Input `index` of campaign `seed`: a seed file chosen and mutated, deterministically. Headers and
 * tables are found by their ELF64 offsets (e_phoff, e_shoff, …) so field mutations hit real fields.
 */
export function makeInput(files, seed, index) {
  const r = rng((seed * 1_000_003) ^ index);
  const pick = (n) => Math.floor(r() * n);
  const file = files[pick(files.length)];
  const b = Buffer.from(fs.readFileSync(file));
  const kind = ['flip', 'truncate', 'header', 'phdr', 'shdr', 'table', 'chain'][pick(7)];
  const u16 = (o, v) => o + 2 <= b.length && b.writeUInt16LE(v & 0xffff, o);
  const u32 = (o, v) => o + 4 <= b.length && b.writeUInt32LE(v >>> 0, o);
  const u64 = (o, v) => o + 8 <= b.length && b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), o);
  const boundary = () => (r() < 0.2 ? b.length + pick(3) - 1 : BOUNDARY[pick(BOUNDARY.length)]);
  const phoff = Number(b.readBigUInt64LE(32));
  const shoff = Number(b.readBigUInt64LE(40));
  const phnum = b.readUInt16LE(56);
  const shnum = b.readUInt16LE(60);
  /** A random section header's contents range, when it lies in the file and holds at least `min` bytes. */
  const someSection = (min) => {
    if (shnum === 0) return undefined;
    const s = shoff + 64 * pick(shnum);
    if (s + 64 > b.length) return undefined;
    const off = Number(b.readBigUInt64LE(s + 24));
    const size = Number(b.readBigUInt64LE(s + 32));
    return size < min || off + size > b.length ? undefined : { off, size };
  };
  let out = b;
  switch (kind) {
    case 'flip':
      for (let i = 1 + pick(16); i > 0; i--) b[pick(b.length)] ^= 1 << pick(8);
      break;
    case 'truncate':
      out = b.subarray(0, pick(b.length));
      break;
    case 'header': {
      const fields = [[16, 2], [18, 2], [24, 8], [32, 8], [40, 8], [52, 2], [54, 2], [56, 2], [58, 2], [60, 2], [62, 2]];
      const [o, w] = fields[pick(fields.length)];
      (w === 2 ? u16 : w === 4 ? u32 : u64)(o, boundary());
      break;
    }
    case 'phdr': {
      if (phnum === 0) break;
      const o = phoff + 56 * pick(phnum);
      const fields = [[0, 4], [4, 4], [8, 8], [16, 8], [32, 8], [40, 8], [48, 8]];
      const [f, w] = fields[pick(fields.length)];
      (w === 4 ? u32 : u64)(o + f, boundary());
      break;
    }
    case 'shdr': {
      if (shnum === 0) break;
      const o = shoff + 64 * pick(shnum);
      const fields = [[0, 4], [4, 4], [8, 8], [24, 8], [32, 8], [40, 4], [44, 4], [48, 8], [56, 8]];
      const [f, w] = fields[pick(fields.length)];
      (w === 4 ? u32 : u64)(o + f, boundary());
      break;
    }
    case 'table': {
      // A word inside a section's contents (symbol, dynamic, version, note, FDE tables) set to a boundary value.
      const sec = someSection(8);
      if (sec) u32(sec.off + 4 * pick(Math.floor(sec.size / 4)), boundary());
      break;
    }
    case 'chain': {
      // A "next" field pointed back at its own record or a neighbour: loops in version and note chains.
      const sec = someSection(20);
      if (sec) u32(sec.off + 4 * pick(Math.floor((sec.size - 4) / 4)), [0, 4, 8, 12, 16, 20, -4 >>> 0][pick(7)]);
      break;
    }
  }
  return { file: path.relative(CORPUS, file), kind, bytes: out };
}

/** A field of /proc/self/status in KiB (VmRSS, VmHWM). */
function statusKib(field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Resets the peak-RSS mark to the current RSS (proc(5), clear_refs: 5) and returns that RSS. */
function resetPeak() {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // an old kernel: the peak stays the process's, an overestimate of no input's
  }
  return statusKib('VmRSS');
}

async function child() {
  const { analyseBytes } = await import(path.join(ROOT, 'dist', 'src', 'scan', 'analyse-file.js'));
  const { isVsysError } = await import(path.join(ROOT, 'dist', 'src', 'errors.js'));
  const { analyseSparse, SPARSE_MIN } = await import(path.join(ROOT, 'dist', 'src', 'scan', 'read-file.js'));
  const files = seeds();
  // Every 4th input of a size a scan reads sparsely goes through the sparse reader too (from a file
  // of this child's own), as `vsys scan` reads it: its holes, the fall-back to whole, the bounded read.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-fuzz-'));
  process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const sparse = (bytes, file) => {
    const p = path.join(tmp, 'input');
    fs.writeFileSync(p, bytes);
    const fd = fs.openSync(p, 'r');
    try {
      return analyseSparse(fd, bytes.length, file).report;
    } finally {
      fs.closeSync(fd);
    }
  };
  process.on('message', (m) => {
    if (m.stop) process.exit(0);
    const { seed, index } = m;
    const input = makeInput(files, seed, index);
    // This input's own peak: the kernel's peak-RSS mark reset (clear_refs 5), then read back.
    const rss0 = resetPeak();
    const t0 = performance.now();
    let outcome = 'ok';
    let code;
    let stack;
    // VSYS_FUZZ_PLANT (for the campaign's own test): a fault planted in every 10th input, to show
    // the campaign reports it: `throw`, `hang`, or `alloc:MB` (touches that much memory).
    const plant = index % 10 === 3 ? process.env.VSYS_FUZZ_PLANT : undefined;
    let held;
    try {
      if (plant === 'throw') throw new TypeError('planted fault');
      if (plant === 'hang') for (;;);
      if (plant?.startsWith('alloc:')) held = Buffer.alloc(Number(plant.slice(6)) << 20, 1);
      const viaSparse = index % 4 === 0 && input.bytes.length >= SPARSE_MIN;
      const rep = viaSparse ? sparse(input.bytes, input.file) : analyseBytes(input.bytes, input.file);
      if (viaSparse) input.kind += ' (sparse read)';
      if (rep?.error) {
        outcome = 'coded';
        code = rep.error.code;
      }
    } catch (e) {
      if (isVsysError(e)) {
        outcome = 'coded';
        code = e.code;
      } else {
        outcome = 'crash';
        stack = String(e?.stack ?? e).slice(0, 800);
      }
    }
    const ms = performance.now() - t0;
    held = undefined;
    // Peak memory the input added: its peak RSS over the RSS it started from, in KiB.
    const kib = statusKib('VmHWM') - rss0;
    process.send({ seed, index, kind: input.kind, file: input.file, outcome, code, stack, ms, kib });
  });
  process.send({ ready: true });
}

async function main() {
  const replay = opt('--replay', undefined);
  if (replay) {
    const [seed, index] = replay.split(':').map(Number);
    const { analyseBytes } = await import(path.join(ROOT, 'dist', 'src', 'scan', 'analyse-file.js'));
    const input = makeInput(seeds(), seed, index);
    console.log(`input ${seed}:${index}: ${input.kind} of ${input.file}, ${input.bytes.length} bytes`);
    console.log(JSON.stringify(analyseBytes(input.bytes, input.file), (k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v), 1).slice(0, 2000));
    const { analyseSparse, SPARSE_MIN } = await import(path.join(ROOT, 'dist', 'src', 'scan', 'read-file.js'));
    if (index % 4 === 0 && input.bytes.length >= SPARSE_MIN) {
      // The campaign read this one through the sparse reader: do so again.
      const p = path.join(os.tmpdir(), `vsys-fuzz-replay-${process.pid}`);
      fs.writeFileSync(p, input.bytes);
      const fd = fs.openSync(p, 'r');
      try {
        const r = analyseSparse(fd, input.bytes.length, input.file);
        console.log(`through the sparse reader (${r.how}):`, JSON.stringify(r.report, (k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v), 1).slice(0, 2000));
      } finally {
        fs.closeSync(fd);
        fs.rmSync(p, { force: true });
      }
    }
    return;
  }
  const inputs = Number(opt('--inputs', 10000));
  const seed = Number(opt('--seed', 1));
  const jobs = Number(opt('--jobs', os.availableParallelism()));
  const timeoutMs = Number(opt('--timeout-ms', 10000));
  const json = args.includes('--json');
  if (!fs.existsSync(path.join(ROOT, 'dist', 'src', 'scan', 'analyse-file.js'))) throw new Error('build first: npx tsc -p .');
  const t0 = performance.now();
  const stats = { inputs: 0, ok: 0, coded: 0, codes: {}, crashes: [], hangs: [], worst: { ms: 0, at: '' }, worstMemory: { kib: 0, at: '' }, sparse: 0, seed };
  let next = 0;
  const one = () => new Promise((resolve) => {
    let current;
    let timer;
    const c = fork(fileURLToPath(import.meta.url), ['--child'], { execArgv: ['--max-old-space-size=1024'], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    const send = () => {
      if (next >= inputs) {
        c.send({ stop: true });
        return;
      }
      current = next++;
      c.send({ seed, index: current });
      clearTimeout(timer);
      timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    };
    c.on('message', (m) => {
      if (m.ready) return send();
      clearTimeout(timer);
      stats.inputs++;
      if (m.outcome === 'ok') stats.ok++;
      else if (m.outcome === 'coded') stats.coded++;
      if (m.kind?.endsWith('(sparse read)')) stats.sparse++;
      if (m.code) stats.codes[m.code] = (stats.codes[m.code] ?? 0) + 1;
      if (m.outcome === 'crash') stats.crashes.push({ at: `${m.seed}:${m.index}`, kind: m.kind, file: m.file, stack: m.stack });
      if (m.ms > stats.worst.ms) stats.worst = { ms: m.ms, at: `${m.seed}:${m.index}`, kind: m.kind, file: m.file };
      if (m.kib > stats.worstMemory.kib) stats.worstMemory = { kib: m.kib, at: `${m.seed}:${m.index}`, kind: m.kind, file: m.file };
      send();
    });
    c.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (current !== undefined && (signal || code !== 0) && stats.inputs < inputs) {
        // Killed by the timer (a hang) or died (out of memory): that input's seed, and a new child for the rest.
        stats.inputs++;
        stats.hangs.push({ at: `${seed}:${current}`, why: signal === 'SIGKILL' ? `no answer in ${timeoutMs} ms` : `child died (${signal ?? `exit ${code}`})` });
        resolve(one());
        return;
      }
      resolve(undefined);
    });
  });
  await Promise.all(Array.from({ length: jobs }, one));
  const seconds = (performance.now() - t0) / 1000;
  const doc = { ...stats, seconds, jobs };
  if (json) console.log(JSON.stringify(doc));
  else {
    console.log(`fuzz: ${stats.inputs} inputs (seed ${seed}) in ${seconds.toFixed(1)} s on ${jobs} children: ${stats.ok} analysed, ${stats.coded} coded errors (${stats.sparse} inputs through the sparse reader), ${stats.crashes.length} crashes, ${stats.hangs.length} hangs`);
    console.log(`codes: ${Object.entries(stats.codes).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
    console.log(`worst time: ${stats.worst.ms.toFixed(1)} ms (input ${stats.worst.at}, ${stats.worst.kind} of ${stats.worst.file}); worst memory: +${(stats.worstMemory.kib / 1024).toFixed(1)} MB peak RSS (input ${stats.worstMemory.at}, ${stats.worstMemory.kind} of ${stats.worstMemory.file})`);
    for (const c of stats.crashes.slice(0, 10)) console.log(`CRASH ${c.at} (${c.kind} of ${c.file}): ${c.stack.split('\n')[0]} — replay: node bench/fuzz.mjs --replay ${c.at}`);
    for (const h of stats.hangs.slice(0, 10)) console.log(`HANG ${h.at}: ${h.why} — replay: node bench/fuzz.mjs --replay ${h.at}`);
  }
  process.exitCode = stats.crashes.length + stats.hangs.length > 0 ? 1 : 0;
}

const direct = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (direct && process.argv.includes('--child')) await child();
else if (direct) await main();
