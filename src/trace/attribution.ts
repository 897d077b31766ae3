// Who a traced task is: command name, executable, and container (docker, containerd, cri-o,
// podman ids and the Kubernetes pod UID, read from /proc/PID/cgroup).
import fs from 'node:fs';

export interface Container {
  runtime: 'docker' | 'containerd' | 'cri-o' | 'podman' | 'kubernetes' | 'unknown';
  id: string;
  pod?: string;
}

export interface ProcessInfo {
  pid: number;
  comm: string;
  exe?: string;
  container?: Container;
}

export function readComm(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The container a cgroup path names, if any (cgroup v1 and v2 layouts, systemd and cgroupfs drivers). */
export function containerFromCgroup(text: string): Container | undefined {
  const pod = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/.exec(text)?.[1]?.replace(/_/g, '-');
  const pats: [Container['runtime'], RegExp][] = [
    ['docker', /docker[-/]([0-9a-f]{64})/],
    ['cri-o', /crio-(?:conmon-)?([0-9a-f]{64})/],
    ['containerd', /cri-containerd-([0-9a-f]{64})/],
    ['podman', /libpod-(?:conmon-)?([0-9a-f]{64})/],
    ['unknown', /\/([0-9a-f]{64})(?:\.scope)?$/m],
  ];
  for (const [runtime, re] of pats) {
    const m = re.exec(text);
    if (m?.[1]) return { runtime: runtime === 'unknown' && pod ? 'kubernetes' : runtime, id: m[1], ...(pod ? { pod } : {}) };
  }
  return pod ? { runtime: 'kubernetes', id: '', pod } : undefined;
}

const cache = new Map<number, ProcessInfo>();

/** Reads what /proc says about `pid` (once; a process that is gone keeps what was seen). */
export function processInfo(pid: number, commHint?: string): ProcessInfo {
  const hit = cache.get(pid);
  if (hit) return hit;
  const info: ProcessInfo = { pid, comm: readComm(pid) ?? commHint ?? '?' };
  try {
    info.exe = fs.readlinkSync(`/proc/${pid}/exe`);
  } catch {
    // exited, or a kernel thread
  }
  try {
    const c = containerFromCgroup(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
    if (c) info.container = c;
  } catch {
    // exited
  }
  cache.set(pid, info);
  return info;
}

/** What the kernel said about a process's names while it was traced. */
export interface SeenNames {
  /** Its comm when its first emulated call or fault was counted (the eBPF counters'). */
  counted?: string;
  /** The files it exec'd, in order, each with the comm the exec gave it (sched_process_exec). */
  execs?: { filename: string; comm: string }[];
  /** Its comm when it exited (sched_process_exit). */
  exited?: string;
}

/**
 * A process's name and executable after what it exec'd: the comm it had when counted wins (the
 * kernel's at the calls), then its comm at exit, then its last exec's; the executable is the
 * last exec that gave it that name (a chroot that execs bash is bash, /bin/bash), and the guess's
 * only while the name is the guess's.
 */
export function nameAfterExec(guess: { comm: string; exe?: string }, seen: SeenNames): { comm: string; exe?: string } {
  const execs = seen.execs ?? [];
  const last = execs[execs.length - 1];
  const comm = seen.counted ?? seen.exited ?? last?.comm ?? guess.comm;
  const exe = [...execs].reverse().find((x) => x.comm === comm)?.filename ?? last?.filename ?? (comm === guess.comm ? guess.exe : undefined);
  return exe === undefined ? { comm } : { comm, exe };
}
