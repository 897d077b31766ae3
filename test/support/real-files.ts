// Real ELF files a test can obtain on a fresh machine: esbuild 0.0.2 (a Go 1.12.9 binary) from the
// npm registry, and 32-bit programs built with `gcc -m32 -nostdlib`. Cached under .cache/ (git-ignored).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers.js';

const NPM_CACHE = path.join(ROOT, '.cache', 'npm');

/** Path of esbuild-linux-64@0.0.2's package/bin/esbuild, or undefined when npm or the registry is unavailable. */
export async function esbuild002(): Promise<string | undefined> {
  const dir = path.join(NPM_CACHE, 'esbuild-linux-64-0.0.2');
  const bin = path.join(dir, 'package', 'bin', 'esbuild');
  if (existsSync(bin)) return bin;
  mkdirSync(NPM_CACHE, { recursive: true });
  const tgz = path.join(NPM_CACHE, 'esbuild-linux-64-0.0.2.tgz');
  if (!existsSync(tgz)) {
    const r = spawnSync('npm', ['pack', 'esbuild-linux-64@0.0.2'], { cwd: NPM_CACHE, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0 || !existsSync(tgz)) return undefined;
  }
  mkdirSync(dir, { recursive: true });
  const x = spawnSync('tar', ['xzf', tgz, '-C', dir], { encoding: 'utf8' });
  return x.status === 0 && existsSync(bin) ? bin : undefined;
}

const SOURCE = `
int counter = 3;
const char msg[] = "hello";
static int helper(int x) { return x * counter; }
#ifdef SHARED
int compute_v1(int a) { return a; }
int compute(int a) { return helper(a) + msg[0]; }
__asm__(".symver compute_v1,compute@VSYS_1.0");
#else
int compute(int a) { return helper(a) + msg[0]; }
#endif
void _start(void) { for (;;) { counter = compute(counter); __asm__ volatile("int $0x80" :: "a"(1), "b"(counter)); } }
`;
const VERSIONS = 'VSYS_1.0 { global: compute; local: *; };\nVSYS_2.0 { global: compute; counter; } VSYS_1.0;\n';

/** A static i386 executable and a versioned i386 shared object, or the reason they cannot be built. */
export function elf32Files(): { exec: string; shared: string } | { reason: string } {
  const dir = path.join(ROOT, '.cache', 'elf32');
  const exec = path.join(dir, 'static32');
  const shared = path.join(dir, 'libvsys32.so');
  if (existsSync(exec) && existsSync(shared)) return { exec, shared };
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 's.c'), SOURCE);
  writeFileSync(path.join(dir, 'vers.map'), VERSIONS);
  const common = ['-m32', '-O1', '-nostdlib', '-fno-pie', '-Wl,--build-id', 's.c'];
  const a = spawnSync('gcc', [...common, '-static', '-o', exec], { cwd: dir, encoding: 'utf8' });
  if (a.status !== 0) return { reason: `gcc -m32 failed: ${(a.stderr || String(a.error)).split('\n')[0]}` };
  const b = spawnSync('gcc', [...common.slice(0, -1), '-fPIC', '-shared', '-DSHARED', '-Wl,-soname,libvsys32.so', '-Wl,--version-script,vers.map', '-Wl,-rpath,/opt/vsys', 's.c', '-o', shared], { cwd: dir, encoding: 'utf8' });
  if (b.status !== 0) return { reason: `gcc -m32 -shared failed: ${(b.stderr || String(b.error)).split('\n')[0]}` };
  return { exec, shared };
}
