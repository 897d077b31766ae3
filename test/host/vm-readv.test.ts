// process_vm_readv of the page (the debugger's view): against the kernel on this host and a gcc-built
// C program making the same call, and the judgement of child outputs no host here produces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { judgeVmReadv, parseVmReadvLines, runVmReadvCheck } from '../../src/host/vm-readv.js';
import { modeFromMaps, modeFromVmReadv } from '../../src/host/vsyscall-mode.js';
import { hasGcc, runC } from './c-oracle.js';

const onLinux = process.platform === 'linux' && process.arch === 'x64';

const C_READV = `#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/uio.h>
#include <unistd.h>
int main(void) {
  static char buf[4096];
  struct iovec local = { buf, sizeof buf }, remote = { (void *)0xffffffffff600000UL, 4096 };
  ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
  printf("%zd %d\\n", n, n < 0 ? errno : 0);
  return 0;
}`;

test('on this host: process_vm_readv of the page fails where the page is not readable (xonly, none) and reads it where it is, as a C program finds', { skip: !onLinux && 'not Linux x86-64' }, async () => {
  const maps = modeFromMaps(readFileSync('/proc/self/maps', 'utf8')).says;
  const v = await runVmReadvCheck();
  assert.equal(v.status, 'ran', v.detail);
  if (maps === 'xonly' || maps === 'none') {
    assert.equal(v.readable, false, v.detail);
    assert.equal(v.errno, 'EFAULT');
    assert.equal(v.matchesDirectRead, null);
    assert.equal(modeFromVmReadv(v).says, 'xonly-or-none');
  } else {
    assert.equal(v.readable, true, v.detail);
    assert.equal(v.bytes, 4096);
    assert.equal(v.matchesDirectRead, true);
    assert.equal(modeFromVmReadv(v).says, 'emulate-or-native');
  }
  if (!hasGcc()) return;
  const [n, err] = runC(C_READV).stdout.trim().split(' ').map(Number);
  if (v.readable) assert.equal(n, 4096);
  else {
    assert.equal(n, -1);
    assert.equal(err, constants.errno[v.errno as keyof typeof constants.errno], `C saw errno ${err}`);
  }
});

test('judging the child: a failure names its errno, a short or unverified read is said so, a crash after the read is reported', () => {
  const fail = judgeVmReadv({ read: { errno: 14 }, matches: null, ended: 'exit 0' });
  assert.deepEqual(fail, { status: 'ran', readable: false, bytes: null, errno: 'EFAULT', matchesDirectRead: null, detail: 'process_vm_readv of the page fails (EFAULT): a debugger cannot read it' });
  const short = judgeVmReadv({ read: { bytes: 100 }, matches: null, ended: 'exit 0' });
  assert.equal(short.readable, false);
  assert.match(short.detail, /copied 100 of 4096 bytes/);
  assert.equal(judgeVmReadv({ read: { bytes: 4096 }, matches: true, ended: 'exit 0' }).matchesDirectRead, true);
  const differ = judgeVmReadv({ read: { bytes: 4096 }, matches: false, ended: 'exit 0' });
  assert.equal(differ.readable, true);
  assert.equal(differ.matchesDirectRead, false);
  assert.match(differ.detail, /not the bytes a direct read finds/);
  const crashed = judgeVmReadv({ read: { bytes: 4096 }, matches: null, ended: 'killed by SIGSEGV' });
  assert.equal(crashed.matchesDirectRead, null);
  assert.match(crashed.detail, /a direct read of it then failed \(killed by SIGSEGV\)/);
  const none = judgeVmReadv({ read: null, matches: null, ended: 'timeout' });
  assert.equal(none.status, 'failed');
  assert.equal(none.readable, null);
  assert.equal(modeFromVmReadv(none).says, null, 'a check that did not run says nothing about the mode');
});

test('the child\'s lines: its two JSON lines are read, anything else (a warning, a torn line) is skipped', () => {
  const l = parseVmReadvLines('(node:1) Warning: something\n{"read":{"bytes":4096}}\n{"matches":true}\n{"rea', 'exit 0');
  assert.deepEqual(l, { read: { bytes: 4096 }, matches: true, ended: 'exit 0' });
  assert.deepEqual(parseVmReadvLines('{"read":{"errno":14}}\n', 'exit 0').read, { errno: 14 });
  assert.equal(parseVmReadvLines('{"read":{"what":1}}\n', 'exit 0').read, null);
});
