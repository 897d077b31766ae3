// `vsys probe`: the host report as text or JSON, optionally dumping the vDSO image.
import { parseArgs } from 'node:util';
import { probeHost } from '../host/probe.js';
import { formatProbe } from './format-host.js';
import { EXIT, toJson, type Command } from './io.js';

const HELP = `usage: vsys probe [--json] [--dump-vdso FILE] [--no-active] [--no-measure]

What this host does with the syscall paths: the vsyscall mode with its evidence
(/proc/self/maps, /proc/cmdline, the kernel config, and active tests in child
processes: a call and a read of the page, the call stepped with the trap flag to
tell emulated calls from native ones, and process_vm_readv of the page as a
debugger reads it), getcpu's CPU and node on every online CPU (vDSO and vsyscall
page against sched_getcpu and sysfs), the vDSO and whether its clock really stays
in user space, the clocksource, KPTI and CPU vulnerabilities, 32-bit support, perf
access, containers and seccomp.

options:
  --json             one JSON document with the same fields as the text
  --dump-vdso FILE   write this process's vDSO image to FILE (readelf -Ws FILE reads it)
  --no-active        do not call or read the vsyscall page in child processes
                     (no trap-flag step, no process_vm_readv; getcpu asks the vDSO only)
  --no-measure       do not time the vDSO against the syscall
  -h, --help         this text

examples:
  vsys probe
  vsys probe --json | jq .vsyscall.mode
  vsys probe --json | jq '.vsyscall.trapFlag, .vsyscall.vmReadv, .getcpu'
  vsys probe --dump-vdso vdso.so && readelf -Ws vdso.so
`;

export const probeCommand: Command = {
  summary: 'host facts: vsyscall mode with evidence, vDSO, clocksource, KPTI, perf',
  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: {
        json: { type: 'boolean' },
        'dump-vdso': { type: 'string' },
        'no-active': { type: 'boolean' },
        'no-measure': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    const report = await probeHost({
      active: !values['no-active'],
      vdsoHealth: !values['no-measure'],
      ...(values['dump-vdso'] ? { dumpVdsoTo: values['dump-vdso'] } : {}),
    });
    io.stdout.write(values.json ? toJson(report) + '\n' : formatProbe(report));
    if (values['dump-vdso'] && !values.json) io.stderr.write(`vDSO image written to ${values['dump-vdso']}\n`);
    return EXIT.ok;
  },
};
