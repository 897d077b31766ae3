// Runs a command under the launcher (launcher.ts) and answers every call of the vsyscall page the
// way the chosen kernel would: under `none`, SIGSEGV for the thread's process, as a kernel without
// the page gives; under `emulate`, the call goes on (the kernel emulates it) and is counted. Each
// call is recorded with who made it: the entry, the process, and the caller (the return address on
// its stack, read through /proc while the thread waits for the answer), named by the file it lies
// in and, where a scan of that file can tell, the function.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VsysError } from '../errors.js';
import { entryNameOf, type VsyscallEntryName } from '../model/index.js';
import { closeDescriptor, continueNotification, listenerState, receiveNotification, segfaultThread, takeDescriptor, type Notification } from '../native/seccomp-notify.js';
import { buildLauncher, LAUNCHER_FAILED, LAUNCHER_READY, LAUNCHER_STEPS, type LauncherOptions } from './launcher.js';

export type AnswerAs = 'none' | 'emulate';

export interface RunRequest {
  /** The program, as a path inside the root (absolute, or relative to the working directory). */
  path: string;
  /** Its argv, argv[0] first. */
  argv: string[];
  env?: NodeJS.ProcessEnv;
  launcher: LauncherOptions;
  as: AnswerAs;
  /** The command's stdin, stdout and stderr: vsys's own (default), or none (a check run by `scan --run-entrypoint`). */
  stdio?: 'inherit' | 'ignore';
  /** Stop the command (SIGTERM, then SIGKILL 2 s later) once it has run this long: a server never ends by itself. */
  timeoutMs?: number;
}

export interface PageCall {
  /** The thread that made the call, and its process. */
  pid: number;
  tgid?: number;
  comm?: string;
  exe?: string;
  entry: VsyscallEntryName | 'misaligned';
  /** The entry's address (where the call landed). */
  ip: bigint;
  /** The return address on the caller's stack: the instruction after the call. */
  returnAddress?: bigint;
  /** The file mapped at the return address, as this host sees it, and the file offset there. */
  file?: string;
  fileOffset?: number;
  /** What happened: killed with SIGSEGV (none) or let through (emulate). */
  answer: 'sigsegv' | 'emulated';
}

export interface RunOutcome {
  /** The command's process id (the launcher's, which became the command). */
  pid: number;
  /** Processes it started were still running when it ended (stopped, when run without a terminal): what they did after is not seen. */
  orphans?: boolean;
  /** The command's exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** As a shell reports it: the code, or 128 + the signal's number. */
  status: number;
  calls: PageCall[];
  /** Calls let through, by entry (emulate). */
  emulated: number;
  /** Stopped by vsys after `timeoutMs`: what it did after that was not seen. */
  timedOut?: boolean;
}

/** The launcher failed before the command ran: at which step, with which errno. */
export class LauncherError extends VsysError {
  constructor(readonly step: string, readonly errnoValue: number, message: string) {
    super(step === 'unshare' || step.startsWith('write /proc/self') ? 'UNSUPPORTED_HOST' : 'RUN_FAILED', message);
  }
}

const SIGNALS = os.constants.signals as Record<string, number>;

function readProc(pid: number, what: string): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/${what}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** The caller of a thread stopped in a call of the page: [sp] holds the return address (the call pushed it). */
function callerOf(pid: number): { returnAddress?: bigint; file?: string; fileOffset?: number } {
  // /proc/PID/syscall: "nr arg1 … arg6 sp pc" while the thread waits in the notification.
  const sp = readProc(pid, 'syscall')?.trim().split(/\s+/)[7];
  if (!sp?.startsWith('0x')) return {};
  let returnAddress: bigint;
  try {
    const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
    try {
      const b = Buffer.alloc(8);
      if (fs.readSync(fd, b, 0, 8, BigInt(sp) as unknown as number) !== 8) return {};
      returnAddress = b.readBigUInt64LE(0);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return {};
  }
  for (const line of (readProc(pid, 'maps') ?? '').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \d+\s+(\/.*)$/.exec(line);
    if (!m) continue;
    const start = BigInt(`0x${m[1]}`);
    const end = BigInt(`0x${m[2]}`);
    if (returnAddress < start || returnAddress >= end) continue;
    return { returnAddress, file: m[4]!.replace(/ \(deleted\)$/, ''), fileOffset: Number(returnAddress - start + BigInt(`0x${m[3]}`)) };
  }
  return { returnAddress };
}

function record(n: Notification, answer: PageCall['answer']): PageCall {
  const call: PageCall = { pid: n.pid, entry: entryNameOf(n.ip), ip: n.ip, answer, ...callerOf(n.pid) };
  const tgid = Number(/^Tgid:\s*(\d+)/m.exec(readProc(n.pid, 'status') ?? '')?.[1]);
  if (tgid > 0) call.tgid = tgid;
  const comm = readProc(n.pid, 'comm')?.trim();
  if (comm) call.comm = comm;
  try {
    call.exe = fs.readlinkSync(`/proc/${n.pid}/exe`);
  } catch {
    // gone, or not ours to read
  }
  return call;
}

/** 8-byte records {u32 tag, u32 value} from the launcher's fd 3. */
function records(stream: NodeJS.ReadableStream, onRecord: (tag: number, value: number) => void): void {
  let pending = Buffer.alloc(0);
  stream.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= 8) {
      onRecord(pending.readUInt32LE(0), pending.readUInt32LE(4));
      pending = pending.subarray(8);
    }
  });
}

/** Answers the calls of the page waiting on the listener: SIGSEGV (none) or "go on" (emulate), each recorded. */
class Answerer {
  readonly calls: PageCall[] = [];
  emulated = 0;
  constructor(private readonly as: AnswerAs) {}

  drain(listener: number): void {
    if (listener < 0) return;
    for (let i = 0; i < 64 && listenerState(listener) === 'ready'; i++) {
      const n = receiveNotification(listener);
      if (!n) continue;
      if (this.as === 'emulate') {
        this.emulated++;
        if (this.calls.length < 100) this.calls.push(record(n, 'emulated'));
        continueNotification(listener, n.id); // the kernel then emulates the call
        continue;
      }
      const call = record(n, 'sigsegv');
      // To the thread that made the call (its process when its thread group is unknown).
      if (call.tgid === undefined || !segfaultThread(call.tgid, n.pid)) {
        try {
          process.kill(n.pid, 'SIGSEGV');
        } catch {
          // already gone
        }
      }
      this.calls.push(call);
    }
  }
}

/**
 * While the command runs, vsys stays to answer and to report: Ctrl-C reaches the command from the
 * terminal (same process group) and ends it (passed on when it has a group of its own); SIGTERM and
 * SIGHUP are passed on. Returns the undo.
 */
function relaySignals(detached: boolean, signalAll: (sig: NodeJS.Signals) => void): () => void {
  const onInt = () => { if (detached) signalAll('SIGINT'); };
  const onTerm = (sig: NodeJS.Signals) => signalAll(sig);
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  process.on('SIGHUP', onTerm);
  return () => {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    process.off('SIGHUP', onTerm);
  };
}

/**
 * Runs the command, its stdin, stdout and stderr its own, and answers its calls of the page.
 * Throws LauncherError when it could not be started (the step and errno say why).
 */
export async function superviseRun(req: RunRequest): Promise<RunOutcome> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-run-'));
  const launcher = path.join(dir, 'launcher');
  fs.writeFileSync(launcher, buildLauncher(req.launcher), { mode: 0o700 });
  try {
    return await new Promise<RunOutcome>((resolve, reject) => {
      const io = req.stdio ?? 'inherit';
      // Run with no terminal (a check): a process group of its own, so that everything it started can be stopped.
      const detached = io === 'ignore';
      const child = spawn(launcher, [req.path, ...req.argv], { stdio: [io, io, io, 'pipe', 'pipe'], env: req.env ?? process.env, detached });
      const signalAll = (sig: NodeJS.Signals) => {
        try {
          if (detached && child.pid) process.kill(-child.pid, sig);
          else child.kill(sig);
        } catch {
          // gone already
        }
      };
      const unrelay = relaySignals(detached, signalAll);
      let timedOut = false;
      const stopper = req.timeoutMs === undefined ? undefined : setTimeout(() => {
        timedOut = true;
        signalAll('SIGTERM');
        setTimeout(() => signalAll('SIGKILL'), 2000).unref();
      }, req.timeoutMs);
      const answers = new Answerer(req.as);
      let listener = -1;
      let failure: LauncherError | undefined;
      let timer: NodeJS.Timeout | undefined;
      const go = child.stdio[4] as NodeJS.WritableStream;
      const drain = () => answers.drain(listener);
      child.on('error', (e) => reject(new VsysError('RUN_FAILED', `cannot execute the launcher ${launcher}: ${e.message} (is ${os.tmpdir()} mounted noexec? set TMPDIR to another directory)`)));
      records(child.stdio[3] as NodeJS.ReadableStream, (tag, value) => {
        if (tag === LAUNCHER_READY) {
          try {
            listener = takeDescriptor(child.pid as number, value);
            timer = setInterval(drain, 2);
            go.end('g');
          } catch (e) {
            failure = new LauncherError('handshake', 0, `cannot take the seccomp listener from the launcher: ${(e as Error).message} (ptrace access to a child is needed: kernel.yama.ptrace_scope ≤ 1)`);
            go.end();
          }
        } else if (tag >= LAUNCHER_FAILED && tag < LAUNCHER_FAILED + LAUNCHER_STEPS.length) {
          const step = LAUNCHER_STEPS[tag - LAUNCHER_FAILED]!;
          failure = new LauncherError(step, value, `${step} failed: ${errnoName(value)}${hint(step, value, req)}`);
        }
      });
      child.on('close', (code, signal) => {
        drain();
        if (stopper) clearTimeout(stopper);
        if (timer) clearInterval(timer);
        unrelay();
        // Processes it started that outlive it still hold the filter: their calls are no longer answered.
        const orphans = listener >= 0 && listenerState(listener) !== 'gone';
        if (orphans && detached) signalAll('SIGKILL');
        if (listener >= 0) closeDescriptor(listener);
        if (failure) return reject(failure);
        const status = code ?? 128 + (signal ? SIGNALS[signal] ?? 0 : 0);
        resolve({ pid: child.pid ?? 0, code, signal, status, calls: answers.calls, emulated: answers.emulated, ...(timedOut ? { timedOut } : {}), ...(orphans ? { orphans } : {}) });
      });
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function errnoName(e: number): string {
  const name = Object.entries(os.constants.errno).find(([, v]) => v === e)?.[0];
  return name ? `${name} (${e})` : `errno ${e}`;
}

function hint(step: string, e: number, req: RunRequest): string {
  if (step === 'unshare' && req.launcher.userns) return ': this host does not let an unprivileged user create a user namespace (kernel.unprivileged_userns_clone, user.max_user_namespaces, an AppArmor/SELinux policy, or the seccomp profile of a container); run as root, or without --root/--image';
  if (step === 'unshare') return ': a mount namespace could not be created';
  if (step === 'execve' && e === os.constants.errno.ENOENT) return `: ${req.path} not found${req.launcher.root ? ` in ${req.launcher.root}` : ''} (or its loader is missing)`;
  if (step === 'seccomp') return ': this kernel lacks seccomp user notifications (Linux 5.0+)';
  if ((step === 'chroot' || step === 'chdir') && e === os.constants.errno.EACCES) return `: the command runs as ${req.launcher.drop ? 'nobody' : 'this user'} in a user namespace, and ${req.launcher.root} (or a directory above it) does not let it in`;
  return '';
}
