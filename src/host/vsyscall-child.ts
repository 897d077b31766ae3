// Child process for the active vsyscall tests: does one risky thing with the page and prints JSON.
// It may die of SIGSEGV; that is the answer the parent is waiting for.
//   call-time | read                  the active test (vsyscall-mode.ts)
//   trap-flag                         step a call of time() with EFLAGS.TF (trap-flag.ts)
//   vm-readv                          process_vm_readv of the page (vm-readv.ts)
//   getcpu CPUS vsyscall|no-vsyscall  getcpu on each CPU of the list (getcpu-check.ts)
import { VSYSCALL_PAGE_ADDR, vsyscallEntry } from '../model/vsyscall-page.js';
import { callPointer, pointerAt, readMemory } from '../native/memory.js';

const print = (v: unknown) => process.stdout.write(JSON.stringify(v) + '\n');
const [what, ...args] = process.argv.slice(2);

if (what === 'call-time') {
  const t = Number(callPointer(pointerAt(vsyscallEntry('time').address), 'long (void *)', null));
  print({ ok: true, value: t });
} else if (what === 'read') {
  const b = readMemory(pointerAt(VSYSCALL_PAGE_ADDR), 1);
  print({ ok: true, value: b[0] });
} else if (what === 'trap-flag') {
  const { stepTimeEntry } = await import('./trap-flag-code.js');
  print(stepTimeEntry());
} else if (what === 'vm-readv') {
  const { readPageAsDebugger } = await import('./vm-readv.js');
  readPageAsDebugger((line) => process.stdout.write(line + '\n'));
} else if (what === 'getcpu' && args[0] !== undefined && (args[1] === 'vsyscall' || args[1] === 'no-vsyscall')) {
  const { sweepGetcpu } = await import('./getcpu-sweep.js');
  print(sweepGetcpu(args[0].split(',').map(Number), args[1] === 'vsyscall'));
} else {
  process.stderr.write(`vsyscall-child: unknown test ${String(what)} ${args.join(' ')}\n`);
  process.exitCode = 2;
}
