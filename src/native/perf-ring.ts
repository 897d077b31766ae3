// Sampling tracepoints through perf_event_open's mmap'd ring buffer (include/uapi/linux/perf_event.h:
// struct perf_event_mmap_page, PERF_RECORD_SAMPLE with TID|TIME|CPU|RAW, PERF_RECORD_LOST).
// One sampler per (event, CPU); samples are read in place, lost records counted, never dropped silently.
import { VsysError } from '../errors.js';
import { loadKoffi } from './koffi.js';
import { addressOf, pointerAt } from './memory.js';
import { libcBindings, PROT_READ, PROT_WRITE, type NativePtr } from './libc.js';
import { PERF_IOC, openPerfEvent, tracepointAttr } from './perf.js';

const MAP_SHARED = 0x01;
const PAGE = 4096;
const SAMPLE_TID = 1n << 1n;
const SAMPLE_TIME = 1n << 2n;
const SAMPLE_CPU = 1n << 7n;
const SAMPLE_RAW = 1n << 10n;
const RECORD_LOST = 2;
const RECORD_SAMPLE = 9;
// struct perf_event_mmap_page: data_head at 1024, data_tail at 1032.
const DATA_HEAD = 1024;
const DATA_TAIL = 1032;

export interface SamplerOptions {
  tracepointId: number;
  cpu: number;
  /** -1 for every task on the CPU. */
  pid?: number;
  cgroupFd?: number;
  inherit?: boolean;
  filter?: string;
  /** Data pages, a power of two (default 64 = 256 KiB). */
  pages?: number;
}

export class PerfSampler {
  readonly fd: number;
  private readonly base: NativePtr;
  private readonly baseAddr: bigint;
  private readonly dataSize: number;
  private readonly mapLen: number;
  private closed = false;
  private ring: Buffer | undefined;
  /** A record that wraps around the ring's end, made contiguous. */
  private wrapped = Buffer.alloc(256);

  constructor(o: SamplerOptions) {
    const pages = o.pages ?? 64;
    if (pages <= 0 || (pages & (pages - 1)) !== 0) throw new VsysError('PERF_UNAVAILABLE', `ring buffer pages must be a power of two, not ${pages}`);
    // watermark (flag bit 14): wake a poller only when the buffer is half full. vsys drains on a
    // timer and never polls, and a wakeup per sample costs the traced task an irq_work each time.
    const attr = tracepointAttr(o.tracepointId, o.inherit, 1n << 14n);
    attr.writeBigUInt64LE(1n, 16); // sample_period: every event
    attr.writeBigUInt64LE(SAMPLE_TID | SAMPLE_TIME | SAMPLE_CPU | SAMPLE_RAW, 24);
    attr.writeUInt32LE((pages * PAGE) / 2, 48); // wakeup_watermark
    this.fd = openPerfEvent(attr, { pid: o.pid ?? -1, cpu: o.cpu, ...(o.cgroupFd !== undefined ? { cgroupFd: o.cgroupFd } : {}), ...(o.filter !== undefined ? { filter: o.filter } : {}) });
    this.dataSize = pages * PAGE;
    this.mapLen = (pages + 1) * PAGE;
    const p = libcBindings().mmap(null, this.mapLen, PROT_READ | PROT_WRITE, MAP_SHARED, this.fd, 0);
    const addr = addressOf(p);
    if (addr === 0xffffffffffffffffn) {
      libcBindings().close(this.fd);
      throw new VsysError('PERF_UNAVAILABLE', 'mmap of the perf ring buffer failed (perf_event_mlock_kb too small?)', { syscall: 'mmap' });
    }
    this.base = p;
    this.baseAddr = addr;
  }

  enable(): void {
    libcBindings().ioctl(this.fd, PERF_IOC.ENABLE, 0);
  }

  disable(): void {
    libcBindings().ioctl(this.fd, PERF_IOC.DISABLE, 0);
  }

  /**
   * Visits the complete samples since the last drain, at most `max` of them, without copying
   * them: `visit` gets the record buffer and the offset/size of the raw tracepoint data (valid
   * only during the call). The space visited is handed back to the kernel at once. Returns the
   * number of samples the kernel reported lost, and whether records are left (the cap was hit).
   */
  visit(visit: (pid: number, tid: number, time: number, cpu: number, buf: Buffer, rawOffset: number, rawSize: number) => void, max = Infinity): { lost: number; more: boolean } {
    const k = loadKoffi();
    const head = Number(k.decode(this.base as never, DATA_HEAD, 'uint64_t') as bigint | number);
    const tail = Number(k.decode(this.base as never, DATA_TAIL, 'uint64_t') as bigint | number);
    if (head === tail) return { lost: 0, more: false };
    const avail = head - tail;
    this.ring ??= Buffer.from(k.view(pointerAt(this.baseAddr + BigInt(PAGE)) as never, this.dataSize));
    const ring = this.ring;
    let lost = 0;
    let off = 0;
    let seen = 0;
    while (off + 8 <= avail) {
      // Records are 8-byte aligned and the ring a multiple of 8, so a header never wraps; a
      // record that does is copied out alone (a copy of everything since the tail, per call,
      // cost more than the decoding once the reader fell behind).
      const at = (tail + off) % this.dataSize;
      const type = ring.readUInt32LE(at);
      const size = ring.readUInt16LE(at + 6);
      if (size < 8 || off + size > avail) break;
      let buf = ring;
      let rec = at;
      if (at + size > this.dataSize) {
        if (this.wrapped.length < size) this.wrapped = Buffer.alloc(size);
        buf = this.wrapped;
        rec = 0;
        ring.copy(buf, 0, at, this.dataSize);
        ring.copy(buf, this.dataSize - at, 0, size - (this.dataSize - at));
      }
      if (type === RECORD_SAMPLE && size >= 36) {
        if (seen++ >= max) break;
        const rawSize = buf.readUInt32LE(rec + 32);
        visit(buf.readUInt32LE(rec + 8), buf.readUInt32LE(rec + 12), Number(buf.readBigUInt64LE(rec + 16)), buf.readUInt32LE(rec + 24), buf, rec + 36, Math.min(rawSize, size - 36));
      } else if (type === RECORD_LOST && size >= 24) {
        lost += Number(buf.readBigUInt64LE(rec + 16));
      }
      off += size;
    }
    k.encode(this.base as never, DATA_TAIL, 'uint64_t', BigInt(tail + off));
    return { lost, more: off + 8 <= avail };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ring = undefined; // no view may outlive the mapping
    libcBindings().munmap(this.base, this.mapLen);
    libcBindings().close(this.fd);
  }
}
