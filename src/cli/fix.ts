// `vsys fix`: arguments, the report (text or JSON), exit status from what still crashes under none.
import { parseArgs } from 'node:util';
import { EXIT, toJson, usageError, type Io, type Command } from './io.js';
import { formatFixRun } from './format-fix.js';

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
