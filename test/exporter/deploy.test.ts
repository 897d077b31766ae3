// The exporter's deployment (deploy/, Dockerfile) against independent oracles: promtool checks the
// alert rules and runs their unit tests (and a broken copy must fail them); kubectl builds the
// kustomization and decodes the objects, whose security settings, ports and arguments are then
// checked against the CLI; the Dockerfile's commands against the DaemonSet and the files the image
// gets; and, as root, the exporter started with exactly the DaemonSet's capability set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, ROOT, hasCommand, runVsys } from '../helpers.js';
import { parseListen } from '../../src/cli/exporter.js';

const DEPLOY = path.join(ROOT, 'deploy');
const PROM = path.join(DEPLOY, 'prometheus');
const KUBE = path.join(DEPLOY, 'kubernetes');
/** The capabilities the DaemonSet adds; each is explained in daemonset.yaml and the README. */
const CAPS = ['BPF', 'PERFMON', 'SYS_RESOURCE', 'SYS_PTRACE', 'DAC_READ_SEARCH'];

const noPromtool = hasCommand('promtool') ? false : 'promtool not installed (apt-get install prometheus)';
const noKubectl = hasCommand('kubectl') ? false : 'kubectl not installed (Debian: kubernetes-client)';

function run(cmd: string, args: string[], input?: string) {
  return spawnSync(cmd, args, { encoding: 'utf8', input, timeout: 60_000, cwd: ROOT, env: { ...process.env, KUBECONFIG: '/dev/null' } });
}

test('promtool: the alert rules are valid', { skip: noPromtool }, () => {
  const r = run('promtool', ['check', 'rules', path.join(PROM, 'vsys-alerts.yml')]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS: 5 rules found/);
});

test('promtool: each alert fires on the series meant to fire it, and only those', { skip: noPromtool }, () => {
  const r = run('promtool', ['test', 'rules', path.join(PROM, 'vsys-alerts.test.yml')]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS/);
});

test('promtool: the rule tests catch a wrong threshold and a crash alert that misses first crashes', { skip: noPromtool }, () => {
  const rules = fs.readFileSync(path.join(PROM, 'vsys-alerts.yml'), 'utf8');
  const broken: [string, string][] = [
    [rules.replace('* 3600 > 60', '* 3600 > 80'), 'VsysEmulationCostHigh'],
    [rules.replace(/\n\s*or\n\s*\(vsys_vsyscall_crashes_total unless vsys_vsyscall_crashes_total offset 5m\)/, ''), 'VsysWorkloadCrashedOnVsyscallPage'],
  ];
  for (const [b, alert] of broken) {
    assert.notEqual(b, rules, 'the mutation applies');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-rules-'));
    try {
      fs.writeFileSync(path.join(dir, 'vsys-alerts.yml'), b);
      fs.copyFileSync(path.join(PROM, 'vsys-alerts.test.yml'), path.join(dir, 'vsys-alerts.test.yml'));
      const r = run('promtool', ['test', 'rules', path.join(dir, 'vsys-alerts.test.yml')]);
      assert.notEqual(r.status, 0, `a broken rule passed: ${r.stdout}`);
      assert.match(r.stdout + r.stderr, new RegExp(`FAILED:[^]*alertname: ${alert}, time: 12m|FAILED:[^]*alertname: ${alert}, time: 1h30m`));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('promtool: the scrape configuration is valid and loads the rules', { skip: noPromtool }, () => {
  let r = run('promtool', ['check', 'config', path.join(PROM, 'scrape.yml')]);
  if (r.status !== 0 && /field kubernetes_sd_configs not found/.test(r.stdout + r.stderr)) {
    // Debian's Prometheus is built without Kubernetes discovery: check the rest with the
    // discovery block swapped for a static target.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-scrape-'));
    try {
      const text = fs.readFileSync(path.join(PROM, 'scrape.yml'), 'utf8');
      const swapped = text.replace(/ {4}kubernetes_sd_configs:\n( {6}.*\n)+/, '    static_configs:\n      - targets: ["127.0.0.1:9717"]\n');
      assert.notEqual(swapped, text);
      fs.writeFileSync(path.join(dir, 'scrape.yml'), swapped);
      fs.copyFileSync(path.join(PROM, 'vsys-alerts.yml'), path.join(dir, 'vsys-alerts.yml'));
      r = run('promtool', ['check', 'config', path.join(dir, 'scrape.yml')]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /1 rule files found/);
  assert.match(r.stdout, /SUCCESS: 5 rules found/);
});

interface K8sObject {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // The manifests' shapes are asserted on below; `any` keeps the walk short.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  spec?: any;
}

/** The objects `kubectl kustomize` builds, decoded by kubectl (offline: annotate --local). */
function builtObjects(): K8sObject[] {
  const k = run('kubectl', ['kustomize', KUBE]);
  assert.equal(k.status, 0, k.stderr);
  const j = run('kubectl', ['annotate', '--local', '-f', '-', '-o', 'json', 'vsys.test/decoded=1'], k.stdout);
  assert.equal(j.status, 0, j.stderr);
  return JSON.parse(`[${j.stdout.trim().replace(/\n\}\n\{/g, '\n},\n{')}]`) as K8sObject[];
}

function byKind(objs: K8sObject[], kind: string): K8sObject {
  const o = objs.filter((x) => x.kind === kind);
  assert.equal(o.length, 1, `one ${kind}`);
  return o[0]!;
}

/** Where kubernetes-models keeps each kind's model: its type (generated from the Kubernetes OpenAPI) and validator. */
const MODELS: Record<string, string> = {
  Namespace: 'kubernetes-models/v1/Namespace',
  Service: 'kubernetes-models/v1/Service',
  PersistentVolumeClaim: 'kubernetes-models/v1/PersistentVolumeClaim',
  DaemonSet: 'kubernetes-models/apps/v1/DaemonSet',
  Job: 'kubernetes-models/batch/v1/Job',
  ServiceMonitor: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
};

/**
 * Each object against the Kubernetes API's schema, offline (kubectl's own validation needs a
 * server's OpenAPI): its kubernetes-models validator (types, enums, required fields), and a
 * TypeScript file declaring it with the model's type, compiled with tsc, whose excess-property
 * check refuses a field the API does not have (a misspelt one is silently dropped by a cluster).
 * Returns tsc's complaints, one per line.
 */
async function schemaProblems(objs: K8sObject[]): Promise<string[]> {
  const problems: string[] = [];
  for (const o of objs) {
    const mod = (await import(MODELS[o.kind]!)) as Record<string, new (d: unknown) => { validate(): void }>;
    try {
      new mod[o.kind]!(o).validate();
    } catch (e) {
      problems.push(`${o.kind} ${o.metadata.name}: ${(e as Error).message}`);
    }
  }
  const dir = path.join(ROOT, '.cache', 'k8s-schema');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `check-${process.pid}.ts`);
  const lines = objs.map((o, i) => `import type { I${o.kind} as T${i} } from '${MODELS[o.kind]}';\nexport const o${i}: T${i} = ${JSON.stringify(o)};`);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  try {
    const tsc = run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', file]);
    problems.push(...tsc.stdout.split('\n').filter((l) => /error TS/.test(l)).map((l) => { const i = Math.floor((Number(/^[^(]+\((\d+),/.exec(l)?.[1]) - 1) / 2); return `${objs[i]?.kind ?? '?'}: ${l.replace(/^.*error /, '')}`; }));
    if (tsc.status !== 0 && problems.length === 0) problems.push(`tsc: ${tsc.stdout}${tsc.stderr}`);
  } finally {
    fs.rmSync(file, { force: true });
  }
  return problems;
}

/** The objects of one manifest file, decoded by kubectl (offline). */
function fileObjects(file: string): K8sObject[] {
  const j = run('kubectl', ['annotate', '--local', '-f', file, '-o', 'json', 'vsys.test/decoded=1']);
  assert.equal(j.status, 0, j.stderr);
  return JSON.parse(`[${j.stdout.trim().replace(/\n\}\n\{/g, '\n},\n{')}]`) as K8sObject[];
}

test('kubernetes: every manifest validates against the Kubernetes API schema (kubernetes-models: validators, and types with excess-property checks); a misspelt field and a wrong type are caught', { skip: noKubectl, timeout: 120_000 }, async () => {
  const objs = [...builtObjects(), ...fileObjects(path.join(KUBE, 'registry-scan-job.yaml'))];
  assert.deepEqual(objs.map((o) => o.kind).sort(), ['DaemonSet', 'Job', 'Namespace', 'PersistentVolumeClaim', 'Service', 'ServiceMonitor']);
  assert.deepEqual(await schemaProblems(objs), []);
  // The check can fail: a field spelt as people spell it, and a port that is not a number.
  const ds = structuredClone(objs.find((o) => o.kind === 'DaemonSet')!);
  const c = ds.spec.template.spec.containers[0];
  c.securityContext.readOnlyRootFileSystem = c.securityContext.readOnlyRootFilesystem;
  delete c.securityContext.readOnlyRootFilesystem;
  const job = structuredClone(objs.find((o) => o.kind === 'Job')!);
  job.spec.backoffLimitPerIndex = 'three';
  const bad = await schemaProblems([ds, job]);
  assert.ok(bad.some((p) => /DaemonSet: .*readOnlyRootFileSystem\W* does not exist in type 'ISecurityContext'/.test(p)), bad.join('\n'));
  assert.ok(bad.some((p) => /Job .*backoffLimitPerIndex must be integer/.test(p)), bad.join('\n'));
});

test('kubernetes: the kustomization builds the namespace, DaemonSet, Service and ServiceMonitor in vsys', { skip: noKubectl }, () => {
  const objs = builtObjects();
  assert.deepEqual(objs.map((o) => o.kind).sort(), ['DaemonSet', 'Namespace', 'Service', 'ServiceMonitor']);
  assert.equal(byKind(objs, 'Namespace').metadata.name, 'vsys');
  for (const o of objs.filter((x) => x.kind !== 'Namespace')) assert.equal(o.metadata.namespace, 'vsys', o.kind);
  // Every file in the folder is in the kustomization (a forgotten one would never be applied).
  const listed = fs.readFileSync(path.join(KUBE, 'kustomization.yaml'), 'utf8');
  // registry-scan-job.yaml is a one-off scan, applied on its own (test/image/registry-catalog.test.ts).
  for (const f of fs.readdirSync(KUBE).filter((n) => n.endsWith('.yaml') && n !== 'kustomization.yaml' && n !== 'registry-scan-job.yaml')) assert.match(listed, new RegExp(`- ${f.replace('.', '\\.')}\\n`), f);
});

test('kubernetes: the DaemonSet is unprivileged, read-only, limited, and adds only the listed capabilities', { skip: noKubectl }, () => {
  const ds = byKind(builtObjects(), 'DaemonSet');
  const pod = ds.spec.template.spec;
  assert.equal(pod.hostPID, true);
  assert.equal(pod.hostNetwork, undefined);
  assert.equal(pod.automountServiceAccountToken, false);
  assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
  assert.equal(pod.containers.length, 1);
  const c = pod.containers[0];
  const sc = c.securityContext;
  assert.equal(sc.privileged, false);
  assert.equal(sc.allowPrivilegeEscalation, false);
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.deepEqual(sc.capabilities.drop, ['ALL']);
  assert.deepEqual([...sc.capabilities.add].sort(), [...CAPS].sort());
  for (const k of ['cpu', 'memory']) {
    assert.ok(c.resources.requests[k], `request ${k}`);
    assert.ok(c.resources.limits[k], `limit ${k}`);
  }
  for (const probe of [c.livenessProbe, c.readinessProbe]) {
    assert.equal(probe.httpGet.path, '/healthz');
    assert.equal(probe.httpGet.port, 'metrics');
  }
  // Host paths: only the kubelet's pod directories, read-only; writable places are emptyDirs.
  const volumes = new Map<string, { hostPath?: { path: string }; emptyDir?: object }>(pod.volumes.map((v: { name: string }) => [v.name, v]));
  const hostPaths = [...volumes.values()].filter((v) => v.hostPath).map((v) => v.hostPath!.path);
  assert.deepEqual(hostPaths, ['/var/lib/kubelet/pods']);
  for (const m of c.volumeMounts as { name: string; mountPath: string; readOnly?: boolean }[]) {
    const v = volumes.get(m.name);
    assert.ok(v, m.name);
    if (v.hostPath) assert.equal(m.readOnly, true, `${m.mountPath} is read-only`);
    else assert.ok(v.emptyDir, `${m.mountPath} is an emptyDir`);
  }
  // The bench figures' cache is on a writable mount.
  const cache = (c.env as { name: string; value: string }[]).find((e) => e.name === 'XDG_CACHE_HOME')?.value;
  assert.ok(cache && c.volumeMounts.some((m: { mountPath: string; name: string }) => m.mountPath === cache && volumes.get(m.name)?.emptyDir), 'XDG_CACHE_HOME is an emptyDir');
});

test('kubernetes: one port everywhere, and the arguments are ones `vsys exporter` takes', { skip: noKubectl }, () => {
  const objs = builtObjects();
  const ds = byKind(objs, 'DaemonSet');
  const svc = byKind(objs, 'Service');
  const sm = byKind(objs, 'ServiceMonitor');
  const c = ds.spec.template.spec.containers[0];
  const args = c.args as string[];
  assert.equal(args[0], 'exporter');
  const listen = parseListen(args[args.indexOf('--listen') + 1]!);
  const port = c.ports.find((p: { name: string }) => p.name === 'metrics');
  assert.equal(port.containerPort, listen.port);
  assert.equal(listen.host, '0.0.0.0');
  const ann = ds.spec.template.metadata.annotations;
  assert.equal(ann['prometheus.io/scrape'], 'true');
  assert.equal(Number(ann['prometheus.io/port']), listen.port);
  assert.equal(ann['prometheus.io/path'], '/metrics');
  assert.deepEqual(svc.spec.ports.map((p: { name: string; port: number; targetPort: string }) => [p.name, p.port, p.targetPort]), [['metrics', listen.port, 'metrics']]);
  assert.deepEqual(svc.spec.selector, ds.spec.selector.matchLabels);
  for (const [k, v] of Object.entries(ds.spec.selector.matchLabels)) assert.equal(ds.spec.template.metadata.labels[k], v);
  assert.deepEqual(sm.spec.selector.matchLabels, { 'app.kubernetes.io/name': svc.metadata.labels!['app.kubernetes.io/name'] });
  assert.equal(sm.spec.endpoints[0].port, 'metrics');
  assert.equal(sm.spec.endpoints[0].path, '/metrics');
  // The job label the alerts expect (jobLabel names a Service label whose value becomes job).
  assert.equal(svc.metadata.labels![sm.spec.jobLabel], 'vsys-exporter');
  assert.match(fs.readFileSync(path.join(PROM, 'vsys-alerts.yml'), 'utf8'), /up\{job="vsys-exporter"\}/);
  // Every option is one the CLI documents.
  const help = runVsys(['exporter', '--help']);
  assert.equal(help.status, 0);
  for (const a of args.filter((x) => x.startsWith('--'))) assert.match(help.stdout, new RegExp(`\\n\\s+${a}\\b`), a);
});

interface DockerStage {
  from: string;
  lines: string[];
}

function dockerStages(): DockerStage[] {
  const text = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const stages: DockerStage[] = [];
  for (const line of text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))) {
    if (/^FROM\s/i.test(line)) stages.push({ from: line, lines: [] });
    else stages.at(-1)?.lines.push(line);
  }
  return stages;
}

function instruction(s: DockerStage, name: string): string[] {
  return s.lines.filter((l) => l.toUpperCase().startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());
}

test('Dockerfile: two bookworm-slim stages; ENTRYPOINT and CMD match the bin and the DaemonSet', () => {
  const [build, runtime, ...rest] = dockerStages();
  assert.equal(rest.length, 0);
  assert.match(build!.from, /^FROM node:20-bookworm-slim AS build$/);
  assert.match(runtime!.from, /^FROM node:20-bookworm-slim$/);
  assert.match(instruction(build!, 'RUN').join('\n'), /npm ci\b.*&& npx tsc -p \. && npm prune --omit=dev/);
  const entry = JSON.parse(instruction(runtime!, 'ENTRYPOINT')[0]!) as string[];
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin: { vsys: string } };
  assert.deepEqual(entry, ['node', path.posix.join('/opt/vsys', pkg.bin.vsys)]);
  const cmd = JSON.parse(instruction(runtime!, 'CMD')[0]!) as string[];
  assert.equal(cmd[0], 'exporter');
  const port = parseListen(cmd[cmd.indexOf('--listen') + 1]!).port;
  const ds = fs.readFileSync(path.join(KUBE, 'daemonset.yaml'), 'utf8');
  assert.equal(Number(/containerPort: (\d+)/.exec(ds)?.[1]), port);
  assert.match(ds, new RegExp(`- 0\\.0\\.0\\.0:${port}\\n`));
  assert.deepEqual(instruction(runtime!, 'EXPOSE'), [String(port)]);
  assert.deepEqual(instruction(runtime!, 'USER'), ['root']);
});

test('Dockerfile: the build copies files that exist and .dockerignore keeps; the runtime stage has what the CLI loads', () => {
  const [build, runtime] = dockerStages();
  const ignored = fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const copy of instruction(build!, 'COPY')) {
    const parts = copy.split(/\s+/);
    for (const src of parts.slice(0, -1)) {
      assert.ok(fs.existsSync(path.join(ROOT, src)), `${src} exists`);
      assert.ok(!ignored.includes(src.replace(/\/$/, '')), `${src} is not in .dockerignore`);
    }
  }
  // The runtime's files, laid out as the image has them (node_modules linked, not pruned): the CLI
  // starts from them alone, so nothing it loads lives outside the copied folders.
  const copied = instruction(runtime!, 'COPY').map((c) => c.replace(/^--from=build\s+/, '').split(/\s+/)[0]!.replace('/opt/vsys/', '').replace(/\/$/, ''));
  assert.deepEqual(copied.sort(), ['bin', 'dist/src', 'node_modules', 'package.json', 'schema']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-image-'));
  try {
    for (const p of copied.filter((x) => x !== 'node_modules')) fs.cpSync(path.join(ROOT, p), path.join(dir, p), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    const r = spawnSync(process.execPath, [path.join(dir, 'bin', 'vsys.js'), 'exporter', '--help'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /--listen ADDR:PORT/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const capsProbe = process.getuid?.() !== 0 ? 'needs root' : !hasCommand('setpriv') ? 'setpriv not installed (util-linux)' : false;

/** Starts the exporter with only `caps` in its bounding set (root: its permitted set is then exactly these). */
async function exporterWithCaps(caps: string[]): Promise<{ status: number | null; url?: string; health?: number; metrics?: string; stderr: string }> {
  const bounding = ['-all', ...caps.map((c) => `+${c.toLowerCase()}`)].join(',');
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-caps-'));
  const child = spawn('setpriv', [`--bounding-set=${bounding}`, '--inh-caps=-all', process.execPath, BIN, 'exporter', '--listen', '127.0.0.1:0', '--json'], { env: { ...process.env, XDG_CACHE_HOME: cache } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const deadline = Date.now() + 20_000;
    while (!stdout.includes('}') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (!stdout.includes('}')) {
      if (child.exitCode === null) child.kill('SIGTERM');
      return { status: await exited, stderr };
    }
    const url = (JSON.parse(stdout) as { url: string }).url;
    const health = (await fetch(`${url}/healthz`)).status;
    const metrics = await (await fetch(`${url}/metrics`)).text();
    child.kill('SIGTERM');
    return { status: await exited, url, health, metrics, stderr };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(cache, { recursive: true, force: true });
  }
}

test('capabilities: the exporter starts with exactly the DaemonSet\'s set, and not without CAP_BPF or CAP_PERFMON', { skip: capsProbe, timeout: 90_000 }, async () => {
  const ok = await exporterWithCaps(CAPS);
  assert.equal(ok.health, 200, ok.stderr);
  assert.match(ok.metrics ?? '', /^vsys_exporter_hook\{kind="emulations",hook="tracepoint:emulate_vsyscall"\} 1$/m);
  assert.equal(ok.status, 0, ok.stderr);
  for (const missing of ['BPF', 'PERFMON']) {
    const r = await exporterWithCaps(CAPS.filter((c) => c !== missing));
    assert.equal(r.url, undefined, `started without CAP_${missing}`);
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /Operation not permitted \(need root, or CAP_BPF with CAP_PERFMON\)/);
  }
});
