// Builds the C fixtures of test/fixtures/scan with gcc into .cache/fixtures (rebuilt when the
// source changes). gcc is a test-time oracle only; vsys itself never needs a compiler.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES, ROOT } from '../helpers.js';

export const FIXTURE_CACHE = path.join(ROOT, '.cache', 'fixtures');

export function hasGcc(): boolean {
  return spawnSync('gcc', ['--version'], { encoding: 'utf8' }).status === 0;
}

/** Compiles test/fixtures/scan/NAME.c with `flags` to .cache/fixtures/OUT and returns its path. */
export function buildC(name: string, out: string, flags: string[]): string {
  const src = path.join(FIXTURES, 'scan', `${name}.c`);
  const text = fs.readFileSync(src);
  const key = createHash('sha256').update(text).update(flags.join(' ')).digest('hex').slice(0, 12);
  const dest = path.join(FIXTURE_CACHE, out);
  const stamp = `${dest}.${key}.ok`;
  if (fs.existsSync(dest) && fs.existsSync(stamp)) return dest;
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const r = spawnSync('gcc', ['-O2', '-o', dest, src, ...flags], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc ${name}.c ${flags.join(' ')} failed:\n${r.stderr}`);
  for (const f of fs.readdirSync(path.dirname(dest))) if (f.startsWith(`${out}.`) && f.endsWith('.ok')) fs.rmSync(path.join(path.dirname(dest), f));
  fs.writeFileSync(stamp, '');
  return dest;
}
