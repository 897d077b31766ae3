// The sparse read of large files (src/scan/sparse-read.ts) against the whole file: the candidates
// it finds while streaming are exactly the byte search's over the whole section, the bytes it keeps
// are the file's, and analyseFile (which uses it for every file from 1 MiB on) reports exactly what
// analysing the whole file reports. Chunks down to 40 bytes put boundaries inside every pattern and
// every decode window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { readSparse, type SparseOptions } from '../../src/scan/sparse-read.js';
import { analyseFile, analyseSparse } from '../../src/scan/read-file.js';
import { analyseBytes } from '../../src/scan/analyse-file.js';
import { findImm32Candidates } from '../../src/x86/candidates.js';
import { decodeWindowOf } from '../../src/x86/call-sites.js';
import { CORPUS } from '../helpers.js';
import { buildC, hasGcc } from '../support/fixtures.js';

const HOST_DIRS = ['/usr/bin', '/usr/lib/x86_64-linux-gnu'];
const MiB = 1024 * 1024;

function isElf(p: string): boolean {
  const fd = fs.openSync(p, 'r');
  try {
    const b = Buffer.alloc(4);
    return fs.readSync(fd, b, 0, 4, 0) === 4 && b.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } finally {
    fs.closeSync(fd);
  }
}

/** Regular ELF files of this host between `min` and `max` bytes, the largest first, at most `n`. */
function hostFiles(min: number, max: number, n: number): string[] {
  const out: { p: string; size: number }[] = [];
  for (const d of HOST_DIRS) {
    for (const name of fs.readdirSync(d)) {
      const p = path.join(d, name);
      const st = fs.lstatSync(p);
      if (st.isFile() && st.size >= min && st.size <= max && isElf(p)) out.push({ p, size: st.size });
    }
  }
  return out.sort((a, b) => b.size - a.size).slice(0, n).map((x) => x.p);
}

/** Checks one sparse read against the file; returns how many candidates it checked (undefined: read whole). */
function checkSparse(p: string, o: SparseOptions): number | undefined {
  const whole = fs.readFileSync(p);
  const fd = fs.openSync(p, 'r');
  try {
    const sparse = readSparse(fd, whole.length, (n) => Buffer.alloc(n, 0xcc), o);
    if (!sparse) return undefined;
    let checked = 0;
    let at = 0;
    for (const h of sparse.holes) {
      // Outside the holes: the file's bytes.
      assert.ok(sparse.bytes.subarray(at, h.start).equals(whole.subarray(at, h.start)), `${p}: bytes before the hole at ${h.start}`);
      at = h.end;
      if (!h.code) {
        assert.deepEqual(h.candidates, []);
        continue;
      }
      assert.deepEqual(h.candidates, findImm32Candidates(whole, h.start, h.end), `${p}: candidates in the hole at ${h.start} (chunk ${o.chunk})`);
      for (const c of h.candidates) {
        const [s, e] = decodeWindowOf(c, h.start, h.end);
        assert.ok(sparse.bytes.subarray(s, e).equals(whole.subarray(s, e)), `${p}: decode window of ${c}`);
        checked++;
      }
    }
    assert.ok(sparse.bytes.subarray(at).equals(whole.subarray(at)), `${p}: bytes after the last hole`);
    return checked;
  } finally {
    fs.closeSync(fd);
  }
}

test('streaming finds exactly the whole-file candidates and keeps their decode windows, for chunks of 40 bytes to 1 MiB', () => {
  const files = [...hostFiles(MiB, 6 * MiB, 6), path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so')].filter((p) => fs.existsSync(p));
  assert.ok(files.length >= 3, 'large ELF files to read');
  let candidates = 0;
  let sparse = 0;
  for (const p of files) {
    for (const chunk of [40, 4093, MiB]) {
      const n = checkSparse(p, { chunk, holeMin: 1024 });
      if (n === undefined) continue;
      sparse++;
      candidates += n;
    }
  }
  assert.ok(sparse >= 6, `sparse reads done: ${sparse}`);
  assert.ok(candidates > 0, 'some candidates were found and checked');
});

test('gcc-built programs with direct calls and a data word: candidates and windows exact; a page word makes the analysis read the file whole', { skip: !hasGcc() && 'gcc not installed' }, () => {
  const calls = buildC('call-regs', 'call-regs-dynamic', []);
  for (const chunk of [40, 97, 4096]) assert.ok((checkSparse(calls, { chunk, holeMin: 256, head: 64 }) ?? 0) >= 19, `call-regs, chunk ${chunk}`);
  const sparseOf = (p: string, o: SparseOptions) => {
    const fd = fs.openSync(p, 'r');
    try {
      return readSparse(fd, fs.fstatSync(fd).size, (n) => Buffer.alloc(n), o);
    } finally {
      fs.closeSync(fd);
    }
  };
  // The clean build has no possible page word; the data-word build's is found while streaming (at
  // chunks of 64 bytes, across boundaries), and its analysis goes whole: same report as a whole read.
  const o = { chunk: 64, holeMin: 1, head: 64 };
  const clean = sparseOf(buildC('clean', 'clean-dynamic', []), o);
  assert.ok(clean && clean.holes.every((h) => h.words.length === 0));
  const wordFile = buildC('data-word', 'data-word-dynamic', []);
  const withWord = sparseOf(wordFile, o);
  assert.ok(withWord && withWord.holes.some((h) => h.words.length > 0), 'the word is recorded');
  const fd = fs.openSync(wordFile, 'r');
  try {
    const r = analyseSparse(fd, fs.fstatSync(fd).size, wordFile, (n) => Buffer.alloc(n, 0xcc));
    assert.equal(r.how, 'whole');
    assert.ok(isDeepStrictEqual(r.report, analyseBytes(fs.readFileSync(wordFile), wordFile)));
    assert.ok((r.report?.findings.length ?? 0) > 0);
  } finally {
    fs.closeSync(fd);
  }
  // Static files are read whole (glibc's banner, Go build info live in their data).
  assert.equal(sparseOf(buildC('clean', 'clean-static', ['-static']), { holeMin: 1, head: 64 }), undefined);
});

test('analyseFile on large files (read sparsely) reports exactly what analysing the whole file reports', () => {
  const files = [...hostFiles(MiB, 512 * MiB, 40), ...['debian-wheezy-libc-2.13/libc-2.13.so', 'busybox-1.15.2-static/busybox'].map((f) => path.join(CORPUS, f))].filter((p) => fs.existsSync(p));
  let compared = 0;
  let sparse = 0;
  for (const p of files) {
    const r = analyseFile(p);
    if (r.kind !== 'elf') continue;
    const whole = analyseBytes(fs.readFileSync(p), p);
    assert.ok(isDeepStrictEqual(r.report, whole), `${p}: the sparse read's report differs from the whole file's`);
    compared++;
    // The same with the holes full of bytes that are not the file's: the same report, and most
    // large files do take the sparse path (a check that reads too much would silently undo it).
    const fd = fs.openSync(p, 'r');
    try {
      const s = analyseSparse(fd, fs.fstatSync(fd).size, p, (n) => Buffer.alloc(n, 0xcc));
      assert.ok(isDeepStrictEqual(s.report, whole), `${p}: sparse (0xcc holes) and whole reports differ`);
      if (s.how === 'sparse') sparse++;
    } finally {
      fs.closeSync(fd);
    }
  }
  assert.ok(compared >= 20, `files compared: ${compared}`);
  assert.ok(sparse >= compared * 0.7, `large files analysed sparsely: ${sparse} of ${compared}`);
});

/** Section headers of an ELF64 file: where each header is, its name, type, flags, offset and size. */
function sections(b: Buffer): { at: number; name: string; type: number; flags: bigint; off: number; size: number }[] {
  const shoff = Number(b.readBigUInt64LE(0x28));
  const n = b.readUInt16LE(0x3c);
  const strs = shoff + b.readUInt16LE(0x3e) * 64;
  const strOff = Number(b.readBigUInt64LE(strs + 0x18));
  return Array.from({ length: n }, (_, i) => {
    const at = shoff + i * 64;
    const nameAt = strOff + b.readUInt32LE(at);
    return {
      at, name: b.toString('latin1', nameAt, b.indexOf(0, nameAt)), type: b.readUInt32LE(at + 4), flags: b.readBigUInt64LE(at + 8),
      off: Number(b.readBigUInt64LE(at + 0x18)), size: Number(b.readBigUInt64LE(at + 0x20)),
    };
  });
}

test('hostile layouts: what analysis reads in a hole sends the file to a whole read, so the sparse report equals the whole one', { skip: !fs.existsSync(path.join(CORPUS, 'debian-wheezy-libc-2.13')) && 'no corpus' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-sparse-'));
  try {
    // wheezy's libc with its soname renamed (so it is not read whole as a libc): direct calls in .text.
    const b = fs.readFileSync(path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so'));
    const dynstr = sections(b).find((s) => s.name === '.dynstr')!;
    b[b.indexOf('libc.so.6\0', dynstr.off)] = 0x78; // xibc.so.6
    const renamed = path.join(dir, 'renamed.so');
    fs.writeFileSync(renamed, b);
    // No loaded PROGBITS section: the regions come from PT_LOAD, which covers the holes.
    const c = Buffer.from(b);
    for (const s of sections(c)) if (s.type === 1) c.writeBigUInt64LE(s.flags & ~2n, s.at + 8);
    const noAlloc = path.join(dir, 'noalloc.so');
    fs.writeFileSync(noAlloc, c);
    // A fake SYMTAB section where .text was (a hole), and .text shrunk to 8 KiB around its first
    // page address (too small to be a hole itself): .text lies inside a hole it does not match.
    const d = Buffer.from(b);
    const ds = sections(d);
    const text = ds.find((s) => s.name === '.text')!;
    const link = ds.find((s) => s.name === '.gnu_debuglink' || s.name === '.comment')!;
    d.writeUInt32LE(2, link.at + 4); // SHT_SYMTAB
    d.writeBigUInt64LE(BigInt(text.off), link.at + 0x18);
    d.writeBigUInt64LE(BigInt(text.size), link.at + 0x20);
    d.writeBigUInt64LE(24n, link.at + 0x38);
    const first = findImm32Candidates(b, text.off, text.off + text.size)[0]!;
    const start = (first - 0x1000) & ~0xf;
    d.writeBigUInt64LE(d.readBigUInt64LE(text.at + 0x10) + BigInt(start - text.off), text.at + 0x10);
    d.writeBigUInt64LE(BigInt(start), text.at + 0x18);
    d.writeBigUInt64LE(0x2000n, text.at + 0x20);
    const nested = path.join(dir, 'nested.so');
    fs.writeFileSync(nested, d);
    // A section kept out of the holes (.dynamic's string table link points at it) made code over
    // .rodata's bytes (a data hole), with a direct call written there: it must not borrow the data
    // hole's (empty) candidate list.
    // (On a clean library: with a finding anywhere the file is read whole anyway.)
    const base = hostFiles(2 * MiB, 16 * MiB, 20).find((p) => {
      const x = fs.readFileSync(p);
      const names = sections(x).map((s) => s.name);
      return names.includes('.gnu_debuglink') && names.includes('.rodata') && names.includes('.dynamic') && analyseBytes(x, p)?.class === 'clean';
    });
    assert.ok(base, 'a clean host library with .rodata, .dynamic and .gnu_debuglink');
    const e = fs.readFileSync(base);
    const es = sections(e);
    const rodata = es.find((s) => s.name === '.rodata')!;
    const dynamic = es.find((s) => s.name === '.dynamic')!;
    const aliasIndex = es.findIndex((s) => s.name === '.gnu_debuglink');
    const alias = es[aliasIndex]!;
    e.writeUInt32LE(1, alias.at + 4); // PROGBITS
    e.writeBigUInt64LE(6n, alias.at + 8); // SHF_ALLOC | SHF_EXECINSTR
    e.writeBigUInt64LE(e.readBigUInt64LE(rodata.at + 0x10), alias.at + 0x10);
    e.writeBigUInt64LE(BigInt(rodata.off), alias.at + 0x18);
    e.writeBigUInt64LE(BigInt(rodata.size), alias.at + 0x20);
    e.writeUInt32LE(aliasIndex, dynamic.at + 0x28);
    Buffer.from([0x48, 0xc7, 0xc0, 0x00, 0x04, 0x60, 0xff, 0xff, 0xd0, 0xc3]).copy(e, rodata.off + 0x200); // mov $0xffffffffff600400,%rax; call *%rax
    const aliased = path.join(dir, 'aliased.so');
    fs.writeFileSync(aliased, e);
    // No program header table where the ELF reader would look (e_phoff = 0).
    const f = fs.readFileSync(base);
    f.writeBigUInt64LE(0n, 0x20);
    const noPhdrs = path.join(dir, 'no-phdrs.so');
    fs.writeFileSync(noPhdrs, f);
    for (const p of [aliased, noPhdrs]) {
      const fd = fs.openSync(p, 'r');
      let r;
      try {
        r = analyseSparse(fd, fs.fstatSync(fd).size, p, (n) => Buffer.alloc(n, 0xcc));
      } finally {
        fs.closeSync(fd);
      }
      assert.ok(isDeepStrictEqual(r.report, analyseBytes(fs.readFileSync(p), p)), `${path.basename(p)}: sparse and whole reports differ`);
    }
    // .rodata is in a segment the kernel maps without execute permission: the call written there
    // cannot run, whatever the aliasing section's flags say; the disagreement is a warning.
    const aliasedReport = analyseBytes(e, aliased);
    assert.ok(!(aliasedReport?.findings ?? []).some((x) => x.offset >= rodata.off && x.offset < rodata.off + rodata.size), 'the call written over .rodata (not executable) is no finding');
    assert.ok((aliasedReport?.identity?.warnings ?? []).some((w) => /code section \.gnu_debuglink .*outside every executable segment/.test(w)), JSON.stringify(aliasedReport?.identity?.warnings));
    for (const p of [renamed, noAlloc, nested]) {
      // The holes hold bytes that are not the file's (0xcc), as a reused buffer would.
      const fd = fs.openSync(p, 'r');
      let r;
      try {
        // A section nested in a hole is refused by readSparse itself; the others are read sparsely
        // and caught in analysis (HoleRead).
        if (p !== nested) assert.ok(readSparse(fd, fs.fstatSync(fd).size, (n) => Buffer.alloc(n, 0xcc)), `${path.basename(p)} is read sparsely`);
        r = analyseSparse(fd, fs.fstatSync(fd).size, p, (n) => Buffer.alloc(n, 0xcc)).report;
      } finally {
        fs.closeSync(fd);
      }
      const whole = analyseBytes(fs.readFileSync(p), p);
      assert.ok(whole && whole.findings.length > 0, `${path.basename(p)} has findings when read whole`);
      assert.ok(isDeepStrictEqual(r, whole), `${path.basename(p)}: sparse and whole reports differ`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('hostile: 65,000 sections naming one 1 MB string are read whole, in bounded time and memory', () => {
  const N = 65000;
  const STR = 1_000_000;
  const shoff = 0x1000;
  const stroff = shoff + N * 64;
  const b = Buffer.alloc(stroff + STR + 1);
  b.write('\x7fELF', 0, 'latin1');
  b[4] = 2; b[5] = 1; b[6] = 1;
  b.writeUInt16LE(3, 0x10); b.writeUInt16LE(62, 0x12); b.writeUInt32LE(1, 0x14);
  b.writeBigUInt64LE(0x40n, 0x20); b.writeBigUInt64LE(BigInt(shoff), 0x28);
  b.writeUInt16LE(64, 0x34); b.writeUInt16LE(56, 0x36); b.writeUInt16LE(1, 0x38);
  b.writeUInt16LE(64, 0x3a); b.writeUInt16LE(N, 0x3c); b.writeUInt16LE(1, 0x3e);
  b.writeUInt32LE(3, 0x40); b.writeBigUInt64LE(0x200n, 0x48); b.writeBigUInt64LE(0x20n, 0x60); // PT_INTERP
  b.write('/lib64/ld-linux-x86-64.so.2', 0x200);
  for (let i = 0; i < N; i++) b.writeUInt32LE(0x70000000, shoff + i * 64 + 4);
  b.writeUInt32LE(3, shoff + 64 + 4);
  b.writeBigUInt64LE(BigInt(stroff), shoff + 64 + 0x18);
  b.writeBigUInt64LE(BigInt(STR + 1), shoff + 64 + 0x20);
  b.fill(0x41, stroff, stroff + STR);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-sparse-'));
  try {
    const p = path.join(dir, 'names.elf');
    fs.writeFileSync(p, b);
    const fd = fs.openSync(p, 'r');
    try {
      assert.equal(readSparse(fd, b.length, (n) => Buffer.alloc(n)), undefined);
    } finally {
      fs.closeSync(fd);
    }
    const before = process.memoryUsage().rss;
    const r = analyseFile(p);
    assert.equal(r.kind, 'elf');
    assert.ok(process.memoryUsage().rss - before < 512 * MiB, 'memory stayed bounded');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
