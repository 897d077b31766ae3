// Decides the vsyscall mode of this host from six kinds of evidence and says where they disagree:
// (a) the [vsyscall] line of /proc/self/maps, (b) vsyscall= on /proc/cmdline, (c) the kernel config,
// (d) an active test in child processes (call the time entry; read one byte of the page), (e) that
// call stepped with the trap flag (emulated or native), (f) process_vm_readv of the page (a debugger's
// read). The active test wins: it is what an old program will meet here.
import { readFileSync } from 'node:fs';
import { MODE_BEHAVIOUR, type VsyscallMode } from '../model/modes.js';
import { modeOfVsyscallPerms } from '../model/maps-mode.js';
import { callGate } from './call-gate.js';
import { describeChildEnd, firstTryNote, runNodeChildSteady, type SteadyOutcome } from './child.js';
import { parseCmdline, type CmdlineFacts } from './cmdline.js';
import type { KconfigFacts } from './kconfig.js';
import { findVsyscallLine, parseMaps } from './maps.js';
import { runTrapFlagCheck, type TrapFlagCheck } from './trap-flag.js';
import { runVmReadvCheck, type VmReadvCheck } from './vm-readv.js';

export type ModeOrUnknown = VsyscallMode | 'unknown';

export interface ActiveTest {
  /** What calling the `time` entry did. */
  call: { outcome: 'works' | 'sigsegv' | 'signal' | 'failed'; signal?: string; value?: number; detail: string };
  /** What reading one byte of the page did. */
  read: { outcome: 'works' | 'sigsegv' | 'signal' | 'failed'; signal?: string; value?: number; detail: string };
  /** Mode implied by the two outcomes. */
  implies: ModeOrUnknown | 'emulate-or-native';
}

/** What a source can say when it tells only two modes apart from the others. */
export type ModePair = 'emulate-or-native' | 'xonly-or-emulate' | 'xonly-or-none';

const PAIR_MODES: Record<ModePair, readonly VsyscallMode[]> = {
  'emulate-or-native': ['emulate', 'native'],
  'xonly-or-emulate': ['xonly', 'emulate'],
  'xonly-or-none': ['xonly', 'none'],
};

export interface ModeEvidence {
  source: 'active-test' | 'trap-flag' | 'vm-readv' | 'maps' | 'cmdline' | 'kconfig';
  says: ModeOrUnknown | ModePair | null;
  detail: string;
}

/** The order in which sources decide: what happens to a call and a read here first, what is configured last. */
const SOURCE_ORDER: readonly ModeEvidence['source'][] = ['active-test', 'trap-flag', 'vm-readv', 'maps', 'cmdline', 'kconfig'];

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

function describeChild(o: SteadyOutcome): ActiveTest['call'] {
  if (o.outcome === 'works') {
    const v = (o.result as { value?: number }).value;
    return { outcome: 'works', ...(v !== undefined ? { value: v } : {}), detail: 'works' };
  }
  if (o.outcome === 'signal') {
    if (o.signal === 'SIGSEGV') return { outcome: 'sigsegv', signal: 'SIGSEGV', detail: 'SIGSEGV' };
    return { outcome: 'signal', signal: o.signal!, detail: `killed by ${o.signal}${o.signal === 'SIGSYS' ? ' (seccomp)' : ''}` };
  }
  return { outcome: 'failed', detail: `child ${describeChildEnd(o)}` };
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
  const [c, r] = await Promise.all([runNodeChildSteady(child, ['call-time']), runNodeChildSteady(child, ['read'])]);
  const call = describeChild(c);
  const read = describeChild(r);
  if (call.outcome === 'works' && call.value !== undefined) {
    const now = Math.floor(Date.now() / 1000);
    call.detail = Math.abs(call.value - now) <= 5 ? `works (returned ${call.value}, the current time)` : `returned ${call.value}, which is not the current time (${now})`;
  }
  if (read.outcome === 'works') read.detail = `works (first byte 0x${(read.value ?? 0).toString(16).padStart(2, '0')})`;
  call.detail += firstTryNote(c);
  read.detail += firstTryNote(r);
  return { call, read, implies: modeFromActive(call, read) };
}

/** Trap-flag evidence: one trap in the page means the call was emulated (xonly or emulate), more mean native. */
export function modeFromTrapFlag(t: TrapFlagCheck): ModeEvidence {
  const says = t.calls === 'emulated' ? 'xonly-or-emulate' : t.calls === 'native' ? 'native' : null;
  return { source: 'trap-flag', says, detail: t.detail };
}

/** A debugger's read: it works where the page is readable (emulate, native) and fails in xonly and none. */
export function modeFromVmReadv(v: VmReadvCheck): ModeEvidence {
  const says = v.readable === true ? 'emulate-or-native' : v.readable === false ? 'xonly-or-none' : null;
  return { source: 'vm-readv', says, detail: v.detail };
}

const modesOf = (says: ModeEvidence['says']): readonly VsyscallMode[] | null =>
  says === null || says === 'unknown' ? null : says in PAIR_MODES ? PAIR_MODES[says as ModePair] : [says as VsyscallMode];

/**
 * Narrows a source that names two modes with the other sources, in SOURCE_ORDER: the first whose modes
 * leave one of the two decides (the trap flag tells emulate from native, the active test xonly from
 * emulate). A readable, callable page that nothing else narrows is emulate: native left the kernel in 4.15.
 */
function refine(e: ModeEvidence, all: ModeEvidence[]): ModeOrUnknown | null {
  const mine = modesOf(e.says);
  if (mine === null) return e.says === 'unknown' ? 'unknown' : null;
  if (mine.length === 1) return mine[0]!;
  for (const src of SOURCE_ORDER) {
    const theirs = modesOf(all.find((o) => o.source === src && o !== e)?.says ?? null);
    const both = theirs ? mine.filter((m) => theirs.includes(m)) : [];
    if (both.length === 1) return both[0]!;
  }
  return e.says === 'emulate-or-native' ? 'emulate' : null;
}

export function reconcile(evidence: ModeEvidence[]): Omit<VsyscallModeReport, 'behaviour'> {
  const resolved = evidence.map((e) => ({ e, mode: refine(e, evidence) }));
  const known = resolved.filter((x) => x.mode !== null && x.mode !== 'unknown');
  let winner: (typeof known)[number] | undefined;
  for (const src of SOURCE_ORDER) {
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
  /** With the active test, the kernel selftest's two checks: the trap-flag step and process_vm_readv (default true). */
  selftest?: boolean;
  kconfig: KconfigFacts | null;
  /** @deprecated Not used: no source's reading depends on the kernel version. Accepted for callers that pass it. */
  kernelRelease: string;
  mapsText?: string;
  cmdlineText?: string;
}

/** The active test and the two checks that follow it (null when not run), with their evidence. */
export interface ActiveChecks {
  active: ActiveTest | null;
  trapFlag: TrapFlagCheck | null;
  vmReadv: VmReadvCheck | null;
}

/**
 * Runs the active test and (with `selftest`) the debugger's read side by side, then the trap-flag
 * step where calls return.
 */
async function runActiveChecks(selftest: boolean): Promise<ActiveChecks & { evidence: ModeEvidence[] }> {
  const [active, vmReadv] = await Promise.all([runActiveTest(), selftest ? runVmReadvCheck() : null]);
  const trapFlag = selftest ? await runTrapFlagCheck(callGate(active.call)) : null;
  const evidence: ModeEvidence[] = [{ source: 'active-test', says: active.implies, detail: `call of time entry: ${active.call.detail}; read of the page: ${active.read.detail}` }];
  if (trapFlag) evidence.push(modeFromTrapFlag(trapFlag));
  if (vmReadv) evidence.push(modeFromVmReadv(vmReadv));
  return { active, trapFlag, vmReadv, evidence };
}

export async function detectVsyscallMode(opts: Partial<DetectOptions> = {}): Promise<VsyscallModeReport & ActiveChecks> {
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
  let checks: ActiveChecks = { active: null, trapFlag: null, vmReadv: null };
  if (opts.active !== false) {
    const { evidence: found, ...rest } = await runActiveChecks(opts.selftest !== false);
    evidence.unshift(...found);
    checks = rest;
  }
  const r = reconcile(evidence);
  return { ...r, behaviour: r.mode === 'unknown' ? null : MODE_BEHAVIOUR[r.mode], ...checks };
}

