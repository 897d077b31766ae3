// Builds test/fixtures/trace/call-n.c (calls vsyscall entries an exact number of times), or another
// fixture there, with gcc.
import { FIXTURES } from '../helpers.js';
import path from 'node:path';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { FIXTURE_CACHE } from './fixtures.js';

export function buildTraceFixture(name = 'call-n'): string {
  const out = path.join(FIXTURE_CACHE, name);
  const src = path.join(FIXTURES, 'trace', `${name}.c`);
  if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) {
    fs.mkdirSync(FIXTURE_CACHE, { recursive: true });
    execFileSync('gcc', ['-O2', '-pthread', '-o', out, src]);
  }
  return out;
}
