// The seccomp, BPF, namespace and mount values of src/model/seccomp.ts and the syscall numbers the
// launcher uses, against the kernel's UAPI headers as gcc sees them: a C program prints each one
// (macros such as _IOWR and AUDIT_ARCH_X86_64 are expressions a text match cannot evaluate).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as M from '../../src/model/index.js';

const hasGcc = spawnSync('gcc', ['--version']).status === 0;

test('seccomp, BPF, namespace, mount and fcntl values agree with the UAPI headers (gcc)', { skip: !hasGcc && 'gcc not installed' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-seccomp-h-'));
  try {
    const c = `
#include <stdio.h>
#include <stddef.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <linux/audit.h>
#include <linux/prctl.h>
#include <linux/sched.h>
#include <linux/mount.h>
#define P(name, v) printf("%s %lld\\n", name, (long long)(v))
int main(void) {
  P("PR_SET_NO_NEW_PRIVS", PR_SET_NO_NEW_PRIVS);
  P("PR_SET_PDEATHSIG", PR_SET_PDEATHSIG);
  P("PR_SET_DUMPABLE", PR_SET_DUMPABLE);
  P("SIGKILL", SIGKILL);
  P("SECCOMP_SET_MODE_FILTER", SECCOMP_SET_MODE_FILTER);
  P("SECCOMP_FILTER_FLAG_NEW_LISTENER", SECCOMP_FILTER_FLAG_NEW_LISTENER);
  P("SECCOMP_RET_ALLOW", SECCOMP_RET_ALLOW);
  P("SECCOMP_RET_USER_NOTIF", SECCOMP_RET_USER_NOTIF);
  P("SECCOMP_RET_KILL_PROCESS", SECCOMP_RET_KILL_PROCESS);
  P("SECCOMP_IOCTL_NOTIF_RECV", (unsigned int)SECCOMP_IOCTL_NOTIF_RECV);
  P("AUDIT_ARCH_X86_64", AUDIT_ARCH_X86_64);
  P("SECCOMP_IOCTL_NOTIF_SEND", (unsigned int)SECCOMP_IOCTL_NOTIF_SEND);
  P("SECCOMP_USER_NOTIF_FLAG_CONTINUE", SECCOMP_USER_NOTIF_FLAG_CONTINUE);
  P("resp.id", offsetof(struct seccomp_notif_resp, id));
  P("resp.val", offsetof(struct seccomp_notif_resp, val));
  P("resp.error", offsetof(struct seccomp_notif_resp, error));
  P("resp.flags", offsetof(struct seccomp_notif_resp, flags));
  P("resp.size", sizeof(struct seccomp_notif_resp));
  P("data.nr", offsetof(struct seccomp_data, nr));
  P("data.arch", offsetof(struct seccomp_data, arch));
  P("data.instructionPointerLow", offsetof(struct seccomp_data, instruction_pointer));
  P("data.instructionPointerHigh", offsetof(struct seccomp_data, instruction_pointer) + 4);
  P("data.args", offsetof(struct seccomp_data, args));
  P("data.size", sizeof(struct seccomp_data));
  P("notif.id", offsetof(struct seccomp_notif, id));
  P("notif.pid", offsetof(struct seccomp_notif, pid));
  P("notif.flags", offsetof(struct seccomp_notif, flags));
  P("notif.data", offsetof(struct seccomp_notif, data));
  P("notif.size", sizeof(struct seccomp_notif));
  P("BPF.LD_W_ABS", BPF_LD | BPF_W | BPF_ABS);
  P("BPF.JEQ_K", BPF_JMP | BPF_JEQ | BPF_K);
  P("BPF.AND_K", BPF_ALU | BPF_AND | BPF_K);
  P("BPF.RET_K", BPF_RET | BPF_K);
  P("CLONE_NEWNS", CLONE_NEWNS);
  P("CLONE_NEWUSER", CLONE_NEWUSER);
  P("MS_BIND", MS_BIND);
  P("MS_REC", MS_REC);
  P("MS_PRIVATE", MS_PRIVATE);
  P("F_SETFD", F_SETFD);
  P("FD_CLOEXEC", FD_CLOEXEC);
  P("AT_FDCWD", AT_FDCWD);
  P("O_WRONLY", O_WRONLY);
  P("O_DIRECTORY", O_DIRECTORY);
  return 0;
}`;
    fs.writeFileSync(path.join(dir, 'h.c'), c);
    const cc = spawnSync('gcc', ['-o', path.join(dir, 'h'), path.join(dir, 'h.c')], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const out = spawnSync(path.join(dir, 'h'), { encoding: 'utf8' }).stdout;
    const want = new Map(out.trim().split('\n').map((l) => l.split(' ') as [string, string]).map(([k, v]) => [k, Number(v)]));
    const ours: Record<string, number> = {
      PR_SET_NO_NEW_PRIVS: M.PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG: M.PR_SET_PDEATHSIG, PR_SET_DUMPABLE: M.PR_SET_DUMPABLE, SIGKILL: M.SIGKILL, SECCOMP_SET_MODE_FILTER: M.SECCOMP_SET_MODE_FILTER,
      SECCOMP_FILTER_FLAG_NEW_LISTENER: M.SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_RET_ALLOW: M.SECCOMP_RET_ALLOW,
      SECCOMP_RET_USER_NOTIF: M.SECCOMP_RET_USER_NOTIF, SECCOMP_RET_KILL_PROCESS: M.SECCOMP_RET_KILL_PROCESS,
      SECCOMP_IOCTL_NOTIF_RECV: M.SECCOMP_IOCTL_NOTIF_RECV, AUDIT_ARCH_X86_64: M.AUDIT_ARCH_X86_64,
      SECCOMP_IOCTL_NOTIF_SEND: M.SECCOMP_IOCTL_NOTIF_SEND, SECCOMP_USER_NOTIF_FLAG_CONTINUE: M.SECCOMP_USER_NOTIF_FLAG_CONTINUE,
      ...Object.fromEntries(Object.entries(M.SECCOMP_NOTIF_RESP).map(([k, v]) => [`resp.${k}`, v])),
      ...Object.fromEntries(Object.entries(M.SECCOMP_DATA).map(([k, v]) => [`data.${k}`, v])),
      ...Object.fromEntries(Object.entries(M.SECCOMP_NOTIF).map(([k, v]) => [`notif.${k}`, v])),
      ...Object.fromEntries(Object.entries(M.BPF).map(([k, v]) => [`BPF.${k}`, v])),
      CLONE_NEWNS: M.CLONE_NEWNS, CLONE_NEWUSER: M.CLONE_NEWUSER, MS_BIND: M.MS_BIND, MS_REC: M.MS_REC, MS_PRIVATE: M.MS_PRIVATE,
      F_SETFD: M.F_SETFD, FD_CLOEXEC: M.FD_CLOEXEC, AT_FDCWD: M.AT_FDCWD, O_WRONLY: M.O_WRONLY, O_DIRECTORY: M.O_DIRECTORY,
    };
    for (const [k, v] of Object.entries(ours)) assert.equal(v, want.get(k), k);
    assert.equal(Object.keys(ours).length, want.size, 'every printed value is checked');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
