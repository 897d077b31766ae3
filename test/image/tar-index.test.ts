// The positional layer reader (tar-index.ts, readLayerAt) against independent oracles: the streaming
// reader (readLayer, tar-stream) and GNU tar on the same tars, and the kernel's own count of the
// bytes this process read (/proc/self/io rchar, proc(5)) for the claims about what is never read.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { hasCommand } from '../helpers.js';
import { buildDockerArchive, packTar, whiteout, opaque, pathTraversalLayer, truncatedTar } from '../support/images.js';
import { tarEntry } from '../support/hostile-layers.js';
import { readLayer } from '../../src/image/read-layer.js';
import { readLayerAt } from '../../src/image/read-layer-at.js';
import type { LayerLimits, LayerResult } from '../../src/image/layer-builder.js';
import type { LayerOp } from '../../src/image/image-fs.js';
import { scanImageRefs } from '../../src/image/scan-image.js';
import { createPool } from '../../src/scan/pool.js';
import { analyseFile, SPARSE_MIN } from '../../src/scan/read-file.js';
import { VsysError } from '../../src/errors.js';
import { fastHeader, walkTar, type TarWindow } from '../../src/image/tar-index.js';
import { createRequire } from 'node:module';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-tar-index-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

const MiB = 1024 * 1024;
const LIMITS: LayerLimits = { maxLayerBytes: 8 * 1024 ** 3, maxFileBytes: 512 * MiB };
const LIBDIR = '/usr/lib/x86_64-linux-gnu';
const SMALL_ELF = '/usr/bin/true';
/** A large ELF library (1-64 MiB; the largest of a few common ones) whose sparse analysis is kept. */
const LARGE_ELF = ['libcrypto.so.3', 'libstdc++.so.6', 'libpython3.11.so.1.0', 'libsqlite3.so.0']
  .map((n) => path.join(LIBDIR, n))
  .filter((p) => fs.existsSync(p) && fs.statSync(p).size >= SPARSE_MIN && fs.statSync(p).size <= 64 * MiB)
  .sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0];
/** libc: read sparsely, then (a libc's analysis is never kept sparse) its holes filled. */
const LIBC = [path.join(LIBDIR, 'libc.so.6')].find((p) => fs.existsSync(p) && fs.statSync(p).size >= SPARSE_MIN);
/** A data-only library (ICU's tables in .rodata): its sparse analysis is not kept, it is analysed whole. */
const ICUDATA = (fs.existsSync(LIBDIR) ? fs.readdirSync(LIBDIR) : []).filter((n) => /^libicudata\.so\.\d+(\.\d+)*$/.test(n)).map((n) => path.join(LIBDIR, n)).find((p) => fs.lstatSync(p).isFile());

const skipHost = (!hasCommand('tar') && 'GNU tar not installed') || (!fs.existsSync(SMALL_ELF) && `${SMALL_ELF} missing`) || (!LARGE_ELF && `no ELF library of 1-64 MiB under ${LIBDIR}`) || false;
const skipIo = (() => {
  try {
    return /^rchar: \d+$/m.test(fs.readFileSync('/proc/self/io', 'utf8')) ? false : '/proc/self/io has no rchar';
  } catch (e) {
    return `/proc/self/io unreadable: ${(e as Error).message}`;
  }
})();

/** Bytes this process has read by read(2)/pread(2) and the like, all threads (proc(5) rchar). */
function rchar(): number {
  return Number(/^rchar: (\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'))?.[1]);
}

/** readLayerAt over a whole tar file. */
async function readAt(tar: string, limits: LayerLimits = LIMITS): Promise<LayerResult> {
  const fd = fs.openSync(tar, 'r');
  try {
    return await readLayerAt({ fd, path: tar, start: 0, size: fs.fstatSync(fd).size }, 'layer', limits);
  } finally {
    fs.closeSync(fd);
  }
}

/** readLayerAt over the tar stored inside another file, between odd-sized runs of random bytes (as a blob in an archive). */
async function readAtInside(tar: string, limits: LayerLimits = LIMITS): Promise<LayerResult> {
  const outer = `${tar}.inside`;
  const before = randomBytes(12_345);
  fs.writeFileSync(outer, before);
  fs.appendFileSync(outer, fs.readFileSync(tar));
  fs.appendFileSync(outer, randomBytes(54_321));
  const fd = fs.openSync(outer, 'r');
  try {
    return await readLayerAt({ fd, path: outer, start: before.length, size: fs.statSync(tar).size }, 'layer', limits);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(outer);
  }
}

function readStreamed(tar: string, limits: LayerLimits = LIMITS): Promise<LayerResult> {
  return readLayer(fs.createReadStream(tar), 'layer', limits);
}

/** The error a promise rejects with (fails, saying `why`, when it resolves). */
async function rejection(p: Promise<unknown>, why = 'resolved where it should have failed'): Promise<VsysError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof VsysError, `a VsysError, not ${String(e)}`);
    return e;
  }
  assert.fail(why);
}

/** '/a/b' for tar's './a/b/', 'a/b', '.'. */
function tarName(n: string): string {
  return `/${n.replace(/^(\.\/)+/, '').replace(/^\.$/, '').replace(/\/+$/, '')}`;
}

/** Entry names as GNU tar lists them, in archive order. */
function gnuTarList(tar: string): string[] {
  return execFileSync('tar', ['-tf', tar], { encoding: 'utf8', maxBuffer: 64 * MiB }).split('\n').filter((l) => l !== '').map(tarName);
}

/** The entry name an op came from (a whiteout or opaque op names the thing deleted, not its marker). */
function opEntry(op: LayerOp): string {
  if (op.op === 'add') return op.path;
  if (op.op === 'opaque') return op.dir === '/' ? '/.wh..wh..opq' : `${op.dir}/.wh..wh..opq`;
  const i = op.path.lastIndexOf('/');
  return `${op.path.slice(0, i)}/.wh.${op.path.slice(i + 1)}`;
}

/** Header block of each entry, as GNU tar numbers them (`tar -tR`): entry name → byte offset of its header. */
function gnuTarHeaders(tar: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of execFileSync('tar', ['-tRf', tar], { encoding: 'utf8' }).split('\n')) {
    const m = /^block (\d+): (.*)$/.exec(line);
    if (m && m[2] !== '** Block of NULs **' && m[2] !== '** End of File **') out.set(tarName(m[2] as string), Number(m[1]) * 512);
  }
  return out;
}

/** An ELF file of exactly `size` bytes: /usr/bin/true with zeros after it (still a valid ELF). */
function paddedElf(out: string, size: number): void {
  const b = Buffer.alloc(size);
  fs.readFileSync(SMALL_ELF).copy(b);
  fs.writeFileSync(out, b);
}

const SEG = 'segment-of-a-long-path-'.padEnd(60, 'x');
/** > 100 bytes: fits ustar's prefix + name split, not its name field alone. */
const LONG = `deep/${SEG}/file-with-a-name-past-one-hundred-bytes`;
/** > 255 bytes: fits no ustar field at all. */
const LONGER = `deep/${SEG}/${SEG}/${SEG}/${SEG}/and-a-file-at-the-bottom-of-it-all`;

/**
 * A layer directory with every kind of entry the readers treat differently: long names and link
 * targets, a hard link to a long name, whiteout and opaque markers, kept texts, ELF files on both
 * sides of the sparse threshold, a large ELF, and a large non-ELF body.
 */
function parityDir(): string {
  const dir = path.join(work, 'parity');
  if (fs.existsSync(dir)) return dir;
  const put = (rel: string, data: Buffer | string) => {
    fs.mkdirSync(path.join(dir, path.dirname(rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), data);
  };
  put('etc/os-release', 'PRETTY_NAME="Test Linux 1"\nID=testlinux\nVERSION_ID="1"\n');
  put('etc/ld.so.conf', 'include /etc/ld.so.conf.d/*.conf\n');
  put('empty', '');
  put(LONG, 'long name\n');
  put(LONGER, 'longer name\n');
  assert.ok(LONG.length > 100 && LONG.length < 155 + 100 && LONGER.length > 255);
  // A symlink whose target (relative, > 100 bytes) fits no ustar field.
  fs.symlinkSync(path.relative('/lnk', `/${LONGER}`), path.join(dir, 'lnk'));
  assert.ok(fs.readlinkSync(path.join(dir, 'lnk')).length > 100);
  // Hard links: GNU tar writes the second name as a link to the first (sorted: deep/… first).
  fs.linkSync(path.join(dir, LONGER), path.join(dir, 'z-hardlink-to-longer'));
  fs.mkdirSync(path.join(dir, 'usr', 'bin'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'usr', 'lib'), { recursive: true });
  fs.copyFileSync(SMALL_ELF, path.join(dir, 'usr', 'bin', 'true'));
  fs.linkSync(path.join(dir, 'usr', 'bin', 'true'), path.join(dir, 'usr', 'bin', 'true-again'));
  paddedElf(path.join(dir, 'usr', 'bin', 'elf-just-under-1mib'), SPARSE_MIN - 1);
  paddedElf(path.join(dir, 'usr', 'bin', 'elf-exactly-1mib'), SPARSE_MIN);
  fs.copyFileSync(LARGE_ELF as string, path.join(dir, 'usr', 'lib', path.basename(LARGE_ELF as string)));
  if (LIBC) fs.copyFileSync(LIBC, path.join(dir, 'usr', 'lib', 'libc.so.6'));
  const noise = randomBytes(8 * MiB);
  noise[0] = 0; // never an ELF magic by chance
  put('usr/share/noise.bin', noise);
  whiteout(dir, '/etc/motd');
  opaque(dir, '/var/cache');
  return dir;
}

describe('readLayerAt agrees with the streaming reader and with GNU tar', { skip: skipHost }, () => {
  for (const format of ['pax', 'gnu'] as const) {
    test(`${format} format: long names, long link targets, hard links, whiteouts, kept texts, small, 1 MiB and large ELF files, a large non-ELF body`, async () => {
      const tar = path.join(work, `parity-${format}.tar`);
      packTar(parityDir(), tar, format);
      // The tar does use the records under test: GNU long-name records, or pax extended headers.
      const raw = fs.readFileSync(tar, 'latin1');
      assert.ok(format === 'gnu' ? raw.includes('././@LongLink') : raw.includes('PaxHeaders'), `${format} tar without its long-name records`);
      const streamed = await readStreamed(tar);
      const at = await readAt(tar);
      assert.deepEqual(at, streamed);
      assert.deepEqual(await readAtInside(tar), streamed, 'the same tar at an odd offset inside a larger file');
      // Not vacuous: the tar's entries are all there, and the ELF files were analysed.
      assert.equal(at.bytes, fs.statSync(tar).size);
      assert.equal(at.elfFiles, LIBC ? 5 : 4, 'true (true-again is a link), the two padded ELF files, the large one, libc');
      const node = (p: string) => at.ops.find((o) => o.op === 'add' && o.path === p);
      assert.deepEqual(node('/lnk'), { op: 'add', path: '/lnk', node: { kind: 'symlink', layer: 0, target: fs.readlinkSync(path.join(parityDir(), 'lnk')) } });
      assert.deepEqual(node('/z-hardlink-to-longer'), { op: 'add', path: '/z-hardlink-to-longer', node: { kind: 'hardlink', layer: 0, target: `/${LONGER}` } });
      assert.deepEqual(node('/usr/bin/true-again'), { op: 'add', path: '/usr/bin/true-again', node: { kind: 'hardlink', layer: 0, target: '/usr/bin/true' } });
      assert.ok(at.ops.some((o) => o.op === 'whiteout' && o.path === '/etc/motd'));
      assert.ok(at.ops.some((o) => o.op === 'opaque' && o.dir === '/var/cache'));
      const osRelease = node('/etc/os-release');
      assert.equal(osRelease?.op === 'add' && osRelease.node.kind === 'file' ? osRelease.node.text : undefined, fs.readFileSync(path.join(parityDir(), 'etc', 'os-release'), 'utf8'));
      const noise = node('/usr/share/noise.bin');
      assert.deepEqual(noise?.op === 'add' ? noise.node : undefined, { kind: 'file', layer: 0, size: 8 * MiB });
      for (const p of ['/usr/bin/true', '/usr/bin/elf-just-under-1mib', '/usr/bin/elf-exactly-1mib', `/usr/lib/${path.basename(LARGE_ELF as string)}`]) {
        const n = node(p);
        assert.equal(n?.op === 'add' && n.node.kind === 'file' ? n.node.report?.path : undefined, p, `${p} analysed`);
      }
      // GNU tar, the independent oracle, lists the same entries in the same order.
      assert.deepEqual(at.ops.map(opEntry), gnuTarList(tar));
      assert.ok(at.ops.some((o) => o.op === 'add' && o.path === `/${LONGER}`));
    });
  }

  test('an ELF file over the per-file limit: the same FILE_TOO_LARGE problem from both readers', async () => {
    const tar = path.join(work, 'parity-pax.tar');
    if (!fs.existsSync(tar)) packTar(parityDir(), tar, 'pax');
    const limits = { ...LIMITS, maxFileBytes: SPARSE_MIN };
    const at = await readAt(tar, limits);
    assert.deepEqual(at, await readStreamed(tar, limits));
    const refused = at.problems.filter((p) => p.code === 'FILE_TOO_LARGE').map((p) => p.path).sort();
    assert.deepEqual(refused, [...(LIBC ? ['/usr/lib/libc.so.6'] : []), `/usr/lib/${path.basename(LARGE_ELF as string)}`].sort());
    assert.equal(at.elfFiles, 3, 'true and both padded ELF files (1 MiB is at the limit, not over it)');
  });

  test('malformed ELF files of 1 MiB and more (hostile section tables, cut short): the same reports from both readers', async () => {
    const good = fs.readFileSync(LARGE_ELF as string);
    const shoff = Number(good.readBigUInt64LE(0x28));
    const shnum = good.readUInt16LE(0x3c);
    /** A copy with every section header (but the null one) changed by `f`. */
    const eachSection = (f: (b: Buffer, at: number) => void) => {
      const b = Buffer.from(good);
      for (let i = 1; i < shnum; i++) f(b, shoff + i * 64);
      return b;
    };
    const variants: Record<string, Buffer> = {
      'cut-short': good.subarray(0, Math.max(SPARSE_MIN, Math.floor(shoff / 2))),
      'shoff-past-end': (() => { const b = Buffer.from(good); b.writeBigUInt64LE(BigInt(good.length + 4096), 0x28); return b; })(),
      'shnum-65535': (() => { const b = Buffer.from(good); b.writeUInt16LE(0xffff, 0x3c); return b; })(),
      'sh-size-huge': eachSection((b, at) => b.writeBigUInt64LE(0xfffffffffff0n, at + 0x20)),
      'sh-offset-huge': eachSection((b, at) => b.writeBigUInt64LE(0x7ffffffffff0n, at + 0x18)),
      'sections-overlapping': eachSection((b, at) => b.writeBigUInt64LE(4096n, at + 0x18)),
      'magic-then-zeros': Buffer.concat([Buffer.from('\x7fELF', 'latin1'), Buffer.alloc(SPARSE_MIN)]),
    };
    const dir = path.join(work, 'malformed-elf');
    fs.mkdirSync(dir, { recursive: true });
    for (const [name, bytes] of Object.entries(variants)) fs.writeFileSync(path.join(dir, name), bytes);
    const tar = path.join(work, 'malformed-elf.tar');
    packTar(dir, tar);
    const at = await readAt(tar);
    assert.deepEqual(at, await readStreamed(tar));
    const errors = at.ops.flatMap((o) => (o.op === 'add' && o.node.kind === 'file' && o.node.report?.error ? [o.path] : []));
    assert.ok(errors.length >= 5, `coded ELF errors for ${errors.join(' ')}`);
  });

  /** A tar with one more entry after its end-of-archive marker (as two tars concatenated), and what GNU tar lists. */
  function concatenated(): { tar: string; listed: string[] } {
    const first = path.join(work, 'concat-a');
    fs.mkdirSync(first, { recursive: true });
    fs.writeFileSync(path.join(first, 'seen'), 'before the end marker\n');
    const tar = path.join(work, 'concat.tar');
    packTar(first, tar);
    fs.appendFileSync(tar, Buffer.concat([tarEntry({ name: './hidden', type: 'file' }, 'after the end marker\n'), Buffer.alloc(1024)]));
    const listed = gnuTarList(tar);
    assert.deepEqual(listed, ['/', '/seen']);
    return { tar, listed };
  }

  test('two tars concatenated (entries after the end-of-archive marker): readLayerAt stops where GNU tar stops', async () => {
    const { tar, listed } = concatenated();
    assert.deepEqual((await readAt(tar)).ops.map(opEntry), listed);
  });

  test('two tars concatenated: the streaming reader stops there too (tar-stream alone would read on)', async () => {
    const { tar, listed } = concatenated();
    assert.deepEqual((await readStreamed(tar)).ops.map(opEntry), listed, 'readLayer reads past the end-of-archive marker');
  });

  test('the stream\'s end guard under chunks of every size: headers, long-name and pax records cut anywhere give the same result as by position', async () => {
    const { tar: concat } = concatenated();
    const pax = path.join(work, 'guard-pax.tar');
    packTar(parityDir(), pax, 'pax');
    const gnu = path.join(work, 'guard-gnu.tar');
    packTar(parityDir(), gnu, 'gnu');
    for (const tar of [concat, pax, gnu]) {
      const bytes = fs.readFileSync(tar);
      const expected = await readAt(tar);
      // Chunks of random sizes up to 1 byte (the small tar only), 97, 511, 513 bytes, 4 and 64 KiB
      // (seeded: reproducible): every header and record is cut somewhere in some round.
      let seed = 7;
      const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      for (const most of [...(bytes.length < 1024 * 1024 ? [1] : []), 97, 511, 513, 4096, 65536]) {
        const chunks: Buffer[] = [];
        for (let at = 0; at < bytes.length; ) {
          const n = 1 + Math.floor(rand() * most);
          chunks.push(bytes.subarray(at, at + n));
          at += n;
        }
        const got = await readLayer(Readable.from(chunks), 'layer', LIMITS);
        assert.deepEqual(got, expected, `${path.basename(tar)} in chunks of up to ${most} bytes`);
      }
    }
  });

  test('an ELF file stored at a path whose text the report keeps (/etc/ld.so.conf.d/x): both readers treat it alike', async () => {
    const dir = path.join(work, 'elf-as-text');
    fs.mkdirSync(path.join(dir, 'etc', 'ld.so.conf.d'), { recursive: true });
    fs.copyFileSync(SMALL_ELF, path.join(dir, 'etc', 'ld.so.conf.d', 'x'));
    const tar = path.join(work, 'elf-as-text.tar');
    packTar(dir, tar);
    const streamed = await readStreamed(tar);
    const at = await readAt(tar);
    assert.equal(at.files, 1);
    /** What each reader made of the file: analysed (a report) or kept (a text). */
    const kept = (r: LayerResult) => r.ops.flatMap((o) => (o.op === 'add' && o.node.kind === 'file' ? [{ path: o.path, report: o.node.report !== undefined, text: o.node.text !== undefined }] : []));
    assert.deepEqual(kept(at), kept(streamed), 'one reader analyses the ELF file, the other keeps its bytes as text');
    assert.deepEqual(at, streamed);
  });
});

describe('bytes read, as the kernel counts them', { skip: skipHost || skipIo }, () => {
  test('a layer of one 64 MiB non-ELF file and a small ELF file: under 4 MiB read', async (t) => {
    const dir = path.join(work, 'big-non-elf');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'big.bin'), '');
    fs.truncateSync(path.join(dir, 'big.bin'), 64 * MiB);
    fs.copyFileSync(SMALL_ELF, path.join(dir, 'true'));
    const tar = path.join(work, 'big-non-elf.tar');
    packTar(dir, tar);
    await readAt(tar); // warm: whatever the first analysis loads is not counted below
    const r0 = rchar();
    const r = await readAt(tar);
    const read = rchar() - r0;
    assert.equal(r.files, 2);
    assert.equal(r.elfFiles, 1);
    t.diagnostic(`rchar: ${read} bytes for a ${fs.statSync(tar).size}-byte layer`);
    assert.ok(read < 4 * MiB, `${read} bytes read of a ${fs.statSync(tar).size}-byte layer`);
    // The streaming reader, for contrast, reads it all: the counter does see reads.
    const s0 = rchar();
    await readStreamed(tar);
    assert.ok(rchar() - s0 >= 64 * MiB, 'rchar counts the streamed read');
  });

  for (const [label, elf] of [['a large ELF library (sparse analysis kept)', LARGE_ELF], ['libc (sparse read, then its holes filled)', LIBC]] as const) {
    test(`${label}: read once, at most its size + 4 MiB`, { skip: !elf && 'not on this host' }, async (t) => {
      const dir = path.join(work, `one-${path.basename(elf as string)}`);
      fs.mkdirSync(dir, { recursive: true });
      fs.copyFileSync(elf as string, path.join(dir, path.basename(elf as string)));
      const tar = path.join(work, `${path.basename(dir)}.tar`);
      packTar(dir, tar);
      const size = fs.statSync(elf as string).size;
      await readAt(tar);
      const r0 = rchar();
      const r = await readAt(tar);
      const read = rchar() - r0;
      assert.equal(r.elfFiles, 1);
      t.diagnostic(`rchar: ${read} bytes for ${elf} (${size} bytes)`);
      assert.ok(read <= size + 4 * MiB, `${read} bytes read for a ${size}-byte ELF file`);
    });
  }
});

describe('bytes read, as the kernel counts them: large files whose bodies are skipped or kept whole', { skip: skipHost || skipIo }, () => {
  test('a large ELF file whose sparse analysis is not kept (libicudata, data only): read once, at most its size + 4 MiB', { skip: !ICUDATA && `no libicudata.so under ${LIBDIR}` }, async (t) => {
    const elf = ICUDATA as string;
    const dir = path.join(work, 'one-icudata');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(elf, path.join(dir, path.basename(elf)));
    const tar = path.join(work, 'one-icudata.tar');
    packTar(dir, tar);
    const size = fs.statSync(elf).size;
    await readAt(tar);
    const r0 = rchar();
    const r = await readAt(tar);
    const read = rchar() - r0;
    t.diagnostic(`rchar: ${read} bytes for ${elf} (${size} bytes)`);
    assert.equal(r.elfFiles, 1);
    assert.ok(read <= size + 4 * MiB, `${read} bytes read for a ${size}-byte ELF file: its sections streamed by the sparse read, then read again for the whole-file analysis?`);
  });

  test('a layer of 24 non-ELF files of 4 MiB each: their bodies are not read (under 8 MiB read)', async (t) => {
    const dir = path.join(work, 'many-big-non-elf');
    fs.mkdirSync(dir, { recursive: true });
    for (let i = 0; i < 24; i++) {
      const f = path.join(dir, `blob-${String(i).padStart(2, '0')}.bin`);
      fs.writeFileSync(f, '');
      fs.truncateSync(f, 4 * MiB);
    }
    const tar = path.join(work, 'many-big-non-elf.tar');
    packTar(dir, tar);
    await readAt(tar);
    const r0 = rchar();
    const r = await readAt(tar);
    const read = rchar() - r0;
    t.diagnostic(`rchar: ${read} bytes for a ${fs.statSync(tar).size}-byte layer of 24 × 4 MiB`);
    assert.equal(r.files, 24);
    assert.ok(read < 8 * MiB, `${read} bytes read: a header after a skipped body pulls the next body into the window?`);
  });
});

describe('broken and hostile plain layers on the positional path', { skip: skipHost }, () => {
  /** The pax parity tar and where GNU tar says each entry's header is. */
  function parityTar(): { tar: string; bytes: Buffer; headers: Map<string, number> } {
    const tar = path.join(work, 'parity-pax.tar');
    if (!fs.existsSync(tar)) packTar(parityDir(), tar, 'pax');
    return { tar, bytes: fs.readFileSync(tar), headers: gnuTarHeaders(tar) };
  }

  async function bothFail(tar: string, code: string): Promise<void> {
    assert.equal((await rejection(readAt(tar), `readLayerAt accepted ${path.basename(tar)}`)).code, code, 'readLayerAt');
    assert.equal((await rejection(readStreamed(tar), `readLayer accepted ${path.basename(tar)}`)).code, code, 'readLayer');
  }

  test('cut in the middle of a body (a small one, a large one, the helper\'s truncated tar): IMAGE_BAD_LAYER', async () => {
    const { bytes, headers } = parityTar();
    for (const [name, into] of [['/usr/bin/true', 1000], ['/usr/share/noise.bin', 4 * MiB], ['/usr/bin/elf-exactly-1mib', SPARSE_MIN - 10]] as const) {
      const h = headers.get(name);
      assert.ok(h !== undefined, `${name} in tar -tR`);
      const cut = path.join(work, `cut-body-${path.basename(name)}.tar`);
      fs.writeFileSync(cut, bytes.subarray(0, h + 512 + into));
      await bothFail(cut, 'IMAGE_BAD_LAYER');
    }
    const t = path.join(work, 'truncated-data.tar');
    truncatedTar(t, 'data');
    await bothFail(t, 'IMAGE_BAD_LAYER');
  });

  test('cut in the padding after the last body (GNU tar: "Unexpected EOF in archive"): IMAGE_BAD_LAYER', async () => {
    const whole = Buffer.concat([tarEntry({ name: './dir/', type: 'dir' }), tarEntry({ name: './dir/last', type: 'file' }, 'nine byte')]);
    const t = path.join(work, 'cut-padding.tar');
    fs.writeFileSync(t, whole.subarray(0, whole.length - 512 + 9)); // the body whole, its padding and the end blocks gone
    const gnu = spawnSync('tar', ['-tf', t], { encoding: 'utf8' });
    assert.notEqual(gnu.status, 0, 'GNU tar refuses it');
    assert.match(gnu.stderr, /Unexpected EOF/);
    assert.equal((await rejection(readStreamed(t))).code, 'IMAGE_BAD_LAYER', 'readLayer');
    assert.equal((await rejection(readAt(t), 'readLayerAt accepts a tar cut inside the padding of its last entry')).code, 'IMAGE_BAD_LAYER');
  });

  test('cut in the middle of a header: IMAGE_BAD_LAYER', async () => {
    const { bytes, headers } = parityTar();
    const h = headers.get('/usr/bin/true') as number;
    const cut = path.join(work, 'cut-header.tar');
    fs.writeFileSync(cut, bytes.subarray(0, h + 200));
    await bothFail(cut, 'IMAGE_BAD_LAYER');
    const t = path.join(work, 'truncated-header.tar');
    truncatedTar(t, 'header');
    await bothFail(t, 'IMAGE_BAD_LAYER');
  });

  test('300 random corruptions of a small layer (seeded): both readers succeed alike or both fail with a coded error', async () => {
    const dir = path.join(work, 'fuzz-layer');
    fs.mkdirSync(path.join(dir, 'usr', 'bin'), { recursive: true });
    fs.copyFileSync(SMALL_ELF, path.join(dir, 'usr', 'bin', 'true'));
    fs.symlinkSync('true', path.join(dir, 'usr', 'bin', 'alias'));
    fs.writeFileSync(path.join(dir, 'os-release'), 'ID=fuzz\n');
    fs.mkdirSync(path.join(dir, 'd'.repeat(120)));
    const tar = path.join(work, 'fuzz.tar');
    packTar(dir, tar, 'pax');
    const orig = fs.readFileSync(tar);
    const cur = path.join(work, 'fuzz-cur.tar');
    let seed = 1;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const run = async <T>(f: () => Promise<T>): Promise<{ ok?: T; err?: unknown }> => {
      try {
        return { ok: await f() };
      } catch (err) {
        return { err };
      }
    };
    let failed = 0;
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(orig);
      for (let k = 1 + Math.floor(rand() * 4); k > 0; k--) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      fs.writeFileSync(cur, b);
      const at = await run(() => readAt(cur));
      const streamed = await run(() => readLayer(Readable.from([b]), 'layer', LIMITS));
      for (const r of [at, streamed]) if (r.err) assert.ok(r.err instanceof VsysError, `round ${i}: ${String(r.err)}`);
      assert.equal(at.err === undefined, streamed.err === undefined, `round ${i}: ${String(at.err ?? 'read by position')} | ${String(streamed.err ?? 'streamed')}`);
      if (at.ok) assert.deepEqual(at.ok, streamed.ok, `round ${i}`);
      else failed++;
    }
    assert.ok(failed > 30 && failed < 270, `${failed} of 300 corruptions refused: the corruptions reach headers and bodies both`);
  });

  test('a header whose checksum does not match: IMAGE_BAD_LAYER', async () => {
    const { bytes, headers } = parityTar();
    const h = headers.get('/usr/bin/true') as number;
    const bad = Buffer.from(bytes);
    assert.equal(bad.toString('latin1', h + 257, h + 262), 'ustar', 'a ustar header where tar -tR says');
    bad.write('0000000\0', h + 148, 'latin1');
    const t = path.join(work, 'bad-checksum.tar');
    fs.writeFileSync(t, bad);
    await bothFail(t, 'IMAGE_BAD_LAYER');
    // One changed name byte, checksum left as it was: the same.
    const renamed = Buffer.from(bytes);
    renamed[h] = (renamed[h] as number) ^ 0x20;
    fs.writeFileSync(t, renamed);
    await bothFail(t, 'IMAGE_BAD_LAYER');
  });

  test('a layer of more entries than maxEntries (millions of empty files would each be kept): IMAGE_TOO_LARGE from both readers', async () => {
    const dir = path.join(work, 'many-entries');
    fs.mkdirSync(dir, { recursive: true });
    for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(dir, `f${i}`), '');
    const tar = path.join(work, 'many-entries.tar');
    packTar(dir, tar);
    const limits = { ...LIMITS, maxEntries: 100 };
    assert.equal((await rejection(readAt(tar, limits))).code, 'IMAGE_TOO_LARGE');
    assert.equal((await rejection(readStreamed(tar, limits))).code, 'IMAGE_TOO_LARGE');
    // At the count exactly: read.
    assert.equal((await readAt(tar, { ...LIMITS, maxEntries: 301 })).files, 300);
    assert.equal((await readStreamed(tar, { ...LIMITS, maxEntries: 301 })).files, 300);
  });

  test('a layer larger than maxLayerBytes: IMAGE_TOO_LARGE before anything is read; at the limit exactly it is read', { skip: skipIo }, async (t) => {
    const { tar } = parityTar();
    const size = fs.statSync(tar).size;
    const r0 = rchar();
    const e = await rejection(readAt(tar, { ...LIMITS, maxLayerBytes: size - 1 }));
    const read = rchar() - r0;
    t.diagnostic(`rchar: ${read} bytes before IMAGE_TOO_LARGE`);
    assert.equal(e.code, 'IMAGE_TOO_LARGE');
    assert.ok(read < 64 * 1024, `${read} bytes read before refusing`);
    assert.equal((await readAt(tar, { ...LIMITS, maxLayerBytes: size })).bytes, size);
  });

  test('an entry named ../../etc/evil: an IMAGE_BAD_PATH problem, nothing written, the same as streamed', async () => {
    const t = path.join(work, 'traversal.tar');
    const names = pathTraversalLayer(t);
    const before = ['/etc/evil', '/escape', path.resolve(work, '../../etc/evil')].map((p) => fs.existsSync(p));
    const at = await readAt(t);
    assert.deepEqual(at, await readStreamed(t));
    const bad = at.problems.filter((p) => p.code === 'IMAGE_BAD_PATH').map((p) => p.path);
    assert.deepEqual(bad, ['../../etc/evil', './usr/../../escape', '/hardlink-out']);
    assert.ok(names.includes('../../etc/evil'));
    assert.ok(at.ops.every((o) => (o.op === 'opaque' ? o.dir : o.path).startsWith('/') && !(o.op === 'opaque' ? o.dir : o.path).includes('..')));
    assert.ok(!at.ops.some((o) => o.op === 'add' && o.path.includes('evil')));
    assert.deepEqual(['/etc/evil', '/escape', path.resolve(work, '../../etc/evil')].map((p) => fs.existsSync(p)), before, 'nothing written');
  });
});

describe('archives through scanImageRefs', { skip: skipHost }, () => {
  /** A docker-archive of the parity layer. */
  function archive(): string {
    const a = path.join(work, 'parity-docker.tar');
    if (!fs.existsSync(a)) buildDockerArchive(a, [{ dir: parityDir() }], { repoTag: 'parity:1' });
    return a;
  }

  /** A docker-archive of one small layer, with 64 MiB of random bytes appended by `tar --append` that no manifest names. */
  function junkArchive(): { archive: string; junk: number } {
    const a = path.join(work, 'junk-docker.tar');
    const junk = 64 * MiB;
    if (fs.existsSync(a)) return { archive: a, junk };
    const small = path.join(work, 'small-layer');
    fs.mkdirSync(path.join(small, 'usr', 'bin'), { recursive: true });
    fs.copyFileSync(SMALL_ELF, path.join(small, 'usr', 'bin', 'true'));
    fs.writeFileSync(path.join(small, 'os-release'), 'ID=x\n');
    buildDockerArchive(a, [{ dir: small }], { repoTag: 'junk:1' });
    const junkDir = path.join(work, 'junk');
    fs.mkdirSync(junkDir, { recursive: true });
    fs.writeFileSync(path.join(junkDir, 'junk.bin'), randomBytes(junk));
    execFileSync('tar', ['--append', `--file=${a}`, '-C', junkDir, 'junk.bin']);
    assert.equal(gnuTarList(a).at(-1), '/junk.bin');
    return { archive: a, junk };
  }

  test('progress: each layer of an image reported in order, a plain one with its size, a gzip one without until its end', async () => {
    const a = path.join(work, 'progress-docker.tar');
    buildDockerArchive(a, [{ dir: parityDir() }, { dir: parityDir(), compress: 'gzip' }], { repoTag: 'progress:1' });
    const seen: { ref: string; index: number; layers: number; done: number; total: number | undefined }[] = [];
    const { images, errors } = await scanImageRefs([a], { workers: 0, onProgress: (ref, p) => seen.push({ ref, ...p }) });
    assert.deepEqual(errors, []);
    assert.equal(images[0]?.layers.length, 2);
    assert.ok(seen.every((p) => p.ref === a && p.layers === 2));
    for (const index of [0, 1]) {
      const mine = seen.filter((p) => p.index === index);
      const bytes: number | undefined = images[0]?.layers[index]?.bytes;
      assert.ok(mine.length > 0, `layer ${index} reported`);
      const last = mine.at(-1)!;
      assert.equal(last.done, bytes, 'the last report is the layer\'s whole size');
      assert.equal(last.total, bytes);
      for (let i = 1; i < mine.length; i++) assert.ok(mine[i]!.done >= mine[i - 1]!.done, 'never back');
      if (index === 1) assert.ok(mine.slice(0, -1).every((p) => p.total === undefined), 'a gzip layer\'s size is unknown until its end');
    }
    // Reported layer by layer: every report of layer 0 comes before any of layer 1.
    const lastOf0 = seen.map((p) => p.index).lastIndexOf(0);
    assert.ok(seen.findIndex((p) => p.index === 1) > lastOf0);
  });

  for (const workers of [0, 1]) {
    test(`a blob no manifest names (64 MiB appended with tar --append) is not read (workers: ${workers})`, { skip: skipIo }, async (t) => {
      const { archive: a, junk } = junkArchive();
      await scanImageRefs([a], { workers }); // warm (a worker's start reads its code)
      const r0 = rchar();
      const { images, errors } = await scanImageRefs([a], { workers });
      const read = rchar() - r0;
      t.diagnostic(`rchar: ${read} bytes for a ${fs.statSync(a).size}-byte archive`);
      assert.deepEqual(errors, []);
      assert.equal(images.length, 1);
      assert.equal(images[0]?.elfFiles, 1);
      assert.ok(read < junk / 4, `${read} bytes read of a ${fs.statSync(a).size}-byte archive holding ${junk} bytes of junk`);
    });
  }

  test('worker threads give the same image report as this thread (scanImageRefs workers 1 vs 0)', async () => {
    const a = archive();
    const one = await scanImageRefs([a], { workers: 1 });
    const none = await scanImageRefs([a], { workers: 0 });
    assert.deepEqual(none.errors, []);
    assert.equal(none.images[0]?.layers[0]?.elfFiles, LIBC ? 5 : 4);
    assert.deepEqual(one, none);
  });

  test('readLayerAt with analyseAt on a worker pool (files read by position inside the layer, PoolFile.inner) gives the same result as in this thread', async () => {
    const tar = path.join(work, 'parity-pax.tar');
    if (!fs.existsSync(tar)) packTar(parityDir(), tar, 'pax');
    const pool = createPool(1, LIMITS.maxFileBytes);
    const sent: string[] = [];
    try {
      // One call per file, so the pool's two lanes (this thread, the worker) both get some.
      const analyseAt: LayerLimits['analyseAt'] = (file, entries) => {
        sent.push(...entries.map((e) => e.name));
        return Promise.all(entries.map((e) => pool.analyseFiles([{ path: file, size: e.size, inner: { base: e.base, name: e.name, fd: e.fd } }]).then((r) => r[0]!)));
      };
      // Kept busy (one batch at a time): small ELF files (true, the one just under 1 MiB) are
      // analysed here from the window, except the first while the worker had nothing.
      const busy = await readAt(tar, { ...LIMITS, analyseAt, inflight: 1 });
      const here = await readAt(tar);
      const large = ['elf-exactly-1mib', path.basename(LARGE_ELF as string), ...(LIBC ? ['libc.so.6'] : [])];
      const sentNames = () => sent.map((n) => path.basename(n)).sort();
      for (const n of large) assert.ok(sentNames().includes(n), `${n}: large ELF files always go through analyseAt`);
      assert.deepEqual(busy, here);
      // Never short of room: every ELF file, small ones too, goes to the workers.
      sent.length = 0;
      const pooled = await readAt(tar, { ...LIMITS, analyseAt, inflight: 1000 });
      const elfNames = here.ops.flatMap((o) => (o.op === 'add' && o.node.kind === 'file' && o.node.report ? [path.basename(o.path)] : [])).sort();
      assert.ok(elfNames.includes('true') && elfNames.includes('elf-just-under-1mib'), 'the layer has small ELF files');
      assert.deepEqual(sentNames(), elfNames, 'workers running dry take the small ELF files too');
      assert.deepEqual(pooled, here);
      // The workers read through the descriptor this thread opened (Inner.fd), not the path: a path
      // that names another file by now (here: none at all) changes nothing.
      const fd = fs.openSync(tar, 'r');
      try {
        const gone = await readLayerAt({ fd, path: path.join(work, 'renamed-away.tar'), start: 0, size: fs.fstatSync(fd).size }, 'layer', { ...LIMITS, analyseAt });
        assert.deepEqual(gone, here);
      } finally {
        fs.closeSync(fd);
      }
    } finally {
      await pool.close();
    }
  });

  test('workers with a batch outstanding get no small file: this thread analyses those from its window', async () => {
    // 80 small ELF files (more than a batch of small ones) and a large one.
    const dir = path.join(work, 'many-small');
    if (!fs.existsSync(dir)) {
      fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
      for (let i = 0; i < 80; i++) fs.copyFileSync(SMALL_ELF, path.join(dir, 'bin', `p${String(i).padStart(2, '0')}`));
      fs.copyFileSync(LARGE_ELF as string, path.join(dir, 'bin', 'zz-large'));
    }
    const tar = path.join(work, 'many-small.tar');
    packTar(dir, tar, 'pax');
    const here = await readAt(tar);
    const batches: string[][] = [];
    const held: (() => void)[] = [];
    const analyseAt: LayerLimits['analyseAt'] = (file, entries) => {
      batches.push(entries.map((e) => path.basename(e.name)));
      const answer = entries.map((e) => analyseFile(file, LIMITS.maxFileBytes, e.size, { base: e.base, name: e.name, fd: e.fd }));
      // Held until the walk is long over: the worker stays busy with its one batch.
      return new Promise((r) => held.push(() => r(answer)));
    };
    const release = setInterval(() => held.splice(0).forEach((h) => h()), 300);
    try {
      const r = await readAt(tar, { ...LIMITS, analyseAt, inflight: 1 });
      assert.equal(batches.length, 1, `one batch given, the rest taken here: ${JSON.stringify(batches)}`);
      const first = batches[0] as string[];
      assert.ok(first.length > 0 && first.length < 80 && first.every((n) => /^p\d\d$/.test(n)), `the first batch: small files while the worker had nothing (${first.length})`);
      assert.deepEqual(r, here);
    } finally {
      clearInterval(release);
    }
  });

  test('no worker ready yet: nothing is given to one, and this thread analyses every file (it never waits for a starting worker)', async () => {
    const tar = path.join(work, 'parity-pax.tar');
    if (!fs.existsSync(tar)) packTar(parityDir(), tar, 'pax');
    let asked = 0;
    const analyseAt: LayerLimits['analyseAt'] = async () => assert.fail('a batch was given to a worker that had not said it was ready');
    const r = await readAt(tar, { ...LIMITS, analyseAt, workersReady: () => (asked++, false) });
    assert.ok(asked > 0, 'readiness was asked');
    assert.deepEqual(r, await readAt(tar));
  });

  test('a real pool says its worker is ready once the worker has loaded its code', async () => {
    const pool = createPool(1, LIMITS.maxFileBytes);
    try {
      assert.equal(pool.readyWorkers(), 0, 'not ready the moment it is created');
      const t0 = Date.now();
      while (pool.readyWorkers() === 0 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 5));
      assert.equal(pool.readyWorkers(), 1);
    } finally {
      await pool.close();
    }
    assert.equal(createPool(0, LIMITS.maxFileBytes).readyWorkers(), 0, 'a pool without workers never has one ready');
  });
});

describe('the fast header decoder against tar-stream\'s codec', { skip: skipHost }, () => {
  const codec = createRequire(import.meta.url)(path.join(path.dirname(createRequire(import.meta.url).resolve('tar-stream')), 'headers.js')) as {
    decode(b: Buffer, enc: string, unknown: boolean): { name: string; type: string | null; size: number; linkname: string | null } | null;
  };
  /** The codec's verdict on a block: its four fields, null, or the error it throws. */
  const byCodec = (b: Buffer) => {
    try {
      const h = codec.decode(b, 'utf-8', false);
      return h === null ? null : { name: h.name, type: h.type, size: h.size, linkname: h.linkname };
    } catch (e) {
      return { error: (e as Error).message };
    }
  };
  /** Every 512-byte block of a tar that is a header (walked by the codec's own framing). */
  const headerBlocks = (tar: string): Buffer[] => {
    const bytes = fs.readFileSync(tar);
    const out: Buffer[] = [];
    for (let at = 0; at + 512 <= bytes.length; ) {
      const b = bytes.subarray(at, at + 512);
      const h = codec.decode(b, 'utf-8', true);
      out.push(Buffer.from(b));
      at += 512 + (h && h.type !== 'directory' ? Math.ceil(h.size / 512) * 512 : 0);
    }
    return out;
  };
  const setChecksum = (b: Buffer, style: number) => {
    b.fill(0x20, 148, 156);
    let sum = 0;
    for (const x of b) sum += x;
    const oct = sum.toString(8);
    // GNU tar's form, then older writers': leading spaces, leading zeros with a trailing space.
    const text = style === 0 ? `${oct.padStart(6, '0')}\0 ` : style === 1 ? `${oct.padStart(7, ' ')}\0` : `${oct.padStart(7, '0')} `;
    b.write(text, 148, 'latin1');
  };

  test('every header GNU tar writes (pax, gnu, ustar, v7): the same name, type, size and link as the codec, never a fallback', () => {
    const dir = parityDir();
    let n = 0;
    for (const format of ['pax', 'gnu', 'ustar', 'v7'] as const) {
      const tar = path.join(work, `fast-${format}.tar`);
      spawnSync('tar', ['--create', `--file=${tar}`, '--numeric-owner', '--sort=name', `--format=${format}`, '-C', dir, '.'], { encoding: 'utf8' });
      if (!fs.existsSync(tar)) continue;
      for (const b of headerBlocks(tar)) {
        const want = byCodec(b);
        const got = fastHeader(b);
        if (format === 'v7') {
          // No magic: the codec refuses it as an unknown format, and so the fast path leaves it to the codec.
          if (want !== null) assert.equal(got, undefined);
          continue;
        }
        assert.notEqual(got, undefined, `${format}: ${JSON.stringify(want)} fell back`);
        assert.deepEqual(got, want, format);
        n++;
      }
    }
    assert.ok(n > 40, `${n} headers compared`);
  });

  test('30,000 seeded corruptions of real headers, checksums rewritten three ways: where the fast path answers, the codec gives the same', () => {
    const tar = path.join(work, 'parity-pax.tar');
    if (!fs.existsSync(tar)) packTar(parityDir(), tar, 'pax');
    const base = headerBlocks(tar).filter((b) => byCodec(b) !== null);
    let seed = 99;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const interesting = [0, 99, 100, 124, 125, 130, 135, 136, 148, 155, 156, 157, 257, 262, 263, 264, 345, 346];
    const bytes = [0, 0x20, 0x2f, 0x30, 0x37, 0x38, 0x39, 0x2d, 0x2b, 0x80, 0xff, 0x61, 0x4c, 0x78, 0x35];
    let answered = 0;
    let fellBack = 0;
    for (let k = 0; k < 30_000; k++) {
      const b = Buffer.from(base[k % base.length] as Buffer);
      for (let m = 1 + rand(3); m > 0; m--) {
        const at = rand(2) ? (interesting[rand(interesting.length)] as number) : rand(512);
        b[at] = rand(2) ? (bytes[rand(bytes.length)] as number) : rand(256);
      }
      if (rand(10) !== 0) setChecksum(b, rand(3));
      const got = fastHeader(b);
      if (got === undefined) {
        fellBack++;
        continue;
      }
      answered++;
      assert.deepEqual(got, byCodec(b), `corruption ${k}`);
    }
    assert.ok(answered > 5_000 && fellBack > 1_000, `${answered} answered, ${fellBack} left to the codec`);
  });

  test('a zero block is null; a regular file named with a trailing / is typed as the codec types it; the ustar prefix is joined', () => {
    assert.equal(fastHeader(Buffer.alloc(512)), null);
    for (const [flag, prefix] of [[0x30, ''], [0, ''], [0x30, 'some/prefix']] as const) {
      const b = Buffer.alloc(512);
      b.write('dir/', 0, 'latin1');
      b.write('0000644\0', 100, 'latin1');
      b.write('00000000000\0', 124, 'latin1');
      b[156] = flag;
      b.write('ustar\0' + '00', 257, 'latin1');
      if (prefix) b.write(prefix, 345, 'latin1');
      setChecksum(b, 0);
      const want = byCodec(b);
      assert.deepEqual(fastHeader(b), want);
      // The codec's old-tar rule (such a file is a directory) comes after it has set the type.
      assert.equal((want as { type: string }).type, 'file');
      if (prefix) assert.equal((want as { name: string }).name, 'some/prefix/dir/');
    }
  });
});

describe('the tar window', { skip: skipHost }, () => {
  test('bodies that run past the window are whole and right, and no byte of the tar is read twice', async () => {
    // Files of 100–900 KiB: many run past a window's end (it grows from 64 KiB to 2 MiB).
    const dir = path.join(work, 'straddle');
    fs.mkdirSync(dir, { recursive: true });
    let seed = 7;
    const sizes: number[] = [];
    for (let i = 0; i < 60; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const size = 100 * 1024 + (seed % (800 * 1024));
      sizes.push(size);
      fs.writeFileSync(path.join(dir, `f${String(i).padStart(2, '0')}`), randomBytes(size));
    }
    const tar = path.join(work, 'straddle.tar');
    packTar(dir, tar, 'pax');
    const fd = fs.openSync(tar, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      let window: TarWindow | undefined;
      let seen = 0;
      await walkTar(fd, 0, size, 'layer', (e, w) => {
        window = w;
        if (e.type !== 'file') return;
        const body = w.at(e.dataAt, e.size);
        assert.ok(body.equals(fs.readFileSync(path.join(dir, path.basename(e.name)))), `${e.name}: the body as written`);
        seen++;
      });
      assert.equal(seen, 60);
      assert.ok(window);
      assert.ok(window.read <= size, `${window.read} bytes read into the window for a tar of ${size}`);
      assert.ok(window.read >= sizes.reduce((a, b) => a + b, 0), 'every body was read');
    } finally {
      fs.closeSync(fd);
    }
  });
});

describe('progress and responsiveness', { skip: skipHost }, () => {
  test('a ~300 MB layer of hard links into /usr/lib: onBytes never goes back and ends at the size; the event loop never waits 500 ms', { timeout: 120_000 }, async (t) => {
    const dir = path.join(work, 'usr-lib');
    fs.mkdirSync(dir, { recursive: true });
    const files: string[] = [];
    let total = 0;
    for (const n of fs.readdirSync(LIBDIR).sort()) {
      const p = path.join(LIBDIR, n);
      const st = fs.lstatSync(p);
      if (!st.isFile() || st.size > 32 * MiB) continue; // many entries, so many chances to yield
      files.push(p);
      total += st.size;
      if (total >= 300e6) break;
    }
    if (total < 150e6) return t.skip(`only ${total} bytes of files under ${LIBDIR}`);
    // Hard links (as bench/image.mjs makes them): the layer's content without copying it.
    const cp = spawnSync('cp', ['-al', ...files, dir], { encoding: 'utf8' });
    if (cp.status !== 0) return t.skip(`cp -al: ${cp.stderr.trim()} (another filesystem?)`);
    const tar = path.join(work, 'usr-lib.tar');
    packTar(dir, tar);
    const size = fs.statSync(tar).size;
    const seen: [number, number | undefined][] = [];
    let last = performance.now();
    let maxGap = 0;
    let ticks = 0;
    const tick = setInterval(() => {
      const now = performance.now();
      ticks++;
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }, 5);
    const t0 = performance.now();
    let r: LayerResult;
    try {
      r = await readAt(tar, { ...LIMITS, onBytes: (done, of) => seen.push([done, of]) });
    } finally {
      clearInterval(tick);
    }
    const took = performance.now() - t0;
    maxGap = Math.max(maxGap, performance.now() - last);
    t.diagnostic(`${size} bytes, ${r.files} files, ${r.elfFiles} ELF, ${took.toFixed(0)} ms, ${seen.length} progress reports, longest event-loop wait ${maxGap.toFixed(0)} ms, ${ticks} timer ticks`);
    assert.ok(r.elfFiles > 50);
    // The loop got turns all along, not only once the read was over (a walk that never yields has none).
    assert.ok(ticks >= Math.floor(took / 200), `${ticks} timer ticks in ${took.toFixed(0)} ms`);
    // Progress comes with each turn given (every ~50 ms), and once at the end.
    assert.ok(seen.length >= 1 + Math.floor(took / 200), `${seen.length} progress reports in ${took.toFixed(0)} ms`);
    for (const [i, [done, of]] of seen.entries()) {
      assert.equal(of, size);
      assert.ok(done <= size);
      if (i > 0) assert.ok(done >= (seen[i - 1] as [number, number | undefined])[0], `progress went back at report ${i}`);
    }
    assert.deepEqual(seen.at(-1), [size, size]);
    assert.ok(maxGap < 500, `the event loop waited ${maxGap.toFixed(0)} ms`);
  });
});
