// Runs a compiled vsys module in a child Node process and describes how it ended,
// so that anything that can crash (vsyscall calls, generated code) never takes vsys down.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { constants } from 'node:os';

export interface ChildOutcome {
  /** 'works' when the child exited 0 and printed a result. */
  outcome: 'works' | 'signal' | 'exit' | 'timeout' | 'spawn-failed';
  signal?: string;
  exitCode?: number;
  stdout: string;
  stderr: string;
  result?: unknown;
  ms: number;
}

export function signalNumber(name: string): number | undefined {
  return (constants.signals as Record<string, number>)[name];
}

/** Runs `node <module relative to this file> ...args` with a timeout. */
export function runNodeChild(moduleUrl: URL, args: string[], timeoutMs = 10_000): Promise<ChildOutcome> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const child = spawn(process.execPath, [fileURLToPath(moduleUrl), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => { if (stdout.length < 1 << 20) stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { if (stderr.length < 1 << 20) stderr += d.toString(); });
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ outcome: 'spawn-failed', stdout, stderr: stderr + e.message, ms: performance.now() - t0 });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = performance.now() - t0;
      if (timedOut) return resolve({ outcome: 'timeout', stdout, stderr, ms });
      if (signal) return resolve({ outcome: 'signal', signal, stdout, stderr, ms });
      let result: unknown;
      try {
        result = JSON.parse(stdout.trim().split('\n').pop() ?? '');
      } catch {
        result = undefined;
      }
      if (code === 0 && result !== undefined) return resolve({ outcome: 'works', exitCode: 0, stdout, stderr, result, ms });
      resolve({ outcome: 'exit', exitCode: code ?? -1, stdout, stderr, ms });
    });
  });
}

/**
 * The line of a child's stderr that says why it failed. For an uncaught exception Node prints the
 * source line, a caret, `SomeError: message`, the stack and last `Node.js vNN`: the error line is
 * what matters, not the version. Otherwise the last line that is not Node's version banner.
 */
export function failureLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !/^Node\.js v\d/.test(l));
  const error = lines.find((l) => /^(\w+\.)*\w*(Error|Exception)\b(\s*\[[^\]]*\])?:/.test(l) || /^Uncaught\b/.test(l));
  return (error ?? lines.at(-1) ?? '').slice(0, 300);
}

/** How a child that did not work ended: `killed by SIGX`, `exit N: why`, `timeout`, `spawn-failed: why`. */
export function describeChildEnd(o: ChildOutcome): string {
  if (o.outcome === 'signal') return `killed by ${o.signal}`;
  const why = failureLine(o.stderr);
  const how = o.outcome === 'exit' ? `exit ${o.exitCode}` : o.outcome === 'works' ? 'exit 0' : o.outcome;
  return why ? `${how}: ${why}` : how;
}

/** A child's outcome, and how a first try ended when it had to be made again. */
export type SteadyOutcome = ChildOutcome & { firstTry?: string };

/**
 * Runs the child, and once more when it failed for no reason of the kernel's: an exit without a
 * result (an exception in the child) or a failed spawn. A signal is an answer (the page killed it)
 * and is never retried, nor is a timeout (a child that hangs would hang again, and double the
 * wait). Where a second try was made, the first is named in `firstTry`, so a report can say it.
 */
export async function runNodeChildSteady(moduleUrl: URL, args: string[], timeoutMs?: number): Promise<SteadyOutcome> {
  const first = await runNodeChild(moduleUrl, args, timeoutMs);
  if (first.outcome !== 'exit' && first.outcome !== 'spawn-failed') return first;
  const second = await runNodeChild(moduleUrl, args, timeoutMs);
  return { ...second, firstTry: describeChildEnd(first) };
}

/** `; a first try failed (…)` for a detail line, or nothing. */
export function firstTryNote(o: SteadyOutcome): string {
  return o.firstTry ? ` (tried twice: the first child ended ${o.firstTry})` : '';
}
