// `vsys fix`: arguments, the report (text or JSON), exit status from what still crashes under none.
import { parseArgs } from 'node:util';
import type { FixRun } from '../fix/fix-files.js';
import type { FileFixReport, SiteFix } from '../fix/fix-bytes.js';
import { VSYSCALL_MODES } from '../model/modes.js';
import { EXIT, toJson, usageError, type Io } from './io.js';
import type { Command } from './main.js';

const HELP = `usage: vsys fix FILE -o OUT
       vsys fix DIR -o OUTDIR
       vsys fix --in-place [--backup DIR] FILE|DIR
       vsys fix --dry-run FILE|DIR
       vsys fix IMAGE -o OUT.tar     (an image: see vsys fix IMAGE --help)

Rewrites every direct call of the legacy vsyscall page into what the page did in
native mode, so the program runs on kernels booted with vsyscall=none:

  mov $0xffffffffff600400,%rax; call *%rax   →   mov $201,%eax; syscall; nop

(gettimeofday 96, time 201, getcpu 309; a tail jump gets a ret). Only sites
decoded as exactly that are rewritten; a call through a data word, a register
used between the mov and the call, or a branch into the bytes is refused with
the reason. Fallback sites (used only if the vDSO lacks the symbol) are left.
Every output is verified before it is written: each patched site decodes as
intended, every other byte is the input's, and a new scan finds no direct call
where one was patched. Patching a libc fixes the programs that import from it;
the report names them. No compiler or toolchain is needed.

Package managers will see the patched files as modified (rpm -V, dpkg --verify).

options:
  -o, --output OUT    the fixed copy: a file, or for a directory a new tree
                      (OUTDIR must not exist; links are copied, never followed)
  --in-place          rewrite the files where they are; each original is kept
                      as FILE.vsys-orig (or under --backup DIR)
  --backup DIR        with --in-place: keep the originals under DIR instead
  --dry-run           the plan only: nothing is written
  --json              the report as one JSON document
  -h, --help          this text

exit status:
  0  nothing that would crash under vsyscall=none is left
  1  something would still crash under vsyscall=none (listed; wins over 3)
  2  usage error
  3  an input could not be read or judged (listed)

examples:
  vsys fix ./busybox -o ./busybox.fixed
  vsys fix ./rootfs -o ./rootfs-fixed && vsys scan --mode none --fail-on crash ./rootfs-fixed
  vsys fix --dry-run /srv/centos6-root
  vsys fix --in-place --backup /var/backups/vsys ./rootfs
`;

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

export const fixCommand: Command = {
  summary: 'rewrite vsyscall calls so files and root filesystems run on vsyscall=none kernels',
  async run(args, io: Io) {
    // Images (IMAGE.tar, oci:DIR, registry://): their own options and report, in fix-image.ts.
    const image = await import('./fix-image.js');
    if (image.namesImage(args)) return image.runFixImage(args, io);
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        output: { type: 'string', short: 'o' },
        'in-place': { type: 'boolean' },
        backup: { type: 'string' },
        'dry-run': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    if (positionals.length === 0) throw usageError('fix: give a FILE or DIR (and -o OUT, --in-place or --dry-run)');
    const modes = [values.output !== undefined, values['in-place'] === true, values['dry-run'] === true].filter(Boolean).length;
    if (modes !== 1) throw usageError('fix: give exactly one of -o OUT, --in-place, --dry-run');
    if (values.backup !== undefined && !values['in-place']) throw usageError('fix: --backup goes with --in-place');
    const { fixPaths } = await import('../fix/fix-files.js');
    const run = await fixPaths(positionals, {
      ...(values.output !== undefined ? { output: values.output } : {}),
      ...(values['in-place'] ? { inPlace: true } : {}),
      ...(values.backup !== undefined ? { backupDir: values.backup } : {}),
      ...(values['dry-run'] ? { dryRun: true } : {}),
      ...(io.stderr.isTTY ? { onProgress: (d: number, t: number, p: string) => io.stderr.write(`\r\x1b[2Kfixing ${d + 1}/${t} ${p.slice(-50)}`) } : {}),
    });
    if (io.stderr.isTTY) io.stderr.write('\r\x1b[2K');
    const exit = run.stillCrash.length > 0 ? EXIT.findings : run.unjudged.length > 0 ? EXIT.runtime : EXIT.ok;
    if (values.json) io.stdout.write(toJson({ ...run, dryRun: values['dry-run'] === true, exit }, 0) + '\n');
    else io.stdout.write(formatFixRun(run, values['dry-run'] === true));
    return exit;
  },
};
