// Independent readers of images for the fix tests: skopeo (containers/image) to inspect and copy,
// umoci to unpack a layout into a rootfs (whiteouts applied by it, not by vsys), cmp -l to list
// the bytes two files differ in.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureCommand } from './rootfs.js';

/** Why the tools cannot run here (undefined when they can; installs them as root). */
export function ociToolsUnavailable(): string | undefined {
  if (!ensureCommand('skopeo', 'skopeo')) return 'skopeo is not installed (apt-get install skopeo)';
  if (!ensureCommand('umoci', 'umoci')) return 'umoci is not installed (apt-get install umoci)';
  if (!ensureCommand('cmp', 'diffutils')) return 'cmp is not installed';
  return undefined;
}

export function tool(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** skopeo inspect (the image, or with `config` its config) as JSON. */
export function skopeoInspect(ref: string, config = false): Record<string, unknown> {
  return JSON.parse(tool('skopeo', ['inspect', '--tls-verify=false', ...(config ? ['--config'] : []), ref])) as Record<string, unknown>;
}

/** Copies an image with skopeo into a fresh OCI layout and unpacks it with umoci; the rootfs path. */
export function unpackWithUmoci(ref: string): string {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-umoci-'));
  const layout = path.join(work, 'layout');
  tool('skopeo', ['copy', '--src-tls-verify=false', ref, `oci:${layout}:img`]);
  tool('umoci', ['unpack', '--rootless', '--image', `${layout}:img`, path.join(work, 'bundle')]);
  return path.join(work, 'bundle', 'rootfs');
}

/** `cmp -l a b`: the 0-based offsets where the files differ (same sizes assumed; a size difference throws). */
export function differingOffsets(a: string, b: string): number[] {
  const r = spawnSync('cmp', ['-l', a, b], { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status === 0) return [];
  if (r.status !== 1 || /EOF/.test(r.stderr)) throw new Error(`cmp -l ${a} ${b}: ${r.stderr.trim() || `exit ${r.status}`}`);
  return r.stdout.trim().split('\n').map((l) => Number(l.trim().split(/\s+/)[0]) - 1);
}
