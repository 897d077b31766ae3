// `vsys` with no arguments: one screen about what this host does to old programs, in a few seconds,
// without root. Built from the probe; every part that cannot run says why.
import { parseArgs } from 'node:util';
import { seedSlowdown } from '../model/figures.js';
import { remedyLines } from '../model/remedies.js';
import { isVsyscallMode } from '../model/modes.js';
import { probeHost, traceBlocker, type HostReport } from '../host/probe.js';
import { formatHostHeader, formatVsyscallBlock } from './format-host.js';
import { EXIT, toJson, type Command } from './io.js';

const HELP = `usage: vsys [doctor] [--json]

One screen: this host's vsyscall mode and what it means for old programs
(glibc <= 2.13, old static and Go binaries), the vDSO's health, what a
vsyscall costs here (this host's 'vsys bench' figures, else a short
measurement, else a published figure named by its source), what to do about
it, and what was skipped and why. Runs without root; root is needed to read
other users' processes.

examples:
  vsys
  vsys doctor --json
`;

/** One like-for-like figure: a vsyscall time() against a vDSO time(), here or as published. */
export interface Slowdown {
  ratio: number;
  /** ns of an emulated vsyscall time() here, when measured. */
  vsyscallNs: number | null;
  /** ns of a vDSO time() here, when measured. */
  vdsoNs: number | null;
  /** Where the figure comes from: this host's bench, a measurement now, or a published article and year. */
  source: string;
  /** true when the figure was measured on this host. */
  measuredHere: boolean;
}

export interface DoctorReport {
  host: HostReport;
  verdict: { mode: string; severity: 'crash' | 'slow' | 'ok' | 'unknown'; headline: string; detail: string[] };
  slowdown: Slowdown;
  /** What `vsys scan --processes` finds among the files running processes have mapped. */
  processes: ProcessCheck | null;
  skipped: { what: string; why: string }[];
}

export interface ProcessCheck {
  /** Processes whose mapped files were read. */
  processes: number;
  /** Processes whose maps could not be read (exited meanwhile, or refused). */
  unreadable: number;
  /** Of those, refused for lack of permission: their files were not judged (root is needed). */
  denied: number;
  /** Mapped files that could not be opened or analysed: not judged. */
  unjudgedFiles: { path: string; reason: string }[];
  files: number;
  /** Mapped files that use the page, with the processes that map them. */
  affected: { path: string; class: string; outcome: string; why: string; processes: { pid: number; comm: string }[] }[];
}

/** Scans the files mapped by running processes (the doctor's view of `vsys scan --processes`). */
export async function checkProcesses(mode: string): Promise<ProcessCheck> {
  const { mappedFiles } = await import('../scan/processes.js');
  const { scanPaths } = await import('../scan/scan.js');
  const { isVsyscallMode } = await import('../model/modes.js');
  const procs = mappedFiles();
  const { hostSlowdowns, loadHostFigures } = await import('../bench/host-figures.js');
  const { seedSlowdowns } = await import('../scan/verdict.js');
  // The same figures as the headline: this host's, where measured (like for like, entry by entry).
  const res = await scanPaths({ paths: procs.files.map((f) => f.hostPath), workers: 0, slowdown: hostSlowdowns(loadHostFigures(), seedSlowdowns) });
  const byPath = new Map(procs.files.map((f) => [f.hostPath, f]));
  const m = isVsyscallMode(mode) ? mode : 'none';
  const affected = res.files
    .filter((f) => f.class !== 'clean' && f.class !== 'data-ref')
    .map((f) => ({ path: byPath.get(f.path)?.path ?? f.path, class: f.class, outcome: f.verdicts[m].outcome, why: f.verdicts[m].why, processes: byPath.get(f.path)?.processes ?? [] }));
  const unjudgedFiles = [
    ...procs.unresolved.map((u) => ({ path: u.path, reason: u.reason })),
    ...res.errors.map((e) => ({ path: byPath.get(e.path)?.path ?? e.path, reason: e.message })),
  ];
  return { processes: procs.processes, unreadable: procs.unreadable, denied: procs.denied, unjudgedFiles, files: res.summary.elfFiles, affected };
}

export function verdictFor(mode: string, s: Slowdown): DoctorReport['verdict'] {
  const who = 'Programs built against glibc ≤ 2.13 (CentOS 5/6, Debian wheezy images), old static binaries and old Go runtimes';
  const cost = `a vsyscall time() costs ~${Math.round(s.ratio)}× a vDSO time() (${s.source})`;
  const known = isVsyscallMode(mode) ? mode : undefined;
  const remedies = known ? remedyLines(undefined, known) : [];
  // No default: a mode added to the model is a compile error here until its advice is written.
  switch (known) {
    case 'none':
      return {
        mode, severity: 'crash',
        headline: `${who} will CRASH here: SIGSEGV, exit status 139, no message, the first time they call time() or gettimeofday().`,
        detail: ['Find them before they run: vsys scan DIR (or an image).', ...remedies],
      };
    case 'xonly':
      return {
        mode, severity: 'slow',
        headline: `${who} will run here, but every vsyscall traps into the kernel and is emulated: ${cost}.`,
        detail: ['Programs that read the page as data (rare) get SIGSEGV in this mode.', 'On a vsyscall=none host the same programs crash; check with: vsys scan DIR.', ...remedies],
      };
    case 'emulate':
      return {
        mode, severity: 'slow',
        headline: `${who} will run here, but every vsyscall traps into the kernel and is emulated: ${cost}.`,
        detail: ['The page is also readable, which leaks its fixed address to exploits (xonly closes that).', 'On a vsyscall=none host the same programs crash; check with: vsys scan DIR.', ...remedies],
      };
    case 'native':
      return {
        mode, severity: 'ok',
        headline: `${who} run at syscall speed here (native vsyscall page, kernels before 4.15).`,
        detail: ['The native page is executable code at a fixed address: a gift to exploits. Newer kernels emulate it or remove it.'],
      };
    case undefined:
      return { mode, severity: 'unknown', headline: 'The vsyscall mode of this host could not be determined.', detail: ['Run vsys probe for the evidence.'] };
  }
}

/**
 * "Here a vsyscall costs X ns, Y× a vDSO call": from the figures `vsys bench` saved on this boot,
 * else a short measurement (vDSO time here, the page's time entry in a child), else the seeds.
 */
async function measureHeadline(mode: string, skipped: { what: string; why: string }[]): Promise<Slowdown> {
  const seed = seedSlowdown('time');
  const fallback: Slowdown = { ratio: seed.ratio, vsyscallNs: null, vdsoNs: null, source: seed.source, measuredHere: false };
  try {
    const { vsyscallTimeCost } = await import('../bench/time-cost.js');
    // Under none (or an unknown mode) there is no page to call: only saved figures can speak.
    const c = await vsyscallTimeCost({ measure: mode !== 'none' && mode !== 'unknown' });
    if (c && 'emulatedNs' in c) return headline(c);
    if (c) skipped.push({ what: 'vsyscall cost here', why: c.error });
    return fallback;
  } catch (err) {
    skipped.push({ what: 'vsyscall cost here', why: err instanceof Error ? err.message : String(err) });
    return fallback;
  }
}

function headline(c: { emulatedNs: number; vdsoNs: number; savedAt?: string }): Slowdown {
  return {
    ratio: c.emulatedNs / c.vdsoNs, vsyscallNs: c.emulatedNs, vdsoNs: c.vdsoNs,
    source: c.savedAt ? `this host, vsys bench ${c.savedAt.slice(0, 16).replace('T', ' ')}` : 'this host, measured just now',
    measuredHere: true,
  };
}

export async function runDoctor(): Promise<DoctorReport> {
  // Which counting method trace would use is probe's detail; the doctor needs only whether it can.
  // The mode, the vDSO and the host's facts; the selftest's finer checks are `vsys probe`'s (each costs a child process).
  const host = await probeHost({ traceCounting: false, getcpu: false, selftest: false });
  const skipped = [...host.skipped];
  const slowdown = await measureHeadline(host.vsyscall.mode, skipped);
  let processes: ProcessCheck | null = null;
  try {
    processes = await checkProcesses(host.vsyscall.mode);
  } catch (e) {
    skipped.push({ what: 'running processes', why: e instanceof Error ? e.message : String(e) });
  }
  return { host, verdict: verdictFor(host.vsyscall.mode, slowdown), slowdown, processes, skipped };
}

export function formatDoctor(d: DoctorReport): string {
  const r = d.host;
  const out: string[] = [`vsys doctor — ${formatHostHeader(r)}`, ''];
  const mark = { crash: '✗', slow: '!', ok: '✓', unknown: '?' }[d.verdict.severity];
  out.push(`${mark} ${d.verdict.headline}`);
  for (const l of d.verdict.detail) out.push(`  ${l}`);
  out.push('');
  out.push(...formatVsyscallBlock(r));
  out.push('');
  if (!r.vdso.present) out.push(`✗ No vDSO: every clock read is a system call (${r.vdso.error ?? ''}).`);
  else if (r.vdso.health?.userSpace === false) out.push(`✗ vDSO: ${r.vdso.health.summary}. Switch the clocksource to tsc if the host allows it.`);
  else if (r.vdso.health) out.push(`✓ vDSO: ${r.vdso.health.summary}.`);
  else out.push(`? vDSO present at 0x${r.vdso.base?.toString(16)}; its speed was not measured.`);
  if (d.slowdown.vsyscallNs !== null && d.slowdown.vdsoNs !== null) {
    out.push(`  Here a vsyscall time() costs ${d.slowdown.vsyscallNs.toFixed(0)} ns, a vDSO time() ${d.slowdown.vdsoNs.toFixed(1)} ns.`);
  }
  out.push(`  KPTI ${r.kpti.enabled === null ? 'unknown' : r.kpti.enabled ? 'on: every kernel entry pays a page-table switch' : 'off'}; clocksource ${r.clocksource.current ?? 'unknown'}; 32-bit paths ${r.ia32.available ? 'available' : r.ia32.available === false ? 'unavailable' : 'unknown'}.`);
  if (d.processes) {
    const p = d.processes;
    const seen = `${p.files} ELF files mapped by ${p.processes} processes`;
    const unjudged: string[] = [];
    const why = process.getuid?.() === 0
      ? 'permission denied even to root: processes that are not dumpable, or vsys lacks CAP_SYS_PTRACE'
      : "other users' processes: root is needed, e.g. sudo vsys";
    if (p.denied) unjudged.push(`${p.denied} of ${p.processes + p.denied} processes could not be read (${why})`);
    if (p.unjudgedFiles.length) unjudged.push(`${p.unjudgedFiles.length} mapped file${p.unjudgedFiles.length === 1 ? '' : 's'} could not be read (${p.unjudgedFiles.slice(0, 3).map((f) => f.path).join(', ')}${p.unjudgedFiles.length > 3 ? ', …' : ''})`);
    if (p.affected.length === 0 && unjudged.length === 0) out.push(`✓ Running programs: none uses the vsyscall page (${seen}).`);
    else if (p.affected.length === 0) out.push(`? Running programs: none of those read uses the vsyscall page (${seen}), but ${unjudged.join('; ')}.`);
    else if (unjudged.length) out.push(`? Running programs: not all judged: ${unjudged.join('; ')}.`);
    for (const a of p.affected) {
      const who = a.processes.slice(0, 5).map((x) => `${x.pid} ${x.comm}`).join(', ');
      out.push(`${a.outcome === 'crash' ? '✗' : '!'} Running: ${a.path} (${a.class}) in ${who}${a.processes.length > 5 ? ', …' : ''}: ${a.why}.`);
    }
    if (p.affected.length) {
      const pids = [...new Set(p.affected.flatMap((a) => a.processes.map((x) => x.pid)))].slice(0, 8).join(',');
      const blocker = traceBlocker(r.perf);
      out.push(`  How often they call it, and what it costs: vsys trace -p ${pids} --duration 10${blocker ? ` (${blocker})` : ''}`);
    }
  }
  if (r.container.inContainer) out.push(`  Running in a container (${r.container.kind ?? 'unknown'}): the vsyscall mode is the host kernel's.`);
  if (d.skipped.length) {
    out.push('', 'skipped:');
    for (const s of d.skipped) out.push(`  ${s.what}: ${s.why}`);
  }
  out.push('', 'more: vsys probe (all evidence) · vsys trace -a --duration 10 (live use) · vsys --help');
  return out.join('\n') + '\n';
}

export const doctorCommand: Command = {
  summary: 'one screen about this host (the default)',
  async run(args, io) {
    const { values } = parseArgs({ args, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true });
    if (values.help) {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    const d = await runDoctor();
    io.stdout.write(values.json ? toJson(d) + '\n' : formatDoctor(d));
    return EXIT.ok;
  },
};
