// Crafted version tables (issue 23, item 2): records with vd_cnt = 0xffff and vd_next = 20 that all
// walk one long vda_next = 8 chain took N × chain length (6 s and +0.9 GB at 128 KB, heap
// exhaustion at 512 KB). All of a section's chains together now visit at most as many records as
// the section holds; past that, ELF_BAD_VERSIONS. The same for .gnu.version_r. Times and heap
// growth are printed and asserted generously (a shared machine): < 5 s and < 64 MB each.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildElf } from './build-elf.js';
import { readElf } from '../../src/elf/read-elf.js';
import { readVersionDefinitions, readVersionNeeds } from '../../src/elf/versions.js';
import { analyseBytes } from '../../src/scan/analyse-file.js';
import { VsysError } from '../../src/errors.js';

const SHT_STRTAB = 3;
const SHT_GNU_VERDEF = 0x6ffffffd;
const SHT_GNU_VERNEED = 0x6ffffffe;
const KiB = 1024;
const MiB = 1024 * KiB;

/** A string table with one name at offset 1. */
const DYNSTR = Uint8Array.from(Buffer.from('\0GLIBC_2.2.5\0', 'latin1'));

/**
 * A .gnu.version_d of `size` bytes: verdefs (20 bytes, vd_cnt 0xffff, vd_next 20), each pointing
 * at one verdaux chain (8 bytes a link, vda_next 8) at the section's end. Without a bound on the
 * whole walk: verdefs × chain length names (4 MB: 183,000 × 65,535).
 */
function craftedVerdef(size: number): { data: Uint8Array; count: number } {
  const b = Buffer.alloc(size);
  // The chain is as long as vd_cnt lets it be (so it ends where each record's count says), and at
  // most half the section; the verdefs fill the rest.
  const auxStart = size - Math.min(Math.floor(size / 2 / 8), 0xffff) * 8;
  const count = Math.floor(auxStart / 20);
  for (let i = 0; i < count; i++) {
    const at = i * 20;
    b.writeUInt16LE(1, at); // vd_version
    b.writeUInt16LE(0, at + 2); // vd_flags
    b.writeUInt16LE((i + 1) & 0x7fff, at + 4); // vd_ndx
    b.writeUInt16LE(0xffff, at + 6); // vd_cnt
    b.writeUInt32LE(0, at + 8); // vd_hash
    b.writeUInt32LE(auxStart - at, at + 12); // vd_aux
    b.writeUInt32LE(i === count - 1 ? 0 : 20, at + 16); // vd_next
  }
  for (let at = auxStart; at + 8 <= size; at += 8) {
    b.writeUInt32LE(1, at); // vda_name
    b.writeUInt32LE(at + 16 <= size ? 8 : 0, at + 4); // vda_next
  }
  return { data: b, count };
}

/** The same for .gnu.version_r: verneeds (16 bytes, vn_cnt 0xffff, vn_next 16) over one vernaux chain (vna_next 16). */
function craftedVerneed(size: number): { data: Uint8Array; count: number } {
  const b = Buffer.alloc(size);
  const auxStart = size - Math.min(Math.floor(size / 2 / 16), 0xffff) * 16;
  const count = auxStart / 16;
  for (let i = 0; i < count; i++) {
    const at = i * 16;
    b.writeUInt16LE(1, at); // vn_version
    b.writeUInt16LE(0xffff, at + 2); // vn_cnt
    b.writeUInt32LE(1, at + 4); // vn_file
    b.writeUInt32LE(auxStart - at, at + 8); // vn_aux
    b.writeUInt32LE(i === count - 1 ? 0 : 16, at + 12); // vn_next
  }
  for (let at = auxStart; at + 16 <= size; at += 16) {
    b.writeUInt32LE(0, at); // vna_hash
    b.writeUInt16LE(0, at + 4); // vna_flags
    b.writeUInt16LE(2, at + 6); // vna_other
    b.writeUInt32LE(1, at + 8); // vna_name
    b.writeUInt32LE(at + 32 <= size ? 16 : 0, at + 12); // vna_next
  }
  return { data: b, count };
}

function fileWith(type: number, name: string, table: { data: Uint8Array; count: number }): Uint8Array {
  return buildElf({
    cls: 64,
    type: 3,
    sections: [
      { name: '.dynstr', type: SHT_STRTAB, flags: 2n, data: DYNSTR, align: 1 },
      { name, type, flags: 2n, data: table.data, link: '.dynstr', info: table.count, align: 8 },
    ],
  });
}

/** Runs `fn`, printing and returning its time and the heap's growth across it. */
function measured(label: string, fn: () => void): { ms: number; heapMB: number } {
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  fn();
  const ms = performance.now() - t0;
  const heapMB = (process.memoryUsage().heapUsed - heap0) / MiB;
  process.stdout.write(`# ${label}: ${ms.toFixed(1)} ms, heap +${heapMB.toFixed(1)} MB\n`);
  return { ms, heapMB };
}

const isBadVersions = (e: unknown) => e instanceof VsysError && e.code === 'ELF_BAD_VERSIONS' && /visit more records than/.test(e.message);

for (const size of [128 * KiB, 512 * KiB, 4 * MiB]) {
  const label = size >= MiB ? `${size / MiB} MB` : `${size / KiB} KB`;

  test(`a crafted ${label} .gnu.version_d (vd_cnt 0xffff, one shared vda_next chain): ELF_BAD_VERSIONS, in under a second and a few MB`, () => {
    const bytes = fileWith(SHT_GNU_VERDEF, '.gnu.version_d', craftedVerdef(size));
    const { ms, heapMB } = measured(`verdef ${label}`, () => {
      assert.throws(() => readVersionDefinitions(readElf(bytes, 'crafted')), isBadVersions);
    });
    assert.ok(ms < 5000, `${ms} ms`);
    assert.ok(heapMB < 64, `${heapMB} MB`);
    // The scan goes on: the file's identity says so, and nothing else is lost.
    const r = analyseBytes(bytes, 'crafted');
    assert.equal(r?.error, undefined);
    assert.ok(r?.identity?.warnings.includes('version definitions: ELF_BAD_VERSIONS'), JSON.stringify(r?.identity?.warnings));
  });

  test(`a crafted ${label} .gnu.version_r (vn_cnt 0xffff, one shared vna_next chain): ELF_BAD_VERSIONS, in under a second and a few MB`, () => {
    const bytes = fileWith(SHT_GNU_VERNEED, '.gnu.version_r', craftedVerneed(size));
    const { ms, heapMB } = measured(`verneed ${label}`, () => {
      assert.throws(() => readVersionNeeds(readElf(bytes, 'crafted')), isBadVersions);
    });
    assert.ok(ms < 5000, `${ms} ms`);
    assert.ok(heapMB < 64, `${heapMB} MB`);
  });
}

test('a table whose records each hold their own chain reads whole, up to the bound: one verdef with a chain that fills the section', () => {
  // 20 bytes of verdef then (size - 20) / 8 verdaux: exactly the records the section holds, all read.
  const size = 64 * KiB;
  const b = Buffer.alloc(size);
  const links = Math.floor((size - 24) / 8);
  b.writeUInt16LE(1, 0);
  b.writeUInt16LE(1, 4);
  b.writeUInt16LE(links, 6);
  b.writeUInt32LE(24, 12); // vd_aux
  for (let i = 0; i < links; i++) {
    const at = 24 + i * 8;
    b.writeUInt32LE(1, at);
    b.writeUInt32LE(i === links - 1 ? 0 : 8, at + 4);
  }
  const defs = readVersionDefinitions(readElf(fileWith(SHT_GNU_VERDEF, '.gnu.version_d', { data: b, count: 1 }), 'one chain'));
  assert.equal(defs.length, 1);
  assert.equal(defs[0]?.name, 'GLIBC_2.2.5');
  assert.equal(defs[0]?.parents.length, links - 1);
});
