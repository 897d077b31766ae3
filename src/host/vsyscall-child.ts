// Child process for the active vsyscall test: does one risky thing with the page and prints JSON.
// It may die of SIGSEGV; that is the answer the parent is waiting for.
import { VSYSCALL_PAGE_ADDR, vsyscallEntry } from '../model/vsyscall-page.js';
import { callPointer, pointerAt, readMemory } from '../native/memory.js';

const what = process.argv[2];
if (what === 'call-time') {
  const t = Number(callPointer(pointerAt(vsyscallEntry('time').address), 'long (void *)', null));
  process.stdout.write(JSON.stringify({ ok: true, value: t }) + '\n');
} else if (what === 'read') {
  const b = readMemory(pointerAt(VSYSCALL_PAGE_ADDR), 1);
  process.stdout.write(JSON.stringify({ ok: true, value: b[0] }) + '\n');
} else {
  process.stderr.write(`vsyscall-child: unknown test ${String(what)}\n`);
  process.exitCode = 2;
}
