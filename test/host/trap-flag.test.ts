// The trap-flag step (native vs emulated): its layouts against gcc's, its code against objdump, its
// count against the kernel on this host and against a gcc-built C program that steps the same call,
// and the judgement of counts no host here produces (native, none, nothing stepped).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { callGate } from '../../src/host/call-gate.js';
import { gregOffset, KERNEL_SIGACTION, trapFlagCode, UCONTEXT } from '../../src/host/trap-flag-code.js';
import { judgeTrapCounts, runTrapFlagCheck, type TrapFlagCounts } from '../../src/host/trap-flag.js';
import { modeFromMaps, runActiveTest } from '../../src/host/vsyscall-mode.js';
import { hasCommand } from '../helpers.js';
import { hasGcc, runC } from './c-oracle.js';

const onLinux = process.platform === 'linux' && process.arch === 'x64';
const maps = onLinux ? modeFromMaps(readFileSync('/proc/self/maps', 'utf8')).says : null;
const callable = maps === 'xonly' || maps === 'emulate-or-native';

test('ucontext_t and the kernel sigaction: the offsets the generated handler uses are gcc\'s', { skip: !hasGcc() && 'no gcc' }, () => {
  const u = runC(`#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <ucontext.h>
int main(void) {
  printf("%zu %zu %zu\\n", offsetof(ucontext_t, uc_mcontext.gregs[REG_R14]), offsetof(ucontext_t, uc_mcontext.gregs[REG_R15]), offsetof(ucontext_t, uc_mcontext.gregs[REG_RIP]));
  return 0;
}`);
  assert.equal(u.stdout.trim(), [UCONTEXT.REG_R14, UCONTEXT.REG_R15, UCONTEXT.REG_RIP].map(gregOffset).join(' '));
  // rt_sigaction(2) takes the kernel's struct sigaction (asm/signal.h), not glibc's.
  const k = runC(`#include <stddef.h>
#include <stdio.h>
#include <asm/signal.h>
int main(void) {
  printf("%zu %zu %zu %zu %zu\\n", offsetof(struct sigaction, sa_handler), offsetof(struct sigaction, sa_flags), offsetof(struct sigaction, sa_restorer), offsetof(struct sigaction, sa_mask), sizeof(struct sigaction));
  return 0;
}`);
  assert.equal(k.stdout.trim(), [KERNEL_SIGACTION.handler, KERNEL_SIGACTION.flags, KERNEL_SIGACTION.restorer, KERNEL_SIGACTION.mask, KERNEL_SIGACTION.size].join(' '));
});

function objdump(bytes: Uint8Array, vma: bigint): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'vsys-tf-'));
  try {
    const f = path.join(dir, 'code.bin');
    writeFileSync(f, bytes);
    const out = execFileSync('objdump', ['-D', '-b', 'binary', '-m', 'i386:x86-64', `--adjust-vma=0x${vma.toString(16)}`, '-M', 'intel', f], { encoding: 'utf8' });
    return out.split('\n').filter((l) => /^\s+[0-9a-f]+:\t/.test(l)).map((l) => l.split('\t').slice(2).join(' ').replace(/\s+/g, ' ').trim()).filter((l) => l !== '');
  } finally {
    rmSync(dir, { recursive: true });
  }
}

test('generated code, read back by objdump: restorer is rt_sigreturn, the handler counts by saved RIP, TF set and cleared around the call', { skip: !hasCommand('objdump') && 'no objdump' }, () => {
  const base = 0x7f0000000000n;
  const { bytes, main } = trapFlagCode(base);
  const restorer = objdump(bytes.slice(0, 64), base).filter((l) => l !== 'add BYTE PTR [rax],al');
  assert.deepEqual(restorer.slice(0, 2), ['mov eax,0xf', 'syscall']);
  const handlerBytes = bytes.slice(64, main);
  const handler = objdump(handlerBytes, base + 64n).filter((l) => l !== 'add BYTE PTR [rax],al');
  // the branch past the in-page count lands on the ret, the handler's last byte (0xc3)
  const retAt = base + 64n + BigInt(Buffer.from(handlerBytes).toString('hex').replace(/(00)+$/, '').length / 2 - 1);
  assert.equal(handlerBytes[Number(retAt - base - 64n)], 0xc3);
  assert.deepEqual(handler, [
    'mov rcx,QWORD PTR [rdx+0x58]', 'inc rcx', 'mov QWORD PTR [rdx+0x58],rcx',
    'mov rax,QWORD PTR [rdx+0xa8]', 'movabs rcx,0xffffffffff600000', 'sub rax,rcx', 'cmp rax,0x1000', `jae 0x${retAt.toString(16)}`,
    'mov rcx,QWORD PTR [rdx+0x60]', 'inc rcx', 'mov QWORD PTR [rdx+0x60],rcx', 'ret',
  ]);
  const body = objdump(bytes.slice(main), base + BigInt(main)).join('\n');
  // SA_SIGINFO|SA_RESTORER, the handler's and the restorer's addresses in the sigaction
  assert.match(body, /movabs rax,0x4000004\nmov QWORD PTR \[rsp\+0x8\],rax/);
  assert.match(body, new RegExp(`movabs rax,0x${(base + 64n).toString(16)}\\nmov QWORD PTR \\[rsp\\],rax`));
  assert.match(body, new RegExp(`movabs rax,0x${base.toString(16)}\\nmov QWORD PTR \\[rsp\\+0x10\\],rax`));
  assert.match(body, /movabs r12,0x100\npushf\npop rax\nor rax,r12\npush rax\npopf\nxor edi,edi\ncall r13\n/);
  assert.match(body, /movabs r12,0xfffffffffffffeff\npushf\npop rax\nand rax,r12\npush rax\npopf/);
  assert.match(body, /movabs r13,0xffffffffff600400/);
});

test('on this host: the stepped time() call traps once in the page (emulated), as a gcc-built C program stepping the same call counts', { skip: (!onLinux && 'not Linux x86-64') || (!callable && `calls of the page crash here (${maps})`) }, async () => {
  const t = await runTrapFlagCheck(callGate((await runActiveTest()).call));
  assert.equal(t.status, 'ran', t.detail);
  assert.equal(t.trapsInPage, 1, t.detail);
  assert.equal(t.calls, 'emulated');
  assert.ok((t.trapsTotal ?? 0) > 1, `the steps outside the page are counted too (${t.trapsTotal})`);
  assert.match(t.detail, /^1 trap in the page \(\d+ in all\) stepping a call of time\(\): calls are emulated by the kernel \(not native\)$/);
  if (!hasGcc()) return;
  const c = runC(`#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
static volatile int page_traps;
static void on_trap(int sig, siginfo_t *si, void *ctx) {
  uint64_t ip = (uint64_t)((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RIP];
  (void)sig; (void)si;
  if (ip >= 0xffffffffff600000UL && ip < 0xffffffffff601000UL) page_traps++;
}
int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_trap;
  sa.sa_flags = SA_SIGINFO;
  if (sigaction(SIGTRAP, &sa, NULL) != 0) return 2;
  long (*vtime)(long *) = (long (*)(long *))0xffffffffff600400UL;
  __asm__ volatile("pushfq\\n\\torq $0x100, (%%rsp)\\n\\tpopfq" ::: "memory", "cc");
  long t = vtime(NULL);
  __asm__ volatile("pushfq\\n\\tandq $~0x100, (%%rsp)\\n\\tpopfq" ::: "memory", "cc");
  printf("%d %ld\\n", page_traps, t);
  return 0;
}`);
  assert.equal(c.status, 0);
  const [cTraps, cTime] = c.stdout.trim().split(' ').map(Number);
  assert.equal(t.trapsInPage, cTraps, `C counted ${cTraps} trap(s) in the page`);
  assert.ok(Math.abs(cTime! - Date.now() / 1000) < 5, 'the C program\'s call returned the time');
});

test('where calls of the page crash (none) the step is not applicable, and without an active test it is skipped: never a guess', async () => {
  const none = await runTrapFlagCheck(callGate({ outcome: 'sigsegv', signal: 'SIGSEGV', detail: 'SIGSEGV' }));
  assert.deepEqual(none, { status: 'not-applicable', trapsInPage: null, trapsTotal: null, calls: null, detail: 'not applicable: calls of the page crash here (SIGSEGV, as under vsyscall=none)' });
  const seccomp = await runTrapFlagCheck(callGate({ outcome: 'signal', signal: 'SIGSYS', detail: 'killed by SIGSYS (seccomp)' }));
  assert.equal(seccomp.status, 'not-applicable');
  assert.match(seccomp.detail, /killed by SIGSYS \(seccomp\)/);
  const off = await runTrapFlagCheck(callGate(null));
  assert.equal(off.status, 'skipped');
  assert.equal(off.calls, null);
  const broken = await runTrapFlagCheck(callGate({ outcome: 'failed', detail: 'child spawn-failed' }));
  assert.equal(broken.status, 'skipped');
  assert.match(broken.detail, /does not know whether a call returns/);
});

test('judging counts: one trap in the page is emulated, more is native (before 4.15), none or a stuck flag is not judged', () => {
  const now = 1_800_000_000;
  const c = (o: Partial<TrapFlagCounts>): TrapFlagCounts => ({ install: 0, inPage: 1, total: 9, time: now, restore: 0, flagsAfter: 0x246, ...o });
  assert.equal(judgeTrapCounts(c({}), now).calls, 'emulated');
  // Native: the entry's own mov, syscall and ret each trap in the page.
  const native = judgeTrapCounts(c({ inPage: 3, total: 11 }), now);
  assert.equal(native.calls, 'native');
  assert.match(native.detail, /^3 traps in the page \(11 in all\).*calls are native \(a kernel before 4\.15\)$/);
  const never = judgeTrapCounts(c({ inPage: 0 }), now);
  assert.equal(never.calls, null);
  assert.equal(never.status, 'ran');
  assert.match(never.detail, /cannot judge/);
  const swallowed = judgeTrapCounts(c({ inPage: 0, total: 0 }), now);
  assert.equal(swallowed.calls, null);
  assert.match(swallowed.detail, /no single-step trap at all/);
  assert.equal(judgeTrapCounts(c({ flagsAfter: 0x346 }), now).calls, null, 'TF still set: not trusted');
  const noHandler = judgeTrapCounts(c({ install: -22 }), now);
  assert.equal(noHandler.status, 'failed');
  assert.equal(noHandler.trapsInPage, null);
  assert.match(judgeTrapCounts(c({ time: 12 }), now).detail, /time\(\) returned 12, not the current time$/);
});
