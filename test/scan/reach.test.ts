// reachingFunctions/affectedExports on their own. A library gcc builds here (reach-chain.c) places
// exported functions at known call distances from a direct call of the page and from a fallback:
// the source is the oracle for which exports reach a use, objdump -d for every step of each chain
// (a direct call or jump from one function to the next), readelf --dyn-syms for the exports and
// their versions. Then the corpus' RHEL 6 libpthread (README: gettimeofday in six timed waits).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { reachingFunctions, affectedExports, branchesOf, type Reach } from '../../src/scan/reach.js';
import { findUses, regionsOf, type Finding } from '../../src/scan/find-uses.js';
import { buildFunctionIndex, type FunctionIndex } from '../../src/scan/functions.js';
import { readElf, readSymbols } from '../../src/elf/index.js';
import { CORPUS, hasCommand } from '../helpers.js';
import { buildC, hasGcc } from '../support/fixtures.js';
import { readelf } from '../elf/readelf-oracle.js';

const PTHREAD = path.join(CORPUS, 'rhel6-glibc-2.12-libpthread', 'libpthread.so.0');
const tools = (!hasCommand('objdump') && 'objdump not installed') || (!hasCommand('readelf') && 'readelf not installed');

/** Exported (defined, non-local) functions by address, from readelf --dyn-syms: name and version. */
function exportsOf(p: string): Map<number, { name: string; version?: string }[]> {
  const out = new Map<number, { name: string; version?: string }[]>();
  for (const l of readelf(['--dyn-syms'], p).split('\n')) {
    const m = /^\s*\d+: ([0-9a-f]+)\s+\d+ (?:FUNC|IFUNC)\s+(?:GLOBAL|WEAK)\s+\w+\s+(\d+) ([^@\s]+)(?:@@?(\S+))?/.exec(l);
    if (!m) continue;
    const a = Number.parseInt(m[1]!, 16);
    const list = out.get(a) ?? [];
    list.push(m[4] === undefined ? { name: m[3]! } : { name: m[3]!, version: m[4] });
    out.set(a, list);
  }
  return out;
}

/** objdump -d's direct calls and jumps between functions: "from>to" by label (to a label's start only). */
function objdumpEdges(p: string): Set<string> {
  const r = spawnSync('objdump', ['-d', '--no-show-raw-insn', p], { encoding: 'utf8', maxBuffer: 1 << 30, env: { ...process.env, LC_ALL: 'C' } });
  const edges = new Set<string>();
  let fn = '';
  for (const l of r.stdout.split('\n')) {
    const head = /^[0-9a-f]+ <([^>+]+)>:$/.exec(l);
    if (head) fn = head[1]!.replace(/@.*$/, '');
    const m = /\t(?:call|jmp|j[a-z]+)\s+[0-9a-f]+ <([^>+]+)>$/.exec(l);
    if (m) edges.add(`${fn}>${m[1]!.replace(/@.*$/, '')}`);
  }
  return edges;
}

function analyse(p: string) {
  const elf = readElf(fs.readFileSync(p), p);
  const fns = buildFunctionIndex(elf);
  const sym = readSymbols(elf, '.symtab');
  const regions = regionsOf(elf);
  const findings = findUses(elf, () => fns, () => (sym.length > 0 ? sym : readSymbols(elf, '.dynsym')), undefined, regions);
  return { elf, fns, regions, findings };
}

const show = (fns: FunctionIndex, reach: Map<number, Reach>) => [...reach].map(([i, r]) => `${fns.functions[i]?.name}: ${r.kind} ${r.entry} ${r.chain.join(' > ')}`).sort();

test('reach-chain.so: exports within three steps of a use reach it, with the worst kind; a fourth step, a function that never returns, a data word do not', { skip: (!hasGcc() && 'gcc not installed') || tools }, () => {
  const so = buildC('reach-chain', 'libreachchain.so', ['-shared', '-fPIC']);
  const { fns, regions, findings } = analyse(so);
  assert.deepEqual(findings.map((f) => `${f.kind} ${f.function?.name ?? f.dataWord?.symbol}`).sort(), ['data-ref vs_word', 'direct-call vs_site', 'fallback fb_site']);
  const reach = reachingFunctions(findings, fns, regions);
  assert.deepEqual(show(fns, reach), [
    'api_both: direct-call time api_both > vs_site',
    'api_fb: fallback gettimeofday api_fb > fb_site',
    'api_one: direct-call time api_one > vs_site',
    'api_three: direct-call time api_three > helper > vs_site',
    'fatal: direct-call time fatal > vs_site',
    'fb_site: fallback gettimeofday fb_site',
    'helper: direct-call time helper > vs_site',
    'mid: direct-call time mid > helper > vs_site',
    'vs_site: direct-call time vs_site',
  ]);
  for (const r of reach.values()) assert.equal(r.target, r.entry === 'time' ? 0xffffffffff600400n : 0xffffffffff600000n);
  // Every step of every chain is a direct call or jump objdump shows.
  const edges = objdumpEdges(so);
  for (const r of reach.values()) for (let k = 0; k + 1 < r.chain.length; k++) assert.ok(edges.has(`${r.chain[k]}>${r.chain[k + 1]}`), `${r.chain.join(' > ')}: objdump shows ${r.chain[k]} -> ${r.chain[k + 1]}`);
  // The ones left out are connected too: they are left out by rule, not for want of an edge.
  assert.ok(edges.has('api_four>mid') && edges.has('api_fatal>fatal'), [...edges].join(' '));
  const exported = affectedExports(reach, fns, exportsOf(so));
  assert.deepEqual(exported.map((e) => `${e.name} [${e.versions.join(',')}] ${e.kind} ${e.chain.join(' > ')}`), [
    'api_both [] direct-call api_both > vs_site',
    'api_fb [] fallback api_fb > fb_site',
    'api_one [] direct-call api_one > vs_site',
    'api_three [] direct-call api_three > helper > vs_site',
  ]);
});

test('libpthread 2.12 (RHEL 6): the six timed waits of the README and the exports that reach them, against objdump and readelf', { skip: (!fs.existsSync(PTHREAD) && 'corpus not found') || tools, timeout: 60_000 }, () => {
  const { fns, regions, findings } = analyse(PTHREAD);
  const reach = reachingFunctions(findings, fns, regions);
  const holders = ['__lll_robust_timedlock_wait', '__lll_timedlock_wait', '__lll_timedwait_tid', 'pthread_rwlock_timedrdlock', 'pthread_rwlock_timedwrlock', 'sem_timedwait'];
  assert.deepEqual([...reach.values()].filter((r) => r.chain.length === 1).map((r) => r.chain[0]).sort(), holders);
  for (const r of reach.values()) {
    assert.equal(r.kind, 'direct-call');
    assert.equal(r.entry, 'gettimeofday');
    assert.ok(holders.includes(r.chain.at(-1)!), r.chain.join(' > '));
  }
  const edges = objdumpEdges(PTHREAD);
  for (const r of reach.values()) for (let k = 0; k + 1 < r.chain.length; k++) assert.ok(edges.has(`${r.chain[k]}>${r.chain[k + 1]}`), r.chain.join(' > '));
  const exported = affectedExports(reach, fns, exportsOf(PTHREAD));
  assert.deepEqual(exported.map((e) => `${e.name}@${e.versions.join(',')}: ${e.chain.join(' > ')}`), [
    'pthread_mutex_timedlock@GLIBC_2.2.5: pthread_mutex_timedlock > _L_timedlock_103 > __lll_timedlock_wait',
    'pthread_rwlock_timedrdlock@GLIBC_2.2.5: pthread_rwlock_timedrdlock',
    'pthread_rwlock_timedwrlock@GLIBC_2.2.5: pthread_rwlock_timedwrlock',
    'pthread_timedjoin_np@GLIBC_2.3.3: pthread_timedjoin_np > __lll_timedwait_tid',
    'sem_timedwait@GLIBC_2.2.5: sem_timedwait',
  ]);
});

/** A function index over hand-placed ranges. */
function index(list: { start: number; end: number; name?: string }[]): FunctionIndex {
  const functions = list.map((f) => ({ ...f, aliases: f.name ? [f.name] : [], exported: true, ifunc: false, source: 'symtab' as const }));
  return { functions, find: (a) => functions.findIndex((f) => a >= f.start && a < f.end) };
}

const finding = (kind: Finding['kind'], address: bigint): Finding => ({ kind, use: 'register-call', entry: 'time', target: 0xffffffffff600400n, offset: 0, address, instruction: 'mov $0xffffffffff600400,%rax' });

test('no use that propagates: an empty map, and the code is never decoded', () => {
  const fns = index([{ start: 0x1000, end: 0x1100, name: 'a' }]);
  const regions = { code: [], data: [], warnings: [], quiet: new Map() };
  const never = () => {
    throw new Error('decoded');
  };
  assert.equal(reachingFunctions([], fns, regions, never).size, 0);
  assert.equal(reachingFunctions([finding('data-ref', 0x1010n)], fns, regions, never).size, 0, 'a data reference is not a call');
  assert.equal(reachingFunctions([finding('direct-call', 0x5000n)], fns, regions, never).size, 0, 'outside every function');
  assert.equal(reachingFunctions([finding('direct-call', 0xffffffffff600400n)], fns, regions, never).size, 0, 'an address past 2^53 is not placed');
});

test('the worst kind in a function wins; an unnamed function is named by its address', () => {
  const fns = index([{ start: 0x1000, end: 0x1100 }]);
  // One region of 0x100 bytes of `ret`: no branches, so no callers.
  const code = new Uint8Array(0x100).fill(0xc3);
  const regions = { code: [{ bytes: code, start: 0, end: code.length, ip: 0x1000n }], data: [], warnings: [], quiet: new Map() };
  const reach = reachingFunctions([finding('fallback', 0x1010n), finding('misaligned', 0x1020n), finding('direct-call', 0x1030n)], fns, regions, branchesOf(regions));
  assert.deepEqual([...reach], [[0, { kind: 'misaligned', entry: 'time', target: 0xffffffffff600400n, chain: ['fn@0x1000'] }]]);
});

test('affectedExports: aliases at one address each listed, versions gathered per name, sorted by name; unexported functions left out', () => {
  const fns = index([{ start: 0x1000, end: 0x1100, name: 'time' }, { start: 0x2000, end: 0x2100, name: 'internal' }]);
  const r: Reach = { kind: 'direct-call', entry: 'time', target: 0xffffffffff600400n, chain: ['time'] };
  const reach = new Map([[0, r], [1, { ...r, chain: ['internal', 'time'] }]]);
  const exportsAt = new Map([[0x1000, [{ name: 'time', version: 'GLIBC_2.2.5' }, { name: '__time' }, { name: 'time', version: 'GLIBC_PRIVATE' }]]]);
  assert.deepEqual(affectedExports(reach, fns, exportsAt), [
    { ...r, name: '__time', versions: [] },
    { ...r, name: 'time', versions: ['GLIBC_2.2.5', 'GLIBC_PRIVATE'] },
  ]);
  assert.deepEqual(affectedExports(new Map(), fns, exportsAt), []);
});
