import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Asm } from '../../src/x86/assemble.js';
import { VsysError } from '../../src/errors.js';
import { hasCommand } from '../helpers.js';

function objdump(bytes: Uint8Array, arch: 'i386:x86-64' | 'i386', vma: bigint): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'vsys-asm-'));
  try {
    const f = path.join(dir, 'code.bin');
    writeFileSync(f, bytes);
    const out = execFileSync('objdump', ['-D', '-b', 'binary', '-m', arch, `--adjust-vma=0x${vma.toString(16)}`, '-M', 'intel', f], { encoding: 'utf8' });
    return out.split('\n').filter((l) => /^\s+[0-9a-f]+:\t/.test(l)).map((l) => l.split('\t').slice(2).join(' ').replace(/\s+/g, ' ').trim()).filter((l) => l !== '');
  } finally {
    rmSync(dir, { recursive: true });
  }
}

test('64-bit loop assembles to what objdump reads back, labels resolved', { skip: !hasCommand('objdump') }, () => {
  const a = new Asm(64);
  a.push('rbx').mov('rbx', 'rdi').label('top').movImm('rax', 0xffffffffff600400n).callReg('rax').movImm('eax', 228).syscall().dec('rsi').jnz('top').rdtscp().lfence().pop('rbx').ret();
  const lines = objdump(a.assemble(0x401000n), 'i386:x86-64', 0x401000n);
  assert.deepEqual(lines, [
    'push rbx',
    'mov rbx,rdi',
    'movabs rax,0xffffffffff600400',
    'call rax',
    'mov eax,0xe4',
    'syscall',
    'dec rsi',
    'jne 0x401004',
    'rdtscp',
    'lfence',
    'pop rbx',
    'ret',
  ]);
});

test('32-bit code: int 0x80, sysenter, memory operands', { skip: !hasCommand('objdump') }, () => {
  const a = new Asm(32);
  a.movImm('eax', 20).int(0x80).load('ecx', { base: 'esp', disp: 8 }).callMem({ base: 'ebx', disp: 16 }).sysenter().label('end').jmp('end');
  const lines = objdump(a.assemble(0x8048000n), 'i386', 0x8048000n);
  assert.equal(lines[0], 'mov eax,0x14');
  assert.equal(lines[1], 'int 0x80');
  assert.equal(lines[2], 'mov ecx,DWORD PTR [esp+0x8]');
  assert.equal(lines[3], 'call DWORD PTR [ebx+0x10]');
  assert.equal(lines[4], 'sysenter');
  assert.match(lines[5]!, /^jmp 0x8048010$/);
});

test('impossible forms are coded errors', () => {
  assert.throws(() => new Asm(32).push('rax').assemble(), (e: unknown) => e instanceof VsysError && e.code === 'X86_ENCODE_FAILED');
  assert.throws(() => new Asm(64).jmp('nowhere').assemble(), /undefined label nowhere/);
  assert.throws(() => new Asm(64).label('a').label('a').ret().assemble(), /defined twice/);
});
