// Builds test/fixtures/trace/call-n.c (calls vsyscall entries an exact number of times) with gcc.
import { FIXTURES } from '../helpers.js';
import path from 'node:path';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { FIXTURE_CACHE } from './fixtures.js';

export function buildTraceFixture(): string {
  const out = path.join(FIXTURE_CACHE, 'call-n');
  const src = path.join(FIXTURES, 'trace', 'call-n.c');
  if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) {
    fs.mkdirSync(FIXTURE_CACHE, { recursive: true });
    execFileSync('gcc', ['-O2', '-o', out, src]);
  }
  return out;
}
