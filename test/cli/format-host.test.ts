// The probe report's text, from host reports built here (no host is read): every line exact, for a
// full xonly guest and for a bare one (no CPU facts, no vDSO, unknowns, sources that disagree).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatHostHeader, formatProbe, formatVsyscallBlock, hex } from '../../src/cli/format-host.js';
import type { HostReport } from '../../src/host/probe.js';
import { MODE_BEHAVIOUR } from '../../src/model/modes.js';

function full(): HostReport {
  return {
    kernel: { release: '6.18.0-vsys', version: '#1 SMP', arch: 'x86_64', platform: 'linux' },
    cpu: { vendor: 'AuthenticAMD', model: 'AMD EPYC 7B13', family: 25, modelNumber: 1, count: 2, flags: { rdtscp: true, constantTsc: true, nonstopTsc: true, pti: false, hypervisor: true } },
    vsyscall: {
      mode: 'xonly', decidedBy: 'maps', agree: true, disagreements: [], behaviour: MODE_BEHAVIOUR.xonly, active: null, trapFlag: null, vmReadv: null,
      evidence: [
        { source: 'maps', says: 'xonly', detail: 'ffffffffff600000-ffffffffff601000 --xp [vsyscall]' },
        { source: 'cmdline', says: null, detail: 'no vsyscall= on the command line' },
        { source: 'kconfig', says: 'xonly', detail: 'CONFIG_LEGACY_VSYSCALL_XONLY=y' },
      ],
    },
    vdso: {
      present: true, base: 0x7ffd1234e000n, size: 8192, soname: 'linux-vdso.so.1', hash: 'gnu',
      symbols: [
        { name: '__vdso_clock_gettime', version: 'LINUX_2.6', address: 0x7ffd1234ea00n, offset: 0xa00, size: 5, type: 'func', binding: 'global' },
        { name: 'clock_gettime', version: 'LINUX_2.6', address: 0x7ffd1234ea00n, offset: 0xa00, size: 5, type: 'func', binding: 'weak' },
        { name: '__vdso_time', version: 'LINUX_2.6', address: 0x7ffd1234eb00n, offset: 0xb00, size: 5, type: 'func', binding: 'global' },
        { name: 'LINUX_2.6', version: null, address: 0n, offset: 0, size: 0, type: 'object', binding: 'global' },
      ],
      health: { userSpace: true, clocksource: 'kvm-clock', method: 'perf-count', syscallsPerCall: 0, controlSyscallsPerCall: 1, vdsoNs: 20, syscallNs: 130, summary: 'clock_gettime stays in user space (0.00 syscalls per call)' },
    },
    getcpu: {
      status: 'agree', cpusOnline: 2, cpusChecked: 2, vdso: { compared: true, why: null }, vsyscall: { status: 'compared', why: null }, nodeSource: 'sysfs', disagreements: [], skippedCpus: [],
      summary: 'vDSO and vsyscall agree with sched_getcpu and sysfs on all 2 CPUs (cpu and node)',
    },
    clocksource: { current: 'kvm-clock', available: ['kvm-clock', 'tsc', 'acpi_pm'] },
    kpti: { enabled: false, evidence: '/sys/devices/system/cpu/vulnerabilities/meltdown: Not affected' },
    vulnerabilities: [
      { name: 'meltdown', status: 'Not affected', affected: false },
      { name: 'spectre_v2', status: 'Mitigation: Retpolines', affected: true },
      { name: 'retbleed', status: 'Mitigation: untrained return thunk', affected: true },
    ],
    ia32: { available: true, vsyscall32: null, evidence: ['CONFIG_IA32_EMULATION=y', 'no ia32_emulation= on the command line'] },
    perf: { euid: 0, capPerfmon: true, capSysAdmin: true, paranoid: 2, tracepointsUsable: true, reason: 'root', tracefs: '/sys/kernel/tracing', vsyscallTracepoint: true },
    traceCounting: { backend: 'bpf', reason: "its eBPF programs load and pass this kernel's verifier" },
    container: { inContainer: false, kind: null, evidence: [] },
    seccomp: { mode: 'disabled', filters: null, note: '' },
    cmdline: null,
    kconfig: null,
    skipped: [],
  };
}

function bare(): HostReport {
  const r = full();
  r.cpu = null;
  r.vsyscall = {
    mode: 'none', decidedBy: 'active-test', agree: false, behaviour: null, active: null, trapFlag: null, vmReadv: null,
    disagreements: ['kconfig says xonly, the active test says none'],
    evidence: [
      { source: 'kconfig', says: 'xonly', detail: 'CONFIG_LEGACY_VSYSCALL_XONLY=y' },
      { source: 'active-test', says: 'none', detail: 'calling time() at 0xffffffffff600400: SIGSEGV' },
    ],
  };
  r.vdso = { present: false, base: null, size: null, soname: null, hash: null, symbols: [], health: null };
  r.getcpu = null;
  r.clocksource = { current: null, available: [] };
  r.kpti = { enabled: null, evidence: 'no vulnerabilities/meltdown file' };
  r.vulnerabilities = [];
  r.ia32 = { available: null, vsyscall32: null, evidence: [] };
  r.perf = { euid: 1000, capPerfmon: false, capSysAdmin: false, paranoid: null, tracepointsUsable: false, reason: 'not root', tracefs: null, vsyscallTracepoint: false };
  r.traceCounting = null;
  r.container = { inContainer: true, kind: null, evidence: ['/.dockerenv exists'] };
  r.seccomp = { mode: 'filter', filters: 2, note: 'a filter may kill emulated vsyscalls' };
  r.skipped = [{ what: 'kernel config', why: 'neither /proc/config.gz nor /boot/config-6.18.0-vsys exists' }, { what: 'active vsyscall test', why: 'disabled by option' }];
  return r;
}

test('hex: bigints as 0x…, null and undefined as "-"', () => {
  assert.equal(hex(0xffffffffff600000n), '0xffffffffff600000');
  assert.equal(hex(0n), '0x0');
  assert.equal(hex(null), '-');
  assert.equal(hex(undefined), '-');
});

test('header: kernel, CPU model and vendor, CPU count (singular for one), or "CPU unknown"', () => {
  const r = full();
  assert.equal(formatHostHeader(r), 'Linux 6.18.0-vsys x86_64, AMD EPYC 7B13 (AuthenticAMD), 2 CPUs');
  r.cpu = { ...r.cpu!, count: 1, model: null, vendor: null };
  assert.equal(formatHostHeader(r), 'Linux 6.18.0-vsys x86_64, unknown CPU (?), 1 CPU');
  assert.equal(formatHostHeader(bare()), 'Linux 6.18.0-vsys x86_64, CPU unknown');
});

test('vsyscall block: agreeing sources counted (those that say nothing left out), disagreements and the winner named', () => {
  assert.deepEqual(formatVsyscallBlock(full()), [
    'vsyscall mode: xonly   (all 2 sources that say anything agree)',
    '  maps          ffffffffff600000-ffffffffff601000 --xp [vsyscall]',
    '  cmdline       no vsyscall= on the command line',
    '  kconfig       CONFIG_LEGACY_VSYSCALL_XONLY=y',
    `  meaning       ${MODE_BEHAVIOUR.xonly.note}`,
  ]);
  assert.deepEqual(formatVsyscallBlock(bare()), [
    'vsyscall mode: none   (sources disagree; active-test wins)',
    '  kconfig       CONFIG_LEGACY_VSYSCALL_XONLY=y',
    '  active-test   calling time() at 0xffffffffff600400: SIGSEGV',
    '  DISAGREES     kconfig says xonly, the active test says none',
  ]);
});

test('probe report, a full xonly guest: every line', () => {
  assert.equal(formatProbe(full()), [
    'vsys probe — Linux 6.18.0-vsys x86_64, AMD EPYC 7B13 (AuthenticAMD), 2 CPUs',
    '',
    'vsyscall mode: xonly   (all 2 sources that say anything agree)',
    '  maps          ffffffffff600000-ffffffffff601000 --xp [vsyscall]',
    '  cmdline       no vsyscall= on the command line',
    '  kconfig       CONFIG_LEGACY_VSYSCALL_XONLY=y',
    `  meaning       ${MODE_BEHAVIOUR.xonly.note}`,
    '',
    'vDSO: linux-vdso.so.1 at 0x7ffd1234e000, 8192 bytes, 4 symbols (LINUX_2.6, DT_GNU_HASH)',
    '  functions     __vdso_clock_gettime __vdso_time',
    '  health        clock_gettime stays in user space (0.00 syscalls per call) [counted with perf]',
    'getcpu:         vDSO and vsyscall agree with sched_getcpu and sysfs on all 2 CPUs (cpu and node)',
    '',
    'clocksource:    kvm-clock (available: kvm-clock tsc acpi_pm)',
    'KPTI:           off (/sys/devices/system/cpu/vulnerabilities/meltdown: Not affected)',
    'vulnerabilities: 2 of 3 entries need a mitigation',
    '                spectre_v2: Mitigation: Retpolines',
    '                retbleed: Mitigation: untrained return thunk',
    '32-bit paths:   available (CONFIG_IA32_EMULATION=y; no ia32_emulation= on the command line)',
    'perf:           tracepoints usable — root; paranoid=2; tracefs /sys/kernel/tracing; vsyscall:emulate_vsyscall present',
    "vsys trace:     counts with eBPF (its eBPF programs load and pass this kernel's verifier)",
    'container:      no evidence of one',
    'seccomp:        disabled',
    '',
  ].join('\n'));
});

test('probe report, a bare host: no vDSO (with and without a reason), unknowns, no trace line, skipped probes listed', () => {
  const lines = formatProbe(bare()).split('\n');
  assert.deepEqual(lines, [
    'vsys probe — Linux 6.18.0-vsys x86_64, CPU unknown',
    '',
    'vsyscall mode: none   (sources disagree; active-test wins)',
    '  kconfig       CONFIG_LEGACY_VSYSCALL_XONLY=y',
    '  active-test   calling time() at 0xffffffffff600400: SIGSEGV',
    '  DISAGREES     kconfig says xonly, the active test says none',
    '',
    'vDSO: absent — unknown reason',
    '',
    'clocksource:    unknown (available: unknown)',
    'KPTI:           unknown (no vulnerabilities/meltdown file)',
    'vulnerabilities: 0 of 0 entries need a mitigation',
    '32-bit paths:   unknown (no evidence)',
    'perf:           tracepoints not usable — not root; paranoid=?; tracefs not mounted',
    'container:      yes (unknown kind: /.dockerenv exists)',
    'seccomp:        filter (2 filters) — a filter may kill emulated vsyscalls',
    '',
    'skipped:',
    '                kernel config: neither /proc/config.gz nor /boot/config-6.18.0-vsys exists',
    '                active vsyscall test: disabled by option',
    '',
  ]);
  const r = bare();
  r.vdso.error = 'no AT_SYSINFO_EHDR in the auxiliary vector';
  assert.match(formatProbe(r), /^vDSO: absent — no AT_SYSINFO_EHDR in the auxiliary vector$/m);
});

test('probe report variants: vDSO without soname or versions (DT_HASH), a clock that falls back, timed health, perf and no-count trace backends', () => {
  const r = full();
  r.vdso = { ...r.vdso, soname: null, hash: 'sysv', symbols: [{ name: '__kernel_vsyscall', version: null, address: 0x1000n, offset: 0x400, size: 8, type: 'func', binding: 'global' }] };
  r.vdso.health = { ...r.vdso.health!, userSpace: false, method: 'timing', summary: 'clock_gettime falls back to the syscall (clocksource xen)' };
  r.traceCounting = { backend: 'perf', reason: 'eBPF refused: EPERM' };
  r.kpti = { enabled: true, evidence: 'pti flag' };
  r.perf = { ...r.perf, tracefs: '/sys/kernel/tracing', vsyscallTracepoint: false };
  const text = formatProbe(r);
  assert.match(text, /^vDSO: present at 0x7ffd1234e000, 8192 bytes, 1 symbols \(unversioned, DT_HASH\)$/m);
  assert.match(text, /^ {2}functions {5}__kernel_vsyscall$/m);
  assert.match(text, /^ {2}WARNING {7}clock_gettime falls back to the syscall \(clocksource xen\) \[timed\]$/m);
  assert.match(text, /^vsys trace: {5}counts with perf counters \(eBPF refused: EPERM\)$/m);
  assert.match(text, /^KPTI: {11}on \(pti flag\)$/m);
  assert.match(text, /; vsyscall:emulate_vsyscall absent$/m);
  r.traceCounting = { backend: 'none', reason: 'no vsyscall:emulate_vsyscall tracepoint' };
  assert.match(formatProbe(r), /^vsys trace: {5}cannot count here \(no vsyscall:emulate_vsyscall tracepoint\)$/m);
  r.vdso.health = null;
  assert.doesNotMatch(formatProbe(r), /health|WARNING/);
});
