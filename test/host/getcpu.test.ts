// getcpu on every CPU: the real sweep on this host (every online CPU, cpu and node against
// sched_getcpu and sysfs), and the pure check fed wrong CPUs and nodes, which it must catch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { callGate, type CallGate } from '../../src/host/call-gate.js';
import { judgeGetcpu, parseCpuList, readSysfsNodes, runGetcpuCheck, type GetcpuInput } from '../../src/host/getcpu-check.js';
import { sweepGetcpu, type CpuObservation } from '../../src/host/getcpu-sweep.js';
import { allowedCpus } from '../../src/native/libc.js';
import { modeFromMaps, runActiveTest } from '../../src/host/vsyscall-mode.js';

const onLinux = process.platform === 'linux' && process.arch === 'x64';
const RUN: CallGate = { run: true };

/** Two CPUs on two nodes, every source right. */
function good(): GetcpuInput {
  const obs = (cpu: number, node: number): CpuObservation => ({
    cpu, pinError: null, schedGetcpu: cpu, syscall: { ret: 0, cpu, node }, vdso: { ret: 0, cpu, node }, vsyscall: { ret: 0, cpu, node },
  });
  return { online: [0, 1], sysfsNode: new Map([[0, 0], [1, 1]]), observations: [obs(0, 0), obs(1, 1)], vsyscallGate: RUN };
}

test('cpulists as the kernel prints them', () => {
  assert.deepEqual(parseCpuList('0-3,8,10-11\n'), [0, 1, 2, 3, 8, 10, 11]);
  assert.deepEqual(parseCpuList('0'), [0]);
  assert.deepEqual(parseCpuList(''), []);
  assert.throws(() => parseCpuList('0-1,x'), /not a cpulist/);
});

test('getcpu check: all right agrees; a wrong CPU or a wrong node from the vDSO or the page is caught and named', () => {
  const ok = judgeGetcpu(good());
  assert.equal(ok.status, 'agree');
  assert.equal(ok.summary, 'vDSO and vsyscall agree with sched_getcpu and sysfs on all 2 CPUs (cpu and node)');
  assert.equal(ok.cpusChecked, 2);

  const wrongCpu = good();
  wrongCpu.observations[1]!.vdso!.cpu = 0;
  const c = judgeGetcpu(wrongCpu);
  assert.equal(c.status, 'disagree');
  assert.deepEqual(c.disagreements, ['CPU 1: vDSO getcpu says CPU 0']);
  assert.match(c.summary, /^1 disagreement: CPU 1: vDSO getcpu says CPU 0$/);

  const wrongNode = good();
  wrongNode.observations[1]!.vsyscall!.node = 0;
  assert.deepEqual(judgeGetcpu(wrongNode).disagreements, ['CPU 1: vsyscall getcpu says node 0, sysfs says node 1']);

  // sysfs is the node's oracle: a kernel whose every getcpu says node 0 on a two-node machine is caught.
  const allZero = good();
  for (const o of allZero.observations) for (const r of [o.syscall!, o.vdso!, o.vsyscall!]) r.node = 0;
  assert.equal(judgeGetcpu(allZero).disagreements.length, 3);

  const sched = good();
  sched.observations[0]!.schedGetcpu = 1;
  assert.deepEqual(judgeGetcpu(sched).disagreements, ['CPU 0: sched_getcpu says CPU 1 while pinned to CPU 0']);
  const ret = good();
  ret.observations[0]!.vsyscall!.ret = -14;
  assert.deepEqual(judgeGetcpu(ret).disagreements, ['CPU 0: vsyscall getcpu returned -14']);
});

test('getcpu check: what was not compared is said (page not callable, CPU not pinnable, no sysfs node), and nothing compared is not "agree"', () => {
  const none = good();
  for (const o of none.observations) o.vsyscall = null;
  none.vsyscallGate = callGate({ outcome: 'sigsegv', signal: 'SIGSEGV', detail: 'SIGSEGV' });
  const n = judgeGetcpu(none);
  assert.equal(n.status, 'agree');
  assert.deepEqual(n.vsyscall, { status: 'not-applicable', why: 'calls of the page crash here (SIGSEGV, as under vsyscall=none)' });
  assert.equal(n.summary, 'vDSO agrees with sched_getcpu and sysfs on all 2 CPUs (cpu and node); vsyscall not called: calls of the page crash here (SIGSEGV, as under vsyscall=none)');

  const pin = good();
  pin.observations[1] = { cpu: 1, pinError: 'sched_setaffinity: Invalid argument', schedGetcpu: null, syscall: null, vdso: null, vsyscall: null };
  const p = judgeGetcpu(pin);
  assert.equal(p.status, 'agree');
  assert.equal(p.cpusChecked, 1);
  assert.match(p.summary, /on 1 of 2 online CPUs \(cpu and node\); not pinned: CPU 1 \(sched_setaffinity: Invalid argument\)$/);

  const noSysfs = good();
  noSysfs.sysfsNode = new Map([[0, null], [1, null]]);
  const s = judgeGetcpu(noSysfs);
  assert.equal(s.nodeSource, 'getcpu(2)');
  assert.match(s.summary, /with sched_getcpu and getcpu\(2\) on all 2 CPUs \(cpu and node\); node compared with getcpu\(2\) where sysfs links no node$/);

  const nothing = good();
  for (const o of nothing.observations) { o.vdso = null; o.vsyscall = null; }
  nothing.vsyscallGate = callGate(null);
  const f = judgeGetcpu(nothing);
  assert.equal(f.status, 'failed');
  assert.match(f.summary, /^not checked: this vDSO has no __vdso_getcpu, and the vsyscall page was not called/);

  const unpinned = good();
  unpinned.observations = unpinned.observations.map((o) => ({ ...o, pinError: 'EPERM', schedGetcpu: null, syscall: null, vdso: null, vsyscall: null }));
  assert.equal(judgeGetcpu(unpinned).status, 'failed');
});

test('on this host: vDSO (and the page, where calls return) agree with sched_getcpu and sysfs on every online CPU; a value changed in the real sweep is caught', { skip: !onLinux && 'not Linux x86-64', timeout: 60_000 }, async () => {
  const before = allowedCpus();
  const maps = modeFromMaps(readFileSync('/proc/self/maps', 'utf8')).says;
  const callable = maps === 'xonly' || maps === 'emulate-or-native';
  const gate = callGate((await runActiveTest()).call);
  const g = await runGetcpuCheck(gate);
  assert.equal(g.status, 'agree', g.summary);
  // os.cpus() reads /proc/stat: the kernel's own list of online CPUs
  assert.equal(g.cpusOnline, os.cpus().length);
  assert.equal(g.cpusChecked, g.cpusOnline, g.summary);
  assert.equal(g.vdso.compared, true);
  assert.equal(g.vsyscall.status, callable ? 'compared' : 'not-applicable');
  const hasNodeLinks = readdirSync('/sys/devices/system/cpu/cpu0').some((n) => /^node\d+$/.test(n));
  assert.equal(g.nodeSource, hasNodeLinks ? 'sysfs' : 'getcpu(2)');
  if (callable && hasNodeLinks) assert.equal(g.summary, `vDSO and vsyscall agree with sched_getcpu and sysfs on all ${g.cpusOnline} CPUs (cpu and node)`);

  // The same sweep (vDSO only, so safe in this process; it restores the affinity), with one answer made wrong, must not pass.
  const online = parseCpuList(readFileSync('/sys/devices/system/cpu/online', 'utf8'));
  const observations = sweepGetcpu(online, false);
  assert.deepEqual(allowedCpus(), before, 'the sweep put the affinity back');
  const input: GetcpuInput = { online, sysfsNode: readSysfsNodes(online), observations, vsyscallGate: callGate(null) };
  assert.equal(judgeGetcpu(input).status, 'agree');
  const last = observations[observations.length - 1]!;
  last.vdso!.node += 1;
  const bad = judgeGetcpu(input);
  assert.equal(bad.status, 'disagree');
  assert.match(bad.disagreements[0]!, new RegExp(`^CPU ${last.cpu}: vDSO getcpu says node ${last.vdso!.node}, `));
});
