// Each way a function with a direct call of the page can be reached, built with gcc as a PIE, a
// fixed-address (-no-pie) program and a shared library (test/fixtures/scan/indirect.c): only through
// a pointer taken with lea, or stored in a table (a data word, or a RELATIVE relocation) → indirect;
// a direct call, a tail jump, .init_array, an export → direct. Oracles: nm for the functions' and
// the table's addresses, objdump -d for the lea and for who calls what, readelf -r for the relocations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { hasCommand } from '../helpers.js';
import { analyseBytes } from '../../src/scan/analyse-file.js';
import type { Finding } from '../../src/scan/find-uses.js';
import { verdictsOf } from '../../src/scan/verdict.js';
import { buildC, hasGcc } from '../support/fixtures.js';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { reviveResults } from '../../src/scan/pool.js';
import { toJson } from '../../src/cli/io.js';
import type { FileReport, FileResult } from '../../src/scan/types.js';

const skip = (!hasGcc() && 'gcc not installed') || (!hasCommand('objdump') && 'objdump not installed') || (!hasCommand('nm') && 'nm not installed');

const BUILDS: [string, string[]][] = [['pie', ['-fPIE', '-pie']], ['no-pie', ['-fno-pie', '-no-pie']], ['static', ['-fno-pie', '-no-pie', '-static']], ['shared', ['-shared', '-fPIC']]];

const EXPECT: Record<string, string> = {
  only_pointer: 'indirect',
  in_table_a: 'indirect',
  in_table_b: 'indirect',
  called: 'direct-call',
  tail_only: 'direct-call',
  at_start: 'direct-call',
  exported_api: 'direct-call',
  main: 'direct-call',
};

function nm(p: string): Map<string, number> {
  const r = spawnSync('nm', [p], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const m = new Map<string, number>();
  for (const line of r.stdout.split('\n')) {
    const [addr, , name] = line.trim().split(/\s+/);
    if (addr && name && /^[0-9a-f]+$/.test(addr)) m.set(name, parseInt(addr, 16));
  }
  return m;
}

for (const [label, flags] of BUILDS) {
  test(`gcc ${label}: pointer-only functions are indirect (review), called / tail-jumped / init_array / exported ones stay direct`, { skip }, () => {
    const p = buildC('indirect', `indirect-${label}`, flags);
    const r: FileReport | undefined = analyseBytes(fs.readFileSync(p), p);
    assert.ok(r && !r.error, r?.error?.message);
    const syms = nm(p);
    const got = Object.fromEntries(r.findings.map((f) => [f.function?.name, f.kind]));
    assert.deepEqual(got, EXPECT);
    assert.equal(r.class, 'direct', 'the file still has direct calls');

    const dis = spawnSync('objdump', ['-d', '--no-show-raw-insn', '-w', p], { encoding: 'utf8' }).stdout;
    for (const f of r.findings) {
      const name = f.function?.name as string;
      assert.equal(Number(f.function?.start), syms.get(name), name);
      // objdump: nothing calls or jumps to an indirect one; a direct one is called, jumped to, in
      // .init_array or exported (nothing to check here: the source says which).
      const branches = dis.split('\n').filter((l) => new RegExp(`\\s(call|jmp|j[a-z]+)\\s+[0-9a-f]+ <${name}>`).test(l));
      if (f.kind === 'indirect') {
        assert.deepEqual(branches, [], `${name} has no direct caller`);
        const verdict = verdictsOf([{ kind: f.kind, target: f.target, caller: `${name}()` }]);
        assert.equal(verdict.none.outcome, 'review');
      }
    }

    // only_pointer: exactly objdump's instructions taking its address, in main: a lea of it, or
    // (at a fixed address) an immediate of it (movq $0x401190,0x2fe7(%rip) into hook).
    const only = r.findings.find((f) => f.function?.name === 'only_pointer')!;
    const imm = `$0x${syms.get('only_pointer')!.toString(16)},`;
    const takers = dis.split('\n').filter((l) => (/\slea\s/.test(l) && l.includes('<only_pointer>')) || l.includes(imm));
    assert.ok(takers.length > 0, 'objdump shows where its address is taken');
    assert.deepEqual(only.addressTakenAt?.map((a) => [Number(a.address), a.instruction, a.function]),
      takers.map((l) => {
        const m = /^\s*([0-9a-f]+):\s+(\w+\s+\S+)/.exec(l)!;
        return [parseInt(m[1] as string, 16), (m[2] as string).replace(/\s+/, ' '), 'main'];
      }));
    // in_table_*: the words of `table` (nm), as RELATIVE relocations where the file is relocatable.
    const table = syms.get('table')!;
    for (const [i, name] of ['in_table_a', 'in_table_b'].entries()) {
      const site: Finding | undefined = r.findings.find((x) => x.function?.name === name);
      assert.ok(site);
      const value = syms.get(name)!.toString(16);
      assert.deepEqual(site.addressTakenAt, [{
        address: BigInt(table + 8 * i),
        instruction: label === 'no-pie' || label === 'static' ? `.quad 0x${value}` : `.quad 0x${value} (R_X86_64_RELATIVE)`,
        function: 'table',
      }]);
      if (label === 'pie' || label === 'shared') {
        const rel = spawnSync('readelf', ['-rW', p], { encoding: 'utf8' }).stdout;
        assert.match(rel, new RegExp(`^0*${(table + 8 * i).toString(16)}\\s+\\S+\\s+R_X86_64_RELATIVE\\s+${value}$`, 'm'));
      }
    }
  });
}

test('where an address is taken survives the trip between threads and reaches JSON as hex', { skip }, () => {
  const p = buildC('indirect', 'indirect-pie', ['-fPIE', '-pie']);
  const report = analyseBytes(fs.readFileSync(p), p)!;
  const { port1, port2 } = new MessageChannel();
  port1.postMessage({ results: [{ kind: 'elf', report } satisfies FileResult] });
  const got = reviveResults((receiveMessageOnPort(port2)?.message as { results: FileResult[] }).results);
  port1.close();
  const back = got[0]?.kind === 'elf' ? got[0].report : undefined;
  assert.ok(back);
  const taken = report.findings.filter((f) => f.addressTakenAt).map((f) => f.addressTakenAt);
  assert.equal(taken.length, 3);
  assert.deepEqual(back.findings.map((f) => f.addressTakenAt), report.findings.map((f) => f.addressTakenAt));
  const json = JSON.parse(toJson(back)) as { findings: { addressTakenAt?: { address: string }[] }[] };
  assert.deepEqual(json.findings.flatMap((f) => f.addressTakenAt ?? []).map((a) => a.address), taken.flat().map((a) => `0x${a!.address.toString(16)}`));
});
