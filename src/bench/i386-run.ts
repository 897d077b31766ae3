// Runs one generated 32-bit program in a child of its own: written to a private temp directory,
// started with no arguments, no shell and an empty environment, its stdout collected, then removed.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const NO_IA32 = 'this kernel cannot run 32-bit programs (no IA32 emulation)';

export type I386Run =
  | { kind: 'exit'; status: number; stdout: Buffer; pid: number }
  | { kind: 'signal'; signal: string; stdout: Buffer; pid: number }
  | { kind: 'timeout'; ms: number }
  /** `stage` says whether writing the temp file or exec failed. */
  | { kind: 'spawn-failed'; stage: 'write' | 'exec'; code: string; message: string };

/** Writes `elf` to a private temp dir, runs it with no arguments and no shell, and removes it again. */
export function runI386(elf: Uint8Array, timeoutMs = 60_000): Promise<I386Run> {
  let dir: string | undefined;
  let file: string;
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-i386-'));
    file = path.join(dir, 'prog');
    fs.writeFileSync(file, elf, { mode: 0o755 });
    fs.chmodSync(file, 0o755); // the umask may have cleared bits of `mode`
  } catch (e) {
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
    const err = e as NodeJS.ErrnoException;
    return Promise.resolve({ kind: 'spawn-failed', stage: 'write', code: err.code ?? 'UNKNOWN', message: `cannot write the program under ${os.tmpdir()}: ${err.message}` });
  }
  const tmp = dir;
  return new Promise<I386Run>((resolve) => {
    let settled = false;
    const chunks: Buffer[] = [];
    let bytes = 0;
    const finish = (r: I386Run) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fs.rmSync(tmp, { recursive: true, force: true });
      resolve(r);
    };
    const child = spawn(file, [], { stdio: ['ignore', 'pipe', 'ignore'], env: {} });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish({ kind: 'timeout', ms: timeoutMs });
    }, timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      if (bytes < 16 << 20) chunks.push(d);
      bytes += d.length;
    });
    child.on('error', (e: NodeJS.ErrnoException) => finish({ kind: 'spawn-failed', stage: 'exec', code: e.code ?? 'UNKNOWN', message: e.message }));
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(chunks);
      const pid = child.pid ?? -1;
      if (signal) finish({ kind: 'signal', signal, stdout, pid });
      else finish({ kind: 'exit', status: code ?? -1, stdout, pid });
    });
  });
}

/** Why a run gave no usable output, or undefined when it exited 0. */
export function describeI386Failure(run: I386Run): string | undefined {
  switch (run.kind) {
    case 'exit': return run.status === 0 ? undefined : `the 32-bit program exited with status ${run.status}`;
    case 'signal': return `the 32-bit program died of ${run.signal}`;
    case 'timeout': return `the 32-bit program did not finish within ${run.ms} ms`;
    case 'spawn-failed':
      if (run.stage === 'write') return run.message;
      if (run.code === 'ENOEXEC') return NO_IA32;
      if (run.code === 'EACCES') return `cannot execute a file in ${os.tmpdir()} (EACCES: mounted noexec? set TMPDIR)`;
      return `cannot start the 32-bit program: ${run.message}`;
  }
}
