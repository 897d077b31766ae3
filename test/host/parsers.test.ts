import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FIXTURES } from '../helpers.js';
import { parseMaps, findVsyscallLine } from '../../src/host/maps.js';
import { parseCmdline } from '../../src/host/cmdline.js';
import { parseKconfig } from '../../src/host/kconfig.js';
import { modeFromMaps, modeFromCmdline, modeFromKconfig, modeFromActive, reconcile, type ModeEvidence } from '../../src/host/vsyscall-mode.js';
import { kptiState, readVulnerabilities, parseCpuinfo, containerFacts, seccompFacts, perfFacts, parseCapEff, ia32Facts } from '../../src/host/facts.js';

const fixture = (n: string) => readFileSync(path.join(FIXTURES, 'host', n), 'utf8');

test('maps: the [vsyscall] line and its permissions decide the mode, for each mode', () => {
  const x = parseMaps(fixture('maps-xonly.txt'));
  const line = findVsyscallLine(x);
  assert.ok(line);
  assert.equal(line.start, 0xffffffffff600000n);
  assert.equal(line.end, 0xffffffffff601000n);
  assert.equal(line.perms, '--xp');
  assert.equal(modeFromMaps(fixture('maps-xonly.txt')).says, 'xonly');
  assert.equal(modeFromMaps(fixture('maps-emulate.txt')).says, 'emulate-or-native');
  assert.equal(modeFromMaps(fixture('maps-none.txt')).says, 'none');
  // every other line survives parsing with its name
  assert.ok(x.some((e) => e.name === '[vdso]'));
  assert.ok(x.some((e) => e.name === '[stack]'));
  assert.equal(x.length, fixture('maps-xonly.txt').trim().split('\n').length);
});

test('cmdline: vsyscall=, the last one wins, nothing after "--" counts', () => {
  assert.equal(parseCmdline('ro quiet vsyscall=none').vsyscall, 'none');
  assert.equal(parseCmdline('vsyscall=emulate console=ttyS0 vsyscall=xonly').vsyscall, 'xonly');
  assert.equal(parseCmdline('root=/dev/sda -- vsyscall=none').vsyscall, null);
  const bad = parseCmdline('vsyscall=bogus');
  assert.equal(bad.vsyscall, 'invalid');
  assert.equal(bad.vsyscallRaw, 'bogus');
  assert.equal(parseCmdline('nopti').pti, 'off');
  assert.equal(parseCmdline('pti=on').pti, 'on');
  assert.equal(parseCmdline('ia32_emulation=0').ia32Emulation, false);
  const real = parseCmdline(fixture('cmdline-firecracker.txt'));
  assert.equal(real.vsyscall, null);
  assert.equal(real.mitigations, 'auto,no_guest_host,no_guest_guest');
});

test('kconfig: default mode, emulation compiled out, 32-bit options', () => {
  const k = parseKconfig(fixture('config-6.18-xonly.txt'), 'fixture');
  assert.equal(k.legacyVsyscallDefault, 'xonly');
  assert.equal(k.vsyscallEmulation, true);
  assert.equal(k.ia32Emulation, true);
  assert.equal(k.ia32EmulationDefaultDisabled, false);
  assert.equal(k.pti, true);
  const cloud = parseKconfig('CONFIG_X86_VSYSCALL_EMULATION=y\n# CONFIG_LEGACY_VSYSCALL_XONLY is not set\nCONFIG_LEGACY_VSYSCALL_NONE=y\n', 'debian-cloud');
  assert.equal(cloud.legacyVsyscallDefault, 'none');
  const off = parseKconfig('# CONFIG_X86_VSYSCALL_EMULATION is not set\nCONFIG_LEGACY_VSYSCALL_XONLY=y\n', 'no-emulation');
  const cmd = parseCmdline('vsyscall=emulate');
  // the command line cannot bring back a page that was compiled out
  assert.equal(modeFromKconfig(off, cmd).says, 'none');
  assert.equal(modeFromKconfig(k, cmd).says, 'emulate');
  assert.equal(modeFromKconfig(k, parseCmdline('')).says, 'xonly');
  assert.equal(modeFromKconfig(null, cmd).says, null);
});

test('active test outcomes map to modes', () => {
  const w = { outcome: 'works' as const, detail: '' };
  const s = { outcome: 'sigsegv' as const, detail: '' };
  assert.equal(modeFromActive(w, s), 'xonly');
  assert.equal(modeFromActive(s, s), 'none');
  assert.equal(modeFromActive(w, w), 'emulate-or-native');
  assert.equal(modeFromActive({ outcome: 'signal', detail: '' }, s), 'unknown');
});

test('reconcile: agreeing sources, and disagreeing ones with the active test winning', () => {
  const ev = (source: ModeEvidence['source'], says: ModeEvidence['says']): ModeEvidence => ({ source, says, detail: String(says) });
  const ok = reconcile([ev('active-test', 'xonly'), ev('maps', 'xonly'), ev('cmdline', null), ev('kconfig', 'xonly')]);
  assert.equal(ok.mode, 'xonly');
  assert.equal(ok.agree, true);
  assert.equal(ok.decidedBy, 'active-test');

  // A kernel config that says none, but a cmdline that says emulate, and a page that behaves as emulate.
  const d = reconcile([ev('active-test', 'emulate-or-native'), ev('maps', 'emulate-or-native'), ev('cmdline', 'emulate'), ev('kconfig', 'none')]);
  assert.equal(d.mode, 'emulate');
  assert.equal(d.agree, false);
  assert.equal(d.disagreements.length, 1);
  assert.match(d.disagreements[0]!, /^kconfig says none .*active-test wins: emulate/);

  // Without an active test, maps decides over the command line.
  const m = reconcile([ev('maps', 'none'), ev('cmdline', 'xonly')]);
  assert.equal(m.mode, 'none');
  assert.equal(m.decidedBy, 'maps');
  // native only where another source says so (maps cannot tell it from emulate)
  assert.equal(reconcile([ev('maps', 'emulate-or-native'), ev('cmdline', 'native')]).mode, 'native');
  assert.equal(reconcile([]).mode, 'unknown');
  assert.equal(modeFromCmdline(parseCmdline('vsyscall=none')).says, 'none');
});

test('vulnerabilities, KPTI and other facts from captured texts', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vsys-vuln-'));
  try {
    writeFileSync(path.join(dir, 'meltdown'), 'Mitigation: PTI\n');
    writeFileSync(path.join(dir, 'l1tf'), 'Not affected\n');
    const v = readVulnerabilities(dir);
    assert.deepEqual(v.map((x) => [x.name, x.affected]), [['l1tf', false], ['meltdown', true]]);
    assert.deepEqual(kptiState(v, null, null), { enabled: true, evidence: 'meltdown: Mitigation: PTI' });
    writeFileSync(path.join(dir, 'meltdown'), 'Not affected\n');
    assert.equal(kptiState(readVulnerabilities(dir), null, null).enabled, false);
  } finally {
    rmSync(dir, { recursive: true });
  }
  const cpu = parseCpuinfo('processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 142\nmodel name\t: Intel(R) Core(TM) i7\nflags\t\t: fpu rdtscp constant_tsc pti\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n');
  assert.equal(cpu.count, 2);
  assert.equal(cpu.vendor, 'GenuineIntel');
  assert.equal(cpu.modelNumber, 142);
  assert.equal(cpu.flags.pti, true);
  assert.equal(cpu.flags.nonstopTsc, false);
  const c = containerFacts('0::/system.slice/docker-3f4e5d.scope\n', { dockerenv: false, containerenv: false }, {});
  assert.equal(c.inContainer, true);
  assert.equal(c.kind, 'docker');
  assert.equal(containerFacts('0::/\n', { dockerenv: false, containerenv: false }, {}).inContainer, false);
  assert.equal(containerFacts('0::/kubepods/burstable/pod1234/abc\n', { dockerenv: false, containerenv: false }, {}).kind, 'kubernetes');
  assert.equal(seccompFacts('Seccomp:\t2\nSeccomp_filters:\t1\n').mode, 'filter');
  assert.equal(seccompFacts('Seccomp:\t0\n').mode, 'disabled');
  assert.equal(parseCapEff('CapEff:\t000001ffffffffff\n'), 0x1ffffffffffn);
  const unpriv = perfFacts('CapEff:\t0000000000000000\n', '2\n', []);
  assert.equal(unpriv.tracepointsUsable, false);
  assert.match(unpriv.reason, /CAP_PERFMON/);
  const noIa32 = ia32Facts(parseKconfig('# CONFIG_IA32_EMULATION is not set\n', 'x'), parseCmdline('ia32_emulation=1'), null);
  assert.equal(noIa32.available, false);
  assert.equal(ia32Facts(parseKconfig('CONFIG_IA32_EMULATION=y\n', 'x'), parseCmdline('ia32_emulation=0'), '1\n').available, false);
});
