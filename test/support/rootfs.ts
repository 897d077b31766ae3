// A real Debian 12 (bookworm) root filesystem for image tests, made once with
// `debootstrap --variant=minbase` into .cache/rootfs/bookworm (git-ignored, marker file when complete).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, hasCommand } from '../helpers.js';

export const ROOTFS_CACHE = path.join(ROOT, '.cache', 'rootfs');
const MIRROR = 'http://deb.debian.org/debian';

function say(msg: string): void {
  process.stderr.write(`rootfs: ${msg}\n`);
}

/** Installs `pkg` with apt-get when `cmd` is missing; true when `cmd` is then available. */
export function ensureCommand(cmd: string, pkg: string): boolean {
  if (hasCommand(cmd)) return true;
  if (process.getuid?.() !== 0) return false;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = spawnSync('apt-get', ['install', '-y', '-q', pkg], { encoding: 'utf8', env, timeout: 600_000 });
  if (r.status !== 0) {
    spawnSync('apt-get', ['update', '-q'], { encoding: 'utf8', env, timeout: 600_000 });
    r = spawnSync('apt-get', ['install', '-y', '-q', pkg], { encoding: 'utf8', env, timeout: 600_000 });
  }
  return hasCommand(cmd);
}

/**
 * Path of a bookworm minbase rootfs, or undefined (with the reason on stderr) when debootstrap is
 * unavailable or fails — callers skip. The first call takes about a minute; later calls are instant.
 */
export function bookwormRootfs(): string | undefined {
  const dir = path.join(ROOTFS_CACHE, 'bookworm');
  const marker = path.join(ROOTFS_CACHE, 'bookworm.complete');
  if (fs.existsSync(marker) && fs.existsSync(path.join(dir, 'etc', 'os-release'))) return dir;
  if (process.getuid?.() !== 0) {
    say('debootstrap needs root (mknod, chroot); not running as root');
    return undefined;
  }
  if (!ensureCommand('debootstrap', 'debootstrap')) {
    say('debootstrap is not installed and `apt-get install debootstrap` failed');
    return undefined;
  }
  // Test files run in parallel processes: one builds, the others wait for its marker.
  fs.mkdirSync(ROOTFS_CACHE, { recursive: true });
  const lock = path.join(ROOTFS_CACHE, 'bookworm.lock');
  if (!takeLock(lock)) {
    for (const until = Date.now() + 900_000; Date.now() < until && fs.existsSync(lock);) sleepSync(1000);
    return fs.existsSync(marker) ? dir : undefined;
  }
  try {
    return build(dir, marker);
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** mkdir is atomic: the lock holder's pid inside; a lock whose holder is gone is taken over. */
function takeLock(lock: string): boolean {
  for (let tries = 0; tries < 2; tries++) {
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, 'pid'), String(process.pid));
      return true;
    } catch {
      const pid = Number(fs.readFileSync(path.join(lock, 'pid'), { encoding: 'utf8', flag: 'a+' }) || 0);
      let alive = pid > 0;
      try {
        if (alive) process.kill(pid, 0);
      } catch {
        alive = false;
      }
      if (alive || pid === 0) return false;
      fs.rmSync(lock, { recursive: true, force: true });
    }
  }
  return false;
}

function build(dir: string, marker: string): string | undefined {
  // A half-made tree from an interrupted run would make debootstrap refuse or mix releases.
  fs.rmSync(dir, { recursive: true, force: true });
  const started = Date.now();
  const r = spawnSync('debootstrap', ['--variant=minbase', 'bookworm', dir, MIRROR], { encoding: 'utf8', timeout: 900_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    const tail = `${r.stderr ?? ''}${r.stdout ?? ''}`.trim().split('\n').slice(-3).join(' | ');
    say(`debootstrap failed (status ${r.status ?? r.signal}): ${tail || String(r.error)}`);
    return undefined;
  }
  fs.writeFileSync(marker, `debootstrap --variant=minbase bookworm ${MIRROR} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return dir;
}
