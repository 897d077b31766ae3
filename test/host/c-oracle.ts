// Builds a small C program given as text with gcc into a temporary directory and runs it: the
// independent oracle for the host checks (the kernel answers the C program as it answers vsys).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export function hasGcc(): boolean {
  return spawnSync('gcc', ['--version'], { encoding: 'utf8' }).status === 0;
}

/** Compiles `source` (-O2) and runs it; returns its stdout, exit status and the signal that killed it. */
export function runC(source: string, args: string[] = []): { stdout: string; status: number | null; signal: NodeJS.Signals | null } {
  const dir = mkdtempSync(path.join(tmpdir(), 'vsys-host-c-'));
  try {
    const src = path.join(dir, 'oracle.c');
    const exe = path.join(dir, 'oracle');
    writeFileSync(src, source);
    const cc = spawnSync('gcc', ['-O2', '-o', exe, src], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`gcc failed:\n${cc.stderr}`);
    const r = spawnSync(exe, args, { encoding: 'utf8', timeout: 30_000 });
    return { stdout: r.stdout, status: r.status, signal: r.signal };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
