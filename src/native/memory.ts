// Native memory: pointers from addresses, reads of process memory, executable pages
// (written while RW, then flipped to RX, never both), and calls of raw function pointers.
import { VsysError } from '../errors.js';
import { loadKoffi } from './koffi.js';
import { check, libcBindings, MAP_32BIT, MAP_ANONYMOUS, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE, type NativePtr } from './libc.js';

export function addressOf(p: NativePtr): bigint {
  return BigInt(loadKoffi().address(p as never));
}

export function pointerAt(address: bigint): NativePtr {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64LE(BigInt.asUintN(64, address));
  return loadKoffi().decode(buf, 'void *') as NativePtr;
}

/** Copies `len` bytes of this process's memory at `p` (+offset). The caller guarantees they are mapped. */
export function readMemory(p: NativePtr, len: number, offset = 0): Uint8Array {
  const k = loadKoffi();
  const view = k.view(offset ? pointerAt(addressOf(p) + BigInt(offset)) as never : p as never, len);
  return new Uint8Array(view.slice(0));
}

const protoCache = new Map<string, unknown>();
let protoSeq = 0;

/** Calls a native function pointer with a C signature such as 'long (void *, long)'. */
export function callPointer(p: NativePtr, signature: string, ...args: unknown[]): unknown {
  const k = loadKoffi();
  let proto = protoCache.get(signature);
  if (!proto) {
    const m = /^\s*(.+?)\s*\((.*)\)\s*$/.exec(signature);
    if (!m) throw new VsysError('NATIVE_CALL_FAILED', `bad signature ${signature}`);
    proto = k.proto(`${m[1]} vsys_fn${protoSeq++}(${m[2]})`);
    protoCache.set(signature, proto);
  }
  return k.call(p as never, proto as never, ...args);
}

/** An anonymous mapping holding generated code: filled while RW, executed only after `seal()` made it RX. */
export class ExecPage {
  readonly size: number;
  readonly ptr: NativePtr;
  readonly address: bigint;
  private state: 'rw' | 'rx' | 'freed' = 'rw';
  /**
   * The whole mapping as bytes, made once: every read and write goes through it. A koffi pointer
   * or view made per access is never given back (measured with koffi 2.16: ~150 and ~350 bytes of
   * malloc'd memory per call, kept after GC), which a long-running exporter's map reads turned
   * into megabytes a minute (bench/native-memory.mjs).
   */
  private view: Uint8Array | undefined;

  constructor(size = 4096, opts: { low32?: boolean } = {}) {
    this.size = Math.ceil(size / 4096) * 4096;
    const lc = libcBindings();
    const flags = MAP_PRIVATE | MAP_ANONYMOUS | (opts.low32 ? MAP_32BIT : 0);
    const p = lc.mmap(null, this.size, PROT_READ | PROT_WRITE, flags, -1, 0);
    const addr = addressOf(p);
    if (addr === 0xffffffffffffffffn) check(-1, 'mmap');
    this.ptr = p;
    this.address = addr;
  }

  write(bytes: Uint8Array, offset = 0): void {
    if (this.state !== 'rw') throw new VsysError('NATIVE_CALL_FAILED', 'write to an executable page after seal()');
    if (offset < 0 || offset + bytes.length > this.size) throw new VsysError('NATIVE_CALL_FAILED', `code of ${bytes.length} bytes does not fit a ${this.size}-byte page`);
    this.bytes().set(bytes, offset);
  }

  private bytes(): Uint8Array {
    this.view ??= new Uint8Array(loadKoffi().view(this.ptr as never, this.size));
    return this.view;
  }

  seal(): void {
    if (this.state !== 'rw') return;
    check(libcBindings().mprotect(this.ptr, this.size, PROT_READ | PROT_EXEC), 'mprotect');
    this.state = 'rx';
  }

  /** Copies bytes out of the page (a data page that is never sealed, e.g. a buffer below 4 GiB). */
  read(offset: number, len: number): Uint8Array {
    if (this.state === 'freed' || offset < 0 || offset + len > this.size) throw new VsysError('NATIVE_CALL_FAILED', `read of ${len} bytes at ${offset} outside the ${this.size}-byte page`);
    return this.bytes().slice(offset, offset + len);
  }

  /** Pointer to `offset` inside the page. */
  at(offset = 0): NativePtr {
    return offset === 0 ? this.ptr : pointerAt(this.address + BigInt(offset));
  }

  call(signature: string, ...args: unknown[]): unknown {
    if (this.state !== 'rx') throw new VsysError('NATIVE_CALL_FAILED', 'call of an executable page before seal()');
    return callPointer(this.ptr, signature, ...args);
  }

  free(): void {
    if (this.state === 'freed') return;
    this.view = undefined;
    libcBindings().munmap(this.ptr, this.size);
    this.state = 'freed';
  }
}
