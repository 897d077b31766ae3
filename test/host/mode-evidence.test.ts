// The trap flag and process_vm_readv as evidence for the mode: with the other sources as each mode's
// kernel gives them they agree on that mode; the trap flag alone tells native from emulate; a source
// that contradicts the rest is named. Then `vsys probe --json` on this host, against the kernel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { modeFromMaps, modeFromTrapFlag, modeFromVmReadv, reconcile, type ModeEvidence } from '../../src/host/vsyscall-mode.js';
import type { TrapFlagCheck } from '../../src/host/trap-flag.js';
import type { VmReadvCheck } from '../../src/host/vm-readv.js';
import { runVsys } from '../helpers.js';

const ev = (source: ModeEvidence['source'], says: ModeEvidence['says']): ModeEvidence => ({ source, says, detail: String(says) });
const trap = (calls: TrapFlagCheck['calls']): TrapFlagCheck => ({ status: calls ? 'ran' : 'not-applicable', trapsInPage: calls === 'native' ? 3 : calls ? 1 : null, trapsTotal: null, calls, detail: '' });
const readv = (readable: boolean): VmReadvCheck => ({ status: 'ran', readable, bytes: readable ? 4096 : null, errno: readable ? null : 'EFAULT', matchesDirectRead: readable ? true : null, detail: '' });

test('each mode as its kernel answers: the six sources agree on it', () => {
  const cases: [string, ModeEvidence[]][] = [
    ['xonly', [ev('active-test', 'xonly'), modeFromTrapFlag(trap('emulated')), modeFromVmReadv(readv(false)), ev('maps', 'xonly'), ev('cmdline', 'xonly'), ev('kconfig', 'xonly')]],
    ['emulate', [ev('active-test', 'emulate-or-native'), modeFromTrapFlag(trap('emulated')), modeFromVmReadv(readv(true)), ev('maps', 'emulate-or-native'), ev('cmdline', 'emulate'), ev('kconfig', 'emulate')]],
    ['none', [ev('active-test', 'none'), modeFromTrapFlag(trap(null)), modeFromVmReadv(readv(false)), ev('maps', 'none'), ev('cmdline', 'none'), ev('kconfig', 'none')]],
    ['native', [ev('active-test', 'emulate-or-native'), modeFromTrapFlag(trap('native')), modeFromVmReadv(readv(true)), ev('maps', 'emulate-or-native'), ev('cmdline', null), ev('kconfig', null)]],
  ];
  for (const [mode, evidence] of cases) {
    const r = reconcile(evidence);
    assert.equal(r.mode, mode, JSON.stringify(evidence));
    assert.equal(r.agree, true, `${mode}: ${r.disagreements.join('; ')}`);
    assert.equal(r.decidedBy, 'active-test');
  }
  assert.equal(modeFromTrapFlag(trap('emulated')).says, 'xonly-or-emulate');
  assert.equal(modeFromTrapFlag(trap(null)).says, null, 'not applicable says nothing');
});

test('the trap flag tells native from emulate where nothing else can; a source at odds with the rest is named', () => {
  // Readable and callable with no other word: emulate, as before the trap flag.
  assert.equal(reconcile([ev('active-test', 'emulate-or-native'), ev('maps', 'emulate-or-native')]).mode, 'emulate');
  // The page's own instructions stepped: native, even against a command line that says emulate.
  const n = reconcile([ev('active-test', 'emulate-or-native'), modeFromTrapFlag(trap('native')), ev('cmdline', 'emulate')]);
  assert.equal(n.mode, 'native');
  assert.equal(n.agree, false);
  assert.match(n.disagreements[0]!, /^cmdline says emulate .*active-test wins: native$/);
  // A debugger reading a page the active test could not read: named, the active test wins.
  const r = reconcile([ev('active-test', 'xonly'), modeFromVmReadv(readv(true)), ev('maps', 'xonly')]);
  assert.equal(r.mode, 'xonly');
  assert.equal(r.agree, false);
  assert.match(r.disagreements[0]!, /^vm-readv says emulate /);
  // Pairs alone narrow each other: emulated calls and a readable page are emulate.
  assert.equal(reconcile([modeFromTrapFlag(trap('emulated')), modeFromVmReadv(readv(true))]).mode, 'emulate');
  assert.equal(reconcile([modeFromTrapFlag(trap('emulated')), modeFromVmReadv(readv(false))]).mode, 'xonly');
  // One pair alone decides nothing.
  assert.equal(reconcile([modeFromVmReadv(readv(false))]).mode, 'unknown');
});

test('vsys probe --json on this host: the three checks, by the kernel\'s [vsyscall] line', { skip: (process.platform !== 'linux' || process.arch !== 'x64') && 'not Linux x86-64', timeout: 120_000 }, () => {
  const maps = modeFromMaps(readFileSync('/proc/self/maps', 'utf8')).says;
  const r = runVsys(['probe', '--json', '--no-measure']);
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  const sources = j.vsyscall.evidence.map((e: ModeEvidence) => e.source);
  assert.deepEqual(sources, ['active-test', 'trap-flag', 'vm-readv', 'maps', 'cmdline', 'kconfig']);
  assert.equal(j.vsyscall.agree, true, JSON.stringify(j.vsyscall.evidence));
  if (maps === 'none') {
    assert.equal(j.vsyscall.trapFlag.status, 'not-applicable');
    assert.equal(j.vsyscall.trapFlag.trapsInPage, null);
  } else {
    assert.equal(j.vsyscall.trapFlag.status, 'ran');
    assert.equal(j.vsyscall.trapFlag.trapsInPage, 1);
    assert.equal(j.vsyscall.trapFlag.calls, 'emulated');
  }
  assert.equal(j.vsyscall.vmReadv.readable, maps === 'emulate-or-native');
  assert.equal(j.getcpu.status, 'agree', j.getcpu.summary);
  assert.equal(j.getcpu.vsyscall.status, maps === 'none' ? 'not-applicable' : 'compared');

  const text = runVsys(['probe', '--no-measure']).stdout;
  assert.match(text, maps === 'none' ? /^ {2}trap-flag {5}not applicable: calls of the page crash here/m : /^ {2}trap-flag {5}1 trap in the page \(\d+ in all\) stepping a call of time\(\): calls are emulated by the kernel \(not native\)$/m);
  assert.match(text, maps === 'emulate-or-native' ? /^ {2}vm-readv {6}process_vm_readv reads the page/m : /^ {2}vm-readv {6}process_vm_readv of the page fails \(EFAULT\)/m);
  assert.match(text, /^getcpu: {9}vDSO (and vsyscall agree|agrees) with sched_getcpu and sysfs on all \d+ CPUs \(cpu and node\)/m);

  const off = JSON.parse(runVsys(['probe', '--json', '--no-measure', '--no-active']).stdout);
  assert.equal(off.vsyscall.trapFlag, null);
  assert.equal(off.vsyscall.vmReadv, null);
  assert.equal(off.getcpu.vsyscall.status, 'skipped');
  assert.equal(off.getcpu.vdso.compared, true);
});
