// libc bindings through koffi: the few calls vsys needs, declared once, typed for TypeScript.
// errno is read through __errno_location, as glibc exposes it.
import { VsysError } from '../errors.js';
import { loadKoffi, loadLibc } from './koffi.js';

/** An opaque native pointer (a koffi external). */
export type NativePtr = { readonly __nativePtr: unique symbol };

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;
export const MAP_32BIT = 0x40;

interface Bindings {
  getauxval(type: number): number | bigint;
  getauxvalPtr(type: number): NativePtr | null;
  mmap(addr: NativePtr | null, len: number, prot: number, flags: number, fd: number, off: number): NativePtr;
  mprotect(addr: NativePtr, len: number, prot: number): number;
  munmap(addr: NativePtr, len: number): number;
  syscall6(nr: number, a: bigint, b: bigint, c: bigint, d: bigint, e: bigint, f: bigint): number | bigint;
  sched_setaffinity(pid: number, size: number, mask: Buffer): number;
  sched_getaffinity(pid: number, size: number, mask: Buffer): number;
  sched_getcpu(): number;
  dlsym(handle: NativePtr | null, name: string): NativePtr | null;
  errnoLocation(): NativePtr;
  strerror(errno: number): string;
  ioctl(fd: number, req: number, arg: number): number;
  read(fd: number, buf: Buffer, n: number): number;
  close(fd: number): number;
  getpid(): number;
  copy_file_range(fdIn: number, offIn: BigInt64Array, fdOut: number, offOut: null, len: number, flags: number): number;
  process_vm_readv(pid: number, local: Buffer, liovcnt: number, remote: Buffer, riovcnt: number, flags: number): number | bigint;
}

let b: Bindings | undefined;

export function libcBindings(): Bindings {
  if (b) return b;
  const lib = loadLibc();
  b = {
    getauxval: lib.func('unsigned long getauxval(unsigned long type)'),
    getauxvalPtr: lib.func('void *getauxval(unsigned long type)'),
    mmap: lib.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)'),
    mprotect: lib.func('int mprotect(void *addr, size_t len, int prot)'),
    munmap: lib.func('int munmap(void *addr, size_t len)'),
    // syscall(2) is variadic; a fixed six-argument declaration passes every argument in the right register.
    syscall6: lib.func('long syscall(long nr, int64_t a, int64_t b, int64_t c, int64_t d, int64_t e, int64_t f)'),
    sched_setaffinity: lib.func('int sched_setaffinity(int pid, size_t size, void *mask)'),
    sched_getaffinity: lib.func('int sched_getaffinity(int pid, size_t size, _Out_ void *mask)'),
    sched_getcpu: lib.func('int sched_getcpu(void)'),
    dlsym: lib.func('void *dlsym(void *handle, const char *name)'),
    errnoLocation: lib.func('void *__errno_location(void)'),
    strerror: lib.func('const char *strerror(int errnum)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long req, unsigned long arg)'),
    read: lib.func('long read(int fd, _Out_ void *buf, size_t n)'),
    close: lib.func('int close(int fd)'),
    getpid: lib.func('int getpid(void)'),
    copy_file_range: lib.func('long copy_file_range(int fd_in, _Inout_ int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned int flags)'),
    // The iovec arrays are built by hand (two 64-bit words each), so that their bases can be any address.
    process_vm_readv: lib.func('long process_vm_readv(int pid, void *local, unsigned long liovcnt, void *remote, unsigned long riovcnt, unsigned long flags)'),
  } as unknown as Bindings;
  return b;
}

export function errno(): number {
  const k = loadKoffi();
  return k.decode(libcBindings().errnoLocation(), 'int') as number;
}

/** Throws a VsysError carrying errno when a libc call returned -1. */
export function check(ret: number | bigint, syscall: string, code: 'NATIVE_CALL_FAILED' | 'PERF_NO_PERMISSION' | 'PERF_UNAVAILABLE' = 'NATIVE_CALL_FAILED'): number {
  const v = Number(ret);
  if (v === -1) {
    const e = errno();
    throw new VsysError(code, `${syscall}: ${libcBindings().strerror(e)}`, { syscall, errno: e });
  }
  return v;
}

export function getauxval(type: number): bigint {
  return BigInt(libcBindings().getauxval(type));
}

/** syscall(2) with up to six integer arguments; returns the raw result (-1 and errno on failure). */
export function rawSyscall(nr: number, ...args: (number | bigint)[]): bigint {
  const a = [0, 1, 2, 3, 4, 5].map((i) => BigInt(args[i] ?? 0));
  return BigInt(libcBindings().syscall6(nr, a[0]!, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!));
}

/** Pins the calling thread to one CPU; returns the previous mask so it can be restored. */
export function pinToCpu(cpu: number): Buffer {
  const lc = libcBindings();
  const old = Buffer.alloc(128);
  check(lc.sched_getaffinity(0, old.length, old), 'sched_getaffinity');
  const mask = Buffer.alloc(128);
  mask[cpu >> 3] = 1 << (cpu & 7);
  check(lc.sched_setaffinity(0, mask.length, mask), 'sched_setaffinity');
  return old;
}

export function restoreAffinity(mask: Buffer): void {
  check(libcBindings().sched_setaffinity(0, mask.length, mask), 'sched_setaffinity');
}

/** `run()` with the calling thread pinned to `cpu`, its affinity restored after. */
export function onCpu<T>(cpu: number, run: () => T): T {
  const saved = pinToCpu(cpu);
  try {
    return run();
  } finally {
    restoreAffinity(saved);
  }
}

export function currentCpu(): number {
  return check(libcBindings().sched_getcpu(), 'sched_getcpu');
}

/** CPUs this process may run on. */
export function allowedCpus(): number[] {
  const mask = Buffer.alloc(128);
  check(libcBindings().sched_getaffinity(0, mask.length, mask), 'sched_getaffinity');
  const out: number[] = [];
  for (let i = 0; i < mask.length * 8; i++) if ((mask[i >> 3]! >> (i & 7)) & 1) out.push(i);
  return out;
}

/** Address of a symbol as this process's dynamic linker resolves it (RTLD_DEFAULT). */
export function lookupSymbol(name: string): NativePtr | null {
  return libcBindings().dlsym(null, name);
}

const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;
let tuned = false;

/**
 * For streaming gigabytes through multi-megabyte buffers (image layers): glibc serves such buffers
 * with mmap, or from a heap whose top it trims as soon as they are freed, so every buffer costs fresh
 * pages (page faults and zeroing). Fixed thresholds of 16 MiB (mmap) and 128 MiB (trim) keep them in
 * the heap and reuse its pages: warm image scans ran faster (bench/README.md, "Figures behind the
 * code"). The cost: up to
 * 128 MiB of free memory at the heap's top stays with the process (freed chunks below live ones stay
 * anyway), for the rest of the process (vsys is a CLI; a program embedding scanImageRefs inherits the
 * setting). Once per process; ignored where mallopt is missing (not glibc).
 */
export function tuneAllocatorForStreaming(): void {
  if (tuned) return;
  tuned = true;
  try {
    const mallopt = loadLibc().func('int mallopt(int param, int value)') as (param: number, value: number) => number;
    mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024);
  } catch {
    // no such function, or no FFI: the defaults only cost speed
  }
}

/**
 * Copies [start, start+size) of `fdIn` to `fdOut` at its current offset, inside the kernel
 * (copy_file_range(2): no copy through this process, a reflink where the filesystem shares
 * extents). Returns the bytes copied; fewer than `size` only when the kernel stops early (EXDEV
 * and the like on old kernels), and the caller copies the rest itself.
 */
export function copyFileRange(fdIn: number, start: number, fdOut: number, size: number): number {
  const off = new BigInt64Array([BigInt(start)]);
  let done = 0;
  while (done < size) {
    const n = Number(libcBindings().copy_file_range(fdIn, off, fdOut, null, Math.min(size - done, 1 << 30), 0));
    if (n <= 0) break;
    done += n;
  }
  return done;
}

/**
 * process_vm_readv(2) of `len` bytes at `remote` in process `pid` into native memory at `local`
 * (the caller owns it, at least `len` bytes): the count the kernel copied, or the errno it failed
 * with. A debugger's view of memory: it reads what the page tables let the kernel read, not what
 * this process could load.
 */
export function processVmRead(pid: number, local: bigint, remote: bigint, len: number): { bytes: number } | { errno: number } {
  const iov = (base: bigint) => {
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(BigInt.asUintN(64, base), 0);
    b.writeBigUInt64LE(BigInt(len), 8);
    return b;
  };
  const n = Number(libcBindings().process_vm_readv(pid, iov(local), 1, iov(remote), 1, 0));
  return n === -1 ? { errno: errno() } : { bytes: n };
}
