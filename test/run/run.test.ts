// vsys run --as none on this host (xonly or emulate), against the kernel's own behaviour: a program
// that calls an entry dies of SIGSEGV (exit 139) as on a none kernel, and vsys names the entry and
// the caller, whose address objdump confirms (the instruction after the call); programs that do not
// call the page run as they are; the Gentoo 2011 initramfs' programs in a private root, as root and
// as nobody (user namespace); an image's entrypoint. The same programs on a real vsyscall=none
// kernel are compared in test/zz-kernels/matrix.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildPrograms } from '../zz-kernels/vm.js';
import { materialiseInitfs, INITFS } from '../support/initfs.js';
import { buildOciLayout } from '../support/images.js';
import { CORPUS, ROOT } from '../helpers.js';
import { buildLauncher, vsyscallFilter } from '../../src/run/launcher.js';
import { modeOfMaps } from '../../src/model/maps-mode.js';
import { Ajv2020 } from 'ajv/dist/2020.js';

const recordSchema = JSON.parse(fs.readFileSync(path.join(ROOT, 'schema', 'scan-record.schema.json'), 'utf8'));
const validateRecord = new Ajv2020({ allErrors: true, strict: true }).compile(recordSchema);

const BIN = path.join(ROOT, 'bin', 'vsys.js');
const hostSays = modeOfMaps(fs.readFileSync('/proc/self/maps', 'utf8'));
const skip = hostSays !== 'xonly' && hostSays !== 'emulate-or-native' ? `needs a host that emulates the page (this one: ${hostSays})` : false;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-run-test-'));
const bins = buildPrograms(path.join(work, 'progs'));
for (const f of fs.readdirSync(path.join(work, 'progs'))) fs.chmodSync(path.join(work, 'progs', f), 0o755);
fs.chmodSync(work, 0o755);
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));

function vsys(args: string[], opts: { as?: 'nobody' } = {}) {
  const argv = opts.as === 'nobody' ? ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, BIN, ...args] : [BIN, ...args];
  const r = spawnSync(opts.as === 'nobody' ? 'setpriv' : process.execPath, argv, { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The address of the instruction after the `call *%rax` that follows a load of `target`, from objdump -d. */
function returnAddressOf(file: string, target: string): bigint {
  const lines = execFileSync('objdump', ['-d', '--no-show-raw-insn', file], { encoding: 'utf8', maxBuffer: 64 << 20 }).split('\n');
  const at = lines.findIndex((l) => l.includes(`$0x${target}`));
  assert.ok(at >= 0, `objdump shows the load of 0x${target} in ${file}`);
  for (let i = at + 1; i < at + 12; i++) {
    if (/\bcall\s+\*%r/.test(lines[i]!)) return BigInt(`0x${/^\s*([0-9a-f]+):/.exec(lines[i + 1]!)![1]}`);
  }
  assert.fail(`no call through a register after the load in ${file}`);
}

test('the launcher is a static x86-64 executable (readelf) and the filter hands only calls from the page to vsys', () => {
  const f = path.join(work, 'launcher');
  fs.writeFileSync(f, buildLauncher({ root: '/x', userns: { uid: 1000, gid: 1000 } }));
  const h = execFileSync('readelf', ['-hlW', f], { encoding: 'utf8' });
  assert.match(h, /Type:\s+EXEC/);
  assert.match(h, /Machine:\s+Advanced Micro Devices X86-64/);
  assert.match(h, /LOAD\s+0x0+ 0x0*400000 .* R E /);
  assert.match(h, /GNU_STACK .* RW /);
  assert.doesNotMatch(h, /INTERP/);
  // The filter: 9 classic BPF instructions, the page's address compared in two halves.
  const b = Buffer.from(vsyscallFilter());
  assert.equal(b.length, 9 * 8);
  assert.equal(b.readUInt32LE(3 * 8 + 4), 0xffffffff);
  assert.equal(b.readUInt32LE(6 * 8 + 4), 0xff600000);
});

for (const entry of ['time', 'gettimeofday', 'getcpu'] as const) {
  test(`a direct call of the ${entry} entry dies of SIGSEGV (139), named with its caller`, { skip }, () => {
    const file = bins.entries[entry];
    const r = vsys(['run', '--as', 'none', '--json', '-', '--', file, entry]);
    assert.equal(r.status, 139, r.stderr);
    assert.match(r.stderr, new RegExp(`would crash under vsyscall=none: first call of the ${entry} entry`));
    const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
    assert.equal(j.wouldCrash, true);
    assert.equal(j.signal, 'SIGSEGV');
    assert.equal(j.calls.length, 1);
    const target = { gettimeofday: 'ffffffffff600000', time: 'ffffffffff600400', getcpu: 'ffffffffff600800' }[entry];
    assert.equal(j.calls[0].ip, `0x${target}`);
    assert.equal(j.calls[0].file, file);
    // The return address (static binary: its address is the file's own) is the instruction after the call, per objdump.
    assert.equal(BigInt(j.calls[0].returnAddress), returnAddressOf(file, target));
    assert.equal(j.calls[0].function, 'main()');
    assert.equal(j.calls[0].site.kind, 'direct-call');
  });
}

test('what the kernel here kills by itself dies the same (a misaligned call; a data read on xonly); a modern program runs', { skip }, () => {
  const mis = vsys(['run', '--as', 'none', '--', bins.entries.misaligned, 'misaligned']);
  assert.equal(mis.status, 139);
  assert.match(mis.stderr, /died of SIGSEGV \(exit status 139\) before any call of the page reached vsys/);
  const read = vsys(['run', '--as', 'none', '--', bins.readPage]);
  // A data read: xonly refuses it as none does; an emulate host allows it (seccomp never sees reads).
  assert.equal(read.status, hostSays === 'xonly' ? 139 : 0, read.stderr);
  const modern = vsys(['run', '--as', 'none', '--json', '-', '--', bins.timeLibc]);
  assert.equal(modern.status, 0, modern.stderr);
  assert.match(modern.stderr, /ran to completion \(exit status 0\) without calling the vsyscall page/);
  assert.equal(JSON.parse(modern.stdout.slice(modern.stdout.indexOf('{', modern.stdout.indexOf('\n{') + 1))).wouldCrash, false);
});

test('the command\'s exit status and output are its own', { skip }, () => {
  const r = spawnSync(process.execPath, [BIN, 'run', '--as', 'none', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7'], { encoding: 'utf8' });
  assert.equal(r.status, 7);
  assert.equal(r.stdout, 'out\n');
  assert.match(r.stderr, /^err\n/);
});

test('busybox 1.15.2 (corpus) date: dies as under none, in the function the scan names', { skip: skip || (!fs.existsSync(path.join(CORPUS, 'busybox-1.15.2-static', 'busybox')) && 'no corpus') }, () => {
  const bb = path.join(work, 'date');
  fs.copyFileSync(path.join(CORPUS, 'busybox-1.15.2-static', 'busybox'), bb);
  fs.chmodSync(bb, 0o755);
  const r = vsys(['run', '--as', 'none', '--', bb]);
  assert.equal(r.status, 139);
  // The corpus README: time() calls the page at 0x4e1394 (mov) / 0x4e139b (call).
  assert.match(r.stderr, /first call of the time entry .* from .*\/date \(\+0x4e139d, in the function at 0x4e1390\)/);
});

const initfsSkip = skip || (!fs.existsSync(INITFS) && 'no corpus');

test('the Gentoo 2011 initramfs in a private root, as root: e2fsck dies through its libc-2.13 time()', { skip: initfsSkip }, () => {
  const root = materialiseInitfs(path.join(work, 'initfs'));
  const e2 = vsys(['run', '--as', 'none', '--root', root, '--', 'e2fsck', '-V']);
  assert.equal(e2.status, 139, e2.stderr);
  assert.match(e2.stderr, /first call of the time entry .* by e2fsck .* from \/lib64\/libc-2\.13\.so \(\+0x[0-9a-f]+, in time\(\)\)/);
});

test('a shell goes on after a process it started died: its own status, the child named', { skip }, () => {
  const sh = vsys(['run', '--as', 'none', '--', 'sh', '-c', `${bins.entries.time} time; echo "child $?"`]);
  assert.equal(sh.status, 0, sh.stderr);
  assert.equal(sh.stdout, 'child 139\n');
  assert.match(sh.stderr, /first call of the time entry .* by call-time/);
  assert.match(sh.stderr, /went on and ended with exit status 0 \(a process it started died\)/);
});

test('unprivileged (nobody): --root works in a user namespace; where they are not allowed, exit 4 with the reason', { skip: initfsSkip || (process.getuid?.() !== 0 && 'needs root to become nobody') }, () => {
  const root = fs.existsSync(path.join(work, 'initfs')) ? path.join(work, 'initfs') : materialiseInitfs(path.join(work, 'initfs'));
  spawnSync('chmod', ['-R', 'a+rX', work]);
  const r = vsys(['run', '--as', 'none', '--root', root, '--', '/bin/busybox', 'date'], { as: 'nobody' });
  assert.equal(r.status, 139, r.stderr);
  assert.match(r.stderr, /first call of the time entry/);
  // Where user namespaces are refused (here: a seccomp filter failing unshare with EPERM, as
  // Docker's default profile does), exit 4 and the reason.
  const deny = path.join(work, 'deny-unshare.py');
  fs.writeFileSync(deny, DENY_UNSHARE);
  const denied = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '/usr/bin/python3', deny, process.execPath, BIN, 'run', '--as', 'none', '--root', root, '--', '/bin/busybox', 'date'], { encoding: 'utf8' });
  assert.equal(denied.status, 4, denied.stderr);
  assert.match(denied.stderr, /unshare failed: EPERM \(1\): this host does not let an unprivileged user create a user namespace/);
  // Without a root it needs no namespace at all.
  const plain = vsys(['run', '--as', 'none', '--', bins.entries.time, 'time'], { as: 'nobody' });
  assert.equal(plain.status, 139, plain.stderr);
});

test('an image (OCI layout of the initramfs) runs its Entrypoint+Cmd from a temporary root, removed afterwards', { skip: initfsSkip }, () => {
  const root = fs.existsSync(path.join(work, 'initfs')) ? path.join(work, 'initfs') : materialiseInitfs(path.join(work, 'initfs'));
  const oci = path.join(work, 'oci');
  buildOciLayout(oci, [{ dir: root }], { config: { Entrypoint: ['/bin/e2fsck'], Cmd: ['-V'], Env: ['PATH=/bin:/sbin'] } });
  const before = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('vsys-run-image-')).length;
  const r = vsys(['run', '--as', 'none', '--image', `oci:${oci}`]);
  assert.equal(r.status, 139, r.stderr);
  assert.match(r.stderr, /by e2fsck .* from \/lib64\/libc-2\.13\.so \(\+0x[0-9a-f]+, in time\(\)\)/);
  assert.equal(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('vsys-run-image-')).length, before, 'the unpacked root is removed');
});

test('usage: --as is required; --as emulate is refused on an xonly host; --root and --image together', () => {
  assert.equal(vsys(['run', '--', 'true']).status, 2);
  assert.equal(vsys(['run', '--as', 'none', '--root', '/', '--image', 'x.tar', '--', 'true']).status, 2);
  assert.equal(vsys(['run', '--as', 'none']).status, 2);
  const em = vsys(['run', '--as', 'emulate', '--', 'true']);
  if (hostSays === 'xonly') {
    assert.equal(em.status, 4);
    assert.match(em.stderr, /--as emulate is not possible here: this host runs vsyscall=xonly/);
  }
  assert.equal(vsys(['run', '--as', 'none', '--', 'no-such-command-here']).status, 127);
});

/** Installs a seccomp filter that fails unshare(2) with EPERM (as Docker's default profile does), then execs argv[1:]. */
const DENY_UNSHARE = `import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def insn(code, jt, jf, k): return struct.pack('<HBBI', code, jt, jf, k)
prog = b''.join([insn(0x20, 0, 0, 0), insn(0x15, 0, 1, 272), insn(0x06, 0, 0, 0x00050001), insn(0x06, 0, 0, 0x7fff0000)])
buf = ctypes.create_string_buffer(prog)
class Fprog(ctypes.Structure): _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]
fp = Fprog(len(prog) // 8, ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert libc.prctl(22, 2, ctypes.byref(fp), 0, 0) == 0
os.execvp(sys.argv[1], sys.argv[1:])
`;

test('scan --run-entrypoint confirms an image\'s verdict by running its entrypoint; a server is stopped after --run-timeout', { skip: initfsSkip, timeout: 120_000 }, () => {
  const root = fs.existsSync(path.join(work, 'initfs')) ? path.join(work, 'initfs') : materialiseInitfs(path.join(work, 'initfs'));
  const oci = path.join(work, 'oci-scan');
  buildOciLayout(oci, [{ dir: root }], { config: { Entrypoint: ['/bin/e2fsck'], Cmd: ['-V'], Env: ['PATH=/bin:/sbin'] } });
  const text = vsys(['scan', '--mode', 'none', '--run-entrypoint', `oci:${oci}`]);
  assert.match(text.stdout, /confirmed by running it \(vsys run --as none, [\d.]+ s\): killed at the first call of the time entry, by e2fsck, from \/lib64\/libc-2\.13\.so \(\+0x[0-9a-f]+, in time\(\)\); exit status 139/);
  const json = vsys(['scan', '--mode', 'none', '--run-entrypoint', '--json', `oci:${oci}`]);
  const image = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { record: string; entrypoint: { run: { wouldCrash: boolean; status: number; first: { entry: string; function: string } } } }).find((r) => r.record === 'image')!;
  assert.ok(validateRecord(image), JSON.stringify(validateRecord.errors));
  assert.deepEqual([image.entrypoint.run.wouldCrash, image.entrypoint.run.status, image.entrypoint.run.first.entry, image.entrypoint.run.first.function], [true, 139, 'time', 'time()']);
  // Without the flag, the suggestion to see it for real.
  assert.match(vsys(['scan', '--mode', 'none', `oci:${oci}`]).stdout, new RegExp(`see it for real, here: vsys run --as none --image oci:${oci.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  // A server: a static program that waits forever, stopped after 1 s, no call seen.
  const srv = path.join(work, 'server');
  fs.mkdirSync(srv, { recursive: true });
  fs.writeFileSync(path.join(work, 'server.c'), '#include <unistd.h>\nint main(void) { for (;;) pause(); }\n');
  execFileSync('gcc', ['-static', '-O2', '-o', path.join(srv, 'server'), path.join(work, 'server.c')]);
  const oci2 = path.join(work, 'oci-server');
  buildOciLayout(oci2, [{ dir: srv }], { config: { Entrypoint: ['/server'] } });
  const waited = vsys(['scan', '--mode', 'none', '--run-entrypoint', '--run-timeout', '1', '--json', `oci:${oci2}`]);
  const run = waited.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((r) => r.record === 'image').entrypoint.run;
  assert.deepEqual([run.timedOut, run.wouldCrash], [true, false]);
  assert.ok(run.seconds >= 1 && run.seconds < 10, `${run.seconds} s`);
});

test('the review\'s cases: an image with a 0555 directory is removed after an unprivileged run; a killed vsys takes the command with it; a process left running is reported', { skip: initfsSkip || (process.getuid?.() !== 0 && 'needs root to become nobody'), timeout: 120_000 }, async () => {
  // 1. /bin 0555 in the image, run as nobody: the temporary root is still removed.
  const tree = materialiseInitfs(path.join(work, 'initfs-ro'));
  fs.chmodSync(path.join(tree, 'bin'), 0o555);
  const oci = path.join(work, 'oci-ro');
  buildOciLayout(oci, [{ dir: tree }], { config: { Entrypoint: ['/bin/busybox'], Cmd: ['date'] } });
  spawnSync('chmod', ['-R', 'a+rX', work]);
  const before = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('vsys-run-')).length;
  const r = vsys(['run', '--as', 'none', '--image', `oci:${oci}`], { as: 'nobody' });
  assert.equal(r.status, 139, r.stderr);
  assert.doesNotMatch(r.stderr, /could not remove/);
  assert.equal(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('vsys-run-')).length, before, 'nothing left in the temporary directory');
  // 2. vsys killed outright: the command goes too (nothing would answer its calls any more).
  fs.writeFileSync(path.join(work, 'wait.c'), '#include <unistd.h>\nint main(void) { for (;;) pause(); }\n');
  const waiter = path.join(work, 'waiter-' + process.pid);
  execFileSync('gcc', ['-O2', '-o', waiter, path.join(work, 'wait.c')]);
  const { spawn } = await import('node:child_process');
  const v = spawn(process.execPath, [BIN, 'run', '--as', 'none', '--', waiter], { stdio: 'ignore' });
  const alive = () => spawnSync('pgrep', ['-f', waiter]).status === 0;
  for (let i = 0; i < 100 && !alive(); i++) await new Promise((res) => setTimeout(res, 50));
  assert.ok(alive(), 'the command started');
  v.kill('SIGKILL');
  for (let i = 0; i < 100 && alive(); i++) await new Promise((res) => setTimeout(res, 50));
  assert.ok(!alive(), 'the command died with vsys');
  // 3. A child that outlives the command and calls the page later: said, not hidden.
  fs.writeFileSync(path.join(work, 'late.c'), '#include <unistd.h>\nint main(void) { if (fork() == 0) { usleep(500000); long (*f)(long *) = (void *)0xffffffffff600400UL; f(0); return 0; } return 0; }\n');
  const late = path.join(work, 'late');
  execFileSync('gcc', ['-O2', '-o', late, path.join(work, 'late.c')]);
  const o = vsys(['run', '--as', 'none', '--', late]);
  assert.equal(o.status, 0);
  assert.match(o.stderr, /Processes it started were still running when it ended/);
});
