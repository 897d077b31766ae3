// Whole-registry scans against the real docker-registry: 30 repositories × 3 tags, every image
// made of one of two shared base layers (one crashes under vsyscall=none, one is clean) and a
// layer of its own. The catalog is walked page by page, shared layers are analysed once, a scan
// killed midway resumes from --state without judging anything twice, and three shards run side by
// side cover every image once and merge (--merge) to the report of one run.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, CORPUS, hasCommand, ROOT } from '../helpers.js';
import { buildC, hasGcc } from '../support/fixtures.js';
import { buildLayer, imageConfig, MEDIA } from '../support/images.js';
import { pushImage, registryUnavailable, startRegistry, type Registry } from '../support/registry.js';
import { listCatalog, parseShard, shardOf } from '../../src/image/catalog.js';

const WHEEZY = path.join(CORPUS, 'debian-wheezy-libc-2.13', 'libc-2.13.so');
const skip = (!hasGcc() && 'gcc not installed') || (!fs.existsSync(WHEEZY) && 'corpus not present') || registryUnavailable('none') || false;

const REPOS = Array.from({ length: 30 }, (_, i) => `${i < 15 ? 'team-a' : 'team-b'}/svc-${String(i).padStart(2, '0')}`);
const TAGS = ['1.0', '1.1', 'latest'];
/** Odd repositories are built on the crashing base. */
const crashes = (repo: string) => Number(repo.slice(-2)) % 2 === 1;

type Rec = Record<string, any>;

function vsys(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 600_000, maxBuffer: 256 * 1024 * 1024 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function records(ndjson: string): Rec[] {
  return ndjson.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Rec);
}

/**
 * What must not differ between one run and a merge: everything but whether a layer was met before
 * in the same process, and how long the run took.
 */
function comparable(recs: Rec[]): Rec[] {
  return recs.map((r) => {
    if (r.record === 'image') return { ...r, layers: r.layers.map(({ cached: _c, ...l }: Rec) => l) };
    if (r.record === 'summary') return { ...r, seconds: 'varies' };
    return r;
  });
}

/** The references a state file records as judged (its "done" lines). */
function stateRefs(file: string): string[] {
  // Whole lines only: the file may be read while a scan writes it, or after a kill cut its last line.
  const text = fs.readFileSync(file, 'utf8');
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').slice(1).filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Rec).filter((r) => r.record === 'done').map((r) => r.ref as string);
}

/**
 * The Job's script as a pod runs it: the shell as PID 1 of its own PID namespace (which ignores a
 * SIGTERM it has no trap for). SIGTERM sent to it midway ends the scan at once, as a failure (143)
 * that the Job retries, with the images judged so far on disk and no "complete" record.
 */
async function jobScriptStopsOnSigterm(local: string, dir: string): Promise<void> {
  const one = local.replaceAll('/8"', '/1"').replace('--concurrency 2', '--concurrency 1');
  const unshare = spawn('unshare', ['--pid', '--fork', '--kill-child', '/bin/sh', '-c', one], { stdio: 'ignore', env: { ...process.env, JOB_COMPLETION_INDEX: '0' } });
  const exit = new Promise<number | null>((resolve) => unshare.once('exit', resolve));
  const state = path.join(dir, 'shard-0.ndjson');
  fs.rmSync(state);
  const t0 = Date.now();
  while (!(fs.existsSync(state) && stateRefs(state).length >= 1) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 10));
  // The shell: PID 1 in the namespace, unshare's child outside it.
  const sh = Number(fs.readFileSync(`/proc/${unshare.pid}/task/${unshare.pid}/children`, 'utf8').trim().split(' ')[0]);
  assert.match(fs.readFileSync(`/proc/${sh}/status`, 'utf8'), /^NSpid:\s+\d+\s+1$/m, 'the shell is PID 1 of its namespace');
  const sent = Date.now();
  process.kill(sh, 'SIGTERM');
  const code = await exit;
  const judged = stateRefs(state).length;
  assert.equal(code, 143, 'the scan ended by SIGTERM, and the shell says so (a failure: the Job retries the shard)');
  assert.ok(Date.now() - sent < 10_000, `ended ${Date.now() - sent} ms after SIGTERM`);
  assert.ok(judged >= 1 && judged < 90, `${judged} images judged before the stop`);
  assert.doesNotMatch(fs.readFileSync(state, 'utf8'), /"record":"complete"/);
}

/** The registry-scan Job's container script, as the YAML block scalar holds it (14 spaces in). */
function jobScript(): string {
  const text = fs.readFileSync(path.join(ROOT, 'deploy', 'kubernetes', 'registry-scan-job.yaml'), 'utf8');
  const block = /\n {12}- \|\n((?: {14}.*\n| *\n)+)/.exec(text)?.[1];
  assert.ok(block, 'the script block');
  return block.split('\n').map((l) => l.slice(14)).join('\n');
}

/**
 * The Job's script with a `node` that ends 5 on SIGTERM: the script must wait for that status, not
 * report the 143 of its own wait cut short by the signal, in dash and busybox sh alike, run after
 * run. And a SIGTERM sent as the script starts (before the scan has a pid, or before it has a
 * handler) must end it too, never leave it waiting on a scan that was not told.
 */
test('registry-scan Job script: SIGTERM is passed on to the scan, the scan\'s own status is kept, and an early SIGTERM is not lost', { timeout: 120_000 }, async () => {
  const script = jobScript();
  assert.match(script, /^node \/opt\/vsys\/bin\/vsys\.js scan /m);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-job-sh-'));
  try {
    fs.writeFileSync(path.join(dir, 'node'), `#!/bin/sh\ntrap 'exit 5' TERM\necho started > "${dir}/started"\nwhile :; do :; done\n`, { mode: 0o755 });
    const local = script.replaceAll('/out/', `${dir}/`);
    const shells = [['/bin/sh'], ...(fs.existsSync('/bin/busybox') ? [['/bin/busybox', 'sh']] : [])];
    const run = (sh: string[]) => {
      fs.rmSync(path.join(dir, 'started'), { force: true });
      const p = spawn(sh[0]!, [...sh.slice(1), '-c', local], { stdio: 'ignore', env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, JOB_COMPLETION_INDEX: '0' } });
      return { p, end: new Promise<{ code: number | null; signal: string | null }>((resolve) => p.once('exit', (code, signal) => resolve({ code, signal }))) };
    };
    for (const sh of shells) {
      for (let i = 0; i < 8; i++) {
        const { p, end } = run(sh);
        while (!fs.existsSync(path.join(dir, 'started'))) await new Promise((r) => setTimeout(r, 10));
        p.kill('SIGTERM');
        assert.deepEqual(await end, { code: 5, signal: null }, `${sh.join(' ')}, run ${i + 1}: the scan's own status, not the interrupted wait's`);
      }
      for (let i = 0; i < 8; i++) {
        const { p, end } = run(sh);
        await new Promise((r) => setTimeout(r, i * 3));
        p.kill('SIGTERM');
        // The shell killed before its trap, the scan killed before its handler (143), or the scan's 5: never a hang.
        const got = await end;
        assert.ok(got.signal === 'SIGTERM' || got.code === 143 || got.code === 5, `${sh.join(' ')}, early run ${i + 1}: ${JSON.stringify(got)}`);
      }
    }
    assert.equal(spawnSync('pgrep', ['-f', `${dir}/node`]).status, 1, 'no scan left running');
  } finally {
    spawnSync('pkill', ['-f', `${dir}/node`]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe('whole-registry scans', { skip }, () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-catalog-'));
  let reg: Registry;
  let full: Rec[];
  const base: { crash?: string; clean?: string } = {};
  /** Pushes repo:tag again, on the other base than before (a crash becomes clean and back). */
  let repush: (repo: string, tag: string, onCrashBase: boolean) => Promise<void>;

  before(async () => {
    const blobs = path.join(work, 'blobs');
    const mk = (name: string, files: Record<string, string | Buffer>) => {
      const dir = path.join(work, 'dirs', name);
      for (const [p, body] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
        fs.writeFileSync(path.join(dir, p), body);
      }
      return buildLayer({ dir, compress: 'gzip' }, blobs);
    };
    const usesTime = fs.readFileSync(buildC('imports-time', 'imports-time', []));
    const crashBase = mk('crash-base', { 'lib/x86_64-linux-gnu/libc.so.6': fs.readFileSync(WHEEZY), 'usr/bin/uses-time': usesTime, 'etc/os-release': 'ID=debian\nVERSION_ID="7"\n' });
    const cleanBase = mk('clean-base', { 'usr/bin/true': fs.readFileSync('/bin/true'), 'etc/os-release': 'ID=debian\nVERSION_ID="12"\n' });
    base.crash = crashBase.digest;
    base.clean = cleanBase.digest;
    reg = await startRegistry();
    const push = async (repo: string, tag: string, onCrashBase: boolean) => {
      const own = mk(`${repo}-${tag}`, { 'etc/image': `${repo}:${tag}\n` });
      const b = onCrashBase ? crashBase : cleanBase;
      const config = path.join(work, 'config.json');
      fs.writeFileSync(config, JSON.stringify(imageConfig([b.diffId, own.diffId], { config: { Cmd: ['/usr/bin/true'] } })));
      await pushImage(reg, repo, tag, { configPath: config, layerPaths: [b.blobPath, own.blobPath], mediaTypes: { config: MEDIA.ociConfig, layers: [b.mediaType, own.mediaType] } });
    };
    repush = push;
    for (const repo of REPOS) for (const tag of TAGS) await push(repo, tag, crashes(repo));
  });
  after(async () => {
    await reg?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('the catalog, page by page, with --repos and --shard applied before any tags are listed', { timeout: 120_000 }, async () => {
    const pages: string[] = [];
    const all = await listCatalog(reg.host, { pageSize: 7, onPage: (what) => pages.push(what) });
    assert.equal(all.repositories, 30);
    assert.equal(all.images.length, 90);
    assert.deepEqual([...new Set(all.images.map((i) => i.repo))], [...REPOS].sort());
    // 30 names 7 at a time: at least 5 pages (the registry sends a Link to each next one).
    assert.ok(pages.filter((p) => p === 'catalog').length >= 5, `catalog pages: ${pages.filter((p) => p === 'catalog').length}`);
    const a = await listCatalog(reg.host, { repos: ['team-a/*'] });
    assert.deepEqual(a.images.map((i) => i.repo).filter((r, i, l) => l.indexOf(r) === i), REPOS.slice(0, 15));
    const shards = await Promise.all([0, 1, 2].map((index) => listCatalog(reg.host, { shard: { index, count: 3 } })));
    const refs = shards.flatMap((s) => s.images.map((i) => i.ref));
    assert.equal(refs.length, 90);
    assert.equal(new Set(refs).size, 90);
    for (const [k, s] of shards.entries()) for (const i of s.images) assert.equal(shardOf(i.repo, 3), k);
    assert.throws(() => parseShard('3/3'), /0 ≤ K < N/);
    assert.throws(() => parseShard('1'), /K\/N/);
  });

  test('one run: every tag judged, each shared base layer analysed once', { timeout: 600_000 }, () => {
    const r = vsys(['scan', '--mode', 'none', '--json', '--concurrency', '4', `registry://${reg.host}`]);
    assert.equal(r.status, 0, r.stderr);
    full = records(r.stdout);
    const images = full.filter((x) => x.record === 'image');
    assert.equal(images.length, 90);
    for (const img of images) {
      const repo = /^registry:\/\/[^/]+\/(.+):[^:]+$/.exec(img.input)?.[1] as string;
      assert.equal(img.outcome, crashes(repo) ? 'crash' : 'ok', img.input);
    }
    for (const digest of [base.crash, base.clean]) {
      const uses = images.flatMap((i) => i.layers).filter((l: Rec) => l.digest === digest);
      assert.equal(uses.length, 45);
      assert.equal(uses.filter((l: Rec) => !l.cached).length, 1, `${digest} analysed ${uses.filter((l: Rec) => !l.cached).length} times`);
    }
    const summary = full.at(-1) as Rec;
    assert.equal(summary.images, 90);
    assert.equal(summary.errors, 0);
    assert.match(r.stderr, /30 repositories, 90 tags/);
    assert.match(r.stderr, /\[90\/90\]/);
  });

  test('killed midway, the scan resumes from --state and judges nothing twice', { timeout: 600_000 }, async () => {
    const state = path.join(work, 'resume.ndjson');
    const child = spawn(process.execPath, [BIN, 'scan', '--mode', 'none', '--json', '--concurrency', '1', '--state', state, `registry://${reg.host}`], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const deadline = Date.now() + 300_000;
    while (Date.now() < deadline && (!fs.existsSync(state) || stateRefs(state).length < 25)) await new Promise((resolve) => setTimeout(resolve, 20));
    child.kill('SIGKILL');
    await exited;
    const before = stateRefs(state);
    assert.ok(before.length >= 25 && before.length < 90, `${before.length} done when killed`);
    // Merged as it is, the stopped scan is not a clean report: what it did not judge is named.
    const early = vsys(['scan', '--merge', '--mode', 'none', '--json', state]);
    assert.equal(early.status, 3, early.stderr);
    assert.match(early.stdout, /SCAN_INCOMPLETE.*\d+ of 90 images not judged/);
    const r = vsys(['scan', '--mode', 'none', '--json', '--concurrency', '4', '--state', state, `registry://${reg.host}`]);
    assert.equal(r.status, 0, r.stderr);
    const resumed = Number(/(\d+) of 90 images already judged/.exec(r.stderr)?.[1]);
    assert.ok(resumed >= before.length - 1 && resumed <= before.length, `resumed ${resumed}, ${before.length} lines before`);
    const after = stateRefs(state);
    assert.equal(after.length, 90, 'one line per image: nothing judged twice');
    assert.equal(new Set(after).size, 90);
    assert.deepEqual(comparable(records(r.stdout)), comparable(full));
    // Another scan's state is refused, not mixed in.
    const other = vsys(['scan', '--mode', 'none', '--json', '--state', state, '--repos', 'team-a/*', `registry://${reg.host}`]);
    assert.equal(other.status, 2);
    assert.match(other.stderr, /holds the state of another scan/);
  });

  test('three shards side by side cover every image once and merge to the report of one run', { timeout: 600_000 }, async () => {
    const files = [0, 1, 2].map((k) => path.join(work, `shard-${k}.ndjson`));
    const runs = files.map((f, k) => new Promise<{ code: number | null; err: string }>((resolve) => {
      const c = spawn(process.execPath, [BIN, 'scan', '--mode', 'none', '--json', '--shard', `${k}/3`, '--state', f, `registry://${reg.host}`], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      c.stderr.on('data', (d) => (err += d));
      c.once('exit', (code) => resolve({ code, err }));
    }));
    for (const r of await Promise.all(runs)) assert.equal(r.code, 0, r.err);
    const refs = files.map(stateRefs);
    assert.equal(refs.flat().length, 90);
    assert.equal(new Set(refs.flat()).size, 90);
    const merged = vsys(['scan', '--merge', '--mode', 'none', '--json', ...files]);
    assert.equal(merged.status, 0, merged.stderr);
    assert.deepEqual(comparable(records(merged.stdout)), comparable(full));
    // The text report and the gate read the merge as they read a scan.
    const gate = vsys(['scan', '--merge', '--mode', 'none', '--fail-on', 'crash', ...files]);
    assert.equal(gate.status, 1);
    assert.match(gate.stdout, /90 image\(s\), 0 error\(s\)/);
    // A shard left out: its images are named as not judged, and the gate says so (exit 3).
    const partial = vsys(['scan', '--merge', '--mode', 'none', '--json', files[0] as string, files[2] as string]);
    assert.equal(partial.status, 3);
    assert.match(partial.stdout, /SCAN_SHARD_MISSING.*shard 1\/3/);
    // A file given twice is said, and counted once.
    const twice = vsys(['scan', '--merge', '--mode', 'none', '--json', files[0] as string, files[0] as string]);
    assert.equal(twice.status, 3, 'shards 1 and 2 are missing');
    assert.equal(records(twice.stdout).filter((x) => x.record === 'image').length, refs[0]?.length);
  });

  test('deploy/kubernetes/registry-scan-job.yaml: its pods\' arguments, run as the Job runs them, merge to the report of one run', { timeout: 600_000, skip: !hasCommand('kubectl') && 'kubectl not installed' }, async () => {
    const file = path.join(ROOT, 'deploy', 'kubernetes', 'registry-scan-job.yaml');
    const k = spawnSync('kubectl', ['annotate', '--local', '-f', file, '-o', 'json', 'vsys.test/decoded=1'], { encoding: 'utf8' });
    assert.equal(k.status, 0, k.stderr);
    const objs = JSON.parse(`[${k.stdout.trim().replace(/\n\}\n\{/g, '\n},\n{')}]`) as Rec[];
    const job = objs.find((o) => o.kind === 'Job') as Rec;
    const pvc = objs.find((o) => o.kind === 'PersistentVolumeClaim') as Rec;
    const spec = job.spec;
    assert.equal(spec.completionMode, 'Indexed');
    assert.equal(spec.template.spec.restartPolicy, 'Never');
    assert.ok(spec.backoffLimitPerIndex > 0, 'a failing shard is retried alone (and resumes from its state file)');
    assert.deepEqual(spec.podFailurePolicy.rules, [{ action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget' }] }], 'an eviction does not use up a retry');
    const n = spec.completions as number;
    assert.equal(spec.parallelism, n);
    const c = spec.template.spec.containers[0];
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(spec.template.spec.securityContext.runAsNonRoot, true);
    const env = c.env.find((e: Rec) => e.name === 'JOB_COMPLETION_INDEX');
    assert.equal(env.valueFrom.fieldRef.fieldPath, "metadata.annotations['batch.kubernetes.io/job-completion-index']");
    const out = c.volumeMounts.find((m: Rec) => spec.template.spec.volumes.find((v: Rec) => v.name === m.name)?.persistentVolumeClaim?.claimName === pvc.metadata.name);
    assert.ok(out, 'the state files are on the claim');
    assert.deepEqual(c.command, ['/bin/sh', '-c']);
    const script = (c.args as string[])[0] as string;
    assert.match(script, new RegExp(`--shard "\\$JOB_COMPLETION_INDEX/${n}"`));
    assert.match(script, new RegExp(`--state "${out.mountPath}/`));
    // Each pod's script, as the container's shell runs it (vsys and the claim where they are here), side by side.
    const dir = path.join(work, 'job-out');
    fs.mkdirSync(dir);
    const local = script.replace('node /opt/vsys/bin/vsys.js', `'${process.execPath}' '${BIN}'`).replace(/registry:\/\/\S+/, `registry://${reg.host}`).replaceAll(`${out.mountPath}/`, `${dir}/`);
    assert.notEqual(local, script);
    const codes = await Promise.all(Array.from({ length: n }, (_, i) => new Promise<number | null>((resolve) => spawn('/bin/sh', ['-c', local], { stdio: 'ignore', env: { ...process.env, JOB_COMPLETION_INDEX: String(i) } }).once('exit', resolve))));
    assert.deepEqual(codes, Array(n).fill(0));
    const states = fs.readdirSync(dir).map((f) => path.join(dir, f));
    assert.equal(states.length, n);
    assert.equal(states.flatMap(stateRefs).length, 90);
    const merged = vsys(['scan', '--merge', '--mode', 'none', '--json', ...states]);
    assert.equal(merged.status, 0, merged.stderr);
    assert.deepEqual(comparable(records(merged.stdout)), comparable(full));
    if (process.getuid?.() === 0 && hasCommand('unshare')) await jobScriptStopsOnSigterm(local, dir);
  });

  test('--repos that matches nothing is not a pass: exit 3, REGISTRY_NO_MATCH', { timeout: 120_000 }, () => {
    const r = vsys(['scan', '--mode', 'none', '--fail-on', 'crash', '--json', '--repos', 'typo/*', `registry://${reg.host}`]);
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stdout, /REGISTRY_NO_MATCH/);
  });

  test('--merge refuses what is not a state file, and scanning options', () => {
    // A shard whose file was never written is named, and the rest still reported.
    const absent = vsys(['scan', '--merge', '--mode', 'none', '--json', path.join(work, 'shard-0.ndjson'), path.join(work, 'no-such-shard.ndjson')]);
    assert.equal(absent.status, 3);
    assert.match(absent.stdout, /SCAN_STATE_MISSING/);
    assert.ok(records(absent.stdout).some((x) => x.record === 'image'));
    // A registry that cannot be reached leaves a run that is not complete (a Job retries it), and the Job's script fails.
    const down = path.join(work, 'down.ndjson');
    const unreachable = vsys(['scan', '--mode', 'none', '--state', down, 'registry://127.0.0.1:9']);
    assert.equal(unreachable.status, 3);
    assert.doesNotMatch(fs.readFileSync(down, 'utf8'), /"record":"(listing|complete)"/);
    const notState = path.join(work, 'not-state.ndjson');
    fs.writeFileSync(notState, '{"record":"image"}\n');
    const r = vsys(['scan', '--merge', notState]);
    assert.equal(r.status, 3);
    assert.match(r.stderr, /SCAN_STATE_BAD|no vsys-scan-state header/);
    assert.equal(vsys(['scan', '--merge', '--shard', '0/2', notState]).status, 2);
    assert.equal(vsys(['scan', '--merge']).status, 2);
    assert.equal(vsys(['scan', '--shard', '0/2', '/bin/true']).status, 2);
    assert.equal(vsys(['scan', '--state', path.join(work, 'paths.ndjson'), '/bin/true']).status, 2);
    assert.equal(fs.existsSync(path.join(work, 'paths.ndjson')), false, 'nothing written for a refused run');
  });

  // Last: it changes what the registry holds.
  test('resumed after a tag was pushed again, the scan judges that image again (its digest changed) and keeps the others', { timeout: 300_000 }, async () => {
    const state = path.join(work, 'repush.ndjson');
    const args = ['scan', '--mode', 'none', '--json', '--repos', 'team-b/svc-29', '--state', state, `registry://${reg.host}`];
    const first = vsys(args);
    assert.equal(first.status, 0, first.stderr);
    const judged = records(first.stdout).filter((x) => x.record === 'image');
    assert.deepEqual(judged.map((x) => x.outcome), ['crash', 'crash', 'crash']);
    for (const img of judged) assert.match(img.tagDigest, /^sha256:[0-9a-f]{64}$/);
    // The tag's digest as the registry serves it (skopeo, not vsys): what the report recorded.
    if (hasCommand('skopeo')) {
      const inspect = spawnSync('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/team-b/svc-29:latest`]);
      assert.equal(inspect.status, 0, String(inspect.stderr));
      const { createHash } = await import('node:crypto');
      assert.equal(judged.find((x) => x.input.endsWith(':latest'))?.tagDigest, `sha256:${createHash('sha256').update(inspect.stdout).digest('hex')}`);
    }
    await repush('team-b/svc-29', 'latest', false);
    const again = vsys(args);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /1 of the images judged in .* were pushed again since .*svc-29:latest/);
    assert.match(again.stderr, /2 of 3 images already judged/);
    const now = records(again.stdout).filter((x) => x.record === 'image');
    assert.deepEqual(now.map((x) => [/:([^:]+)$/.exec(x.input)?.[1], x.outcome]), [['1.0', 'crash'], ['1.1', 'crash'], ['latest', 'ok']]);
    assert.equal(stateRefs(state).length, 4, 'three lines, and one more for the tag judged again');
    // Nothing changed since: all three kept.
    const third = vsys(args);
    assert.match(third.stderr, /3 of 3 images already judged/);
    assert.doesNotMatch(third.stderr, /pushed again|could not be checked/);
  });
});
