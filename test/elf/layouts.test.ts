// The struct tables: sizes and the offsets that differ between the classes, as the gABI gives them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DYN32, DYN64, EHDR32, EHDR64, GNU_HASH, NHDR, SYSV_HASH, PHDR32, PHDR64, SHDR32, SHDR64, SYM32, SYM64, VERDAUX, VERDEF, VERNAUX, VERNEED } from '../../src/elf/layouts.js';

test('ELF64 structure sizes: Ehdr 64, Phdr 56, Shdr 64, Sym 24, Dyn 16', () => {
  assert.deepEqual([EHDR64.size, PHDR64.size, SHDR64.size, SYM64.size, DYN64.size], [64, 56, 64, 24, 16]);
});

test('ELF32 structure sizes: Ehdr 52, Phdr 32, Shdr 40, Sym 16, Dyn 8', () => {
  assert.deepEqual([EHDR32.size, PHDR32.size, SHDR32.size, SYM32.size, DYN32.size], [52, 32, 40, 16, 8]);
});

test('versioning and note structures: Verdef 20, Verdaux 8, Verneed 16, Vernaux 16, Nhdr 12', () => {
  assert.deepEqual([VERDEF.size, VERDAUX.size, VERNEED.size, VERNAUX.size, NHDR.size], [20, 8, 16, 16, 12]);
});

test('hash table headers: DT_HASH 8 bytes (nchain at 4), DT_GNU_HASH 16 (bloom_size at 8)', () => {
  assert.deepEqual([SYSV_HASH.size, SYSV_HASH.f.nchain.offset, GNU_HASH.size, GNU_HASH.f.symoffset.offset, GNU_HASH.f.bloom_size.offset], [8, 4, 16, 4, 8]);
});

test('field offsets where the two classes differ', () => {
  assert.equal(EHDR64.f.e_shoff.offset, 40);
  assert.equal(EHDR32.f.e_shoff.offset, 32);
  assert.equal(EHDR64.f.e_shstrndx.offset, 62);
  assert.equal(EHDR32.f.e_shstrndx.offset, 50);
  // p_flags moves from the end (ELF32) to right after p_type (ELF64).
  assert.equal(PHDR32.f.p_flags.offset, 24);
  assert.equal(PHDR64.f.p_flags.offset, 4);
  assert.equal(PHDR64.f.p_offset.offset, 8);
  // st_value/st_size come before st_info in ELF32, after st_shndx in ELF64.
  assert.equal(SYM32.f.st_info.offset, 12);
  assert.equal(SYM64.f.st_info.offset, 4);
  assert.equal(SYM64.f.st_value.offset, 8);
  assert.equal(SHDR64.f.sh_entsize.offset, 56);
  assert.equal(SHDR32.f.sh_entsize.offset, 36);
  assert.equal(VERNAUX.f.vna_other.offset, 6);
  assert.equal(VERNEED.f.vn_next.offset, 12);
});
