// Tracepoint ids and record layouts from tracefs (events/<system>/<name>/{id,format}), so raw
// perf samples are decoded with the running kernel's own field offsets, not hard-coded ones.
import fs from 'node:fs';
import { VsysError } from '../errors.js';

export interface FieldFormat {
  name: string;
  offset: number;
  size: number;
  signed: boolean;
}

export interface EventFormat {
  system: string;
  name: string;
  id: number;
  fields: Map<string, FieldFormat>;
}

const MOUNTS = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'];

export function tracefsRoot(): string | undefined {
  return MOUNTS.find((m) => fs.existsSync(`${m}/events`));
}

/** Why tracefs cannot be used: not mounted, or mounted but not readable by this user. */
export function tracefsProblem(): VsysError | undefined {
  if (tracefsRoot()) return undefined;
  let mounted: string | undefined;
  try {
    mounted = fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[2] === 'tracefs')?.[1];
  } catch {
    mounted = undefined;
  }
  const uid = process.getuid?.() ?? 0;
  if (mounted || uid !== 0) {
    return new VsysError('PERF_NO_PERMISSION', `tracing needs root or CAP_PERFMON: tracefs${mounted ? ` at ${mounted}` : ''} is not readable by uid ${uid}, and perf_event_open on tracepoints is refused to unprivileged users (kernel.perf_event_paranoid=${readParanoid()}). Run as root: sudo vsys trace …`);
  }
  return new VsysError('PERF_UNAVAILABLE', 'tracefs is not mounted (as root: mount -t tracefs nodev /sys/kernel/tracing)');
}

function readParanoid(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/perf_event_paranoid', 'utf8').trim();
  } catch {
    return '?';
  }
}

/** Parses a tracefs `format` file. */
export function parseFormat(system: string, name: string, text: string): EventFormat {
  const idm = /^ID:\s*(\d+)/m.exec(text);
  if (!idm) throw new VsysError('PERF_UNAVAILABLE', `tracefs format of ${system}:${name} has no ID line`);
  const fields = new Map<string, FieldFormat>();
  for (const m of text.matchAll(/field:([^;]*);\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d+);/g)) {
    const decl = (m[1] as string).trim();
    const fname = /([A-Za-z_][A-Za-z0-9_]*)\s*(\[[^\]]*\])?$/.exec(decl)?.[1];
    if (fname) fields.set(fname, { name: fname, offset: Number(m[2]), size: Number(m[3]), signed: m[4] === '1' });
  }
  return { system, name, id: Number(idm[1]), fields };
}

/** Reads an event's format; PERF_UNAVAILABLE with a plain reason when tracefs or the event is absent. */
export function readEventFormat(system: string, name: string): EventFormat {
  const root = tracefsRoot();
  if (!root) {
    throw new VsysError('PERF_UNAVAILABLE', 'tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing, as root)');
  }
  const file = `${root}/events/${system}/${name}/format`;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      const why = system === 'vsyscall'
        ? 'this kernel has no vsyscall:emulate_vsyscall tracepoint (built without vsyscall emulation, CONFIG_LEGACY_VSYSCALL_NONE or X86_VSYSCALL_EMULATION=n): nothing is emulated, calls die with SIGSEGV'
        : `this kernel has no ${system}:${name} tracepoint`;
      throw new VsysError('PERF_UNAVAILABLE', why, { path: file });
    }
    throw new VsysError('PERF_NO_PERMISSION', `cannot read ${file}: ${(e as Error).message} (need root)`, { path: file });
  }
  return parseFormat(system, name, text);
}
