// Text formatting of the host report for `vsys probe` and the doctor.
import type { HostReport } from '../host/probe.js';

export function hex(v: bigint | null | undefined): string {
  return v === null || v === undefined ? '-' : `0x${v.toString(16)}`;
}

function row(label: string, text: string): string {
  return `  ${label.padEnd(14)}${text}`;
}

export function formatHostHeader(r: HostReport): string {
  const cpu = r.cpu ? `${r.cpu.model ?? 'unknown CPU'} (${r.cpu.vendor ?? '?'}), ${r.cpu.count} CPU${r.cpu.count === 1 ? '' : 's'}` : 'CPU unknown';
  return `Linux ${r.kernel.release} ${r.kernel.arch}, ${cpu}`;
}

export function formatVsyscallBlock(r: HostReport): string[] {
  const v = r.vsyscall;
  const agree = v.agree ? `all ${v.evidence.filter((e) => e.says !== null).length} sources that say anything agree` : `sources disagree; ${v.decidedBy} wins`;
  const out = [`vsyscall mode: ${v.mode}   (${agree})`];
  for (const e of v.evidence) out.push(row(e.source, e.detail));
  for (const d of v.disagreements) out.push(row('DISAGREES', d));
  if (v.behaviour) out.push(row('meaning', v.behaviour.note));
  return out;
}

export function formatProbe(r: HostReport): string {
  const out: string[] = [`vsys probe — ${formatHostHeader(r)}`, ''];
  out.push(...formatVsyscallBlock(r), '');
  if (r.vdso.present) {
    const names = r.vdso.symbols.filter((s) => s.name.startsWith('__vdso_') || s.name.startsWith('__kernel_')).map((s) => s.name);
    const versions = [...new Set(r.vdso.symbols.map((s) => s.version).filter((x): x is string => !!x))];
    out.push(`vDSO: ${r.vdso.soname ?? 'present'} at ${hex(r.vdso.base)}, ${r.vdso.size} bytes, ${r.vdso.symbols.length} symbols (${versions.join(', ') || 'unversioned'}, ${r.vdso.hash === 'gnu' ? 'DT_GNU_HASH' : 'DT_HASH'})`);
    out.push(row('functions', names.join(' ')));
    if (r.vdso.health) out.push(row(r.vdso.health.userSpace === false ? 'WARNING' : 'health', r.vdso.health.summary + (r.vdso.health.method === 'perf-count' ? ' [counted with perf]' : ' [timed]')));
  } else {
    out.push(`vDSO: absent — ${r.vdso.error ?? 'unknown reason'}`);
  }
  if (r.getcpu) out.push(`getcpu:         ${r.getcpu.status === 'disagree' ? 'DISAGREES: ' : ''}${r.getcpu.summary}`);
  out.push('');
  out.push(`clocksource:    ${r.clocksource.current ?? 'unknown'} (available: ${r.clocksource.available.join(' ') || 'unknown'})`);
  out.push(`KPTI:           ${r.kpti.enabled === null ? 'unknown' : r.kpti.enabled ? 'on' : 'off'} (${r.kpti.evidence})`);
  const affected = r.vulnerabilities.filter((v) => v.affected);
  out.push(`vulnerabilities: ${affected.length} of ${r.vulnerabilities.length} entries need a mitigation`);
  for (const v of affected) out.push(row('', `${v.name}: ${v.status}`));
  out.push(`32-bit paths:   ${r.ia32.available === null ? 'unknown' : r.ia32.available ? 'available' : 'unavailable'} (${r.ia32.evidence.join('; ') || 'no evidence'})`);
  out.push(`perf:           ${r.perf.tracepointsUsable ? 'tracepoints usable' : 'tracepoints not usable'} — ${r.perf.reason}; paranoid=${r.perf.paranoid ?? '?'}; tracefs ${r.perf.tracefs ?? 'not mounted'}${r.perf.tracefs ? `; vsyscall:emulate_vsyscall ${r.perf.vsyscallTracepoint ? 'present' : 'absent'}` : ''}`);
  if (r.traceCounting) out.push(`vsys trace:     ${r.traceCounting.backend === 'bpf' ? 'counts with eBPF' : r.traceCounting.backend === 'perf' ? 'counts with perf counters' : 'cannot count here'} (${r.traceCounting.reason})`);
  out.push(`container:      ${r.container.inContainer ? `yes (${r.container.kind ?? 'unknown kind'}: ${r.container.evidence.join('; ')})` : 'no evidence of one'}`);
  out.push(`seccomp:        ${r.seccomp.mode}${r.seccomp.filters ? ` (${r.seccomp.filters} filters)` : ''}${r.seccomp.note ? ` — ${r.seccomp.note}` : ''}`);
  if (r.skipped.length) {
    out.push('', 'skipped:');
    for (const s of r.skipped) out.push(row('', `${s.what}: ${s.why}`));
  }
  return out.join('\n') + '\n';
}
