// A process's labels for the exporter's series: its executable, and its container, pod and
// namespace as the host sees them: /proc/PID/cgroup (cgroup v2 "0::PATH", or v1 lines) and the
// kubelet's pod directories (/var/lib/kubelet/pods/UID/), never the API server.
import fs from 'node:fs';
import path from 'node:path';
import { containerFromCgroup } from '../trace/attribution.js';

export interface ProcessLabels {
  exe: string;
  container: string;
  pod: string;
  namespace: string;
}

/** The pod's name and namespace from the kubelet's directory for it ('' where not found). */
export function readPodNames(podUid: string, kubeletPods = '/var/lib/kubelet/pods'): { pod: string; namespace: string } {
  if (!podUid) return { pod: '', namespace: '' };
  const dir = path.join(kubeletPods, podUid);
  let pod = podUid;
  let namespace = '';
  // etc-hosts, written by the kubelet, ends with "IP\tPODNAME" (the pod's hostname unless spec.hostname is set).
  const hosts = readText(path.join(dir, 'etc-hosts'));
  const last = hosts?.trim().split('\n').pop()?.trim().split(/\s+/);
  if (last && last.length >= 2 && last[1]) pod = last[1];
  // The service account volume holds the namespace (kube-api-access-*/namespace).
  const projected = path.join(dir, 'volumes', 'kubernetes.io~projected');
  for (const v of listDir(projected)) {
    const ns = readText(path.join(projected, v, 'namespace'))?.trim();
    if (ns) {
      namespace = ns;
      break;
    }
  }
  return { pod, namespace };
}

/** Labels of a live process; '' for what cannot be read (a process already gone has none). */
export function readProcessLabels(pid: number, procRoot = '/proc', kubeletPods?: string): ProcessLabels {
  let exe = '';
  try {
    exe = fs.readlinkSync(path.join(procRoot, String(pid), 'exe'));
  } catch {
    // gone, or a kernel thread
  }
  // The container id and pod UID as `vsys trace` reads them (trace/attribution.ts).
  const c = containerFromCgroup(readText(path.join(procRoot, String(pid), 'cgroup')) ?? '');
  const names = readPodNames(c?.pod ?? '', kubeletPods);
  return { exe, container: c?.id.slice(0, 12) ?? '', pod: names.pod, namespace: names.namespace };
}

function readText(p: string): string | undefined {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}

function listDir(p: string): string[] {
  try {
    return fs.readdirSync(p);
  } catch {
    return [];
  }
}
