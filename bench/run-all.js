#!/usr/bin/env node
// `npm run bench`: runs every bench/*.mjs in name order, one after another (they time things, so
// never two at once), with the terminal passed through. Arguments go to every script
// (`npm run bench -- --json`). Exits with the highest exit code any script returned.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const scripts = fs.readdirSync(dir).filter((n) => n.endsWith('.mjs')).sort();
let worst = 0;
for (const name of scripts) {
  process.stderr.write(`== bench/${name}\n`);
  const r = spawnSync(process.execPath, [path.join(dir, name), ...process.argv.slice(2)], { stdio: 'inherit' });
  const code = r.status ?? 3;
  if (r.error) process.stderr.write(`bench/${name}: could not run: ${r.error.message}\n`);
  else if (r.signal) process.stderr.write(`bench/${name}: killed by ${r.signal}\n`);
  worst = Math.max(worst, code);
}
process.exitCode = worst;
