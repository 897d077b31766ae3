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

/** One subcommand of `vsys`: main.ts loads it when asked for and runs it with the rest of the arguments. */
export interface Command {
  summary: string;
  run(args: string[], io: Io): Promise<number>;
}

/** Exit codes of every command (STYLE.md). */
export const EXIT = { ok: 0, findings: 1, usage: 2, runtime: 3, unsupported: 4, interrupted: 130, brokenPipe: 141 } as const;

export function usageError(message: string): VsysError {
  return new VsysError('USAGE', message);
}

/** JSON with bigints as 0x-prefixed hex strings, as every --json output uses. */
export function toJson(value: unknown, indent: number | undefined = 2): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v), indent);
}

/** How a numeric option is checked: an integer in a range, any number in a range, or a positive amount of a unit. */
export type NumberRule = { integer: [number, number] } | { range: [number, number] } | { positive: string };

/** A numeric option's value: undefined when absent, a USAGE error naming the option when out of its rule. */
export function numberOption(cmd: string, name: string, value: string | undefined, rule: NumberRule): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if ('integer' in rule) {
    const [min, max] = rule.integer;
    if (!Number.isInteger(n) || n < min || n > max) throw usageError(`${cmd}: --${name} must be an integer from ${min} to ${max}`);
  } else if ('range' in rule) {
    const [min, max] = rule.range;
    if (!Number.isFinite(n) || n < min || n > max) throw usageError(`${cmd}: --${name} must be a number from ${min} to ${max}`);
  } else if (!(n > 0)) {
    throw usageError(`${cmd}: --${name} must be a positive number of ${rule.positive}`);
  }
  return n;
}
