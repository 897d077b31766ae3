// Builds small ELF32/ELF64 files for tests (hand-made inputs readelf can also read): sections laid
// out after a fixed 0x1000-byte header area, optional PT_LOAD/PT_NOTE/... segments over them.
// Section data may depend on section addresses; it is rebuilt until the layout settles.

export interface BuildSection {
  name: string;
  type: number;
  flags?: bigint;
  /** Defaults to BASE + file offset for allocated (SHF_ALLOC) sections, else 0. */
  addr?: bigint;
  data: Uint8Array | ((addr: (name: string) => bigint) => Uint8Array);
  link?: string;
  info?: number;
  align?: number;
  entsize?: number;
  /** SHT_NOBITS size. */
  size?: number;
}

export interface BuildSegment {
  type: number;
  flags: number;
  /** First and last section covered. */
  from: string;
  to: string;
  align?: bigint;
}

export interface BuildOptions {
  cls: 32 | 64;
  type?: number;
  machine?: number;
  entry?: bigint;
  sections: BuildSection[];
  segments?: BuildSegment[];
  /** Leave the section header table out (e_shoff = 0, e_shnum = 0). */
  noSectionHeaders?: boolean;
}

export const BASE = 0x400000n;
const SHF_ALLOC = 2n;

class Out {
  buf = new Uint8Array(1 << 16);
  view = new DataView(this.buf.buffer);
  len = 0;
  grow(n: number): void {
    if (n <= this.buf.length) return;
    const b = new Uint8Array(Math.max(n, this.buf.length * 2));
    b.set(this.buf);
    this.buf = b;
    this.view = new DataView(b.buffer);
  }
  at(off: number, size: number): number {
    this.grow(off + size);
    this.len = Math.max(this.len, off + size);
    return off;
  }
  // `at` first: it may grow the buffer, and `this.view` / `this.buf` must be read after it.
  u8(off: number, v: number): void { const at = this.at(off, 1); this.view.setUint8(at, v); }
  u16(off: number, v: number): void { const at = this.at(off, 2); this.view.setUint16(at, v, true); }
  u32(off: number, v: number): void { const at = this.at(off, 4); this.view.setUint32(at, v, true); }
  u64(off: number, v: bigint): void { const at = this.at(off, 8); this.view.setBigUint64(at, v, true); }
  word(cls: 32 | 64, off: number, v: bigint): void { if (cls === 64) this.u64(off, v); else this.u32(off, Number(v)); }
  bytes(off: number, b: Uint8Array): void { const at = this.at(off, b.length); this.buf.set(b, at); }
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

export function buildElf(o: BuildOptions): Uint8Array {
  const cls = o.cls;
  const all: BuildSection[] = [{ name: '', type: 0, data: new Uint8Array(0) }, ...o.sections];
  const names = ['', ...o.sections.map((s) => s.name), '.shstrtab'];
  const shstr: number[] = [0];
  const nameOff = new Map<string, number>();
  for (const n of names.slice(1)) {
    nameOff.set(n, shstr.length);
    shstr.push(...Buffer.from(n, 'latin1'), 0);
  }
  all.push({ name: '.shstrtab', type: 3, data: Uint8Array.from(shstr) });

  // Pass 1 sizes with zero addresses; pass 2 real ones.
  const place = (addrOf: (n: string) => bigint) => {
    let off = 0x1000;
    return all.map((s, i) => {
      const data = typeof s.data === 'function' ? s.data(addrOf) : s.data;
      if (i === 0) return { s, off: 0, addr: 0n, data };
      off = alignUp(off, Math.max(s.align ?? 16, 1));
      const addr = s.addr ?? (((s.flags ?? 0n) & SHF_ALLOC) !== 0n ? BASE + BigInt(off) : 0n);
      const placed = { s, off, addr, data };
      if (s.type !== 8) off += data.length;
      return placed;
    });
  };
  // Contents whose size depends on addresses (LEB128s) need a few rounds to settle.
  let placed = place(() => 0n);
  for (let round = 0; round < 8; round++) {
    const prev = placed;
    placed = place((n: string) => prev.find((p) => p.s.name === n)?.addr ?? 0n);
    if (placed.every((p, i) => p.off === prev[i]!.off && p.data.length === prev[i]!.data.length)) break;
  }

  const out = new Out();
  const ehsize = cls === 64 ? 64 : 52;
  const phentsize = cls === 64 ? 56 : 32;
  const shentsize = cls === 64 ? 64 : 40;
  const segs = o.segments ?? [];
  for (const p of placed.slice(1)) if (p.s.type !== 8) out.bytes(p.off, p.data);
  const end = Math.max(...placed.map((p) => p.off + (p.s.type === 8 ? 0 : p.data.length)));
  const shoff = alignUp(end, 8);

  out.bytes(0, Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, cls === 64 ? 2 : 1, 1, 1, 0]));
  out.u16(16, o.type ?? 2);
  out.u16(18, o.machine ?? (cls === 64 ? 62 : 3));
  out.u32(20, 1);
  const w = cls === 64 ? 8 : 4;
  out.word(cls, 24, o.entry ?? 0n);
  out.word(cls, 24 + w, segs.length ? BigInt(ehsize) : 0n);
  out.word(cls, 24 + 2 * w, o.noSectionHeaders ? 0n : BigInt(shoff));
  const tail = 24 + 3 * w;
  out.u32(tail, 0);
  out.u16(tail + 4, ehsize);
  out.u16(tail + 6, phentsize);
  out.u16(tail + 8, segs.length);
  out.u16(tail + 10, shentsize);
  out.u16(tail + 12, o.noSectionHeaders ? 0 : placed.length);
  out.u16(tail + 14, o.noSectionHeaders ? 0 : placed.length - 1);

  segs.forEach((g, i) => {
    const a = placed.find((p) => p.s.name === g.from)!;
    const b = placed.find((p) => p.s.name === g.to)!;
    const filesz = b.off + (b.s.type === 8 ? 0 : b.data.length) - a.off;
    const memsz = Number(b.addr - a.addr) + (b.s.type === 8 ? (b.s.size ?? 0) : b.data.length);
    const at = ehsize + i * phentsize;
    out.u32(at, g.type);
    if (cls === 64) {
      out.u32(at + 4, g.flags);
      out.u64(at + 8, BigInt(a.off));
      out.u64(at + 16, a.addr);
      out.u64(at + 24, a.addr);
      out.u64(at + 32, BigInt(filesz));
      out.u64(at + 40, BigInt(memsz));
      out.u64(at + 48, g.align ?? 0x1000n);
    } else {
      for (const [k, v] of [a.off, Number(a.addr), Number(a.addr), filesz, memsz, g.flags, Number(g.align ?? 0x1000n)].entries()) out.u32(at + 4 + 4 * k, v);
    }
  });

  if (!o.noSectionHeaders) {
    placed.forEach((p, i) => {
      const at = shoff + i * shentsize;
      const s = p.s;
      const link = s.link ? placed.findIndex((q) => q.s.name === s.link) : 0;
      const size = s.type === 8 ? (s.size ?? 0) : p.data.length;
      out.u32(at, i === 0 ? 0 : nameOff.get(s.name)!);
      out.u32(at + 4, s.type);
      const fields = [s.flags ?? 0n, p.addr, BigInt(p.off), BigInt(size)];
      fields.forEach((v, k) => out.word(cls, at + 8 + k * w, v));
      const after = at + 8 + 4 * w;
      out.u32(after, link);
      out.u32(after + 4, s.info ?? 0);
      out.word(cls, after + 8, BigInt(i === 0 ? 0 : s.align ?? 16));
      out.word(cls, after + 8 + w, BigInt(s.entsize ?? 0));
    });
  }
  return out.buf.slice(0, o.noSectionHeaders ? end : shoff + placed.length * shentsize);
}

/** Little-endian encoders for section contents. */
export function le(size: 1 | 2 | 4 | 8, v: bigint | number): Uint8Array {
  const b = new Uint8Array(size);
  const d = new DataView(b.buffer);
  if (size === 1) d.setUint8(0, Number(v));
  else if (size === 2) d.setUint16(0, Number(v), true);
  else if (size === 4) d.setUint32(0, Number(BigInt.asUintN(32, BigInt(v))), true);
  else d.setBigUint64(0, BigInt.asUintN(64, BigInt(v)), true);
  return b;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function uleb(n: number): Uint8Array {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return Uint8Array.from(out);
}

export function sleb(n: bigint): Uint8Array {
  const out: number[] = [];
  for (;;) {
    const b = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && (b & 0x40) === 0) || (n === -1n && (b & 0x40) !== 0)) {
      out.push(b);
      return Uint8Array.from(out);
    }
    out.push(b | 0x80);
  }
}
