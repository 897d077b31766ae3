// findUses and regionsOf on their own (not through analyseBytes): the corpus' real files against
// objdump -d (every instruction holding a page address, its text and the call/cmov after it) and
// against the corpus README's hand-checked sites; a gcc-built program whose page words only
// readelf's symbol table can place; a file that is not x86-64; regions against readelf -S.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { findUses, regionsOf, callerOf, dataSymbolAt, type Finding } from '../../src/scan/find-uses.js';
import { buildFunctionIndex, type FunctionIndex } from '../../src/scan/functions.js';
import { readElf, readSymbols, type ElfFile, type ElfSymbol } from '../../src/elf/index.js';
import { CORPUS, hasCommand } from '../helpers.js';
import { buildC, hasGcc } from '../support/fixtures.js';
import { parseSections, readelf } from '../elf/readelf-oracle.js';

const file = (p: string) => path.join(CORPUS, p);
const BUSYBOX = file('busybox-1.15.2-static/busybox');
const LIBC213 = file('debian-wheezy-libc-2.13/libc-2.13.so');
const LIBC216 = file('fb-glibc-2.16-libc/libc.so.6');
const PTHREAD = file('rhel6-glibc-2.12-libpthread/libpthread.so.0');
const CLEAN = file('ctl-busybox-1.22.1-static-glibc2.17/busybox');
const noCorpus = !fs.existsSync(BUSYBOX) && 'corpus not found';
const noObjdump = !hasCommand('objdump') && 'objdump not installed';

function load(p: string, bytes: Uint8Array = fs.readFileSync(p)): { elf: ElfFile; findings: Finding[]; asked: { functions: number; symbols: number } } {
  const elf = readElf(bytes, p, undefined, { sectionsOptional: true });
  const asked = { functions: 0, symbols: 0 };
  let fns: FunctionIndex | undefined;
  const functions = () => {
    asked.functions++;
    return (fns ??= buildFunctionIndex(elf));
  };
  const dataSymbols = (): ElfSymbol[] => {
    asked.symbols++;
    const s = readSymbols(elf, '.symtab');
    return s.length > 0 ? s : readSymbols(elf, '.dynsym');
  };
  return { elf, findings: findUses(elf, functions, dataSymbols), asked };
}

/** objdump -d: every instruction whose operand is an address in the page, by address, its text with runs of spaces as one; and every line by address. */
function objdump(p: string): { page: Map<bigint, string>; all: Map<bigint, string>; label: (a: bigint) => [bigint, string] | undefined } {
  const r = spawnSync('objdump', ['-d', '--no-show-raw-insn', p], { encoding: 'utf8', maxBuffer: 1 << 30, env: { ...process.env, LC_ALL: 'C' } });
  assert.equal(r.status, 0, r.stderr);
  const page = new Map<bigint, string>();
  const all = new Map<bigint, string>();
  const labels: [bigint, string][] = [];
  for (const l of r.stdout.split('\n')) {
    const fn = /^([0-9a-f]+) <(.+)>:$/.exec(l);
    if (fn) labels.push([BigInt(`0x${fn[1]}`), fn[2]!.replace(/@.*$/, '')]);
    const m = /^ *([0-9a-f]+):\t(.*?)\s*(#.*)?$/.exec(l);
    if (!m) continue;
    const text = m[2]!.replace(/\s+/g, ' ');
    const a = BigInt(`0x${m[1]}`);
    all.set(a, text);
    if (/\$0xffffffffff6[0-9a-f]{5},/.test(text)) page.set(a, text);
  }
  const label = (a: bigint) => labels.filter(([s]) => s <= a).at(-1);
  return { page, all, label };
}

const show = (f: Finding) => `${f.kind} ${f.entry} 0x${f.address.toString(16)}`;

for (const [name, p] of [['busybox 1.15.2 static', BUSYBOX], ['libc 2.13', LIBC213], ['libc 2.16', LIBC216], ['libpthread 2.12', PTHREAD], ['busybox 1.22.1 (clean)', CLEAN]] as const) {
  test(`${name}: the code sites are exactly the instructions objdump shows with a page address, with its text and the use after it`, { skip: noCorpus || noObjdump, timeout: 120_000 }, () => {
    const { findings } = load(p);
    const od = objdump(p);
    const code = findings.filter((f) => f.use !== 'data-word');
    assert.deepEqual(code.map((f) => f.address).sort(), [...od.page.keys()].sort(), findings.map(show).join('; '));
    for (const f of code) {
      assert.equal(f.instruction, od.page.get(f.address), show(f));
      assert.equal(f.target, BigInt(/\$(0x[0-9a-f]+),/.exec(f.instruction)![1]!), show(f));
      assert.ok(f.useAddress !== undefined && f.useInstruction !== undefined, `${show(f)}: the use is found`);
      assert.equal(f.useInstruction, od.all.get(f.useAddress!), show(f));
      assert.ok(f.useAddress! > f.address && f.useAddress! - f.address < 64n, show(f));
      // objdump labels a function by one of its aliases (__gettimeofday for gettimeofday): the same start, the same name bar leading underscores.
      const [start, label] = od.label(f.address) ?? [];
      if (f.function?.name) {
        assert.equal(f.function.start, start, `objdump's label ${label} for ${show(f)}`);
        assert.equal(f.function.name.replace(/^_+/, ''), label?.replace(/^_+/, ''), show(f));
      }
    }
  });
}

test('the corpus README, hand-checked: which function, which entry, which kind', { skip: noCorpus }, () => {
  const sites = (p: string) => load(p).findings.map((f) => `${f.kind} ${f.use} ${f.entry} ${f.function?.name ?? `fn@0x${f.function?.start.toString(16)}`}`).sort();
  // busybox 1.15.2: stripped; time() at 0x4e1390 (+0x400) and gettimeofday() at 0x4e13b0 (+0x000), named by their FDEs.
  assert.deepEqual(sites(BUSYBOX), ['direct-call register-call gettimeofday fn@0x4e13b0', 'direct-call register-call time fn@0x4e1390']);
  const bb = load(BUSYBOX).findings;
  assert.deepEqual(bb.map((f) => [f.function?.source, f.function?.start, f.function?.end]), [['eh_frame', 0x4e1390n, 0x4e13b0n], ['eh_frame', 0x4e13b0n, 0x4e13d0n]]);
  assert.deepEqual(bb.map(callerOf), ['the function at 0x4e1390', 'the function at 0x4e13b0']);
  // libc 2.13: time +0x400 and sched_getcpu +0x800 direct; the gettimeofday fallback by cmove in
  // __libc_init_first's code (dynsym's __libc_init_first is a 2-byte stub at 0x1eb80; the code is
  // the FDE at 0x1eba0 after it, which objdump labels __libc_init_first too).
  assert.deepEqual(sites(LIBC213), ['direct-call register-call getcpu sched_getcpu', 'direct-call register-call time time', 'fallback cmov gettimeofday fn@0x1eba0']);
  assert.equal(load(LIBC213).findings.find((f) => f.kind === 'fallback')?.useInstruction, 'cmove %rdx,%rax');
  // libc 2.16: all three are fallbacks, in time's and gettimeofday's IFUNC resolvers and in _init.
  assert.deepEqual(sites(LIBC216), ['fallback cmov getcpu _init', 'fallback cmov gettimeofday gettimeofday', 'fallback cmov time time']);
  // libpthread 2.12: +0x000 direct in the six timed waits.
  assert.deepEqual(sites(PTHREAD), [
    '__lll_robust_timedlock_wait', '__lll_timedlock_wait', '__lll_timedwait_tid', 'pthread_rwlock_timedrdlock', 'pthread_rwlock_timedwrlock', 'sem_timedwait',
  ].map((n) => `direct-call register-call gettimeofday ${n}`));
  assert.deepEqual(load(PTHREAD).findings.map(callerOf).sort(), ['__lll_robust_timedlock_wait()', '__lll_timedlock_wait()', '__lll_timedwait_tid()', 'pthread_rwlock_timedrdlock()', 'pthread_rwlock_timedwrlock()', 'sem_timedwait()']);
});

test('a clean file: no findings, and neither the function index nor the symbols are built', { skip: noCorpus }, () => {
  const { findings, asked } = load(CLEAN);
  assert.deepEqual(findings, []);
  assert.deepEqual(asked, { functions: 0, symbols: 0 });
  // A file with findings asks for the function index (once per site at most, built once).
  assert.ok(load(BUSYBOX).asked.functions > 0);
});

test('a file that is not x86-64 code has no uses: the same bytes with e_machine set to AArch64 give none', { skip: noCorpus }, () => {
  const bytes = Buffer.from(fs.readFileSync(BUSYBOX));
  assert.equal(load(BUSYBOX, bytes).findings.length, 2);
  bytes.writeUInt16LE(183, 18); // e_machine
  assert.deepEqual(load(BUSYBOX, bytes).findings, []);
});

test('gcc-built data words: a word called through and a word never called, placed by readelf -s; objdump sees neither', { skip: (!hasGcc() && 'gcc not installed') || noObjdump }, () => {
  for (const link of ['static', 'dynamic'] as const) {
    const p = buildC('data-word', `data-word-${link}`, link === 'static' ? ['-static'] : []);
    const syms = new Map<string, bigint>();
    for (const l of readelf(['-s'], p).split('\n')) {
      const m = /^\s*\d+: ([0-9a-f]+)\s+\d+ OBJECT\s+\w+\s+\w+\s+\S+ (vsys_\w+)$/.exec(l);
      if (m) syms.set(m[2]!, BigInt(`0x${m[1]}`));
    }
    assert.deepEqual([...syms.keys()].sort(), ['vsys_table', 'vsys_time_ptr'], link);
    const { findings } = load(p);
    assert.equal(objdump(p).page.size, 0, 'objdump -d shows no page immediate');
    assert.equal(findings.length, 2, findings.map(show).join('; '));
    const called = findings.find((f) => f.dataWord?.symbol === 'vsys_time_ptr');
    assert.equal(called?.kind, 'direct-call', link);
    assert.equal(called?.entry, 'time');
    assert.equal(called?.target, 0xffffffffff600400n);
    assert.equal(called?.dataWord?.address, syms.get('vsys_time_ptr'));
    assert.equal(called?.function?.name, 'call_through_word');
    assert.equal(callerOf(called!), 'call_through_word()');
    const word = findings.find((f) => f.dataWord?.symbol === 'vsys_table');
    // vsys_table[1]: the second 8-byte word of the symbol.
    assert.deepEqual({ kind: word?.kind, use: word?.use, entry: word?.entry, address: word?.address, instruction: word?.instruction, dataWord: word?.dataWord }, {
      kind: 'data-ref', use: 'data-word', entry: 'getcpu', address: syms.get('vsys_table')! + 8n, instruction: '.quad 0xffffffffff600800',
      dataWord: { address: syms.get('vsys_table')! + 8n, symbol: 'vsys_table' },
    });
    assert.equal(word?.function, undefined);
    assert.equal(callerOf(word!), 'vsys_table');
  }
});

test('regionsOf: code is every executable PROGBITS section readelf -S lists, data every other loaded PROGBITS one; no warnings', { skip: (noCorpus || (!hasCommand('readelf') && 'readelf not installed')) }, () => {
  for (const p of [BUSYBOX, LIBC213]) {
    const r = regionsOf(readElf(fs.readFileSync(p), p, undefined, { sectionsOptional: true }));
    const secs = parseSections(readelf(['-S'], p)).filter((s) => s.type === 1 && (s.flags & 2) !== 0 && s.size > 0);
    const exec = secs.filter((s) => (s.flags & 4) !== 0);
    const other = secs.filter((s) => (s.flags & 4) === 0);
    assert.ok(exec.some((s) => s.name === '.text'), p);
    for (const s of exec) {
      assert.ok(r.code.some((c) => c.start <= s.offset && s.offset + s.size <= c.end), `${p} ${s.name} is in a code region`);
      const c = r.code.find((x) => x.start <= s.offset && s.offset < x.end)!;
      assert.equal(c.ip + BigInt(s.offset - c.start), s.addr, `${s.name}: the region maps its offset where readelf says it is`);
    }
    assert.deepEqual(r.data.map((d) => [d.start, d.end, d.ip]).sort((a, b) => Number(a[0]) - Number(b[0])), other.map((s) => [s.offset, s.offset + s.size, s.addr]).sort((a, b) => Number(a[0]) - Number(b[0])), p);
    assert.deepEqual(r.warnings, [], p);
    assert.equal(r.quiet.size, 0, p);
  }
});

test('dataSymbolAt: the OBJECT symbol holding an address (size 0 counts as one word); functions and undefined ones do not', () => {
  const sym = (name: string, value: bigint, size: bigint, type = 1, shndx = 5): ElfSymbol => ({ index: 0, name, value, size, type, bind: 1, visibility: 0, shndx });
  const syms = [sym('f', 0x1000n, 0x100n, 2), sym('undef', 0x2000n, 0x10n, 1, 0), sym('table', 0x2000n, 0x10n), sym('bare', 0x3000n, 0n)];
  assert.equal(dataSymbolAt(syms, 0x1008n), undefined, 'a FUNC is not a data symbol');
  assert.equal(dataSymbolAt(syms, 0x2000n), 'table');
  assert.equal(dataSymbolAt(syms, 0x200fn), 'table');
  assert.equal(dataSymbolAt(syms, 0x2010n), undefined, 'one past the end');
  assert.equal(dataSymbolAt(syms, 0x3007n), 'bare');
  assert.equal(dataSymbolAt(syms, 0x3008n), undefined);
});
