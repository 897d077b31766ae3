// What a command may touch of the outside world: two text streams. Tests pass buffers.
import { VsysError } from '../errors.js';

export interface OutStream {
  write(s: string): unknown;
  isTTY?: boolean;
}

export interface Io {
  stdout: OutStream;
  stderr: OutStream;
}

/** Exit codes of every command (STYLE.md). */
export const EXIT = { ok: 0, findings: 1, usage: 2, runtime: 3, unsupported: 4 } as const;

export function usageError(message: string): VsysError {
  return new VsysError('USAGE', message);
}

/** JSON with bigints as 0x-prefixed hex strings, as every --json output uses. */
export function toJson(value: unknown, indent: number | undefined = 2): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v), indent);
}
