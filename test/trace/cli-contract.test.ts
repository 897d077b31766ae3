// `vsys trace -- CMD` as a wrapper a script can put in front of a command: the command's exit
// status is vsys's, its stdout stays byte for byte its own (the trace goes to stderr or -o FILE),
// a process is named by what it exec'd, the CPU lost is a share of the run's CPU time (checked
// against GNU time), a closed output ends the trace (141) and Ctrl-C prints the partial summary
// (130). Against the real kernel; needs root and tracefs (.ci/run mounts it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, CORPUS } from '../helpers.js';
import { buildTraceFixture } from '../support/trace-fixture.js';
import { runTrace } from '../../src/trace/session.js';
import { bpfCountersProblem } from '../../src/trace/bpf-counters.js';
import { nameAfterExec } from '../../src/trace/attribution.js';
import { commOfExec } from '../../src/trace/events.js';
import { formatSummary, shellStatus } from '../../src/cli/trace.js';

const root = process.getuid?.() === 0;
const emulation = fs.existsSync('/sys/kernel/tracing/events/vsyscall/emulate_vsyscall');
const skip = !root ? 'needs root' : !emulation ? 'no vsyscall emulation tracepoint here (tracefs not mounted, or vsyscall=none)' : false;
const noBpf = skip || (bpfCountersProblem()?.message ?? false);
const BACKENDS = noBpf ? (['perf'] as const) : (['bpf', 'perf'] as const);
const BUSYBOX = path.join(CORPUS, 'busybox-1.15.2-static', 'busybox');
const INITFS_BUSYBOX = path.join(CORPUS, 'gentoo-initfs-2011', 'bin', 'busybox');
const noCorpus = !fs.existsSync(BUSYBOX) && 'corpus busybox-1.15.2-static not present';

/** A private copy of the corpus' busybox 1.15.2 (the corpus keeps it read-only, without x bits). */
function busybox(dir: string): string {
  const bb = path.join(dir, 'busybox');
  fs.copyFileSync(BUSYBOX, bb);
  fs.chmodSync(bb, 0o755);
  return bb;
}

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-trace-cli-'));
}

function vsys(args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
}

test('exit status: the traced command\'s own code, or 128+signal as a shell reports it (the corpus busybox, the call-n fixture)', { skip: skip || noCorpus }, () => {
  const dir = tmp();
  try {
    const bb = busybox(dir);
    const cases: [string[], number][] = [
      // busybox's own shell: an emulated time() call (date), then its exit code
      [[bb, 'sh', '-c', `${bb} date >/dev/null; exit 42`], 42],
      [[bb, 'sh', '-c', `${bb} date >/dev/null; kill -ABRT $$`], 128 + 6],
      [[bb, 'true'], 0],
      [[bb, 'false'], 1],
      // a misaligned call: the kernel's SIGSEGV
      [[buildTraceFixture(), 'misaligned', '1'], 139],
      // not found: the shell's 127
      [[path.join(dir, 'no-such-program')], 127],
    ];
    for (const [argv, want] of cases) {
      const plain = spawnSync('sh', ['-c', '"$@"', 'sh', ...argv], { stdio: 'ignore' });
      assert.equal(plain.status, want, `untraced ${argv.join(' ')}`);
      const r = vsys(['trace', '--', ...argv]);
      assert.equal(r.status, want, `vsys trace -- ${argv.join(' ')}: ${r.stderr}`);
    }
    // The summary still says what happened.
    const r = vsys(['trace', '--', bb, 'sh', '-c', `${bb} date >/dev/null; exit 42`]);
    assert.match(String(r.stderr), /exit 42/);
    // busybox sh calls gettimeofday once itself, date calls time once
    assert.match(String(r.stderr), /emulated vsyscalls: 2 .*time 1, gettimeofday 1,/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('stdout stays the command\'s: byte-identical to an untraced run through a slow pipe; the summary, --events and --json go to stderr, or to -o FILE', { skip: skip || noCorpus, timeout: 120_000 }, () => {
  const dir = tmp();
  try {
    const bb = busybox(dir);
    // 6 MB of binary data through `busybox cat`, into a pipe whose reader starts late: the pipe
    // fills, and a command whose stdout Node had left non-blocking would meet EAGAIN and lose bytes.
    const data = path.join(dir, 'data.bin');
    fs.writeFileSync(data, Buffer.concat(Array.from({ length: 6 }, (_, i) => Buffer.alloc(1 << 20, i * 37 + 1))));
    const run = (pre: string) => spawnSync('sh', ['-c', `${pre} ${bb} sh -c '${bb} date >/dev/null; ${bb} cat ${data}' 2>${dir}/err | (sleep 1; cat > ${dir}/out)`], { encoding: 'utf8' });
    assert.equal(run('').status, 0);
    const plain = fs.readFileSync(path.join(dir, 'out'));
    assert.ok(plain.equals(fs.readFileSync(data)), 'the untraced run copies the file');
    for (const flags of ['', '--json', '--events', '--events --json']) {
      assert.equal(run(`${process.execPath} ${BIN} trace ${flags} --`).status, 0, flags);
      const traced = fs.readFileSync(path.join(dir, 'out'));
      assert.equal(traced.length, plain.length, `${flags}: ${traced.length} bytes on stdout, untraced ${plain.length}`);
      assert.ok(traced.equals(plain), `${flags}: stdout differs from the untraced run`);
      const err = fs.readFileSync(path.join(dir, 'err'), 'utf8');
      if (flags.includes('--json')) {
        const lines = err.trim().split('\n').map((l) => JSON.parse(l));
        assert.equal(lines.at(-1).summary.counts.emulated.time, 1, flags);
        if (flags.includes('--events')) assert.ok(lines.some((l) => l.event?.kind === 'emulate' && l.event.nr === 1), flags);
      } else {
        assert.match(err, /^vsys trace — .*exit 0$/m, flags);
        if (flags.includes('--events')) assert.match(err, / > emulate_vsyscall nr=1$/m, flags);
      }
    }
    // -o FILE: vsys writes nothing to stderr, the file has the whole trace.
    const file = path.join(dir, 'trace.ndjson');
    const r = spawnSync(process.execPath, [BIN, 'trace', '--json', '--events', '-o', file, '--', bb, 'date'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \w+ \d{4}\n$/, 'stdout is date\'s line alone');
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.at(-1).summary.counts.emulated, { gettimeofday: 0, time: 1, getcpu: 0, misaligned: 0 });
    assert.ok(lines.slice(0, -1).every((l) => l.event));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a process is named by what it exec\'d: busybox, not the chroot that exec\'d it (both backends, the corpus\' 2011 Gentoo initramfs busybox)', { skip: skip || (!fs.existsSync(INITFS_BUSYBOX) && 'corpus gentoo-initfs-2011 not present') }, async () => {
  const dir = tmp();
  try {
    fs.mkdirSync(path.join(dir, 'bin'));
    fs.copyFileSync(INITFS_BUSYBOX, path.join(dir, 'bin', 'busybox'));
    fs.chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
    for (const backend of BACKENDS) {
      const s = await runTrace({ target: { k: 'command', argv: ['chroot', dir, '/bin/busybox', 'date'] }, stdio: 'ignore', backend });
      assert.equal(s.exit?.code, 0, backend);
      assert.equal(s.counts.emulated.time, 1, `${backend}: ${JSON.stringify(s.counts)}`);
      assert.deepEqual(s.processes.map((p) => [p.comm, p.exe, p.emulated.time]), [['busybox', '/bin/busybox', 1]], backend);
    }
    // A process that makes no call is named after its exec too (from the exec and exit samples).
    for (const backend of BACKENDS) {
      const s = await runTrace({ target: { k: 'command', argv: ['/bin/sh', '-c', 'exec /bin/sleep 0'] }, stdio: 'ignore', backend });
      assert.deepEqual(s.processes.map((p) => [p.comm, p.exe]), [['sleep', '/bin/sleep']], backend);
    }
    // The CLI's per-process line and --events' lines carry the name.
    const r = spawnSync(process.execPath, [BIN, 'trace', '--events', '--', 'chroot', dir, '/bin/busybox', 'date'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^ +\d+ busybox \(\/bin\/busybox\): 1 emulated/m);
    assert.match(r.stderr, / busybox \(\d+\) > emulate_vsyscall nr=1$/m);
    assert.match(r.stderr, / busybox \(\d+\) > execve filename=\/bin\/busybox$/m);
    assert.doesNotMatch(r.stderr, /chroot \(\d+\) > (emulate_vsyscall|page_fault)/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the CPU lost is a share of the run\'s CPU time, which agrees with GNU time\'s user+sys for the same command', { skip: skip || (!fs.existsSync('/usr/bin/time') && 'no /usr/bin/time'), timeout: 60_000 }, () => {
  const dir = tmp();
  try {
    const times = path.join(dir, 'times');
    // GNU time is in the traced tree (negligible CPU) and measures its child with wait4's rusage.
    const r = spawnSync(process.execPath, [BIN, 'trace', '--json', '--', '/usr/bin/time', '-f', '%U %S', '-o', times, buildTraceFixture(), 'time', '1000000', 'getcpu', '200000'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stderr.trim().split('\n').pop() as string).summary;
    const [u, sys] = fs.readFileSync(times, 'utf8').trim().split('\n').pop()!.split(' ').map(Number) as [number, number];
    assert.ok(Math.abs(s.cpuSeconds - (u + sys)) <= 0.03 + 0.1 * (u + sys), `task-clock ${s.cpuSeconds} s, GNU time ${u} + ${sys} s`);
    if (!s.cost) return; // the page cannot be called here: no cost, no share
    assert.ok(s.cost.share > 0 && s.cost.share <= 1.0, `share ${s.cost.share}`);
    assert.ok(Math.abs(s.cost.share - Math.min(1, s.cost.cpuSeconds / s.cpuSeconds)) < 1e-9);
    const text = spawnSync(process.execPath, [BIN, 'trace', '--', buildTraceFixture(), 'time', '1000000'], { encoding: 'utf8' });
    assert.match(text.stderr, /^CPU time lost to emulation: 0\.\d{3} s, \d+ % of the run's CPU time \(of \d\.\d{3} s the traced processes used; \d+ ns × 1,000,000 calls; /m);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Whether a process id is alive (and not a zombie). */
function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

test('a closed output (stderr to `head`, or -o into a FIFO whose reader leaves) ends the trace quietly with 141 and stops the command', { skip, timeout: 60_000 }, () => {
  const bin = buildTraceFixture();
  const dir = tmp();
  try {
    // 100,000 calls/s for 1,000 s if nothing stopped it.
    const r = spawnSync('sh', ['-c', `${process.execPath} ${BIN} trace --events -- ${bin} -r 100000 time 100000000 2>&1 >/dev/null | head -3`], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.error, undefined, 'vsys ended by itself');
    const pid = Number(/call-n \((\d+)\) > page_fault/.exec(r.stdout)?.[1]);
    assert.ok(pid > 0, r.stdout);
    assert.ok(!alive(pid), 'the traced command was stopped');
    // the exit status, through bash (sh has no PIPESTATUS)
    const b = spawnSync('bash', ['-c', `${process.execPath} ${BIN} trace --events -- ${bin} -r 100000 time 100000000 2>&1 >/dev/null | head -1 >/dev/null; echo "\${PIPESTATUS[0]}"`], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(b.stdout.trim(), '141', b.stderr);
    // -o into a FIFO: the reader takes one line and leaves; vsys's own stderr stays clean (no stack).
    const fifo = path.join(dir, 'fifo');
    spawnSync('mkfifo', [fifo]);
    const f = spawnSync('bash', ['-c', `head -1 ${fifo} > ${dir}/first & ${process.execPath} ${BIN} trace --events -o ${fifo} -- ${bin} -r 100000 time 100000000; echo "status $?"; wait`], { encoding: 'utf8', timeout: 30_000 });
    assert.match(f.stdout, /^status 141$/m, f.stderr);
    assert.equal(f.stderr, '');
    assert.match(fs.readFileSync(path.join(dir, 'first'), 'utf8'), / > execve filename=/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C: the partial summary and exit 130, whether the terminal\'s SIGINT reached the command too or vsys alone got it', { skip, timeout: 60_000 }, async () => {
  const bin = buildTraceFixture();
  for (const who of ['group', 'vsys'] as const) {
    // Its own process group, as a shell's foreground job: the terminal signals the whole group.
    const p = spawn(process.execPath, [BIN, 'trace', '--', bin, '-r', '10000', 'time', '100000000'], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => { err += d; });
    const done = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    // Until the command runs under the trace (its calls are being counted), then a little more.
    let child = 0;
    for (let i = 0; i < 200 && !(child > 0); i++) {
      await new Promise((r) => setTimeout(r, 50));
      child = Number(spawnSync('pgrep', ['-P', String(p.pid), '-f', 'call-n'], { encoding: 'utf8' }).stdout.trim().split('\n')[0]);
    }
    await new Promise((r) => setTimeout(r, 500));
    process.kill(who === 'group' ? -p.pid! : p.pid!, 'SIGINT');
    const code = await done;
    assert.equal(code, 130, `${who}: ${err}`);
    assert.match(err, /stopped early: partial figures/, who);
    assert.match(err, who === 'group' ? /exit SIGINT/ : /exit SIGTERM/, who);
    const n = Number(/emulated vsyscalls: ([\d,]+)/.exec(err)?.[1]?.replace(/,/g, ''));
    assert.ok(n > 1000 && n < 100_000_000, `${who}: ${n} calls counted before Ctrl-C`);
    assert.ok(child > 0 && !alive(child), `${who}: the command was stopped`);
  }
});

test('a command that dies of a SIGINT of its own was traced whole: exit 130 as a shell says it, not "stopped early"', { skip, timeout: 60_000 }, () => {
  const r = spawnSync(process.execPath, [BIN, 'trace', '--', 'sh', '-c', 'kill -INT $$'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 130, r.stderr);
  assert.match(r.stderr, /exit SIGINT/);
  assert.doesNotMatch(r.stderr, /stopped early/);
});

test('shellStatus, the exec name rule and the share\'s wording (no kernel needed)', () => {
  assert.equal(shellStatus({ code: 3, signal: null }), 3);
  assert.equal(shellStatus({ code: null, signal: 'SIGSEGV' }), 139);
  assert.equal(shellStatus({ code: null, signal: 'SIGKILL' }), 137);
  assert.equal(commOfExec('/usr/lib/jvm/java-17/bin/a-very-long-program-name'), 'a-very-long-pro');
  // The name at the calls wins; the executable is the exec that gave it that name.
  assert.deepEqual(nameAfterExec({ comm: 'chroot', exe: 'chroot' }, { execs: [{ filename: '/usr/sbin/chroot', comm: 'chroot' }, { filename: '/bin/bash', comm: 'bash' }] }), { comm: 'bash', exe: '/bin/bash' });
  assert.deepEqual(nameAfterExec({ comm: 'x' }, { counted: 'old', execs: [{ filename: '/opt/old', comm: 'old' }, { filename: '/bin/new', comm: 'new' }] }), { comm: 'old', exe: '/opt/old' });
  // A name from elsewhere than the guess, with no exec seen: the guessed executable is not kept.
  assert.deepEqual(nameAfterExec({ comm: 'sh', exe: '/bin/sh' }, { exited: 'true' }), { comm: 'true' });
  assert.deepEqual(nameAfterExec({ comm: 'sh', exe: '/bin/sh' }, { exited: 'sh' }), { comm: 'sh', exe: '/bin/sh' });
  const text = formatSummary({
    target: 't', seconds: 1, counts: { emulated: { gettimeofday: 0, time: 1_000_000, getcpu: 0, misaligned: 0 }, pageFaults: 0, syscalls: 0 },
    processes: [], containers: [], crashes: [], lostEvents: 0, backend: { name: 'bpf' }, cpuSeconds: 0.648,
    cost: { cpuSeconds: 0.415, perCallNs: 415, source: 's', share: 0.415 / 0.648 },
  });
  assert.match(text, /^CPU time lost to emulation: 0\.415 s, 64 % of the run's CPU time \(of 0\.648 s the traced processes used; 415 ns × 1,000,000 calls; s\)$/m);
});
