// Boots a real Debian kernel under qemu with a busybox initramfs holding node, the built vsys and
// test programs, in a chosen vsyscall mode, and returns what the guest printed on its serial console.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');
export const CACHE = path.join(ROOT, '.cache', 'kernels');
export const CORPUS = path.resolve(ROOT, '..', 'shared', 'corpus');

function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

/** The kernel image `linux-image-cloud-amd64` depends on, downloaded and unpacked once. */
export function ensureKernel(): { vmlinuz: string; package: string } {
  mkdirSync(CACHE, { recursive: true });
  const deps = sh('apt-cache', ['depends', 'linux-image-cloud-amd64']);
  const pkg = /Depends:\s*(linux-image-\S+-cloud-amd64)/.exec(deps)?.[1];
  if (!pkg) throw new Error(`cannot resolve linux-image-cloud-amd64: ${deps}`);
  const dir = path.join(CACHE, pkg);
  const find = () => {
    const boot = path.join(dir, 'boot');
    const f = existsSync(boot) ? readdirSync(boot).find((n) => n.startsWith('vmlinuz-')) : undefined;
    return f ? path.join(boot, f) : undefined;
  };
  let vmlinuz = find();
  if (!vmlinuz) {
    let deb = readdirSync(CACHE).find((n) => n.startsWith(pkg + '_') && n.endsWith('.deb'));
    if (!deb) {
      sh('apt-get', ['download', pkg], { cwd: CACHE });
      deb = readdirSync(CACHE).find((n) => n.startsWith(pkg + '_') && n.endsWith('.deb'));
    }
    if (!deb) throw new Error(`apt-get download ${pkg} produced no .deb`);
    mkdirSync(dir, { recursive: true });
    execFileSync('sh', ['-c', `dpkg-deb --fsys-tarfile "${path.join(CACHE, deb)}" | tar -x -C "${dir}" ./boot`]);
    vmlinuz = find();
  }
  if (!vmlinuz) throw new Error(`no vmlinuz in ${pkg}`);
  return { vmlinuz, package: pkg };
}

function copyWithLibs(binary: string, root: string): void {
  const dest = path.join(root, binary);
  mkdirSync(path.dirname(dest), { recursive: true });
  copyFileSync(binary, dest);
  chmodSync(dest, 0o755);
  const ldd = spawnSync('ldd', [binary], { encoding: 'utf8' });
  for (const line of ldd.stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s*\(/.exec(line);
    if (!m) continue;
    const lib = m[1]!;
    const to = path.join(root, lib);
    mkdirSync(path.dirname(to), { recursive: true });
    if (!existsSync(to)) copyFileSync(lib, to);
  }
}

/** package.json's dependencies and theirs, as installed in node_modules (hoisted, as npm installs them). */
function runtimeDependencies(): string[] {
  const seen = new Set<string>();
  const visit = (pkgJson: string) => {
    const deps = Object.keys((JSON.parse(readFileSync(pkgJson, 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {});
    for (const d of deps) {
      if (seen.has(d)) continue;
      seen.add(d);
      const own = path.join(ROOT, 'node_modules', d, 'package.json');
      if (existsSync(own)) visit(own);
    }
  };
  visit(path.join(ROOT, 'package.json'));
  return [...seen];
}

export interface GuestProgram {
  /** Name used in the result lines. */
  name: string;
  /** Path on the host. */
  file: string;
  args: string[];
  /** Run inside a tree of the spec (chroot /trees/NAME), `file` being the path inside it. */
  chroot?: string;
}

export interface InitramfsSpec {
  programs: GuestProgram[];
  /** Shell lines run after the programs (vsys commands). */
  commands: { name: string; line: string }[];
  /** Root filesystems copied to /trees/NAME (links kept) for programs to chroot into. */
  trees?: { name: string; dir: string }[];
  /** More programs copied to /progs for the commands, not run on their own. */
  extraPrograms?: string[];
}

/** Builds a gzip'd cpio initramfs; returns its path. */
export function buildInitramfs(spec: InitramfsSpec, workDir: string): string {
  const root = path.join(workDir, 'root');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'progs', 'vsys']) mkdirSync(path.join(root, d), { recursive: true });
  copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'));
  chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  copyWithLibs(process.execPath, root);
  // vsys as built: dist, bin, package.json, and its runtime dependencies with theirs
  cpSync(path.join(ROOT, 'dist', 'src'), path.join(root, 'vsys', 'dist', 'src'), { recursive: true });
  cpSync(path.join(ROOT, 'bin'), path.join(root, 'vsys', 'bin'), { recursive: true });
  copyFileSync(path.join(ROOT, 'package.json'), path.join(root, 'vsys', 'package.json'));
  for (const dep of runtimeDependencies()) {
    cpSync(path.join(ROOT, 'node_modules', dep), path.join(root, 'vsys', 'node_modules', dep), {
      recursive: true,
      // only the linux_x64 prebuilt of koffi
      filter: (src) => !/koffi[/\\]build[/\\]koffi[/\\](?!linux_x64)[^/\\]+/.test(src) && !/koffi[/\\]src/.test(src),
    });
  }
  for (const t of spec.trees ?? []) {
    cpSync(t.dir, path.join(root, 'trees', t.name), { recursive: true, verbatimSymlinks: true });
    mkdirSync(path.join(root, 'trees', t.name, 'dev'), { recursive: true });
  }
  for (const p of [...spec.programs, ...(spec.extraPrograms ?? []).map((file) => ({ file, chroot: undefined }))]) {
    if (p.chroot) continue;
    const to = path.join(root, 'progs', path.basename(p.file));
    if (!existsSync(to)) {
      copyFileSync(p.file, to);
      chmodSync(to, 0o755);
    }
  }
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const lines = [
    '#!/bin/busybox sh',
    '/bin/busybox --install -s /bin',
    'export PATH=/bin:/usr/bin',
    'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null',
    'mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null',
    'mount -t tmpfs tmp /tmp',
    'echo "VSYS-BOOTED $(cat /proc/cmdline)"',
    ...(spec.trees ?? []).map((t) => `mount -t devtmpfs dev /trees/${t.name}/dev 2>/dev/null`),
    ...spec.programs.map((p) => `${p.chroot ? `chroot /trees/${p.chroot} ${p.file}` : `/progs/${path.basename(p.file)}`} ${p.args.map(q).join(' ')} > /tmp/out 2>&1; echo "VSYS-PROGRAM ${p.name} $? $(head -c 200 /tmp/out | tr '\\n' ' ')"`),
    ...spec.commands.flatMap((c) => [`echo "VSYS-BEGIN ${c.name}"`, `(cd /vsys && ${c.line}) 2>/tmp/err; rc=$?`, `echo; echo "VSYS-END ${c.name} $rc"`, `tail -5 /tmp/err | sed 's/^/VSYS-STDERR ${c.name} /'`]),
    'echo VSYS-DONE',
    'poweroff -f',
  ];
  writeFileSync(path.join(root, 'init'), lines.join('\n') + '\n');
  chmodSync(path.join(root, 'init'), 0o755);
  const out = path.join(workDir, 'initramfs.cpio.gz');
  execFileSync('sh', ['-c', `cd "${root}" && find . | cpio -o -H newc --quiet | gzip -1 > "${out}"`]);
  return out;
}

export interface BootResult {
  mode: string;
  console: string;
  ms: number;
  programs: Map<string, { status: number; output: string }>;
  commands: Map<string, { status: number; stdout: string; stderr: string }>;
}

export function kvmUsable(): boolean {
  try {
    return statSync('/dev/kvm').isCharacterDevice() && spawnSync('sh', ['-c', 'test -r /dev/kvm -a -w /dev/kvm']).status === 0;
  } catch {
    return false;
  }
}

export function boot(vmlinuz: string, initrd: string, mode: string, timeoutMs = 240_000): Promise<BootResult> {
  const accel = process.env.VSYS_QEMU_ACCEL === 'kvm' && kvmUsable() ? 'kvm' : 'tcg';
  const args = [
    // TCG by default: nested KVM is often present but broken in CI guests (here it spins at boot).
    ...(accel === 'kvm' ? ['-machine', 'accel=kvm', '-cpu', 'host,-arch-capabilities'] : ['-machine', 'accel=tcg', '-cpu', process.env.VSYS_QEMU_CPU ?? 'max']),
    '-smp', '2', '-m', '2048', '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio',
    '-kernel', vmlinuz, '-initrd', initrd,
    '-append', `console=ttyS0 quiet panic=-1 rdinit=/init vsyscall=${mode}`,
  ];
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const q = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => q.kill('SIGKILL'), timeoutMs);
    q.stdout.on('data', (d: Buffer) => { out += d.toString('utf8'); });
    q.stderr.on('data', (d: Buffer) => { out += d.toString('utf8'); });
    q.on('error', reject);
    q.on('close', () => {
      clearTimeout(timer);
      const text = out.replace(/\r/g, '');
      const programs = new Map<string, { status: number; output: string }>();
      for (const m of text.matchAll(/^VSYS-PROGRAM (\S+) (\d+) ?(.*)$/gm)) programs.set(m[1]!, { status: Number(m[2]), output: m[3] ?? '' });
      const commands = new Map<string, { status: number; stdout: string; stderr: string }>();
      for (const m of text.matchAll(/^VSYS-BEGIN (\S+)\n([\s\S]*?)\nVSYS-END \1 (\d+)$/gm)) {
        const stderr = [...text.matchAll(new RegExp(`^VSYS-STDERR ${m[1]} (.*)$`, 'gm'))].map((x) => x[1]).join('\n');
        commands.set(m[1]!, { status: Number(m[3]), stdout: m[2]!, stderr });
      }
      resolve({ mode, console: text, ms: Date.now() - t0, programs, commands });
    });
  });
}

export function buildPrograms(outDir: string): { callEntry: string; entries: Record<'gettimeofday' | 'time' | 'getcpu' | 'misaligned', string>; readPage: string; timeLibc: string; timeThenNull: string } {
  mkdirSync(outDir, { recursive: true });
  const src = path.join(ROOT, 'test', 'zz-kernels', 'progs');
  const build = (name: string, out = name, flags: string[] = []) => {
    const dest = path.join(outDir, out);
    execFileSync('gcc', ['-O2', '-static', ...flags, '-o', dest, path.join(src, `${name}.c`)]);
    return dest;
  };
  const entries = {
    gettimeofday: build('call-entry', 'call-gettimeofday', ['-DONLY=0']),
    time: build('call-entry', 'call-time', ['-DONLY=1']),
    getcpu: build('call-entry', 'call-getcpu', ['-DONLY=2']),
    misaligned: build('call-entry', 'call-misaligned', ['-DONLY=3']),
  };
  return { callEntry: build('call-entry'), entries, readPage: build('read-page'), timeLibc: build('time-libc'), timeThenNull: build('time-then-null') };
}

export function makeWorkDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'vsys-kernels-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
