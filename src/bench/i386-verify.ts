// Reads what a 32-bit program wrote and checks it: the header the generated code fills (i386-code.ts
// H), the TSC pairs of its timed rounds, the last call's result against what the parent knows, and
// the dumped 32-bit vDSO (its loaded size, its functions' offsets) through src/elf and vdso-parse.
import { ByteReader } from '../elf/bytes.js';
import { ELFCLASS32 } from '../elf/constants.js';
import { loadedExtent, readHeader, readIdent, readSegments } from '../elf/header.js';
import { EHDR32, PHDR32 } from '../elf/layouts.js';
import { parseVdsoImage } from '../host/vdso-parse.js';
import { H, MAGIC, ROUND, type I386Path } from './i386-code.js';

export interface Header {
  status: number; sysinfo: number; ehdr: number; ret: number; out0: number; out1: number;
}

export function readOutput(out: Buffer): Header | undefined {
  if (out.length < H.size || out.readUInt32LE(H.magic) !== MAGIC) return undefined;
  const u = (o: number) => out.readUInt32LE(o);
  return { status: u(H.status), sysinfo: u(H.sysinfo), ehdr: u(H.ehdr), ret: u(H.ret), out0: u(H.out0), out1: u(H.out1) };
}

/** Cycles per call of each repeat from the (start, end) TSC pairs after the header. */
export function cyclesFrom(out: Buffer, iterations: number, repeats: number): number[] | undefined {
  if (out.length !== H.size + repeats * ROUND) return undefined;
  const cycles: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const o = H.size + i * ROUND;
    const start = out.readBigUInt64LE(o);
    const end = out.readBigUInt64LE(o + 8);
    cycles.push(Number(end - start) / iterations);
  }
  return cycles;
}

/** Bytes from the image base to the end of its last PT_LOAD's file part, or why it cannot be read. */
export function loadedSize(image: Uint8Array): number | string {
  try {
    const r = new ByteReader(image, 'vDSO');
    const id = readIdent(image);
    if (!r.has(0, EHDR32.size) || !id?.magic || id.class !== ELFCLASS32) return 'the 32-bit vDSO does not start with an ELF32 header';
    const h = readHeader(r, 32);
    if (h.phentsize < PHDR32.size || h.phnum > 64) return `the 32-bit vDSO has implausible program headers (${h.phnum} × ${h.phentsize} bytes)`;
    // The headers are in the first page; the segments they describe may reach past what was dumped.
    const end = loadedExtent(readSegments(r, h)).fileEnd;
    if (end === 0n || end > 1n << 20n) return `the 32-bit vDSO's PT_LOAD is ${end} bytes`;
    return Number(end);
  } catch (e) {
    return `the 32-bit vDSO could not be read: ${(e as Error).message}`;
  }
}

export function vdsoOffset(image: Uint8Array, name: string): number | string {
  try {
    const syms = parseVdsoImage(image, 0n).symbols;
    const s = syms.find((x) => x.name === name && x.type === 'func' && x.version === 'LINUX_2.6')
      ?? syms.find((x) => x.name === name && x.type === 'func' && x.version === null);
    return s ? s.offset : `the 32-bit vDSO has no ${name} (LINUX_2.6)`;
  } catch (e) {
    return `the 32-bit vDSO could not be parsed: ${(e as Error).message}`;
  }
}

export const VDSO_SYMBOL = { 'vdso32-gettimeofday': '__vdso_gettimeofday', 'vdso32-clock_gettime': '__vdso_clock_gettime' } as const;

/** Checks what the last call returned against what the parent knows; a string when wrong. */
export function verify(p: I386Path, h: Header, pid: number, before: { ms: number; mono: bigint }, after: { ms: number; mono: bigint }): { ok: string } | { wrong: string } {
  if (p === 'int80' || p === 'sysenter' || p === 'kernel-vsyscall') {
    return h.ret === pid ? { ok: `getpid() = ${pid}, the child's pid` } : { wrong: `getpid() returned ${h.ret | 0}, but the child's pid is ${pid}` };
  }
  const [lo, hi, name] = p === 'vdso32-gettimeofday'
    ? [Math.floor(before.ms / 1000) - 1, Math.ceil(after.ms / 1000) + 1, 'gettimeofday tv_sec']
    : [Number(before.mono / 1_000_000_000n) - 1, Number(after.mono / 1_000_000_000n) + 1, 'clock_gettime(CLOCK_MONOTONIC) tv_sec'];
  const frac = p === 'vdso32-gettimeofday' ? 1e6 : 1e9;
  if (h.ret !== 0) return { wrong: `${name.split(' ')[0]} returned ${h.ret | 0}` };
  if (h.out0 < lo || h.out0 > hi || h.out1 >= frac) return { wrong: `${name} = ${h.out0}.${h.out1}, outside the parent's ${lo}..${hi}` };
  return { ok: `${name} ${h.out0} lies within the parent's ${lo}..${hi}` };
}
