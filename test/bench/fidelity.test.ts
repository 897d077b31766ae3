// vsys bench against gcc-built C loops (bench/fidelity.c), in the relative form npm test can hold on
// a shared, noisy machine: a few paths measured both ways, alternating, several rounds; the median
// of the per-round vsys/C ratios must lie within a generous bound. bench/fidelity.mjs (same steps,
// tight target) is the measurement; this is the regression net.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { runBench } from '../../src/bench/run-bench.js';
import { ROOT } from '../helpers.js';
import { hasGcc } from '../support/fixtures.js';

interface Fidelity {
  C_GROUPS: Record<string, string[]>;
  pageMode(): 'page' | 'none';
  buildFidelity(dir: string): { exe?: string; error?: string; exe32?: string };
  runC(bin: string, group: string, opts?: { scale?: number; repeats?: number }): Map<string, number>;
  measureRounds(
    run: typeof runBench,
    built: { exe?: string; exe32?: string },
    groups: Record<string, string[]>,
    rounds: number,
    opts?: { budgetMs?: number },
  ): Promise<Map<string, { c: number[]; vsys: number[] }>>;
  median(values: number[]): number;
}

const fidelity = (await import(pathToFileURL(path.join(ROOT, 'bench', 'fidelity.mjs')).href)) as Fidelity;

/**
 * vsys/C bound. The script's own target is 0.9–1.1 (min of rounds, quiet machine); under npm test
 * two test files run at once on 2 vCPUs and single rounds have been seen from 0.51 to 1.81: the
 * medians of 5–7 rounds stayed within 0.75–1.07, and a loop that
 * measured something else (an extra call, a missing iteration count, ns per batch) lands far outside.
 */
const LOW = 0.5;
const HIGH = 2;
const ROUNDS = 7;

const skip = !hasGcc() && 'gcc not installed (the C reference loops need it; vsys itself does not)';

test('the exported steps: fidelity.c builds and prints one positive "id ns" line per path of a group', { skip, timeout: 120_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-fidelity-'));
  try {
    const built = fidelity.buildFidelity(dir);
    assert.ok(built.exe, `gcc failed: ${built.error}`);
    const got = fidelity.runC(built.exe, 'syscall', { scale: 1, repeats: 2 });
    assert.deepEqual([...got.keys()], fidelity.C_GROUPS.syscall);
    for (const [id, ns] of got) assert.ok(ns > 1 && ns < 1e6, `${id}: ${ns} ns`);
    assert.equal(fidelity.median([3, 1, 2]), 2);
    assert.equal(fidelity.median([4, 1, 3, 2]), 2.5);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test(`vsys bench and gcc -O2 C loops agree: median vsys/C of ${ROUNDS} rounds within ${LOW}–${HIGH}×`, { skip, timeout: 300_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-fidelity-'));
  try {
    const built = fidelity.buildFidelity(dir);
    assert.ok(built.exe, `gcc failed: ${built.error}`);
    // Paths ≥ 10 ns, where a ratio means something on a shared machine (the script allows ±1 ns
    // below), and libc's sched_getcpu (~1.2 ns here, through rseq): each round's figure is a min of
    // repeats on both sides, and a loop that called something else (the vDSO's getcpu, ~2.5 ns) or
    // twice would still land outside 0.5–2×.
    const groups: Record<string, string[]> = {
      libc: ['libc-gettimeofday', 'libc-clock_gettime', 'libc-clock_gettime-monotonic', 'libc-sched_getcpu'],
      syscall: ['syscall-getpid', 'syscall-gettimeofday', 'syscall-clock_gettime-monotonic', 'syscall-getcpu'],
      ...(fidelity.pageMode() === 'page' ? { vsyscall: ['vsyscall-time'] } : {}),
    };
    const samples = await fidelity.measureRounds(runBench, built, groups, ROUNDS, { budgetMs: 100 });
    const lines: string[] = [];
    const bad: string[] = [];
    for (const id of Object.values(groups).flat()) {
      const s = samples.get(id);
      assert.ok(s && s.c.length === ROUNDS && s.vsys.length === ROUNDS, `${id}: ${JSON.stringify(s)}`);
      const ratios = s.c.map((c, i) => (s.vsys[i] as number) / c);
      const m = fidelity.median(ratios);
      const line = `${id}: C ${fidelity.median(s.c).toFixed(1)} ns, vsys ${fidelity.median(s.vsys).toFixed(1)} ns, vsys/C median ${m.toFixed(2)} (rounds ${ratios.map((r) => r.toFixed(2)).join(' ')})`;
      lines.push(line);
      if (!(m >= LOW && m <= HIGH)) bad.push(line);
    }
    for (const l of lines) t.diagnostic(l);
    assert.deepEqual(bad, [], `outside ${LOW}–${HIGH}×`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
