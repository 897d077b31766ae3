// A usable copy of the corpus' 2011 Gentoo initramfs: the corpus stores its symlinks as small text
// files naming their target ("libc-2.13.so", "busybox"); the copy has them as links again, execute
// bits, and an empty /tmp, as the real initramfs had at run time.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CORPUS } from '../helpers.js';

export const INITFS = path.join(CORPUS, 'gentoo-initfs-2011');

export function materialiseInitfs(into?: string): string {
  const dir = into ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-initfs-'));
  fs.cpSync(INITFS, dir, { recursive: true });
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      fs.chmodSync(p, 0o755);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && fs.statSync(p).size < 64) {
        const text = fs.readFileSync(p, 'latin1');
        if (/^[\w.+/-]+$/.test(text)) {
          fs.rmSync(p);
          fs.symlinkSync(text, p);
        }
      }
    }
  };
  walk(dir);
  fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  return dir;
}
