// getcpu as the kernel's selftest checks it (tools/testing/selftests/x86/test_vsyscall.c), on every
// online CPU: the vDSO's and the vsyscall page's answers, CPU and node, against sched_getcpu, the CPU
// the thread was pinned to, and the node sysfs links the CPU to (/sys/devices/system/cpu/cpuN/nodeM).
// The sweep runs in a child (getcpu-sweep.ts); judgeGetcpu is pure, so a test can feed it a wrong answer.
import { readdirSync, readFileSync } from 'node:fs';
import type { CallGate } from './call-gate.js';
import { describeChildEnd, firstTryNote, runNodeChildSteady } from './child.js';
import type { CpuObservation, GetcpuReading } from './getcpu-sweep.js';

export interface GetcpuCheck {
  /** `agree`: every answer compared matched; `disagree`: one did not; `failed`: nothing could be compared (summary says why). */
  status: 'agree' | 'disagree' | 'failed';
  cpusOnline: number;
  /** CPUs pinned and compared. */
  cpusChecked: number;
  /** Whether the vDSO's getcpu was compared, and why not. */
  vdso: { compared: boolean; why: string | null };
  /** Whether the page's getcpu entry was compared; `not-applicable` where calls of the page crash. */
  vsyscall: { status: 'compared' | 'not-applicable' | 'skipped'; why: string | null };
  /** Where each CPU's expected node came from: sysfs, or getcpu(2) where sysfs links no node. */
  nodeSource: 'sysfs' | 'getcpu(2)' | 'mixed' | 'none';
  disagreements: string[];
  skippedCpus: { cpu: number; why: string }[];
  summary: string;
}

export interface GetcpuInput {
  online: number[];
  /** The node sysfs links each CPU to (null: no nodeM link). */
  sysfsNode: ReadonlyMap<number, number | null>;
  observations: CpuObservation[];
  vsyscallGate: CallGate;
}

/** A cpulist as the kernel prints it (/sys/devices/system/cpu/online): "0-3,8,10-11". */
export function parseCpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(',').filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new RangeError(`not a cpulist: ${JSON.stringify(text.trim())}`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    for (let c = lo; c <= hi; c++) out.push(c);
  }
  return out;
}

/** The one answer's disagreements with what is expected of CPU `cpu`. */
function compareReading(cpu: number, name: string, r: GetcpuReading, node: number | null, nodeFrom: string): string[] {
  const out: string[] = [];
  if (r.ret !== 0) out.push(`CPU ${cpu}: ${name} returned ${r.ret}`);
  if (r.cpu !== cpu) out.push(`CPU ${cpu}: ${name} says CPU ${r.cpu}`);
  if (node !== null && r.node !== node) out.push(`CPU ${cpu}: ${name} says node ${r.node}, ${nodeFrom} says node ${node}`);
  return out;
}

function compareCpu(o: CpuObservation, sysfsNode: number | null): { disagreements: string[]; nodeFrom: 'sysfs' | 'getcpu(2)' | 'none' } {
  const out: string[] = [];
  if (o.schedGetcpu !== o.cpu) out.push(`CPU ${o.cpu}: sched_getcpu says CPU ${o.schedGetcpu ?? '?'} while pinned to CPU ${o.cpu}`);
  // The node sysfs links the CPU to; without one (a kernel without NUMA), the system call's node.
  const fallback = o.syscall && o.syscall.ret === 0 ? o.syscall.node : null;
  const node = sysfsNode ?? fallback;
  const nodeFrom = sysfsNode !== null ? 'sysfs' : fallback !== null ? 'getcpu(2)' : 'none';
  // The system call's node is compared only with sysfs (where it is the fallback, it is the expectation).
  if (o.syscall) out.push(...compareReading(o.cpu, 'getcpu(2)', o.syscall, nodeFrom === 'sysfs' ? node : null, 'sysfs'));
  if (o.vdso) out.push(...compareReading(o.cpu, 'vDSO getcpu', o.vdso, node, nodeFrom));
  if (o.vsyscall) out.push(...compareReading(o.cpu, 'vsyscall getcpu', o.vsyscall, node, nodeFrom));
  return { disagreements: out, nodeFrom };
}

export function judgeGetcpu(input: GetcpuInput): GetcpuCheck {
  const pinned = input.observations.filter((o) => o.pinError === null);
  const skippedCpus = input.observations.filter((o) => o.pinError !== null).map((o) => ({ cpu: o.cpu, why: o.pinError! }));
  const vdsoCompared = pinned.length > 0 && pinned.every((o) => o.vdso !== null);
  const vsysCompared = pinned.length > 0 && pinned.every((o) => o.vsyscall !== null);
  const vdso = { compared: vdsoCompared, why: vdsoCompared ? null : pinned.some((o) => o.vdso) ? 'not asked on every CPU' : 'this vDSO has no __vdso_getcpu' };
  const g = input.vsyscallGate;
  const vsyscall: GetcpuCheck['vsyscall'] = vsysCompared ? { status: 'compared', why: null } : g.run ? { status: 'skipped', why: 'the sweep did not call the page' } : { status: g.status, why: g.why };
  const disagreements: string[] = [];
  const from = new Set<string>();
  for (const o of pinned) {
    const c = compareCpu(o, input.sysfsNode.get(o.cpu) ?? null);
    disagreements.push(...c.disagreements);
    from.add(c.nodeFrom);
  }
  const nodeSource: GetcpuCheck['nodeSource'] = from.size === 0 ? 'none' : from.size > 1 ? 'mixed' : ([...from][0] as GetcpuCheck['nodeSource']);
  const base = { cpusOnline: input.online.length, cpusChecked: pinned.length, vdso, vsyscall, nodeSource, disagreements, skippedCpus };
  const who = [vdsoCompared ? 'vDSO' : null, vsysCompared ? 'vsyscall' : null].filter((x): x is string => x !== null);
  if (pinned.length === 0) return { status: 'failed', ...base, summary: `not checked: no CPU could be pinned${skippedCpus[0] ? ` (CPU ${skippedCpus[0].cpu}: ${skippedCpus[0].why})` : ''}` };
  if (who.length === 0) return { status: 'failed', ...base, summary: `not checked: ${vdso.why}, and the vsyscall page was not called (${vsyscall.why})` };
  const notes: string[] = [];
  if (!vsysCompared) notes.push(`vsyscall not called: ${vsyscall.why}`);
  if (!vdsoCompared) notes.push(`vDSO not compared: ${vdso.why}`);
  if (skippedCpus.length) notes.push(`not pinned: ${skippedCpus.map((s) => `CPU ${s.cpu} (${s.why})`).join(', ')}`);
  if (nodeSource !== 'sysfs') notes.push(nodeSource === 'none' ? 'node not compared: sysfs links no node and getcpu(2) gave none' : 'node compared with getcpu(2) where sysfs links no node');
  const tail = notes.length ? `; ${notes.join('; ')}` : '';
  if (disagreements.length) {
    const shown = disagreements.slice(0, 4).join('; ') + (disagreements.length > 4 ? `; and ${disagreements.length - 4} more` : '');
    return { status: 'disagree', ...base, summary: `${disagreements.length} disagreement${disagreements.length === 1 ? '' : 's'}: ${shown}${tail}` };
  }
  const on = pinned.length === input.online.length ? `all ${pinned.length} CPUs` : `${pinned.length} of ${input.online.length} online CPUs`;
  const what = nodeSource === 'none' ? 'cpu' : 'cpu and node';
  return { status: 'agree', ...base, summary: `${who.join(' and ')} ${who.length === 1 ? 'agrees' : 'agree'} with sched_getcpu and ${nodeSource === 'sysfs' ? 'sysfs' : 'getcpu(2)'} on ${on} (${what})${tail}` };
}

/** The node each CPU's sysfs directory links to (cpuN/nodeM), null where there is none. */
export function readSysfsNodes(cpus: readonly number[], root = '/sys/devices/system/cpu'): Map<number, number | null> {
  const out = new Map<number, number | null>();
  for (const cpu of cpus) {
    let node: number | null = null;
    try {
      const m = readdirSync(`${root}/cpu${cpu}`).map((n) => /^node(\d+)$/.exec(n)).find((x) => x);
      if (m) node = Number(m[1]);
    } catch {
      // no such directory: no node to compare with
    }
    out.set(cpu, node);
  }
  return out;
}

function isObservations(v: unknown): v is CpuObservation[] {
  return Array.isArray(v) && v.every((o) => typeof (o as CpuObservation | null)?.cpu === 'number');
}

/** Pins a child to each online CPU in turn and judges what getcpu said there. */
export async function runGetcpuCheck(vsyscallGate: CallGate, root = '/sys/devices/system/cpu'): Promise<GetcpuCheck> {
  let online: number[];
  try {
    online = parseCpuList(readFileSync(`${root}/online`, 'utf8'));
  } catch (e) {
    return failed([], `not checked: cannot read ${root}/online (${(e as Error).message})`, vsyscallGate);
  }
  if (online.length === 0) return failed([], `not checked: ${root}/online lists no CPU`, vsyscallGate);
  const o = await runNodeChildSteady(new URL('./vsyscall-child.js', import.meta.url), ['getcpu', online.join(','), vsyscallGate.run ? 'vsyscall' : 'no-vsyscall'], 30_000);
  if (o.outcome !== 'works' || !isObservations(o.result)) {
    return failed(online, `not checked: the sweep's child ${describeChildEnd(o)}${firstTryNote(o)}`, vsyscallGate);
  }
  const j = judgeGetcpu({ online, sysfsNode: readSysfsNodes(online, root), observations: o.result, vsyscallGate });
  return { ...j, summary: j.summary + firstTryNote(o) };
}

function failed(online: number[], summary: string, g: CallGate): GetcpuCheck {
  return {
    status: 'failed', cpusOnline: online.length, cpusChecked: 0, vdso: { compared: false, why: 'the sweep did not run' },
    vsyscall: g.run ? { status: 'skipped', why: 'the sweep did not run' } : { status: g.status, why: g.why },
    nodeSource: 'none', disagreements: [], skippedCpus: [], summary,
  };
}
