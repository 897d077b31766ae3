// A file's imports packed straight from its string table's bytes (visitSymbolNames + packImportBytes)
// against the objects readSymbols makes for the same entries (readSymbols is itself checked against
// readelf): the same names and versions on real files, and the same coded error, or the same
// result, on thousands of seeded corruptions of the tables they come from.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { VsysError } from '../../src/errors.js';
import { readElf, type ElfFile } from '../../src/elf/read-elf.js';
import { readSymbols, visitSymbolNames } from '../../src/elf/symbols.js';
import { STT } from '../../src/elf/constants.js';
import { packImportBytes, packImports } from '../../src/scan/wire.js';
import { CORPUS } from '../helpers.js';
import type { Symbolic } from '../../src/scan/wire.js';

function isImport(info: number, shndx: number): boolean {
  const type = info & 0xf;
  return shndx === 0 && (type === STT.FUNC || type === STT.NOTYPE || type === STT.GNU_IFUNC);
}

/** The oracle: readSymbols' objects, as analysis used to turn them into imports. */
function viaObjects(elf: ElfFile): string {
  const out: Symbolic[] = [];
  for (const s of readSymbols(elf, '.dynsym', isImport)) {
    if (s.name === '') continue;
    out.push(s.version === undefined ? { name: s.name } : { name: s.name, version: s.version.name });
  }
  return packImports(out);
}

function viaBytes(elf: ElfFile): string {
  return packImportBytes(elf.bytes, (add) => visitSymbolNames(elf, '.dynsym', isImport, add));
}

function outcome(f: () => string): { packed: string } | { code: string; message: string } {
  try {
    return { packed: f() };
  } catch (e) {
    if (!(e instanceof VsysError)) throw e;
    return { code: e.code, message: e.message };
  }
}

function realFiles(): string[] {
  const out: string[] = [];
  for (const dir of ['/usr/bin', '/usr/lib/x86_64-linux-gnu', path.join(CORPUS, 'debian-wheezy-libc-2.13'), path.join(CORPUS, 'rhel6-glibc-2.12-libpthread'), path.join(CORPUS, 'fb-glibc-2.16-libc')]) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir).sort();
    } catch {
      continue;
    }
    for (const n of names) {
      const p = path.join(dir, n);
      try {
        const st = fs.statSync(p);
        if (!st.isFile() || st.size > 64 * 1024 * 1024) continue;
        const fd = fs.openSync(p, 'r');
        const head = Buffer.alloc(4);
        fs.readSync(fd, head, 0, 4, 0);
        fs.closeSync(fd);
        if (head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) out.push(p);
      } catch {
        // unreadable: not part of the comparison
      }
    }
  }
  return out;
}

test('real files: the packed imports are those readSymbols gives, name for name and version for version', () => {
  const files = realFiles();
  assert.ok(files.length > 100, `${files.length} ELF files found`);
  let imports = 0;
  let versioned = 0;
  for (const p of files) {
    let elf: ElfFile;
    try {
      elf = readElf(new Uint8Array(fs.readFileSync(p)), p);
    } catch {
      continue;
    }
    const want = outcome(() => viaObjects(elf));
    assert.deepEqual(outcome(() => viaBytes(elf)), want, p);
    if ('packed' in want) {
      imports += want.packed.split('\0').length >> 1;
      versioned += want.packed.split('\0=').length - 1;
    }
  }
  assert.ok(imports > 10_000 && versioned > 5_000, `${imports} imports, ${versioned} with versions`);
});

const LIBC = path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so');
const HOST_LS = '/usr/bin/ls';

test('3,000 seeded corruptions of .dynsym, its strings and the version tables: the same error, or the same imports', { skip: !fs.existsSync(HOST_LS) && 'no /usr/bin/ls', timeout: 120_000 }, () => {
  // ls imports ~100 versioned functions; libc-2.13 (when the corpus is there) has a huge .dynsym.
  const bases = [HOST_LS, ...(fs.existsSync(LIBC) ? [LIBC] : [])].map((p) => ({ p, bytes: new Uint8Array(fs.readFileSync(p)) }));
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const codes = new Map<string, number>();
  for (let k = 0; k < 3000; k++) {
    const { p, bytes } = bases[k % bases.length] as (typeof bases)[number];
    const elf0 = readElf(bytes, p);
    const targets = elf0.sections.filter((s) => ['.dynsym', '.dynstr', '.gnu.version', '.gnu.version_r', '.gnu.version_d'].includes(s.name) || s.index === 0);
    const copy = bytes.slice();
    // Section headers of these tables too (sizes, links, entsize), now and then.
    const shoff = Number(elf0.header.shoff);
    for (let n = 1 + rand(4); n > 0; n--) {
      const t = targets[rand(targets.length)]!;
      if (rand(5) === 0) copy[shoff + t.index * 64 + rand(64)] = rand(256);
      else if (t.size > 0) copy[t.offset + rand(t.size)] = rand(4) === 0 ? 0 : rand(256);
    }
    let elf: ElfFile;
    try {
      elf = readElf(copy, p);
    } catch {
      continue;
    }
    const want = outcome(() => viaObjects(elf));
    assert.deepEqual(outcome(() => viaBytes(elf)), want, `corruption ${k} of ${p}`);
    const key = 'code' in want ? want.code : 'ok';
    codes.set(key, (codes.get(key) ?? 0) + 1);
  }
  assert.ok((codes.get('ok') ?? 0) > 100, JSON.stringify([...codes]));
  assert.ok(codes.size >= 2, `errors were reached too: ${JSON.stringify([...codes])}`);
});
