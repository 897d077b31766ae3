import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readVdso, dumpVdso, findVdsoSymbol } from '../../src/host/vdso.js';
import { parseVdsoImage } from '../../src/host/vdso-parse.js';
import { checkVdsoHealth } from '../../src/host/vdso-health.js';
import { perfFacts, readText } from '../../src/host/facts.js';
import { VsysError } from '../../src/errors.js';
import { hasCommand } from '../helpers.js';

const onLinux = process.platform === 'linux' && process.arch === 'x64';

interface ReadelfSym { value: bigint; size: number; type: string; bind: string; name: string; version: string | null }

function readelfDynsyms(file: string): ReadelfSym[] {
  const out = execFileSync('readelf', ['-W', '--dyn-syms', file], { encoding: 'utf8' });
  const rows: ReadelfSym[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s*\d+:\s+([0-9a-f]+)\s+(\d+)\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s+(\S+)/.exec(line);
    if (!m || m[5] === 'UND') continue;
    const [name, version] = m[6]!.split(/@@?/);
    rows.push({ value: BigInt('0x' + m[1]!), size: Number(m[2]), type: m[3]!, bind: m[4]!, name: name!, version: version ?? null });
  }
  return rows;
}

test('the vDSO: its symbols equal readelf --dyn-syms of the dumped image', { skip: !onLinux || !hasCommand('readelf') }, () => {
  const v = readVdso();
  const dir = mkdtempSync(path.join(tmpdir(), 'vsys-vdso-'));
  try {
    const file = path.join(dir, 'vdso.so');
    dumpVdso(v, file);
    assert.deepEqual(new Uint8Array(readFileSync(file)), v.bytes);
    const oracle = readelfDynsyms(file);
    assert.ok(oracle.length >= 4, 'readelf found the vDSO symbols');
    const ours = v.symbols.map((s) => ({ name: s.name, version: s.version, value: BigInt(s.offset), size: s.size, bind: s.binding.toUpperCase() }));
    const theirs = oracle.map((s) => ({ name: s.name, version: s.version, value: s.value, size: s.size, bind: s.bind }));
    // The vDSO is linked at 0, so readelf's st_value is our offset from the base.
    assert.deepEqual(ours.sort((a, b) => a.name.localeCompare(b.name)), theirs.sort((a, b) => a.name.localeCompare(b.name)));
    for (const s of v.symbols) assert.equal(s.address, v.base + BigInt(s.offset));
    for (const name of ['__vdso_clock_gettime', '__vdso_gettimeofday', '__vdso_time', '__vdso_getcpu']) {
      assert.equal(findVdsoSymbol(v, name, 'LINUX_2.6')?.name, name);
    }
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('the vDSO base and size equal the [vdso] line of /proc/self/maps', { skip: !onLinux }, () => {
  const v = readVdso();
  const line = readFileSync('/proc/self/maps', 'utf8').split('\n').find((l) => l.endsWith('[vdso]'));
  assert.ok(line, 'this process has a [vdso] mapping');
  const [lo, hi] = line.split(' ')[0]!.split('-').map((h) => BigInt('0x' + h));
  assert.equal(v.base, lo);
  assert.equal(BigInt(v.size), hi! - lo!);
  assert.equal(v.sizeSource, 'maps');
});

/** Rewrites one dynamic tag of a vDSO image copy (found by scanning the dynamic section). */
function patchDynTag(bytes: Uint8Array, from: number, to: number): Uint8Array {
  const copy = new Uint8Array(bytes);
  const dv = new DataView(copy.buffer);
  const phoff = Number(dv.getBigUint64(32, true));
  const phnum = dv.getUint16(56, true);
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * 56;
    if (dv.getUint32(p, true) !== 2) continue;
    const off = Number(dv.getBigUint64(p + 8, true));
    const size = Number(dv.getBigUint64(p + 32, true));
    for (let e = off; e < off + size; e += 16) {
      if (Number(dv.getBigInt64(e, true)) === from) {
        dv.setBigInt64(e, BigInt(to), true);
        return copy;
      }
    }
  }
  throw new Error(`tag ${from} not found`);
}

test('DT_GNU_HASH alone gives the same symbols as DT_HASH', { skip: !onLinux }, () => {
  const v = readVdso();
  const sysv = parseVdsoImage(v.bytes, v.base);
  // Turn DT_HASH into a tag the parser ignores (DT_DEBUG = 21), leaving DT_GNU_HASH.
  const gnu = parseVdsoImage(patchDynTag(v.bytes, 4, 21), v.base);
  assert.equal(gnu.hash, 'gnu');
  assert.equal(sysv.hash, 'sysv');
  assert.deepEqual(gnu.symbols, sysv.symbols);
});

test('malformed vDSO images give VDSO_MALFORMED at every truncation point, never a crash', { skip: !onLinux }, () => {
  const v = readVdso();
  const cuts = new Set<number>();
  for (let n = 0; n < 1024; n += 7) cuts.add(n);
  for (let n = 1024; n < v.bytes.length; n += 97) cuts.add(n);
  let errors = 0;
  for (const n of cuts) {
    try {
      parseVdsoImage(v.bytes.subarray(0, n), v.base);
    } catch (e) {
      assert.ok(e instanceof VsysError, `cut at ${n}: ${String(e)}`);
      assert.equal(e.code, 'VDSO_MALFORMED');
      errors++;
    }
  }
  assert.ok(errors > 100, 'short images are rejected');
  // No dynamic hash tables at all
  const noHash = patchDynTag(patchDynTag(v.bytes, 4, 21), 0x6ffffef5, 21);
  assert.throws(() => parseVdsoImage(noHash, v.base), /neither DT_HASH nor DT_GNU_HASH/);
  // Random byte flips in the header and tables: an error or a result, nothing else
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let i = 0; i < 2000; i++) {
    const copy = new Uint8Array(v.bytes);
    for (let k = 0; k < 4; k++) copy[Math.floor(rnd() * 0x800)] = Math.floor(rnd() * 256);
    try {
      parseVdsoImage(copy, v.base);
    } catch (e) {
      assert.ok(e instanceof VsysError, `flip ${i}: ${String(e)}`);
    }
  }
});

test('vDSO clock_gettime stays out of the kernel here; the perf control counts real syscalls', { skip: !onLinux }, (t) => {
  const v = readVdso();
  const perf = perfFacts(readText('/proc/self/status'), readText('/proc/sys/kernel/perf_event_paranoid'));
  const h = checkVdsoHealth(v, { tracefs: perf.tracefs, perfUsable: perf.tracepointsUsable, clocksource: 'test' });
  // Bracketing, as test_vsyscall.c does: the vDSO call is cheaper than the syscall it replaces.
  assert.ok(h.vdsoNs > 0 && h.syscallNs > 0);
  assert.ok(h.vdsoNs < h.syscallNs, `vDSO ${h.vdsoNs} ns < syscall ${h.syscallNs} ns`);
  if (h.method !== 'perf-count') {
    t.diagnostic(`perf not usable (${perf.reason}); timing only`);
    return;
  }
  assert.equal(h.controlSyscallsPerCall, 1, 'each clock_gettime syscall is one raw_syscalls:sys_enter');
  assert.equal(h.syscallsPerCall, 0);
  assert.equal(h.userSpace, true);
});
