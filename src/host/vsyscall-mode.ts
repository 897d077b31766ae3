// Decides the vsyscall mode of this host from four kinds of evidence and says where they disagree:
// (a) the [vsyscall] line of /proc/self/maps, (b) vsyscall= on /proc/cmdline, (c) the kernel config,
// (d) an active test in child processes (call the time entry; read one byte of the page).
// The active test wins: it is what an old program will meet here.
import { readFileSync } from 'node:fs';
import { MODE_BEHAVIOUR, type VsyscallMode } from '../model/modes.js';
import { modeOfVsyscallPerms } from '../model/maps-mode.js';
import { runNodeChild, type ChildOutcome } from './child.js';
import { parseCmdline, type CmdlineFacts } from './cmdline.js';
import type { KconfigFacts } from './kconfig.js';
import { findVsyscallLine, parseMaps } from './maps.js';

export type ModeOrUnknown = VsyscallMode | 'unknown';

export interface ActiveTest {
  /** What calling the `time` entry did. */
  call: { outcome: 'works' | 'sigsegv' | 'signal' | 'failed'; signal?: string; value?: number; detail: string };
  /** What reading one byte of the page did. */
  read: { outcome: 'works' | 'sigsegv' | 'signal' | 'failed'; signal?: string; value?: number; detail: string };
  /** Mode implied by the two outcomes. */
  implies: ModeOrUnknown | 'emulate-or-native';
}

export interface ModeEvidence {
  source: 'maps' | 'cmdline' | 'kconfig' | 'active-test';
  says: ModeOrUnknown | 'emulate-or-native' | null;
  detail: string;
}

export interface VsyscallModeReport {
  mode: ModeOrUnknown;
  /** Which evidence decided. */
  decidedBy: ModeEvidence['source'] | null;
  evidence: ModeEvidence[];
  agree: boolean;
  disagreements: string[];
  behaviour: (typeof MODE_BEHAVIOUR)[VsyscallMode] | null;
}

export function modeFromMaps(mapsText: string): ModeEvidence {
  const line = findVsyscallLine(parseMaps(mapsText));
  if (!line) return { source: 'maps', says: 'none', detail: 'no [vsyscall] line in /proc/self/maps' };
  const text = `${line.start.toString(16)}-${line.end.toString(16)} ${line.perms} [vsyscall]`;
  // What the permissions say is model/maps-mode.ts' reading (trace/ uses it too); here with the evidence's words.
  const says = modeOfVsyscallPerms(line.perms);
  if (says === 'emulate-or-native') return { source: 'maps', says, detail: `${text} (readable: emulate, or native on kernels before 4.15)` };
  if (says === 'unknown') return { source: 'maps', says, detail: `${text} (unexpected permissions)` };
  return { source: 'maps', says, detail: text };
}

export function modeFromCmdline(facts: CmdlineFacts): ModeEvidence {
  if (facts.vsyscall === null) return { source: 'cmdline', says: null, detail: 'no vsyscall= parameter (the build-time default applies)' };
  if (facts.vsyscall === 'invalid') return { source: 'cmdline', says: 'unknown', detail: `vsyscall=${facts.vsyscallRaw} is not a mode the kernel knows` };
  return { source: 'cmdline', says: facts.vsyscall, detail: `vsyscall=${facts.vsyscall}` };
}

export function modeFromKconfig(k: KconfigFacts | null, cmdline: CmdlineFacts): ModeEvidence {
  if (!k) return { source: 'kconfig', says: null, detail: 'no /proc/config.gz or /boot/config-$(uname -r)' };
  if (k.vsyscallEmulation === false) return { source: 'kconfig', says: 'none', detail: `CONFIG_X86_VSYSCALL_EMULATION is not set (${k.source}): no page whatever the command line says` };
  if (cmdline.vsyscall && cmdline.vsyscall !== 'invalid') {
    return { source: 'kconfig', says: cmdline.vsyscall, detail: `build default ${k.legacyVsyscallDefault ?? 'unknown'} overridden by vsyscall=${cmdline.vsyscall} (${k.source})` };
  }
  if (!k.legacyVsyscallDefault) return { source: 'kconfig', says: null, detail: `no CONFIG_LEGACY_VSYSCALL_* in ${k.source}` };
  return { source: 'kconfig', says: k.legacyVsyscallDefault, detail: `CONFIG_LEGACY_VSYSCALL_${k.legacyVsyscallDefault.toUpperCase()}=y (${k.source})` };
}

function describeChild(o: ChildOutcome): ActiveTest['call'] {
  if (o.outcome === 'works') {
    const v = (o.result as { value?: number }).value;
    return { outcome: 'works', ...(v !== undefined ? { value: v } : {}), detail: 'works' };
  }
  if (o.outcome === 'signal') {
    if (o.signal === 'SIGSEGV') return { outcome: 'sigsegv', signal: 'SIGSEGV', detail: 'SIGSEGV' };
    return { outcome: 'signal', signal: o.signal!, detail: `killed by ${o.signal}${o.signal === 'SIGSYS' ? ' (seccomp)' : ''}` };
  }
  return { outcome: 'failed', detail: `child ${o.outcome}${o.exitCode !== undefined ? ` (exit ${o.exitCode})` : ''}: ${o.stderr.trim().split('\n').pop() ?? ''}` };
}

export function modeFromActive(call: ActiveTest['call'], read: ActiveTest['read']): ActiveTest['implies'] {
  if (call.outcome === 'sigsegv' && read.outcome === 'sigsegv') return 'none';
  if (call.outcome === 'works' && read.outcome === 'sigsegv') return 'xonly';
  if (call.outcome === 'works' && read.outcome === 'works') return 'emulate-or-native';
  return 'unknown';
}

/** Calls the `time` entry and reads the page, each in its own child process. */
export async function runActiveTest(): Promise<ActiveTest> {
  const child = new URL('./vsyscall-child.js', import.meta.url);
  const [c, r] = await Promise.all([runNodeChild(child, ['call-time']), runNodeChild(child, ['read'])]);
  const call = describeChild(c);
  const read = describeChild(r);
  if (call.outcome === 'works' && call.value !== undefined) {
    const now = Math.floor(Date.now() / 1000);
    call.detail = Math.abs(call.value - now) <= 5 ? `works (returned ${call.value}, the current time)` : `returned ${call.value}, which is not the current time (${now})`;
  }
  if (read.outcome === 'works') read.detail = `works (first byte 0x${(read.value ?? 0).toString(16).padStart(2, '0')})`;
  return { call, read, implies: modeFromActive(call, read) };
}

/** Narrows 'emulate-or-native' using the other evidence and the kernel version (native left in 4.15). */
function refine(says: ModeEvidence['says'], others: ModeEvidence[], kernelMajorMinor: [number, number] | null): ModeOrUnknown | null {
  if (says !== 'emulate-or-native') return says;
  const explicit = others.find((e) => e.says === 'native' || e.says === 'emulate');
  if (explicit && (explicit.says === 'native' || explicit.says === 'emulate')) return explicit.says;
  // Readable and callable looks the same for both; native needs another source to say so (and a kernel before 4.15).
  return 'emulate';
}

export function reconcile(evidence: ModeEvidence[], kernelMajorMinor: [number, number] | null): Omit<VsyscallModeReport, 'behaviour'> {
  const order: ModeEvidence['source'][] = ['active-test', 'maps', 'cmdline', 'kconfig'];
  const resolved = evidence.map((e) => ({ e, mode: refine(e.says, evidence, kernelMajorMinor) }));
  const known = resolved.filter((x) => x.mode !== null && x.mode !== 'unknown');
  let winner: (typeof known)[number] | undefined;
  for (const src of order) {
    winner = known.find((x) => x.e.source === src);
    if (winner) break;
  }
  const mode: ModeOrUnknown = winner?.mode ?? 'unknown';
  const disagreements: string[] = [];
  for (const x of known) {
    if (x.mode !== mode) disagreements.push(`${x.e.source} says ${x.mode} (${x.e.detail}); ${winner!.e.source} wins: ${mode}`);
  }
  return { mode, decidedBy: winner?.e.source ?? null, evidence, agree: disagreements.length === 0, disagreements };
}

export interface DetectOptions {
  active?: boolean;
  kconfig: KconfigFacts | null;
  kernelRelease: string;
  mapsText?: string;
  cmdlineText?: string;
}

export async function detectVsyscallMode(opts: Partial<DetectOptions> = {}): Promise<VsyscallModeReport & { active: ActiveTest | null }> {
  const mapsText = opts.mapsText ?? readFileSync('/proc/self/maps', 'utf8');
  let cmdlineText = opts.cmdlineText;
  if (cmdlineText === undefined) {
    try {
      cmdlineText = readFileSync('/proc/cmdline', 'utf8');
    } catch {
      cmdlineText = '';
    }
  }
  const cmd = parseCmdline(cmdlineText);
  const evidence: ModeEvidence[] = [modeFromMaps(mapsText), modeFromCmdline(cmd), modeFromKconfig(opts.kconfig ?? null, cmd)];
  let active: ActiveTest | null = null;
  if (opts.active !== false) {
    active = await runActiveTest();
    evidence.unshift({ source: 'active-test', says: active.implies, detail: `call of time entry: ${active.call.detail}; read of the page: ${active.read.detail}` });
  }
  const rel = /^(\d+)\.(\d+)/.exec(opts.kernelRelease ?? '');
  const r = reconcile(evidence, rel ? [Number(rel[1]), Number(rel[2])] : null);
  return { ...r, behaviour: r.mode === 'unknown' ? null : MODE_BEHAVIOUR[r.mode], active };
}

