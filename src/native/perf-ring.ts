// Sampling tracepoints through perf_event_open's mmap'd ring buffer (include/uapi/linux/perf_event.h:
// struct perf_event_mmap_page, PERF_RECORD_SAMPLE with IDENTIFIER|TID|TIME|CPU|RAW, PERF_RECORD_LOST).
// A ring on one CPU that any number of events and traced threads write into: the first event added
// owns the mapping and every later one writes into it (PERF_EVENT_IOC_SET_OUTPUT), each sample
// naming its event by id. So memory does not grow with threads or tracepoints (a ring per event,
// thread and CPU made `trace -p` of a 200-thread process on 64 CPUs map 51 GB), and a ring is in
// time order across all its events. Samples are read in place; losses are counted, never silent.
import { VsysError } from '../errors.js';
import { loadKoffi, loadLibc } from './koffi.js';
import { addressOf, pointerAt } from './memory.js';
import { errno, libcBindings, PROT_READ, PROT_WRITE, type NativePtr } from './libc.js';
import { PERF_IOC, openPerfEvent, tracepointAttr } from './perf.js';

const MAP_SHARED = 0x01;
const PAGE = 4096;
const SAMPLE_TID = 1n << 1n;
const SAMPLE_TIME = 1n << 2n;
const SAMPLE_CPU = 1n << 7n;
const SAMPLE_RAW = 1n << 10n;
const SAMPLE_IDENTIFIER = 1n << 16n;
const RECORD_LOST = 2;
const RECORD_SAMPLE = 9;
/** header 8, id 8, pid/tid 8, time 8, cpu/res 8, raw size 4: the raw data starts at 44. */
const RAW_AT = 44;
// struct perf_event_mmap_page: data_head at 1024, data_tail at 1032.
const DATA_HEAD = 1024;
const DATA_TAIL = 1032;
/** read_format: the event's lost samples after its value (Linux 6.0). */
const FORMAT_LOST = 1n << 4n;
const EINVAL = 22;
/** _IO('$', 5) and _IOR('$', 7, __u64 *). */
const IOC_SET_OUTPUT = 0x2405;
const IOC_ID = 0x80082407;

export interface TracepointSampling {
  tracepointId: number;
  /** -1 for every task on the CPU. */
  pid?: number;
  cgroupFd?: number;
  inherit?: boolean;
  filter?: string;
}

export type SampleVisitor = (id: number, pid: number, tid: number, time: number, cpu: number, buf: Buffer, rawOffset: number, rawSize: number) => void;

let idIoctl: ((fd: number, req: number, out: Buffer) => number) | undefined;

export class PerfRing {
  private readonly fds: number[] = [];
  private base: NativePtr | undefined;
  private baseAddr = 0n;
  private readonly dataSize: number;
  private readonly mapLen: number;
  private closed = false;
  private ring: Buffer | undefined;
  /** A record that wraps around the ring's end, made contiguous. */
  private wrapped = Buffer.alloc(256);
  /** Whether the kernel takes PERF_FORMAT_LOST (found out on the first event). */
  private countsLost: boolean | undefined;

  /** `pages`: data pages, a power of two. */
  constructor(readonly cpu: number, pages: number) {
    if (pages <= 0 || (pages & (pages - 1)) !== 0) throw new VsysError('PERF_UNAVAILABLE', `ring buffer pages must be a power of two, not ${pages}`);
    this.dataSize = pages * PAGE;
    this.mapLen = (pages + 1) * PAGE;
  }

  /** Opens a sampling event for a tracepoint on this ring's CPU, disabled; returns its sample id. */
  add(o: TracepointSampling): number {
    // watermark (flag bit 14): wake a poller only when the buffer is half full. vsys drains on a
    // timer and never polls, and a wakeup per sample costs the traced task an irq_work each time.
    const attr = tracepointAttr(o.tracepointId, o.inherit, 1n << 14n);
    attr.writeBigUInt64LE(1n, 16); // sample_period: every event
    attr.writeBigUInt64LE(SAMPLE_IDENTIFIER | SAMPLE_TID | SAMPLE_TIME | SAMPLE_CPU | SAMPLE_RAW, 24);
    attr.writeUInt32LE(this.dataSize / 2, 48); // wakeup_watermark
    const where = { pid: o.pid ?? -1, cpu: this.cpu, ...(o.cgroupFd !== undefined ? { cgroupFd: o.cgroupFd } : {}), ...(o.filter !== undefined ? { filter: o.filter } : {}) };
    // The kernel counts every sample it could not write; a PERF_RECORD_LOST only reaches the ring
    // with the next record that fits, so losses in a ring still full at the end are known only
    // from this count. A kernel before 6.0 refuses the read_format (EINVAL) on the first event.
    if (this.countsLost !== false) attr.writeBigUInt64LE(FORMAT_LOST, 32);
    let fd: number;
    try {
      fd = openPerfEvent(attr, where);
    } catch (e) {
      if (this.countsLost !== undefined || !(e instanceof VsysError) || e.errno !== EINVAL) throw e;
      this.countsLost = false; // the LOST records are all there is
      attr.writeBigUInt64LE(0n, 32);
      fd = openPerfEvent(attr, where);
    }
    this.countsLost ??= true;
    const owner = this.base === undefined;
    try {
      if (owner) this.map(fd);
      else if (libcBindings().ioctl(fd, IOC_SET_OUTPUT, this.fds[0] as number) !== 0) {
        throw new VsysError('PERF_UNAVAILABLE', `PERF_EVENT_IOC_SET_OUTPUT failed: ${libcBindings().strerror(errno())}`, { syscall: 'ioctl', errno: errno() });
      }
      idIoctl ??= loadLibc().func('int ioctl(int fd, unsigned long req, void *out)') as never;
      const id = Buffer.alloc(8);
      if (idIoctl!(fd, IOC_ID, id) !== 0) throw new VsysError('PERF_UNAVAILABLE', `PERF_EVENT_IOC_ID failed: ${libcBindings().strerror(errno())}`, { syscall: 'ioctl', errno: errno() });
      this.fds.push(fd);
      return Number(id.readBigUInt64LE(0));
    } catch (e) {
      if (owner && this.base !== undefined) {
        // The ring was this event's: it goes with it, and the next event maps its own.
        libcBindings().munmap(this.base, this.mapLen);
        this.base = undefined;
      }
      libcBindings().close(fd);
      throw e;
    }
  }

  /**
   * Samples the kernel could not write into this ring, summed over its events (and the children
   * inherited ones made); undefined before Linux 6.0, where the LOST records are all there is.
   */
  lostSamples(): number | undefined {
    if (this.fds.length === 0) return 0;
    if (!this.countsLost) return undefined;
    let lost = 0;
    const buf = Buffer.alloc(16);
    for (const fd of this.fds) {
      if (libcBindings().read(fd, buf, 16) === 16) lost += Number(buf.readBigUInt64LE(8));
    }
    return lost;
  }

  private map(fd: number): void {
    const p = libcBindings().mmap(null, this.mapLen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const addr = addressOf(p);
    if (addr === 0xffffffffffffffffn) throw new VsysError('PERF_UNAVAILABLE', 'mmap of the perf ring buffer failed (perf_event_mlock_kb too small?)', { syscall: 'mmap' });
    this.base = p;
    this.baseAddr = addr;
  }

  enable(): void {
    for (const fd of this.fds) libcBindings().ioctl(fd, PERF_IOC.ENABLE, 0);
  }

  disable(): void {
    for (const fd of this.fds) libcBindings().ioctl(fd, PERF_IOC.DISABLE, 0);
  }

  /**
   * Visits the complete samples since the last drain, at most `max` of them, without copying
   * them: `visit` gets the event's id, the record buffer and the offset/size of the raw
   * tracepoint data (valid only during the call). The space visited is handed back to the kernel
   * at once. Returns the number of samples the kernel reported lost, and whether records are left.
   */
  visit(visit: SampleVisitor, max = Infinity): { lost: number; more: boolean } {
    if (this.base === undefined || this.closed) return { lost: 0, more: false };
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
      if (type === RECORD_SAMPLE && size >= RAW_AT) {
        if (seen++ >= max) break;
        const id = buf.readUInt32LE(rec + 8) + buf.readUInt32LE(rec + 12) * 2 ** 32;
        const rawSize = buf.readUInt32LE(rec + 40);
        visit(id, buf.readUInt32LE(rec + 16), buf.readUInt32LE(rec + 20), Number(buf.readBigUInt64LE(rec + 24)), buf.readUInt32LE(rec + 32), buf, rec + RAW_AT, Math.min(rawSize, size - RAW_AT));
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
    if (this.base !== undefined) libcBindings().munmap(this.base, this.mapLen);
    this.base = undefined;
    for (const fd of this.fds) libcBindings().close(fd);
  }
}
