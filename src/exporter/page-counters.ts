// Loads, attaches, reads and closes the exporter's page-only programs (page-programs.ts), through
// the same loader and map reader `vsys trace` uses (native/bpf.ts). Counts are kept per process in
// the kernel; the exporter folds them into series and forgets a process once it is gone.
import { BpfMap, MAP_TYPE, ProgramLinks, closePrograms, attachRawTracepoint, loadRawTracepointProgram, programMisses } from '../native/bpf.js';
import { COMM_LEN, COUNT_KEY, MISC, TAG_CRASH, TAG_EMULATE } from '../trace/bpf-programs.js';
import { entryOfNr } from '../trace/counters.js';
import { CRASH_MISALIGNED, pageEmulateProgram, pageSignalProgram, type PageMaps } from './page-programs.js';

const MAX_KEYS = 16384;
const MAX_MARKS = 4096;

/**
 * Where a crash happened: a misaligned call the kernel rejected; under xonly and emulate, where
 * calls of entries are emulated, any other fault in the page is a data access ('data'); under none,
 * the entry at the fault's address (a call of it, or a read there: the signal does not say) or
 * 'other' for another offset.
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
  if (callsEmulated) return 'data';
  if (low === 0) return 'gettimeofday';
  if (low === 0x400) return 'time';
  if (low === 0x800) return 'getcpu';
  return 'other';
}

/** The hooks in use, as the README names them. */
export const PAGE_HOOKS = { emulations: 'tracepoint:emulate_vsyscall', crashes: 'raw_tracepoint:signal_deliver (SIGSEGV with si_addr in the page, or after a misaligned emulation)' } as const;

export class PageCounters {
  private readonly maps: BpfMap[] = [];
  private readonly m: PageMaps;
  private readonly progs: { fd: number; tracepoint: string }[] = [];
  private readonly links = new ProgramLinks();

  /** `callsEmulated`: the mode emulates calls of the entries (xonly, emulate), so a fault that kills is a data access. */
  constructor(private readonly callsEmulated: boolean) {
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
        // LRU: a thread killed between its misaligned call and the signal leaves no lasting mark.
        marks: map(MAP_TYPE.LRU_HASH, 4, 4, MAX_MARKS, 'vsysx_marks'),
      };
      this.progs.push({ fd: loadRawTracepointProgram(pageEmulateProgram(this.m), 'vsysx_emulate'), tracepoint: 'emulate_vsyscall' });
      this.progs.push({ fd: loadRawTracepointProgram(pageSignalProgram(this.m), 'vsysx_signal'), tracepoint: 'signal_deliver' });
    } catch (e) {
      this.close();
      throw e;
    }
  }

  enable(): void {
    this.links.attach(this.progs.map((p) => () => attachRawTracepoint(p.fd, p.tracepoint)));
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

