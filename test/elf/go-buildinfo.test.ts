// Go version detection: a real Go 1.12.9 binary (no .go.buildinfo: the runtime.buildVersion path),
// and hand-built files with the pointer (go 1.13–1.17) and inline varint (go ≥ 1.18) blobs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { readElf } from '../../src/elf/read-elf.js';
import { isGoBinary, readGoBuildInfo } from '../../src/elf/go-buildinfo.js';
import { SHT, PT } from '../../src/elf/constants.js';
import { esbuild002 } from '../support/real-files.js';
import { buildElf, concat, le, uleb, type BuildSection } from './build-elf.js';

const ALLOC = 2n;
const WRITE = 1n;
const MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');
// The 16-byte sentinels Go puts around modinfo (cmd/go/internal/modload).
const START = Buffer.from('3077af0c9274080241e1c107e6d618e6', 'hex');
const END = Buffer.from('f932433186182072008242104116d8f2', 'hex');
const MOD = 'path\texample.com/tool\nmod\texample.com/tool\t(devel)\t\n';

test('esbuild 0.0.2 (Go 1.12.9, no .go.buildinfo): version from runtime.buildVersion', async (t) => {
  const file = await esbuild002();
  if (!file) return t.skip('npm pack esbuild-linux-64@0.0.2 failed (no npm or no registry access)');
  const elf = readElf(new Uint8Array(readFileSync(file)), file);
  assert.equal(elf.sections.some((s) => s.name === '.go.buildinfo'), false);
  assert.equal(isGoBinary(elf), true);
  assert.deepEqual(readGoBuildInfo(elf), { version: 'go1.12.9', source: 'symbol' });
  // Without .symtab the last resort still finds the version in .rodata.
  const stripped = { ...elf, sections: elf.sections.map((s) => (s.type === SHT.SYMTAB ? { ...s, type: SHT.PROGBITS, name: '.nosymtab' } : s)) };
  assert.deepEqual(readGoBuildInfo(stripped), { version: 'go1.12.9', source: 'rodata' });
});

function goFile(cls: 32 | 64, blob: 'pointer' | 'inline', noSectionHeaders = false): Uint8Array {
  const ptr = cls === 64 ? 8 : 4;
  const version = Buffer.from('go1.16.15');
  const mod = Buffer.concat([START, Buffer.from(MOD), END]);
  const sections: BuildSection[] = [
    { name: '.text', type: SHT.PROGBITS, flags: ALLOC | 4n, data: new Uint8Array(16).fill(0xc3) },
    { name: '.rodata', type: SHT.PROGBITS, flags: ALLOC, data: concat(version, mod) },
    {
      name: '.data', type: SHT.PROGBITS, flags: ALLOC | WRITE, align: 16,
      // Two Go string headers {data, len}: the version and modinfo.
      data: (a) => concat(le(ptr, a('.rodata')), le(ptr, version.length), le(ptr, a('.rodata') + BigInt(version.length)), le(ptr, mod.length)),
    },
    {
      name: '.go.buildinfo', type: SHT.PROGBITS, flags: ALLOC | WRITE, align: 16,
      data: (a) => blob === 'pointer'
        ? concat(MAGIC, le(1, ptr), le(1, 0), le(ptr, a('.data')), le(ptr, a('.data') + BigInt(2 * ptr)), new Uint8Array(16 - 2 * ptr))
        : concat(MAGIC, le(1, ptr), le(1, 2), new Uint8Array(16), uleb(version.length), version, uleb(mod.length), mod),
    },
  ];
  return buildElf({
    cls, sections, noSectionHeaders,
    segments: [
      { type: PT.LOAD, flags: 5, from: '.text', to: '.rodata' },
      { type: PT.LOAD, flags: 6, from: '.data', to: '.go.buildinfo' },
    ],
  });
}

for (const cls of [64, 32] as const) {
  for (const blob of ['pointer', 'inline'] as const) {
    test(`ELF${cls} .go.buildinfo, ${blob} format: version, module path and modinfo`, () => {
      const elf = readElf(goFile(cls, blob), `go-${cls}-${blob}`);
      assert.equal(isGoBinary(elf), true);
      assert.deepEqual(readGoBuildInfo(elf), { version: 'go1.16.15', source: 'buildinfo', path: 'example.com/tool', modinfo: MOD });
    });
  }
  test(`ELF${cls} without section headers: the blob is found by its magic in the data segment`, () => {
    const elf = readElf(goFile(cls, 'inline', true), `go-${cls}-nosh`);
    assert.equal(elf.sections.length, 0);
    assert.equal(isGoBinary(elf), false, 'no sections and no Go note: nothing says Go');
    assert.equal(readGoBuildInfo(elf)?.version, 'go1.16.15');
  });
}

test('a blob whose version pointer leads nowhere is a coded error, not a crash', () => {
  const bytes = goFile(64, 'pointer');
  const elf = readElf(bytes, 'go-bad');
  const at = elf.sections.find((s) => s.name === '.go.buildinfo')!.offset;
  new DataView(bytes.buffer).setBigUint64(at + 16, 0xdead0000n, true);
  assert.throws(() => readGoBuildInfo(readElf(bytes, 'go-bad')), { code: 'ELF_MALFORMED' });
});

test('an inline string longer than the blob is a coded error', () => {
  const bytes = goFile(64, 'inline');
  const at = readElf(bytes, 'x').sections.find((s) => s.name === '.go.buildinfo')!.offset;
  bytes[at + 32] = 0x7f; // version length 127: past the blob's end
  const mod = readElf(bytes, 'x');
  assert.throws(() => readGoBuildInfo(mod), { code: 'ELF_MALFORMED' });
});

test('a C program is not Go and has no Go version', { skip: !existsSync('/usr/bin/ls') && 'no /usr/bin/ls here' }, () => {
  const elf = readElf(new Uint8Array(readFileSync('/usr/bin/ls')), '/usr/bin/ls');
  assert.equal(isGoBinary(elf), false);
  assert.equal(readGoBuildInfo(elf), undefined);
});
