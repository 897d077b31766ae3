// scan --processes and the doctor against real processes: a process chroot'ed into the corpus'
// 2011 Gentoo initramfs (its own loader and glibc 2.13) is found, its libc read through its own
// root and checked against the kernel's own handle on the mapped file (/proc/PID/map_files).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mappedFiles } from '../../src/scan/processes.js';
import { CORPUS, BIN, runVsys } from '../helpers.js';
import { materialiseInitfs } from '../support/initfs.js';

const INITFS = path.join(CORPUS, 'gentoo-initfs-2011');
const root = process.getuid?.() === 0;
const skip = !root ? 'chroot needs root' : !fs.existsSync(INITFS) ? `no corpus at ${INITFS}` : false;

/** strace (dynamic, glibc 2.13 from the chroot's own lib64) tracing busybox sleep, both chroot'ed. */
async function startChrooted(dir: string): Promise<{ child: ChildProcess; pid: number }> {
  const child = spawn('chroot', [dir, '/bin/strace', '-o', '/tmp/strace.out', '/bin/busybox', 'sleep', '60'], { stdio: 'ignore' });
  // chroot execs strace in place: the pid is strace's once its libc is mapped.
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 50));
    let maps = '';
    try {
      maps = fs.readFileSync(`/proc/${child.pid}/maps`, 'utf8');
    } catch {
      break;
    }
    if (maps.includes(`${dir}/lib64/libc-2.13.so`)) return { child, pid: child.pid as number };
  }
  child.kill('SIGKILL');
  throw new Error(`the chroot'ed strace did not map ${dir}/lib64/libc-2.13.so`);
}

test('a chroot\'ed process\'s libc-2.13.so is read through its own root, the very file the kernel mapped', { skip, timeout: 120_000 }, async () => {
  const dir = materialiseInitfs();
  const { child, pid } = await startChrooted(dir);
  try {
    const libc = `${dir}/lib64/libc-2.13.so`;
    const got = mappedFiles();
    const f = got.files.find((x) => x.path === libc);
    assert.ok(f, `libc of the chroot not among ${got.files.length} files`);
    assert.ok(f.processes.some((p) => p.pid === pid && p.comm === 'strace'), JSON.stringify(f.processes));
    // The oracle: the kernel's own handle on the mapping (map_files), by device and inode.
    const range = fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').find((l) => l.endsWith(libc))?.split(' ')[0];
    const kernel = fs.statSync(`/proc/${pid}/map_files/${range}`);
    assert.ok(fs.existsSync(f.hostPath), `vsys would read ${f.hostPath}, which does not exist`);
    const read = fs.statSync(f.hostPath);
    assert.deepEqual([read.dev, read.ino], [kernel.dev, kernel.ino], f.hostPath);
    assert.equal(f.root, dir);
    assert.deepEqual(got.unresolved.filter((u) => u.pid === pid), []);

    const j = runVsys(['scan', '--processes', '--mode', 'none', '--json'], { timeout: 120_000 });
    const recs = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    const rec = recs.find((r) => r.path === f.hostPath);
    assert.ok(rec, `no record for ${f.hostPath}: ${j.stderr.slice(0, 2000)}`);
    assert.equal(rec.class, 'direct');
    assert.ok(rec.findings.some((u: any) => u.kind === 'direct-call' && u.entry === 'time' && u.function?.name === 'time'), JSON.stringify(rec.findings));
    assert.equal(rec.verdicts.none.outcome, 'crash');
    assert.ok(!recs.some((r) => r.error && String(r.path).includes(`/root${dir}/`)), 'no path with the chroot applied twice');

    const t = runVsys(['scan', '--processes', '--mode', 'none'], { timeout: 120_000 });
    assert.match(t.stdout, new RegExp(`${libc.replace(/[.+]/g, '\\$&')}: direct, crash under none — used by [^\\n]*\\b${pid} \\(strace\\)`));

    const d = runVsys(['doctor', '--json'], { timeout: 120_000 });
    const doc = JSON.parse(d.stdout);
    const hit = doc.processes.affected.find((a: any) => a.path === libc);
    assert.ok(hit, JSON.stringify(doc.processes.affected.map((a: any) => a.path)));
    assert.ok(hit.processes.some((p: any) => p.pid === pid));
  } finally {
    // strace's tracee (busybox sleep) outlives a killed strace: end it by its pid first.
    let kids: number[] = [];
    try {
      kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      kids = [];
    }
    for (const k of kids) try { process.kill(k, 'SIGKILL'); } catch { /* gone */ }
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the doctor run without root says how many processes it could not read, and gives no ✓ for them', { skip: !root && 'needs root to run as another user', timeout: 120_000 }, () => {
  // nobody cannot read root's processes' maps: the kernel refuses (ptrace access mode), as for any other user.
  const r = spawnSync(process.execPath, [BIN, 'doctor'], { encoding: 'utf8', uid: 65534, gid: 65534, timeout: 110_000, env: { ...process.env, HOME: '/nonexistent', XDG_CACHE_HOME: '/nonexistent' }, cwd: '/' });
  assert.equal(r.status, 0, r.stderr);
  const line = r.stdout.split('\n').find((l) => / Running programs: /.test(l));
  assert.ok(line, r.stdout);
  assert.doesNotMatch(line, /^✓/, line);
  const denied = Number(/(\d+) of \d+ processes could not be read/.exec(line)?.[1]);
  assert.ok(denied > 0, line);
  assert.match(line, /root/);
  // The oracle: how many of the host's processes with a mapped program nobody cannot open.
  const j = spawnSync(process.execPath, [BIN, 'doctor', '--json'], { encoding: 'utf8', uid: 65534, gid: 65534, timeout: 110_000, env: { ...process.env, HOME: '/nonexistent', XDG_CACHE_HOME: '/nonexistent' }, cwd: '/' });
  const doc = JSON.parse(j.stdout);
  assert.ok(doc.processes.denied > 0 && doc.processes.denied <= doc.processes.unreadable, JSON.stringify(doc.processes));
});
