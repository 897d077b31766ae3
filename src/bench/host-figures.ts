// This host's measured costs, kept between runs (XDG cache) so scan verdicts and the doctor can say
// "N× a vDSO call" with this machine's numbers. Valid for one boot of one kernel.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { SlowdownFor } from '../scan/verdict.js';

export interface HostFigures {
  bootId: string;
  kernel: string;
  measuredAt: string;
  /** ns per call, min over repeats, by path id (only measured paths). */
  ns: Record<string, number>;
}

export function figuresFile(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'vsys', 'host-figures.json');
}

function bootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

export function saveHostFigures(ns: Record<string, number>): HostFigures {
  const f: HostFigures = { bootId: bootId(), kernel: os.release(), measuredAt: new Date().toISOString(), ns };
  try {
    const file = figuresFile();
    fs.mkdirSync(path.dirname(file), { recursive: true });
    // Merge with what an earlier run of other paths measured on this boot.
    const old = loadHostFigures();
    if (old) f.ns = { ...old.ns, ...ns };
    fs.writeFileSync(file, JSON.stringify(f, null, 2) + '\n');
  } catch {
    // A read-only home only costs the cache.
  }
  return f;
}

/** The figures of this boot, or undefined (none saved, another boot, or unreadable). */
export function loadHostFigures(): HostFigures | undefined {
  try {
    const f = JSON.parse(fs.readFileSync(figuresFile(), 'utf8')) as HostFigures;
    if (f.bootId !== bootId() || f.kernel !== os.release() || typeof f.ns !== 'object') return undefined;
    return f;
  } catch {
    return undefined;
  }
}

/**
 * Slowdowns from this host's figures where both sides of the same call were measured (vsyscall
 * time() against vDSO time(), …), else from `fallback` (published figures, cited by source).
 */
export function hostSlowdowns(f: HostFigures | undefined, fallback: SlowdownFor): SlowdownFor {
  return (entry) => {
    const emu = f?.ns[`vsyscall-${entry}`];
    const vdso = f?.ns[`vdso-${entry}`];
    if (emu && vdso) return { ratio: emu / vdso, source: `this host: vsyscall ${entry}() ${emu.toFixed(0)} ns vs vDSO ${entry}() ${vdso.toFixed(1)} ns, vsys bench ${f.measuredAt.slice(0, 10)}` };
    return fallback(entry);
  };
}
