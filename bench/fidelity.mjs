// Fidelity check of `vsys bench`: the same paths measured by a C program built here with gcc -O2
// (bench/fidelity.c) and by vsys's generated code, in the same run, alternating, min of repeats.
// Target: vsys/C within 0.9–1.1 for every path ≥ 10 ns, within 1 ns below that.
// usage: node bench/fidelity.mjs [--rounds N] [--json]
import { spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const json = args.includes('--json');
const rounds = args.includes('--rounds') ? Number(args[args.indexOf('--rounds') + 1]) || 6 : 6;
if (!fs.existsSync(path.join(ROOT, 'dist', 'src', 'bench', 'run-bench.js'))) execFileSync('npx', ['tsc', '-p', '.'], { cwd: ROOT, stdio: 'inherit' });
const { runBench } = await import(path.join(ROOT, 'dist', 'src', 'bench', 'run-bench.js'));

const exe = path.join(ROOT, '.cache', 'bench', 'fidelity');
fs.mkdirSync(path.dirname(exe), { recursive: true });
const cc = spawnSync('gcc', ['-O2', '-o', exe, path.join(ROOT, 'bench', 'fidelity.c'), '-ldl'], { encoding: 'utf8' });
if (cc.status !== 0) {
  console.error(`gcc failed (the fidelity check needs gcc; vsys itself does not):\n${cc.stderr}`);
  process.exit(3);
}
const exe32 = path.join(ROOT, '.cache', 'bench', 'fidelity32');
const cc32 = spawnSync('gcc', ['-m32', '-O2', '-o', exe32, path.join(ROOT, 'bench', 'fidelity32.c')], { encoding: 'utf8' });
const have32 = cc32.status === 0;
if (!have32) console.error('note: gcc -m32 failed (apt-get install gcc-multilib); the 32-bit rows are skipped');
const mode = /\[vsyscall\]/.test(fs.readFileSync('/proc/self/maps', 'utf8')) ? 'page' : 'none';
const groups = ['libc', 'syscall', ...(mode === 'page' ? ['vsyscall'] : []), 'int80', ...(have32 ? ['i386'] : [])];
const ids = ['libc-time', 'libc-gettimeofday', 'libc-clock_gettime', 'syscall-getpid', 'syscall-gettimeofday', 'syscall-clock_gettime',
  ...(mode === 'page' ? ['vsyscall-time', 'vsyscall-gettimeofday'] : []), 'int80-64-getpid',
  ...(have32 ? ['i386-int80', 'i386-kernel-vsyscall', 'i386-vdso32-gettimeofday', 'i386-vdso32-clock_gettime'] : [])];

const c = new Map();
const v = new Map();
const keepMin = (m, id, x) => { if (Number.isFinite(x) && x > 0) m.set(id, Math.min(m.get(id) ?? Infinity, x)); };
// C and vsys alternate path group by path group, so both see the same moment of a noisy machine.
const groupIds = { libc: ids.filter((i) => i.startsWith('libc-')), syscall: ids.filter((i) => i.startsWith('syscall-')), vsyscall: ids.filter((i) => i.startsWith('vsyscall-')), int80: ['int80-64-getpid'], i386: ids.filter((i) => i.startsWith('i386-')) };
for (let r = 0; r < rounds; r++) {
  for (const g of groups) {
    for (const order of r % 2 ? ['vsys', 'c'] : ['c', 'vsys']) {
      if (order === 'c') {
        const bin = g === 'i386' ? exe32 : exe;
        const cargs = g === 'i386' ? [] : [g, '1', '5'];
        const out = spawnSync('taskset', ['-c', '0', bin, ...cargs], { encoding: 'utf8' });
        const text = out.status === 0 ? out.stdout : spawnSync(bin, cargs, { encoding: 'utf8' }).stdout;
        for (const line of text.trim().split('\n')) {
          const [id, ns] = line.split(' ');
          keepMin(c, id, Number(ns));
        }
      } else {
        const rep = await runBench({ paths: groupIds[g].join(','), budgetMs: 150, repeats: 5, cpu: 0, save: false });
        for (const x of rep.results) if (x.ns) keepMin(v, x.id, x.ns.min);
      }
    }
  }
  if (!json) process.stderr.write(`round ${r + 1}/${rounds} done\n`);
}

const rows = ids.map((id) => {
  const cn = c.get(id);
  const vn = v.get(id);
  const ratio = cn && vn ? vn / cn : undefined;
  const ok = cn && vn ? (cn >= 10 ? ratio >= 0.9 && ratio <= 1.1 : Math.abs(vn - cn) <= 1) : false;
  return { id, cNs: cn, vsysNs: vn, ratio, ok };
});
if (json) {
  console.log(JSON.stringify({ rounds, rows, met: rows.every((r) => r.ok) }, null, 2));
} else {
  console.log(`fidelity: vsys's generated loops vs gcc -O2 (bench/fidelity.c), min of ${rounds} rounds × 5 repeats, CPU 0`);
  console.log(`${'path'.padEnd(24)} ${'C ns'.padStart(9)} ${'vsys ns'.padStart(9)} ${'vsys/C'.padStart(7)}  target`);
  for (const r of rows) {
    console.log(`${r.id.padEnd(24)} ${(r.cNs ?? NaN).toFixed(2).padStart(9)} ${(r.vsysNs ?? NaN).toFixed(2).padStart(9)} ${(r.ratio ?? NaN).toFixed(3).padStart(7)}  ${r.ok ? 'met' : 'MISSED'}${(r.cNs ?? 99) < 10 ? ' (±1 ns)' : ' (0.9–1.1)'}`);
  }
  console.log(rows.every((r) => r.ok) ? 'all paths within target' : `${rows.filter((r) => !r.ok).length} path(s) outside the target`);
  if (mode === 'none') console.log('(vsyscall=none here: the page paths cannot be compared)');
}
