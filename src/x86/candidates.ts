// Fast byte search for references to the vsyscall page, before any decoding. An address in the
// page, 0xffffffffff600000..0xffffffffff600fff, appears in code as a sign-extended imm32 or disp32
// (`xx 0y 60 ff`) or as part of an imm64, and in data as an 8-byte word (`xx 0y 60 ff ff ff ff ff`).
// Both contain the bytes `60 ff`, which Buffer#indexOf finds at memchr speed.

const MARK = Buffer.from([0x60, 0xff]);
const WORD_TAIL = Buffer.from([0x60, 0xff, 0xff, 0xff, 0xff, 0xff]);

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Offsets p in [start, end) where `tail` starts at p+2 and byte p+1 keeps the value inside the page
 * (bits 8..15 of the address: only 0x00..0x0f stay inside the 4 KiB page).
 */
function findPageValues(bytes: Uint8Array, start: number, end: number, tail: Buffer): number[] {
  // Searched inside [start, end) only: indexOf on the whole file would run on past the region to
  // the next match, for every region (a file has a dozen), often to the end of the file.
  const stop = Math.min(end, bytes.length);
  const buf = asBuffer(bytes).subarray(0, stop);
  const out: number[] = [];
  let i = buf.indexOf(tail, Math.max(0, start + 2));
  while (i !== -1) {
    const p = i - 2;
    if (p >= start && ((buf[p + 1] as number) & 0xf0) === 0) out.push(p);
    i = buf.indexOf(tail, i + 1);
  }
  return out;
}

/**
 * Offsets p in [start, end) where bytes p..p+3 read as a little-endian imm32 that sign-extends to an
 * address inside the vsyscall page. Instructions that carry such a constant are found around p.
 */
export function findImm32Candidates(bytes: Uint8Array, start: number, end: number): number[] {
  return findPageValues(bytes, start, end, MARK);
}

/** Offsets of 8-byte little-endian words in [start, end) whose value lies inside the vsyscall page. */
export function findDataWords(bytes: Uint8Array, start: number, end: number): number[] {
  return findPageValues(bytes, start, end, WORD_TAIL);
}

/** The page address an imm32 candidate at `p` stands for (sign-extended). */
export function imm32Value(bytes: Uint8Array, p: number): bigint {
  const v = ((bytes[p] as number) | ((bytes[p + 1] as number) << 8)) >>> 0;
  return 0xffffffffff600000n | BigInt(v & 0xfff);
}
