// Loads, attaches, reads and closes the exporter's page-only programs (page-programs.ts), through
// the same loader and map reader `vsys trace` uses (native/bpf.ts). Counts are kept per process in
// the kernel; the exporter folds them into series and forgets a process once it is gone.
import { BpfMap, MAP_TYPE, ProgramLinks, closePrograms, attachKprobe, attachRawTracepoint, kprobePmuType, loadKprobeProgram, loadRawTracepointProgram, programMisses } from '../native/bpf.js';
import { libcBindings } from '../native/libc.js';
import { COMM_LEN, COUNT_KEY, MISC, TAG_CRASH, TAG_EMULATE } from '../trace/bpf-programs.js';
import { entryOfNr } from '../trace/counters.js';
import { CRASH_DATA, CRASH_FETCH, CRASH_MISALIGNED, pageEmulateProgram, pageKprobeProgram, pageSignalProgram, type PageMaps } from './page-programs.js';

const MAX_KEYS = 16384;
const MAX_MARKS = 4096;

/**
 * Where a crash happened: a misaligned call the kernel rejected; a read or write of the page
 * ('data'); a call of an entry (by its name) or of another offset ('other'). With the kprobe the
 * fault's ip tells a call from a read in every mode. Without it: under xonly and emulate,
 * where calls of entries are emulated, any other fault in the page is a data access; under none,
 * the entry at the fault's address (a call of it, or a read there: the signal does not say).
 */
export type CrashEntry = 'gettimeofday' | 'time' | 'getcpu' | 'misaligned' | 'data' | 'other';

/** One kernel count: a process's emulations of an entry, or its crashes at one place. */
export interface PageCount {
  tgid: number;
  kind: 'emulated' | 'crash';
  entry: string;
  value: number;
  /** The key in the kernel map, to forget it once its process is gone. */
  key: Buffer;
}

export function crashEntryOf(low: number, callsEmulated: boolean): CrashEntry {
  if (low === CRASH_MISALIGNED) return 'misaligned';
  if (low & CRASH_DATA) return 'data';
  if (low & CRASH_FETCH) return entryAt(low & 0xfff);
  if (callsEmulated) return 'data';
  return entryAt(low);
}

function entryAt(low: number): CrashEntry {
  if (low === 0) return 'gettimeofday';
  if (low === 0x400) return 'time';
  if (low === 0x800) return 'getcpu';
  return 'other';
}

/**
 * The kernel functions the fault path calls for the vsyscall page alone, newest name first:
 * emulate_vsyscall_pf (kernels with LASS support), emulate_vsyscall (4.x to 6.x).
 */
const KPROBE_FUNCTIONS = ['emulate_vsyscall_pf', 'emulate_vsyscall'];

/** The hooks in use, as the README names them. */
export interface PageHooks {
  emulations: string;
  crashes: string;
}

/** The kprobe program loaded, or undefined where the kernel has no kprobe PMU or refuses it (the signal alone counts then). */
function loadKprobe(m: PageMaps): number | undefined {
  if (kprobePmuType() === undefined) return undefined;
  try {
    return loadKprobeProgram(pageKprobeProgram(m), 'vsysx_kprobe');
  } catch {
    return undefined;
  }
}

/** The first of KPROBE_FUNCTIONS this kernel lets a kprobe program attach to (tried and let go). */
function probeableFunction(progFd: number): string | undefined {
  for (const fn of KPROBE_FUNCTIONS) {
    try {
      libcBindings().close(attachKprobe(progFd, fn));
      return fn;
    } catch {
      // not in this kernel, or not probeable: the next name
    }
  }
  return undefined;
}

export class PageCounters {
  private readonly maps: BpfMap[] = [];
  private readonly m: PageMaps;
  private readonly progs: { fd: number; attach: (fd: number) => number }[] = [];
  private readonly links = new ProgramLinks();
  /** The kernel function the kprobe is on, when this kernel allows one. */
  readonly kprobe: string | undefined;

  /**
   * `callsEmulated`: the mode emulates calls of the entries (xonly, emulate), so a fault that kills
   * is a data access. `useKprobe: false` keeps to the signal even where kprobes are allowed.
   */
  constructor(private readonly callsEmulated: boolean, o: { useKprobe?: boolean } = {}) {
    const map = (type: number, keySize: number, valueSize: number, maxEntries: number, name: string) => {
      const b = new BpfMap({ type, keySize, valueSize, maxEntries, name });
      this.maps.push(b);
      return b;
    };
    try {
      this.m = {
        counts: map(MAP_TYPE.HASH, COUNT_KEY.size, 8, MAX_KEYS, 'vsysx_counts'),
        misc: map(MAP_TYPE.ARRAY, 4, 8, 3, 'vsysx_dropped'),
        comms: map(MAP_TYPE.HASH, 4, COMM_LEN, MAX_KEYS, 'vsysx_comms'),
        // LRU: a thread that dies between its fault in the page and the signal leaves no lasting mark.
        marks: map(MAP_TYPE.LRU_HASH, 4, 4, MAX_MARKS, 'vsysx_marks'),
      };
      const kfd = o.useKprobe !== false ? loadKprobe(this.m) : undefined;
      this.kprobe = kfd === undefined ? undefined : probeableFunction(kfd);
      if (kfd !== undefined && this.kprobe === undefined) libcBindings().close(kfd);
      this.progs.push({ fd: loadRawTracepointProgram(pageEmulateProgram(this.m, this.kprobe !== undefined), 'vsysx_emulate'), attach: (fd) => attachRawTracepoint(fd, 'emulate_vsyscall') });
      this.progs.push({ fd: loadRawTracepointProgram(pageSignalProgram(this.m), 'vsysx_signal'), attach: (fd) => attachRawTracepoint(fd, 'signal_deliver') });
      const fn = this.kprobe;
      if (kfd !== undefined && fn !== undefined) this.progs.push({ fd: kfd, attach: (fd) => attachKprobe(fd, fn) });
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** The hooks in use (vsys_exporter_hook). */
  get hooks(): PageHooks {
    const signal = 'raw_tracepoint:signal_deliver';
    return {
      emulations: 'tracepoint:emulate_vsyscall',
      crashes: this.kprobe ? `kprobe:${this.kprobe} + ${signal} (a fault in the page, then SIGSEGV with the default action)` : `${signal} (SIGSEGV with si_addr in the page, or after a misaligned emulation)`,
    };
  }

  enable(): void {
    this.links.attach(this.progs.map((p) => () => p.attach(p.fd)));
  }

  disable(): void {
    this.links.detach();
  }

  get attached(): boolean {
    return this.links.attached;
  }


  /** Every count in the kernel, as it stands. */
  read(): PageCount[] {
    const out: PageCount[] = [];
    const seen = new Set<string>();
    for (const k of this.m.counts.keys()) {
      const kb = Buffer.from(k);
      const id = kb.toString('hex');
      if (seen.has(id)) continue; // a key read while the programs run can come twice
      seen.add(id);
      const v = this.m.counts.lookup(k);
      if (!v) continue;
      const tag = kb.readUInt32LE(COUNT_KEY.tag);
      const low = tag & 0xffff;
      const value = Number(Buffer.from(v).readBigUInt64LE(0));
      const tgid = kb.readUInt32LE(COUNT_KEY.tgid);
      if ((tag & ~0xffff) === TAG_EMULATE) out.push({ tgid, kind: 'emulated', entry: entryOfNr((low << 16) >> 16), value, key: kb });
      else if ((tag & ~0xffff) === TAG_CRASH) out.push({ tgid, kind: 'crash', entry: crashEntryOf(low, this.callsEmulated), value, key: kb });
    }
    return out;
  }

  /** The name a process had when first counted ('' when not kept). */
  commOf(tgid: number): string {
    const v = this.m.comms.lookup(u32(tgid));
    if (!v) return '';
    const b = Buffer.from(v);
    const nul = b.indexOf(0);
    return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
  }

  /** Drops a gone process's counts (its id may be reused). */
  forget(tgid: number, keys: Buffer[]): void {
    for (const k of keys) this.m.counts.remove(k);
    this.m.comms.remove(u32(tgid));
  }

  /** Counts not kept because a map was full, and program runs the kernel skipped. */
  dropped(): { counts: number; skipped: number } {
    const d = this.m.misc.lookup(u32(MISC.counts));
    return { counts: d ? Number(Buffer.from(d).readBigUInt64LE(0)) : 0, skipped: this.progs.reduce((n, p) => n + programMisses(p.fd), 0) };
  }

  close(): void {
    closePrograms(this.links, this.progs, this.maps);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

