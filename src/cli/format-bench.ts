// Renderings of a bench run: the table with the published figures beside the matching rows (cited by
// article and year), and an SVG bar chart (log scale) of this host against seed 004's table.
import { BENCH_PATHS } from '../bench/paths.js';
import type { BenchReport } from '../bench/run-bench.js';
import { SEED000_CEP, SEED003_RATES, SEED004_TABLE, SEEDS, type PathFamily } from '../model/figures.js';

const FAMILY = new Map(BENCH_PATHS.filter((p) => p.seed004).map((p) => [p.id, p.seed004 as PathFamily]));

function fmtNs(v: number | undefined): string {
  if (v === undefined) return '';
  // By the value as it will print: 99.96 is "100", not "100.0"; 9.996 is "10.0", not "10.00".
  return v >= 99.95 ? v.toFixed(0) : v >= 9.995 ? v.toFixed(1) : v.toFixed(2);
}

/** The published figures for a row, as text, each named by its source (article, year). */
export function publishedNote(id: string, kpti: boolean | null): string {
  const notes: string[] = [];
  const fam = FAMILY.get(id);
  const row = fam ? SEED004_TABLE.find((r) => r.path === fam) : undefined;
  if (row) {
    const pick = kpti === false ? `${row.nsKptiOff} ns (KPTI off; ${row.nsKptiOn} on)` : `${row.nsKptiOn} ns (KPTI on; ${row.nsKptiOff} off)`;
    notes.push(`${SEEDS.s004.cite}: ${pick}`);
  }
  if (id === 'vdso-time') notes.push(`${SEEDS.s003.cite}: ${(SEED003_RATES.vdso / 1e6).toFixed(2)} M calls/s = ${(1e9 / SEED003_RATES.vdso).toFixed(2)} ns; ${SEEDS.s000.cite}: ${SEED000_CEP.seconds.vdso} s / 10 M`);
  if (id === 'vsyscall-time') notes.push(`${SEEDS.s003.cite}: ${(SEED003_RATES['vsyscall-emulated'] / 1e6).toFixed(1)} M calls/s = ${(1e9 / SEED003_RATES['vsyscall-emulated']).toFixed(0)} ns; ${SEEDS.s000.cite}: ${SEED000_CEP.seconds['vsyscall-emulated']} s / 10 M`);
  return notes.join('; ');
}

/** "27×", "1.4×", or "—" when the vDSO has no call of the same function (or it was not measured). */
function ratioText(x: { ratio?: number }): string {
  if (x.ratio === undefined) return '—';
  return `${x.ratio >= 10 ? x.ratio.toFixed(0) : x.ratio.toFixed(1)}×`;
}

export function formatBench(r: BenchReport): string {
  const h = r.host;
  const out: string[] = [
    `vsys bench — Linux ${h.kernel}, ${h.cpu}, ${h.cpus} CPUs; KPTI ${h.kpti === null ? 'unknown' : h.kpti ? 'on' : 'off'}; vsyscall=${h.vsyscallMode}; clocksource ${h.clocksource ?? '?'}`,
    `pinned to CPU ${r.pinnedCpu}; ${r.repeats} repeats of ~${Math.round(r.budgetMs / r.repeats)} ms per path; min (as the published tables), median, p95${r.tscGhz ? `; TSC ${r.tscGhz.toFixed(2)} GHz` : ''}`,
    '',
  ];
  const w = Math.max(...r.results.map((x) => x.label.length), 10);
  out.push(`${'path'.padEnd(w)}  ${'ns/call'.padStart(8)} ${'median'.padStart(8)} ${'p95'.padStart(8)} ${'cycles'.padStart(7)} ${'vs vDSO'.padStart(7)}  check  published`);
  let group = '';
  for (const x of r.results) {
    if (x.group !== group) {
      if (group !== '') out.push('');
      group = x.group;
    }
    if (x.status !== 'measured' || !x.ns) {
      out.push(`${x.label.padEnd(w)}  ${'—'.padStart(8)}  unavailable: ${x.reason ?? 'not measured'}`);
      continue;
    }
    const check = x.check ? (x.check.ok ? '✓' : '✗') : ' ';
    const ratio = x.group === 'vdso' ? '' : ratioText(x);
    const cyc = x.cycles ? x.cycles.min.toFixed(0) : '';
    out.push(`${x.label.padEnd(w)}  ${fmtNs(x.ns.min).padStart(8)} ${fmtNs(x.ns.median).padStart(8)} ${fmtNs(x.ns.p95).padStart(8)} ${cyc.padStart(7)} ${ratio.padStart(7)}  ${check}      ${publishedNote(x.id, h.kpti)}`);
  }
  const bad = r.results.filter((x) => x.check && !x.check.ok);
  out.push('');
  out.push('vs vDSO: each path against the vDSO call of the same function (vsyscall gettimeofday against vDSO gettimeofday,');
  out.push('syscall clock_gettime(REALTIME) against vDSO clock_gettime(REALTIME), …); — where the vDSO has no such call (getpid).');
  for (const b of bad) out.push(`✗ ${b.label}: result check failed: ${b.check?.detail}`);
  const emu = r.results.find((x) => x.id === 'vsyscall-time' && x.ns);
  const vdso = r.results.find((x) => x.id === 'vdso-time' && x.ns);
  if (emu?.ns && vdso?.ns) out.push(`Here a vsyscall time() costs ${emu.ns.min.toFixed(0)} ns, ${Math.round(emu.ns.min / vdso.ns.min)}× a vDSO time() (${vdso.ns.min.toFixed(2)} ns).`);
  const gtod = r.results.find((x) => x.id === 'vsyscall-gettimeofday' && x.ns && x.ratio !== undefined);
  if (gtod?.ns && gtod.ratio !== undefined) out.push(`Here a vsyscall gettimeofday() costs ${gtod.ns.min.toFixed(0)} ns, ${Math.round(gtod.ratio)}× a vDSO gettimeofday().`);
  return out.join('\n') + '\n';
}

/** A horizontal bar chart, log scale: this host's rows with a seed 004 family, beside seed 004's table. */
export function formatBenchSvg(r: BenchReport): string {
  const rows = SEED004_TABLE.map((s) => {
    const here = r.results.find((x) => FAMILY.get(x.id) === s.path && x.ns);
    return { label: s.label, here: here?.ns?.min, seed: r.host.kpti === false ? s.nsKptiOff : s.nsKptiOn };
  });
  const W = 760;
  const left = 170;
  const barH = 12;
  const rowH = 40;
  const H = 60 + rows.length * rowH + 30;
  const max = Math.max(10_000, ...rows.map((x) => Math.max(x.here ?? 0, x.seed)));
  const x = (ns: number) => left + ((W - left - 20) * Math.log10(Math.max(1, ns))) / Math.log10(max);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<text x="10" y="20" font-size="14" font-weight="bold">gettimeofday per path, ns per call (log scale)</text>`,
    `<text x="10" y="38" fill="#555">${esc(`this host (Linux ${r.host.kernel}, KPTI ${r.host.kpti === null ? 'unknown' : r.host.kpti ? 'on' : 'off'}) in blue; ${SEEDS.s004.cite} (2015 laptop, KPTI ${r.host.kpti === false ? 'off' : 'on'}) in grey`)}</text>`,
  ];
  for (const [i, row] of rows.entries()) {
    const y = 60 + i * rowH;
    parts.push(`<text x="10" y="${y + barH}">${esc(row.label)}</text>`);
    if (row.here !== undefined) {
      parts.push(`<rect x="${left}" y="${y}" width="${(x(row.here) - left).toFixed(1)}" height="${barH}" fill="#2b6cb0"/>`);
      parts.push(`<text x="${(x(row.here) + 4).toFixed(1)}" y="${y + barH - 2}">${fmtNs(row.here)} ns</text>`);
    } else {
      parts.push(`<text x="${left + 4}" y="${y + barH - 2}" fill="#a00">unavailable here</text>`);
    }
    parts.push(`<rect x="${left}" y="${y + barH + 2}" width="${(x(row.seed) - left).toFixed(1)}" height="${barH}" fill="#aaa"/>`);
    parts.push(`<text x="${(x(row.seed) + 4).toFixed(1)}" y="${y + 2 * barH}" fill="#555">${row.seed} ns</text>`);
  }
  for (const t of [1, 10, 100, 1000, 10000].filter((t) => t <= max)) {
    const xx = x(t).toFixed(1);
    parts.push(`<line x1="${xx}" y1="50" x2="${xx}" y2="${H - 25}" stroke="#ddd"/>`, `<text x="${xx}" y="${H - 10}" text-anchor="middle" fill="#555">${t}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
