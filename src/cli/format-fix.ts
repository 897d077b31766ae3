// The text report of `vsys fix` (files, root filesystems and images): each file's sites, what was
// written, what still crashes under vsyscall=none, and what could not be judged.
import type { FixRun } from '../fix/fix-files.js';
import type { FileFixReport, SiteFix } from '../fix/fix-bytes.js';
import { VSYSCALL_MODES } from '../model/modes.js';

const hex = (v: bigint) => `0x${v.toString(16)}`;

function formatSite(s: SiteFix): string[] {
  const where = `${s.entry.padEnd(12)} ${hex(s.address).padStart(10)}${s.function ? `  in ${s.function}` : ''}`;
  if (s.status !== 'patched') return [`    ${s.status === 'refused' ? '✗ refused' : '· left   '} ${where}: ${s.reason}`];
  const lines = [`    ✓ patched ${where} (${s.shape}, %${s.register})`];
  for (const e of s.edits ?? []) lines.push(`        ${e.beforeText.join('; ')}  →  ${e.afterText.join('; ')}    [${e.before} → ${e.after}]`);
  return lines;
}

function formatFile(f: FileFixReport): string[] {
  const head = f.error ? `! ${f.path}: ${f.error.code}: ${f.error.message}` : `${f.refused > 0 ? '✗' : f.patched > 0 ? '✓' : '·'} ${f.path}: ${f.patched} site(s) patched, ${f.refused} refused`;
  const lines = [head, ...f.sites.flatMap(formatSite)];
  if (!f.error && f.sites.length > 0) lines.push(`    ${VSYSCALL_MODES.map((m) => `${m}: ${f.before[m]}${f.after[m] !== f.before[m] ? ` → ${f.after[m]}` : ''}`).join(' · ')}`);
  return lines;
}

export function formatFixRun(r: FixRun, dryRun: boolean): string {
  const out: string[] = [];
  for (const f of r.files) out.push(...formatFile(f), '');
  const through = r.changes.filter((c) => c.how === 'through-library');
  if (through.length > 0) out.push(`fixed through a patched library (${through.length}): ${through.map((c) => c.path).join(', ')}`, '');
  for (const w of r.written) out.push(`wrote ${w.output}${w.original ? ` (original kept as ${w.original})` : ''}`);
  if (r.written.length > 0) out.push('');
  const patched = r.files.reduce((a, f) => a + f.patched, 0);
  out.push(`${dryRun ? 'plan: ' : ''}${patched} site(s) in ${r.files.filter((f) => f.patched > 0).length} file(s) ${dryRun ? 'would be ' : ''}patched; ${r.files.reduce((a, f) => a + f.refused, 0)} refused`);
  if (r.stillCrash.length > 0) {
    out.push(`still crashing under vsyscall=none (${r.stillCrash.length}):`);
    for (const s of r.stillCrash) out.push(`  ✗ ${s.path}: ${s.why}`);
  } else if (r.rescanned) out.push('nothing left that crashes under vsyscall=none (a scan of the output)');
  if (patched > 0) out.push('note: package managers will report the patched files as modified (rpm -V, dpkg --verify)');
  if (r.unjudged.length > 0) {
    out.push('', `could not be read or judged (${r.unjudged.length}):`);
    for (const u of r.unjudged) out.push(`  ! ${u.path}: ${u.code}: ${u.message}`);
  }
  return out.join('\n') + '\n';
}
