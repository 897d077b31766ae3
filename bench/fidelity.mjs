// Fidelity check of `vsys bench`: the same paths measured by a C program built here with gcc -O2
// (bench/fidelity.c) and by vsys's generated code, in the same run, alternating, min of repeats.
// Target: vsys/C within 0.9–1.1 for every path ≥ 10 ns, within 1 ns below that.
// usage: node bench/fidelity.mjs [--rounds N] [--json]
// The steps are exported for test/bench/fidelity.test.ts, which runs a few paths with a wider bound.
import { spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The C paths fidelity.c can run, by the group argument it takes. */
export const C_GROUPS = {
  libc: ['libc-time', 'libc-gettimeofday', 'libc-clock_gettime', 'libc-clock_gettime-monotonic', 'libc-sched_getcpu'],
  syscall: ['syscall-getpid', 'syscall-gettimeofday', 'syscall-clock_gettime', 'syscall-clock_gettime-monotonic', 'syscall-getcpu'],
  vsyscall: ['vsyscall-time', 'vsyscall-gettimeofday'],
  int80: ['int80-64-getpid'],
  i386: ['i386-int80', 'i386-kernel-vsyscall', 'i386-vdso32-gettimeofday', 'i386-vdso32-clock_gettime'],
};

/** Whether this process can call the vsyscall page ('page') or the kernel has none ('none'). */
export function pageMode() {
  return /\[vsyscall\]/.test(fs.readFileSync('/proc/self/maps', 'utf8')) ? 'page' : 'none';
}

/**
 * Builds bench/fidelity.c (and fidelity32.c with -m32) into `dir`. Returns the paths built, with
 * gcc's stderr when a build failed; `exe` is undefined when gcc is missing or failed.
 */
export function buildFidelity(dir = path.join(ROOT, '.cache', 'bench')) {
  fs.mkdirSync(dir, { recursive: true });
  const exe = path.join(dir, 'fidelity');
  const exe32 = path.join(dir, 'fidelity32');
  const cc = spawnSync('gcc', ['-O2', '-o', exe, path.join(ROOT, 'bench', 'fidelity.c'), '-ldl'], { encoding: 'utf8' });
  const cc32 = spawnSync('gcc', ['-m32', '-O2', '-o', exe32, path.join(ROOT, 'bench', 'fidelity32.c')], { encoding: 'utf8' });
  return {
    exe: cc.status === 0 ? exe : undefined,
    error: cc.status === 0 ? undefined : (cc.error?.message ?? cc.stderr),
    exe32: cc32.status === 0 ? exe32 : undefined,
  };
}

/**
 * Runs one group of the C program pinned to CPU 0 (unpinned when taskset is missing) and returns
 * its "id ns" lines as a Map. `scale` multiplies its call counts, `repeats` is its R.
 */
export function runC(bin, group, { scale = 1, repeats = 5, is32 = false } = {}) {
  const cargs = is32 ? [] : [group, String(scale), String(repeats)];
  const pinned = spawnSync('taskset', ['-c', '0', bin, ...cargs], { encoding: 'utf8' });
  const out = pinned.status === 0 ? pinned : spawnSync(bin, cargs, { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`${path.basename(bin)} ${cargs.join(' ')} exited ${out.status ?? out.signal}: ${out.stderr}`);
  const m = new Map();
  for (const line of out.stdout.trim().split('\n')) {
    const [id, ns] = line.split(' ');
    if (id && Number.isFinite(Number(ns))) m.set(id, Number(ns));
  }
  return m;
}

/** Runs the same paths through vsys's runBench() pinned to CPU 0; min ns per path id. */
export async function runVsysPaths(runBench, ids, { budgetMs = 150, repeats = 5 } = {}) {
  const rep = await runBench({ paths: ids.join(','), budgetMs, repeats, cpu: 0, save: false });
  const m = new Map();
  for (const x of rep.results) if (x.ns) m.set(x.id, x.ns.min);
  return m;
}

/**
 * `rounds` rounds of C and vsys, alternating group by group (the order flips each round) so both
 * see the same moment of a noisy machine. Returns every round's figures per id: { c: [], vsys: [] }.
 */
export async function measureRounds(runBench, { exe, exe32 }, groups, rounds, { onRound, scale = 1, budgetMs = 150 } = {}) {
  const samples = new Map();
  const put = (id, side, ns) => {
    if (!(Number.isFinite(ns) && ns > 0)) return;
    if (!samples.has(id)) samples.set(id, { c: [], vsys: [] });
    samples.get(id)[side].push(ns);
  };
  for (let r = 0; r < rounds; r++) {
    for (const [g, ids] of Object.entries(groups)) {
      for (const order of r % 2 ? ['vsys', 'c'] : ['c', 'vsys']) {
        if (order === 'c') {
          const got = runC(g === 'i386' ? exe32 : exe, g, { scale, is32: g === 'i386' });
          for (const id of ids) put(id, 'c', got.get(id));
        } else {
          const got = await runVsysPaths(runBench, ids, { budgetMs });
          for (const id of ids) put(id, 'vsys', got.get(id));
        }
      }
    }
    onRound?.(r);
  }
  return samples;
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The script's target: 0.9–1.1 at ≥ 10 ns, ±1 ns below. */
export function withinTarget(cNs, vsysNs) {
  if (!cNs || !vsysNs) return false;
  return cNs >= 10 ? vsysNs / cNs >= 0.9 && vsysNs / cNs <= 1.1 : Math.abs(vsysNs - cNs) <= 1;
}

async function main() {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const rounds = args.includes('--rounds') ? Number(args[args.indexOf('--rounds') + 1]) || 6 : 6;
  if (!fs.existsSync(path.join(ROOT, 'dist', 'src', 'bench', 'run-bench.js'))) execFileSync('npx', ['tsc', '-p', '.'], { cwd: ROOT, stdio: 'inherit' });
  const { runBench } = await import(pathToFileURL(path.join(ROOT, 'dist', 'src', 'bench', 'run-bench.js')).href);
  const built = buildFidelity();
  if (!built.exe) {
    console.error(`gcc failed (the fidelity check needs gcc; vsys itself does not):\n${built.error}`);
    process.exit(3);
  }
  if (!built.exe32) console.error('note: gcc -m32 failed (apt-get install gcc-multilib); the 32-bit rows are skipped');
  const mode = pageMode();
  const groups = { libc: C_GROUPS.libc, syscall: C_GROUPS.syscall, ...(mode === 'page' ? { vsyscall: C_GROUPS.vsyscall } : {}), int80: C_GROUPS.int80, ...(built.exe32 ? { i386: C_GROUPS.i386 } : {}) };
  const ids = Object.values(groups).flat();
  const samples = await measureRounds(runBench, built, groups, rounds, { onRound: (r) => { if (!json) process.stderr.write(`round ${r + 1}/${rounds} done\n`); } });
  const rows = ids.map((id) => {
    const s = samples.get(id);
    const cn = s?.c.length ? Math.min(...s.c) : undefined;
    const vn = s?.vsys.length ? Math.min(...s.vsys) : undefined;
    const ratio = cn && vn ? vn / cn : undefined;
    return { id, cNs: cn, vsysNs: vn, ratio, ok: withinTarget(cn, vn) };
  });
  if (json) {
    console.log(JSON.stringify({ rounds, rows, met: rows.every((r) => r.ok) }, null, 2));
  } else {
    console.log(`fidelity: vsys's generated loops vs gcc -O2 (bench/fidelity.c), min of ${rounds} rounds × 5 repeats, CPU 0`);
    console.log(`${'path'.padEnd(32)} ${'C ns'.padStart(9)} ${'vsys ns'.padStart(9)} ${'vsys/C'.padStart(7)}  target`);
    for (const r of rows) {
      console.log(`${r.id.padEnd(32)} ${(r.cNs ?? NaN).toFixed(2).padStart(9)} ${(r.vsysNs ?? NaN).toFixed(2).padStart(9)} ${(r.ratio ?? NaN).toFixed(3).padStart(7)}  ${r.ok ? 'met' : 'MISSED'}${(r.cNs ?? 99) < 10 ? ' (±1 ns)' : ' (0.9–1.1)'}`);
    }
    console.log(rows.every((r) => r.ok) ? 'all paths within target' : `${rows.filter((r) => !r.ok).length} path(s) outside the target`);
    if (mode === 'none') console.log('(vsyscall=none here: the page paths cannot be compared)');
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) await main();
