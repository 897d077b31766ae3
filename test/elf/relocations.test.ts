// The x86-64 relocation reader against GNU readelf -rW on real files: every entry's offset, type,
// symbol index and addend (RELATIVE, GLOB_DAT, JUMP_SLOT, IRELATIVE…), in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { readElf } from '../../src/elf/read-elf.js';
import { visitRelocations } from '../../src/elf/relocations.js';
import { RELA64 } from '../../src/elf/layouts.js';
import { R_X86_64 } from '../../src/elf/constants.js';
import { CORPUS, hasCommand } from '../helpers.js';

test('Elf64_Rela is 24 bytes: r_offset, r_info, r_addend', () => {
  assert.equal(RELA64.size, 24);
  assert.deepEqual([RELA64.f.r_offset.offset, RELA64.f.r_info.offset, RELA64.f.r_addend.offset], [0, 8, 16]);
});

/** readelf's entries: [offset, type number, symbol index, addend]. Addends it prints as "+ x"/"- x" after a symbol, or alone. */
function readelfRelocations(file: string): [number, number, number, number][] {
  const r = spawnSync('readelf', ['-rW', file], { encoding: 'utf8', maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, r.stderr);
  const out: [number, number, number, number][] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^([0-9a-f]{16})\s+([0-9a-f]{16})\s+R_X86_64_\w+\s+(.*)$/.exec(line);
    if (!m) continue;
    const info = BigInt(`0x${m[2]}`);
    const rest = (m[3] as string).trim();
    const signed = /([+-])\s*([0-9a-f]+)$/.exec(rest);
    const addend = signed ? (signed[1] === '-' ? -1 : 1) * parseInt(signed[2] as string, 16) : parseInt(rest || '0', 16);
    out.push([parseInt(m[1] as string, 16), Number(info & 0xffffffffn), Number(info >> 32n), addend]);
  }
  return out;
}

const FILES = [
  path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so'),
  path.join(CORPUS, 'fb-glibc-2.16-libc', 'libc.so.6'),
  path.join(CORPUS, 'gentoo-initfs-2011', 'bin', 'mdadm'),
  '/lib/x86_64-linux-gnu/libc.so.6',
  '/usr/bin/ls',
];

for (const file of FILES) {
  test(`relocations as readelf -rW lists them: ${file}`, { skip: (!hasCommand('readelf') && 'readelf not installed') || (!fs.existsSync(file) && `${file} not here`) }, () => {
    const got: [number, number, number, number][] = [];
    visitRelocations(readElf(fs.readFileSync(file), file), (offset, type, sym, addend) => got.push([offset, type, sym, addend]));
    const want = readelfRelocations(file);
    assert.ok(want.length > 0, 'readelf lists relocations');
    assert.equal(got.length, want.length);
    assert.deepEqual(got, want);
    assert.ok(got.some(([, type]) => type === R_X86_64.RELATIVE || type === R_X86_64.IRELATIVE || type === R_X86_64.JUMP_SLOT));
  });
}

test('a relocation table past the end of the file is a coded error, not a wild read', () => {
  const file = '/usr/bin/ls';
  const bytes = Buffer.from(fs.readFileSync(file));
  const elf = readElf(bytes, file);
  const rela = elf.sections.find((s) => s.name === '.rela.dyn');
  assert.ok(rela);
  // Keep the headers, cut the file just inside the table: the section header now claims bytes the buffer lacks.
  const cut = readElf(bytes.subarray(0, bytes.length), file);
  (cut.sections.find((s) => s.name === '.rela.dyn') as { size: number }).size = bytes.length;
  assert.throws(() => visitRelocations(cut, () => {}), (e: { code?: string }) => e.code === 'ELF_BAD_OFFSET' || e.code === 'ELF_TRUNCATED');
});
