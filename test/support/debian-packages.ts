// Real Debian packages for tests: `apt-get download` then `dpkg -x` into .cache/debs/NAME
// (git-ignored, kept between runs). Undefined when apt cannot fetch (no network, no apt).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers.js';

const DEBS = path.join(ROOT, '.cache', 'debs');

export function debianPackage(name: string): string | undefined {
  const dir = path.join(DEBS, name);
  const done = path.join(dir, '.extracted');
  if (fs.existsSync(done)) return path.join(dir, 'root');
  fs.mkdirSync(dir, { recursive: true });
  let deb = fs.readdirSync(dir).find((f) => f.endsWith('.deb'));
  if (!deb) {
    const r = spawnSync('apt-get', ['download', name], { cwd: dir, encoding: 'utf8', timeout: 180_000 });
    deb = fs.readdirSync(dir).find((f) => f.endsWith('.deb'));
    if (r.status !== 0 || !deb) return undefined;
  }
  const x = spawnSync('dpkg', ['-x', path.join(dir, deb), path.join(dir, 'root')], { encoding: 'utf8' });
  if (x.status !== 0) return undefined;
  fs.writeFileSync(done, deb);
  return path.join(dir, 'root');
}
