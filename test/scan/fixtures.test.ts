// The scanner against programs built here with gcc (static and dynamic): calls through every
// register, by jmp, movabs, a copied register, misaligned, through a data word, the IFUNC-style cmov
// fallback, and a clean program. objdump is the oracle for the code sites.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { hasCommand } from '../helpers.js';
import { analyseBytes } from '../../src/scan/analyse-file.js';
import { buildC, hasGcc } from '../support/fixtures.js';
import type { FileReport } from '../../src/scan/types.js';

const skip = !hasGcc() && 'gcc not installed';
const LINKS = [['static', ['-static']], ['dynamic', []]] as const;

function analyse(p: string): FileReport {
  const r = analyseBytes(fs.readFileSync(p), p);
  assert.ok(r);
  assert.equal(r.error, undefined);
  return r;
}

function objdumpLines(p: string): Map<number, string> {
  const r = spawnSync('objdump', ['-d', '--no-show-raw-insn', p], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const out = new Map<number, string>();
  for (const l of r.stdout.split('\n')) {
    if (/\$0xffffffffff6[0-9a-f]{5}\b/.test(l)) out.set(parseInt(l.trim().split(':')[0] as string, 16), l);
  }
  return out;
}

const REGS = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

for (const [link, flags] of LINKS) {
  test(`call-regs (${link}): a direct call through each of the 15 registers, jmp, movabs, a copy, and a misaligned call`, { skip }, () => {
    const p = buildC('call-regs', `call-regs-${link}`, [...flags]);
    const r = analyse(p);
    assert.equal(r.findings.length, 19);
    const byFn = new Map(r.findings.map((f) => [f.function?.name, f]));
    for (const reg of REGS) {
      const f = byFn.get(`call_via_${reg}`);
      assert.equal(f?.kind, 'direct-call', reg);
      assert.equal(f?.use, 'register-call');
      assert.equal(f?.useInstruction, `call *%${reg}`);
    }
    assert.equal(byFn.get('call_via_rbx')?.entry, 'gettimeofday');
    assert.equal(byFn.get('call_via_rcx')?.entry, 'getcpu');
    assert.equal(byFn.get('jump_via_rax')?.use, 'register-jump');
    assert.match(byFn.get('movabs_call')?.instruction ?? '', /^movabs \$0xffffffffff600800,%r9$/);
    assert.equal(byFn.get('copied_call')?.useInstruction, 'call *%rcx');
    const mis = byFn.get('misaligned_call');
    assert.equal(mis?.kind, 'misaligned');
    assert.equal(mis?.target, 0xffffffffff600010n);
    assert.equal(r.class, 'misaligned');
    if (hasCommand('objdump')) {
      const od = objdumpLines(p);
      assert.deepEqual([...od.keys()].sort(), r.findings.map((f) => Number(f.address)).sort());
    }
  });

  test(`data-word (${link}): a call through a word holding the time entry, and a word never called`, { skip }, () => {
    const r = analyse(buildC('data-word', `data-word-${link}`, [...flags]));
    const called = r.findings.find((f) => f.function?.name === 'call_through_word');
    assert.equal(called?.kind, 'direct-call');
    assert.equal(called?.entry, 'time');
    assert.equal(called?.dataWord?.symbol, 'vsys_time_ptr');
    assert.match(called?.use ?? '', /^memory-(call|jump)$|^register-call$/);
    const table = r.findings.find((f) => f.dataWord?.symbol === 'vsys_table');
    assert.equal(table?.kind, 'data-ref');
    assert.equal(table?.use, 'data-word');
    assert.equal(table?.entry, 'getcpu');
    assert.equal(r.findings.length, 2);
    if (hasCommand('objdump')) assert.equal(objdumpLines(buildC('data-word', `data-word-${link}`, [...flags])).size, 0, 'objdump sees neither word');
  });

  test(`fallback (${link}): mov/test/cmove after a lookup is a fallback`, { skip }, () => {
    const r = analyse(buildC('fallback', `fallback-${link}`, [...flags]));
    assert.equal(r.findings.length, 1);
    assert.equal(r.findings[0]?.kind, 'fallback');
    assert.equal(r.findings[0]?.use, 'cmov');
    assert.equal(r.findings[0]?.function?.name, 'resolve_time');
    assert.equal(r.class, 'fallback');
  });

  test(`clean (${link}): time() and gettimeofday() through libc leave no finding`, { skip }, () => {
    const r = analyse(buildC('clean', `clean-${link}`, [...flags]));
    assert.deepEqual(r.findings, []);
    assert.equal(r.class, 'clean');
    assert.equal(r.identity?.linkage, link);
    if (link === 'dynamic') assert.ok(r.imports.list().some((i) => i.name === 'time' && i.version === 'GLIBC_2.2.5'));
  });
}
