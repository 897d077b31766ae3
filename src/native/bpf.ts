// eBPF through bpf(2): maps, raw-tracepoint programs and a small assembler for the few programs
// vsys loads (src/trace/bpf-counters.ts). Structures from include/uapi/linux/bpf.h; only the
// fields vsys sets. Every pointer handed to the kernel lives in one scratch mapping (ExecPage,
// never sealed), so its address is known.
import fs from 'node:fs';
import { VsysError } from '../errors.js';
import { SYS_X86_64 } from '../model/syscalls.js';
import { loadLibc } from './koffi.js';
import { errno, libcBindings, rawSyscall } from './libc.js';
import { ExecPage } from './memory.js';
import { PERF_IOC, openPerfEvent, tracepointAttr } from './perf.js';

const CMD = { MAP_CREATE: 0, MAP_LOOKUP_ELEM: 1, MAP_UPDATE_ELEM: 2, MAP_DELETE_ELEM: 3, MAP_GET_NEXT_KEY: 4, PROG_LOAD: 5, RAW_TRACEPOINT_OPEN: 17 } as const;
export const MAP_TYPE = { HASH: 1, ARRAY: 2, CGROUP_ARRAY: 8, LRU_HASH: 9 } as const;
const PROG_TYPE_RAW_TRACEPOINT = 17;
const PROG_TYPE_TRACEPOINT = 5;
const PROG_TYPE_KPROBE = 2;
const ATTR_SIZE = 144;

/** Helper function ids (enum bpf_func_id). */
export const HELPER = { map_lookup_elem: 1, map_update_elem: 2, map_delete_elem: 3, get_current_pid_tgid: 14, get_current_comm: 16, get_current_task: 35, current_task_under_cgroup: 37, probe_read_kernel: 113 } as const;
export const UPDATE = { ANY: 0, NOEXIST: 1 } as const;

/** Scratch memory for attrs, keys, values and the verifier log. */
class Scratch {
  private page: ExecPage | undefined;
  readonly size = 1 << 20;

  get(): ExecPage {
    this.page ??= new ExecPage(this.size);
    return this.page;
  }
}
const scratch = new Scratch();
const LOG_OFF = 1 << 16;
const LOG_SIZE = (1 << 20) - LOG_OFF;

function bpf(cmd: number, attr: Buffer, what: string, extra?: (e: number) => string): number {
  const page = scratch.get();
  const buf = Buffer.alloc(ATTR_SIZE);
  attr.copy(buf);
  page.write(buf, 0);
  const r = Number(rawSyscall(SYS_X86_64.bpf, cmd, page.address, ATTR_SIZE));
  if (r < 0) {
    const e = errno();
    const why = libcBindings().strerror(e);
    // EPERM is a missing capability; EACCES from a program load is the verifier refusing it.
    if (e === 1 || (e === 13 && cmd !== CMD.PROG_LOAD)) throw new VsysError('PERF_NO_PERMISSION', `bpf ${what}: ${why} (need root, or CAP_BPF with CAP_PERFMON)`, { syscall: 'bpf', errno: e });
    throw new VsysError('BPF_UNAVAILABLE', `bpf ${what}: ${why}${extra ? `\n${extra(e)}` : ''}`, { syscall: 'bpf', errno: e });
  }
  return r;
}

/** Writes bytes into the scratch page at `off` and returns their address. */
function place(off: number, bytes: Uint8Array): bigint {
  const page = scratch.get();
  page.write(bytes, off);
  return page.address + BigInt(off);
}

let memlockRaised = false;

/**
 * Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (often 64 KiB or 8 MiB): raise it to
 * unlimited once, as libbpf does. Harmless where memory is charged to the cgroup instead.
 */
function raiseMemlock(): void {
  if (memlockRaised) return;
  memlockRaised = true;
  const RLIMIT_MEMLOCK = 8;
  const lim = Buffer.alloc(16, 0xff);
  try {
    (loadLibc().func('int setrlimit(int resource, const void *rlim)') as (r: number, b: Buffer) => number)(RLIMIT_MEMLOCK, lim);
  } catch {
    // not fatal: map creation says what failed
  }
}

export interface MapSpec {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  name: string;
}

export class BpfMap {
  readonly fd: number;
  readonly spec: MapSpec;

  constructor(spec: MapSpec) {
    const a = Buffer.alloc(ATTR_SIZE);
    a.writeUInt32LE(spec.type, 0);
    a.writeUInt32LE(spec.keySize, 4);
    a.writeUInt32LE(spec.valueSize, 8);
    a.writeUInt32LE(spec.maxEntries, 12);
    a.write(spec.name.slice(0, 15), 28, 'latin1');
    raiseMemlock();
    this.fd = bpf(CMD.MAP_CREATE, a, `map ${spec.name}`);
    this.spec = spec;
  }

  private keyValueAttr(key: Uint8Array, valueLen: number, flags = 0): { attr: Buffer; valueOff: number } {
    const keyOff = 4096;
    const valueOff = 8192;
    const a = Buffer.alloc(ATTR_SIZE);
    a.writeUInt32LE(this.fd, 0);
    a.writeBigUInt64LE(place(keyOff, key), 8);
    a.writeBigUInt64LE(scratch.get().address + BigInt(valueOff), 16);
    a.writeBigUInt64LE(BigInt(flags), 24);
    if (valueLen > LOG_OFF - valueOff) throw new VsysError('BPF_UNAVAILABLE', `map ${this.spec.name}: value of ${valueLen} bytes too large`);
    return { attr: a, valueOff };
  }

  /** The value for `key` (for per-CPU maps, one value per possible CPU, concatenated), or null. */
  lookup(key: Uint8Array, valueLen = this.spec.valueSize): Uint8Array | null {
    const { attr, valueOff } = this.keyValueAttr(key, valueLen);
    try {
      bpf(CMD.MAP_LOOKUP_ELEM, attr, `lookup in ${this.spec.name}`);
    } catch (e) {
      if (e instanceof VsysError && e.errno === 2) return null;
      throw e;
    }
    return scratch.get().read(valueOff, valueLen);
  }

  update(key: Uint8Array, value: Uint8Array, flags: number = UPDATE.ANY): void {
    const { attr, valueOff } = this.keyValueAttr(key, value.length, flags);
    place(valueOff, value);
    bpf(CMD.MAP_UPDATE_ELEM, attr, `update of ${this.spec.name}`);
  }

  /** Deletes `key`; false when it was not there. */
  remove(key: Uint8Array): boolean {
    // Only the fd and the key: the kernel refuses a delete whose later fields are not zero.
    const attr = Buffer.alloc(ATTR_SIZE);
    attr.writeUInt32LE(this.fd, 0);
    attr.writeBigUInt64LE(place(4096, key), 8);
    try {
      bpf(CMD.MAP_DELETE_ELEM, attr, `delete from ${this.spec.name}`);
      return true;
    } catch (e) {
      if (e instanceof VsysError && e.errno === 2) return false;
      throw e;
    }
  }

  /** Every key, in the map's order (a hash map's keys change while programs run; callers accept that). */
  keys(): Uint8Array[] {
    const out: Uint8Array[] = [];
    let prev: Uint8Array | null = null;
    for (let i = 0; i <= this.spec.maxEntries; i++) {
      const keyOff = 4096;
      const nextOff = 8192;
      const a = Buffer.alloc(ATTR_SIZE);
      a.writeUInt32LE(this.fd, 0);
      a.writeBigUInt64LE(prev ? place(keyOff, prev) : 0n, 8);
      a.writeBigUInt64LE(scratch.get().address + BigInt(nextOff), 16);
      try {
        bpf(CMD.MAP_GET_NEXT_KEY, a, `keys of ${this.spec.name}`);
      } catch (e) {
        if (e instanceof VsysError && e.errno === 2) break;
        throw e;
      }
      prev = scratch.get().read(nextOff, this.spec.keySize);
      out.push(prev);
    }
    return out;
  }

  close(): void {
    libcBindings().close(this.fd);
  }
}

/** Loads a raw-tracepoint program; a verifier rejection carries the verifier's log. */
export function loadRawTracepointProgram(insns: Buffer, name: string): number {
  return loadProgram(insns, name, PROG_TYPE_RAW_TRACEPOINT);
}

/**
 * Loads a (classic) tracepoint program: its context is the trace record, fields at the offsets the
 * tracefs format file gives.
 */
export function loadTracepointProgram(insns: Buffer, name: string): number {
  return loadProgram(insns, name, PROG_TYPE_TRACEPOINT);
}

/**
 * Loads a kprobe program: its context is the probed function's struct pt_regs (arguments in di, si,
 * dx, …). Kernels before 5.0 want the running kernel's version in the load.
 */
export function loadKprobeProgram(insns: Buffer, name: string): number {
  return loadProgram(insns, name, PROG_TYPE_KPROBE, kernelVersionCode());
}

/** LINUX_VERSION_CODE of the running kernel, from its release (6.1.0-57-cloud-amd64: 0x060100). */
function kernelVersionCode(): number {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8'));
  return m ? (Number(m[1]) << 16) + (Number(m[2]) << 8) + Math.min(255, Number(m[3] ?? 0)) : 0;
}

const KPROBE_PMU = '/sys/bus/event_source/devices/kprobe/type';

/** Can kprobes be made through perf_event_open (the kprobe PMU, kernels >= 4.17 with kprobes)? */
export function kprobePmuType(): number | undefined {
  try {
    const n = Number(fs.readFileSync(KPROBE_PMU, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Attaches a kprobe program at the entry of kernel function `fn`, through a perf event of the kprobe
 * PMU: nothing is written to tracefs, and closing the returned fd removes the probe, so a killed
 * process leaves nothing behind. Throws BPF_UNAVAILABLE when the function cannot be probed.
 */
export function attachKprobe(progFd: number, fn: string): number {
  const type = kprobePmuType();
  if (type === undefined) throw new VsysError('BPF_UNAVAILABLE', `kprobe on ${fn}: this kernel has no kprobe PMU (${KPROBE_PMU})`);
  const attr = Buffer.alloc(128);
  attr.writeUInt32LE(type, 0);
  attr.writeUInt32LE(128, 4);
  attr.writeBigUInt64LE(1n, 40); // disabled until enabled
  attr.writeBigUInt64LE(place(LOG_OFF - 256, Buffer.from(`${fn.slice(0, 100)}\0`, 'latin1')), 56); // config1: kprobe_func
  let fd: number;
  try {
    fd = openPerfEvent(attr, { pid: -1, cpu: 0 });
  } catch (e) {
    throw new VsysError('BPF_UNAVAILABLE', `kprobe on ${fn}: ${(e as Error).message}`, { cause: e });
  }
  const lc = libcBindings();
  if (lc.ioctl(fd, PERF_IOC.SET_BPF, progFd) !== 0 || lc.ioctl(fd, PERF_IOC.ENABLE, 0) !== 0) {
    const e = errno();
    lc.close(fd);
    throw new VsysError('BPF_UNAVAILABLE', `attaching a program to the kprobe on ${fn}: ${lc.strerror(e)}`, { syscall: 'ioctl', errno: e });
  }
  return fd;
}

function loadProgram(insns: Buffer, name: string, type: number, kernVersion = 0): number {
  const license = Buffer.from('GPL\0', 'latin1');
  const page = scratch.get();
  const insOff = 16384;
  if (insns.length > LOG_OFF - insOff - 64) throw new VsysError('BPF_UNAVAILABLE', `program ${name} too long`);
  const insAddr = place(insOff, insns);
  const licAddr = place(LOG_OFF - 64, license);
  const attempt = (logLevel: number) => {
    const a = Buffer.alloc(ATTR_SIZE);
    a.writeUInt32LE(type, 0);
    a.writeUInt32LE(insns.length / 8, 4);
    a.writeBigUInt64LE(insAddr, 8);
    a.writeBigUInt64LE(licAddr, 16);
    a.writeUInt32LE(logLevel, 24);
    a.writeUInt32LE(logLevel ? LOG_SIZE : 0, 28);
    a.writeBigUInt64LE(logLevel ? page.address + BigInt(LOG_OFF) : 0n, 32);
    a.writeUInt32LE(kernVersion, 40);
    a.write(name.slice(0, 15), 48, 'latin1');
    return bpf(CMD.PROG_LOAD, a, `load of program ${name}`, logLevel ? () => verifierLog() : undefined);
  };
  try {
    return attempt(0);
  } catch (e) {
    if (!(e instanceof VsysError) || e.code !== 'BPF_UNAVAILABLE') throw e;
    page.write(new Uint8Array(1), LOG_OFF);
    return attempt(1);
  }
}

function verifierLog(): string {
  const bytes = scratch.get().read(LOG_OFF, LOG_SIZE);
  const end = bytes.indexOf(0);
  const text = Buffer.from(bytes.subarray(0, end < 0 ? bytes.length : end)).toString('latin1');
  const lines = text.trimEnd().split('\n');
  return lines.slice(-12).join('\n');
}

/**
 * How many times the kernel skipped a program because another BPF program was running on that CPU
 * (its `recursion_misses`, from /proc/self/fdinfo; 0 where the kernel does not report it).
 */
export function programMisses(progFd: number): number {
  try {
    const m = /^recursion_misses:\s*(\d+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${progFd}`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Attaches a loaded program to a raw tracepoint; closing the returned fd detaches it. */
export function attachRawTracepoint(progFd: number, tracepoint: string): number {
  const a = Buffer.alloc(ATTR_SIZE);
  a.writeBigUInt64LE(place(LOG_OFF - 128, Buffer.from(`${tracepoint}\0`, 'latin1')), 0);
  a.writeUInt32LE(progFd, 8);
  return bpf(CMD.RAW_TRACEPOINT_OPEN, a, `attach to raw tracepoint ${tracepoint}`);
}

/**
 * Attaches a tracepoint program through a perf event on that tracepoint (the program then runs for
 * every hit, on every CPU); closing the returned perf fd detaches it.
 */
export function attachTracepointProgram(progFd: number, tracepointId: number): number {
  const fd = openPerfEvent(tracepointAttr(tracepointId, false), { pid: -1, cpu: 0 });
  const lc = libcBindings();
  if (lc.ioctl(fd, PERF_IOC.SET_BPF, progFd) !== 0 || lc.ioctl(fd, PERF_IOC.ENABLE, 0) !== 0) {
    const e = errno();
    lc.close(fd);
    throw new VsysError('BPF_UNAVAILABLE', `attaching a program to tracepoint ${tracepointId}: ${lc.strerror(e)}`, { syscall: 'ioctl', errno: e });
  }
  return fd;
}

/**
 * The attachments of a set of programs: all made, or none (a failure part-way detaches what was
 * made); detached by closing their links. Counting runs while they are attached.
 */
export class ProgramLinks {
  private links: number[] = [];

  /** Makes each attachment (`attach` returns a link fd); does nothing when attached already. */
  attach(attachments: (() => number)[]): void {
    if (this.links.length) return;
    try {
      for (const a of attachments) this.links.push(a());
    } catch (e) {
      this.detach();
      throw e;
    }
  }

  detach(): void {
    for (const l of this.links) libcBindings().close(l);
    this.links = [];
  }

  get attached(): boolean {
    return this.links.length > 0;
  }
}

/** The end of a set of programs: detached, then the programs and their maps closed (the lists emptied). */
export function closePrograms(links: ProgramLinks, progs: { fd: number }[], maps: { close(): void }[]): void {
  links.detach();
  for (const p of progs.splice(0)) libcBindings().close(p.fd);
  for (const m of maps.splice(0)) m.close();
}
