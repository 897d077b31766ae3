// Child side of the getcpu check (getcpu-check.ts): pinned to each CPU in turn, asks sched_getcpu,
// the getcpu system call, the vDSO's __vdso_getcpu and (when the parent allows it) the vsyscall page's
// getcpu entry which CPU and node this is, as tools/testing/selftests/x86/test_vsyscall.c does.
// Runs in a child: a call of the page can kill it. It puts its thread's CPU affinity back when done.
import { SYS_X86_64 } from '../model/syscalls.js';
import { vsyscallEntry } from '../model/vsyscall-page.js';
import { currentCpu, pinToCpu, rawSyscall, restoreAffinity, type NativePtr } from '../native/libc.js';
import { addressOf, callPointer, ExecPage, pointerAt } from '../native/memory.js';
import { findVdsoSymbol, readVdso } from './vdso.js';

/** One answer of a getcpu: its return value and the cpu and node it wrote (0xffffffff: not written). */
export interface GetcpuReading {
  ret: number;
  cpu: number;
  node: number;
}

export interface CpuObservation {
  /** The CPU this thread was pinned to. */
  cpu: number;
  /** Why pinning failed (the CPU is then not compared), or null. */
  pinError: string | null;
  schedGetcpu: number | null;
  syscall: GetcpuReading | null;
  /** null when the vDSO has no __vdso_getcpu. */
  vdso: GetcpuReading | null;
  /** null when the page was not called. */
  vsyscall: GetcpuReading | null;
}

const UNWRITTEN = 0xffffffff;

/** Runs one getcpu into a two-word buffer prefilled with UNWRITTEN, so a value never written shows. */
function reading(buf: ExecPage, call: (cpu: NativePtr, node: NativePtr) => number | bigint): GetcpuReading {
  buf.write(new Uint8Array(8).fill(0xff));
  const ret = Number(call(buf.at(0), buf.at(4)));
  const v = new DataView(buf.read(0, 8).buffer);
  return { ret, cpu: v.getUint32(0, true), node: v.getUint32(4, true) };
}

export function sweepGetcpu(cpus: readonly number[], callVsyscall: boolean): CpuObservation[] {
  let vdsoGetcpu: NativePtr | null = null;
  try {
    const s = findVdsoSymbol(readVdso(), '__vdso_getcpu');
    if (s) vdsoGetcpu = pointerAt(s.address);
  } catch {
    // no vDSO: only the other sources are asked
  }
  const vsys = pointerAt(vsyscallEntry('getcpu').address);
  const buf = new ExecPage(4096);
  let before: Buffer | null = null;
  try {
    return cpus.map((cpu) => {
      try {
        const old = pinToCpu(cpu);
        before ??= old;
      } catch (e) {
        return { cpu, pinError: (e as Error).message, schedGetcpu: null, syscall: null, vdso: null, vsyscall: null };
      }
      const sched = currentCpu();
      const syscall = reading(buf, (c, n) => rawSyscall(SYS_X86_64.getcpu, addressOf(c), addressOf(n), 0));
      const vdso = vdsoGetcpu ? reading(buf, (c, n) => callPointer(vdsoGetcpu!, 'long (void *, void *, void *)', c, n, null) as number) : null;
      const vsyscall = callVsyscall ? reading(buf, (c, n) => callPointer(vsys, 'long (void *, void *, void *)', c, n, null) as number) : null;
      return { cpu, pinError: null, schedGetcpu: sched, syscall, vdso, vsyscall };
    });
  } finally {
    buf.free();
    if (before) restoreAffinity(before);
  }
}
