// One run of a command as a chosen kernel would run it: on this host, in a root directory, or from an
// image unpacked to a temporary root; the program found on the root's PATH; the launcher told where.
// Shared by `vsys run` and `vsys scan --run-entrypoint`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VsysError } from '../errors.js';
import { modeOfMaps } from '../model/maps-mode.js';
import { DEFAULT_PATH, resolveInRoot } from '../scan/root-path.js';
import type { LauncherOptions } from './launcher.js';
import { nameCaller, type NamedCaller } from './caller.js';
import { superviseRun, type AnswerAs, type RunOutcome } from './supervise.js';
import type { RegistryOptions } from '../image/registry.js';

/** CMD is not on the root's PATH (a shell says 127). */
export class CommandNotFound extends VsysError {
  constructor(message: string) {
    super('FILE_NOT_FOUND', message);
  }
}

export interface RunSpec {
  as: AnswerAs;
  root?: string;
  image?: string;
  /** The command; empty with an image: its Entrypoint + Cmd. */
  cmd: string[];
  stdio?: 'inherit' | 'ignore';
  timeoutMs?: number;
  /** For images from a registry, as `vsys scan` takes them; and whether blobs are checked (default true). */
  registry?: RegistryOptions;
  verify?: boolean;
  /** Progress lines ("unpacking …"). */
  onNote?: (line: string) => void;
}

export interface RunReport {
  outcome: RunOutcome;
  /** The root it ran in (the unpacked image's, removed by now), if any. */
  root?: string;
  cmd: string[];
  /** Each call's caller, named while the files are still there (an image's root is removed after). */
  callers: (NamedCaller | undefined)[];
}

/** CMD as a path: as given when it has a slash, else the first executable on PATH (inside the root when there is one). */
function findProgram(cmd: string, pathVar: string, root: string | undefined): string | undefined {
  const inside = (p: string) => (root ? resolveInRoot(root, p) : p);
  const runnable = (p: string) => {
    const host = inside(p);
    try {
      return host !== undefined && fs.statSync(host).isFile();
    } catch {
      return false;
    }
  };
  if (cmd.includes('/')) return cmd;
  for (const dir of pathVar.split(':').filter(Boolean)) {
    const p = path.posix.join(dir, cmd);
    if (runnable(p)) return p;
  }
  return undefined;
}

export function hostMode(): string {
  try {
    return modeOfMaps(fs.readFileSync('/proc/self/maps', 'utf8'));
  } catch {
    return 'unknown';
  }
}


/** The overflow user and group: who root inside a run's user namespace is on the host, when vsys runs as root. */
const NOBODY = 65534;

/**
 * Removes a tree an image was unpacked into, directories made writable first (an image's 0555
 * /usr/bin cannot be emptied otherwise by a user who is not root). Links are never followed.
 * Returns why it could not, or undefined.
 */
export function removeTree(dir: string): string | undefined {
  const open = (d: string): void => {
    try {
      fs.chmodSync(d, 0o700);
      for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) open(path.join(d, e.name));
    } catch {
      // what cannot be opened, rmSync reports
    }
  };
  open(dir);
  try {
    fs.rmSync(dir, { recursive: true, force: true });
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

export async function runCommandAs(spec: RunSpec): Promise<RunReport> {
  let root = spec.root ? path.resolve(spec.root) : undefined;
  let cmd = spec.cmd;
  let env = process.env;
  let cwd: string | undefined;
  let cleanup: (() => void) | undefined;
  try {
    if (spec.image) {
      const { unpackImage } = await import('./unpack.js');
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-run-image-'));
      // The command runs as another user (nobody, when vsys is root): it must be able to pass through.
      fs.chmodSync(dir, 0o711);
      cleanup = () => {
        const left = removeTree(dir);
        if (left) spec.onNote?.(`could not remove ${dir}: ${left}`);
      };
      spec.onNote?.(`unpacking ${spec.image} into ${dir} (removed afterwards)…`);
      fs.mkdirSync(path.join(dir, 'rootfs'));
      const img = await unpackImage(spec.image, path.join(dir, 'rootfs'), { privileged: process.getuid?.() === 0, ...spec.registry, ...(spec.verify === false ? { verify: false } : {}) });
      root = img.dir;
      if (cmd.length === 0) cmd = [...img.config.entrypoint, ...img.config.cmd];
      if (cmd.length === 0) throw new VsysError('USAGE', `run: ${spec.image} has no Entrypoint or Cmd: give the command after --`);
      env = Object.fromEntries(img.config.env.map((e) => (e.includes('=') ? [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)] : [e, ''])));
      cwd = img.config.workingDir || undefined;
    }
    if (root && !fs.statSync(root, { throwIfNoEntry: false })?.isDirectory()) throw new VsysError('USAGE', `run: --root ${root} is not a directory`);
    if (cmd.length === 0) throw new VsysError('USAGE', 'run: no command: vsys run --as none -- CMD [ARGS...]');
    const pathVar = (root ? env.PATH : process.env.PATH) || DEFAULT_PATH;
    const program = findProgram(cmd[0]!, pathVar, root);
    if (!program) throw new CommandNotFound(`${cmd[0]}: command not found${root ? ` in ${spec.image ?? root} (PATH ${pathVar})` : ''}`);
    const launcher: LauncherOptions = {};
    if (root) {
      const r = root;
      launcher.root = r;
      // Always a user namespace: root inside it is this user outside, and for root, nobody. A root
      // directory or an image is not trusted with the host's root (it is not a sandbox either: it
      // sees the host's network, and /dev and /proc bound in, with nobody's rights).
      const self = process.getuid?.() ?? 0;
      if (self === 0) launcher.drop = { uid: NOBODY, gid: NOBODY };
      launcher.userns = self === 0 ? { uid: NOBODY, gid: NOBODY } : { uid: self, gid: process.getgid!() };
      // /dev and /proc of the host, bound where the root has real directories (a symlink is not
      // followed out of the root): programs open /dev/null and read /proc/self.
      launcher.binds = ['dev', 'proc'].filter((d) => fs.lstatSync(path.join(r, d), { throwIfNoEntry: false })?.isDirectory()).map((d) => ({ from: `/${d}`, to: path.join(r, d) }));
      if (cwd) launcher.cwd = cwd;
    }
    const outcome = await superviseRun({ path: program, argv: cmd, env, launcher, as: spec.as, ...(spec.stdio ? { stdio: spec.stdio } : {}), ...(spec.timeoutMs !== undefined ? { timeoutMs: spec.timeoutMs } : {}) });
    return { outcome, ...(root ? { root } : {}), cmd, callers: outcome.calls.map(nameCaller) };
  } finally {
    cleanup?.();
  }
}
