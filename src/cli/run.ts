// `vsys run --as none`: runs a command (on this host, in a root directory, or from an image) and
// answers its calls of the vsyscall page as a vsyscall=none kernel would, without booting one.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import type { NamedCaller } from '../run/caller.js';
import type { AnswerAs, PageCall, RunOutcome } from '../run/supervise.js';
import { CommandNotFound, hostMode, runCommandAs } from '../run/run-command.js';
import { EXIT, toJson, usageError, type Command, type Io } from './io.js';

const HELP = `usage: vsys run --as none [--root DIR | --image IMAGE] [--json FILE] -- CMD [ARGS...]
       vsys run --as emulate ...

Runs CMD and shows for real what a kernel booted with vsyscall=none does to it,
on this host (xonly or emulate), without root and without another kernel. The
kernel hands every call of the vsyscall page to seccomp before it emulates it;
vsys installs a filter that passes such calls to it, and answers as a none
kernel would: SIGSEGV. The first call kills the process that made it, exactly as
on a none kernel (exit status 139); vsys names the entry, the process and its
caller (the file, the address and the function). Data reads of the page are not
seen: on an xonly host they fault already, as under none; on an emulate host
they would not.

The command's stdin, stdout and stderr are its own; vsys's verdict goes to
stderr (and to FILE with --json).

options:
  --as none        answer calls of the page with SIGSEGV (a vsyscall=none kernel)
  --as emulate     let them through and count them (an emulate kernel; refused on
                   xonly and none hosts, which cannot emulate one: xonly denies the
                   data reads emulate allows, none has no page)
  --root DIR       run CMD inside DIR: a user namespace, a private mount namespace
                   and chroot; CMD is looked up on DIR's PATH
  --image IMAGE    unpack IMAGE (IMAGE.tar, oci:DIR, registry://HOST/REPO:TAG)
                   into a temporary root, removed after; with no CMD, the image's
                   Entrypoint and Cmd run, with its Env and WorkingDir
  --creds USER:PASS  registry credentials (or VSYS_REGISTRY_CREDS)
  --insecure       allow plain http to registries other than localhost
  --no-verify      do not check the image's blobs against their digests
  --json FILE      write the verdict as JSON to FILE (- for stdout)
  -h, --help       this text

In a root or an image the command is root in a user namespace of its own: this
user outside it (nobody when vsys runs as root), never the host's root. Only that
one id is mapped, so a program that switches to another user (su, gosu, a server
dropping privileges) fails there where it would not on a real host. It is not a
sandbox: it shares the host's network, and sees its /dev and /proc (as that user).
If vsys is killed, the command is killed with it.

exit status:
  the command's own, as it would be under the chosen kernel: its exit code, or
  128+N when it died of signal N (139: SIGSEGV, what vsyscall=none gives);
  2 usage; 4 this host cannot do it (no seccomp user notification, user
  namespaces not allowed for --root without root); 3 anything else that stopped
  the run before the command ran

examples:
  vsys run --as none -- ./old-static-binary
  vsys run --as none --root ./wheezy-rootfs -- /bin/date
  vsys run --as none --image centos6.tar
  vsys run --as none --image registry://localhost:5000/legacy/app:1.0 -- /app/bin/server --check
`;

const hex = (v: bigint) => `0x${v.toString(16)}`;

function describeCall(c: PageCall, named: NamedCaller | undefined, root: string | undefined): string {
  const who = `${c.comm ?? 'pid'} (pid ${c.pid}${c.exe ? `, ${c.exe}` : ''})`;
  const shown = (f: string) => (root && f.startsWith(`${root}/`) ? f.slice(root.length) : f);
  let from = '';
  if (named) {
    const at = named.address !== undefined ? `+${hex(named.address)}` : `offset ${hex(BigInt(c.fileOffset ?? 0))}`;
    from = `, from ${shown(named.file)} (${at}${named.function ? `, in ${named.function}` : ''})`;
  } else if (c.returnAddress !== undefined) {
    from = `, returning to ${hex(c.returnAddress)}`;
  }
  return `the ${c.entry} entry (${hex(c.ip)}) by ${who}${from}`;
}

export function formatVerdict(as: AnswerAs, r: RunOutcome, callers: readonly (NamedCaller | undefined)[], root: string | undefined, hostSays: string): string[] {
  const lines: string[] = [];
  if (as === 'none') {
    const killed = r.calls.filter((c) => c.answer === 'sigsegv');
    if (killed.length === 0 && r.signal && r.signal !== 'SIGSEGV') {
      lines.push(`vsys run: ended by ${r.signal} (exit status ${r.status}) without calling the vsyscall page before that; what it would have done later is not known.`);
    } else if (killed.length === 0 && r.signal === 'SIGSEGV') {
      lines.push(`vsys run: died of SIGSEGV (exit status ${r.status}) before any call of the page reached vsys: the kernel here killed it, as a vsyscall=none kernel would too (a call into the page that is not an entry start, or a data read of the page, is a SIGSEGV in both modes; or a crash of its own).`);
    } else if (killed.length === 0) {
      lines.push(`vsys run: ran to completion (exit status ${r.status}) without calling the vsyscall page: a vsyscall=none kernel runs it the same${hostSays === 'emulate-or-native' ? ' (data reads of the page aside: this emulate host allows them, none would not)' : ''}.`);
    } else {
      const first = killed[0]!;
      // The command itself was killed (not only a process it started): its thread group is the command's.
      const top = r.signal === 'SIGSEGV' && killed.some((c) => (c.tgid ?? c.pid) === r.pid);
      lines.push(`vsys run: would crash under vsyscall=none: first call of ${describeCall(first, callers[r.calls.indexOf(first)], root)}.`);
      if (killed.length > 1) lines.push(`  ${killed.length - 1} more call(s) answered the same way: ${killed.slice(1, 6).map((c) => `${c.comm ?? c.pid} (${c.entry})`).join(', ')}${killed.length > 6 ? ', …' : ''}`);
      lines.push(top ? '  The command died of SIGSEGV (exit status 139), as on a vsyscall=none kernel.' : `  The command itself went on and ended with exit status ${r.status} (a process it started died).`);
    }
  } else {
    lines.push(`vsys run: ${r.emulated} call(s) of the vsyscall page, emulated by the kernel (each one also waited for vsys to let it through: the command ran slower than it would)${r.calls[0] ? `; the first: ${describeCall(r.calls[0], callers[0], root)}` : ''}; exit status ${r.status}.`);
  }
  if (r.timedOut) lines.push('  It was stopped after the time allowed: what it would have done later is not seen.');
  if (r.orphans) lines.push('  Processes it started were still running when it ended: calls of the page they make from now on are not answered as none would (they get ENOSYS).');
  return lines;
}

function jsonOf(as: AnswerAs, r: RunOutcome, callers: readonly (NamedCaller | undefined)[], root: string | undefined, cmd: string[], hostSays: string) {
  return {
    as, host: hostSays, command: cmd, root: root ?? null, status: r.status, code: r.code, signal: r.signal,
    wouldCrash: as === 'none' && r.calls.some((c) => c.answer === 'sigsegv'),
    emulated: r.emulated,
    calls: r.calls.map((c, i) => {
      const n = callers[i];
      return { ...c, address: n?.address, function: n?.function ?? null, site: n?.site ? { kind: n.site.kind, address: n.site.address, instruction: n.site.instruction } : null };
    }),
  };
}

export const runCommand: Command = {
  summary: 'run a command (or an image) as a vsyscall=none kernel would: see what really crashes',
  async run(args: string[], io: Io) {
    const dash = args.indexOf('--');
    const own = dash < 0 ? args : args.slice(0, dash);
    const cmd = dash < 0 ? [] : args.slice(dash + 1);
    const { values } = parseArgs({
      args: own,
      options: {
        as: { type: 'string' },
        root: { type: 'string' },
        image: { type: 'string' },
        json: { type: 'string' },
        creds: { type: 'string' },
        insecure: { type: 'boolean' },
        'no-verify': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      io.stdout.write(HELP);
      return EXIT.ok;
    }
    const as = values.as;
    if (as !== 'none' && as !== 'emulate') throw usageError(`run: --as none (or emulate) is required${as ? `, not '${as}'` : ''}`);
    if (values.root && values.image) throw usageError('run: --root and --image name the root twice: give one');
    if (!values.image && cmd.length === 0) throw usageError('run: no command: vsys run --as none -- CMD [ARGS...]');
    const hostSays = hostMode();
    if (as === 'emulate' && (hostSays === 'xonly' || hostSays === 'none')) {
      io.stderr.write(`vsys run: --as emulate is not possible here: this host runs vsyscall=${hostSays}, ${hostSays === 'none' ? 'which has no page to emulate' : 'which denies the data reads of the page that emulate allows'}; only a kernel booted with vsyscall=emulate shows that.\n`);
      return EXIT.unsupported;
    }
    if (as === 'none' && hostSays === 'none') io.stderr.write('vsys run: this host already runs vsyscall=none: the command runs as it is (the real thing).\n');

    // A --json FILE that cannot be written is a usage error before the command runs, not after.
    if (values.json && values.json !== '-') {
      try {
        fs.writeFileSync(values.json, '');
      } catch (e) {
        throw usageError(`run: cannot write --json ${values.json}: ${(e as Error).message}`);
      }
    }
    const creds = values.creds ?? process.env.VSYS_REGISTRY_CREDS;
    const registry = { ...(creds ? { creds } : {}), ...(values.insecure ? { insecure: true } : {}) };
    try {
      const { outcome, root, cmd: ran, callers } = await runCommandAs({ as, root: values.root, image: values.image, cmd, registry, ...(values['no-verify'] ? { verify: false } : {}), onNote: (l) => io.stderr.write(`vsys run: ${l}\n`) });
      for (const l of formatVerdict(as, outcome, callers, root, hostSays)) io.stderr.write(`${l}\n`);
      if (values.json) {
        const text = `${toJson(jsonOf(as, outcome, callers, root, ran, hostSays))}\n`;
        if (values.json === '-') io.stdout.write(text);
        else fs.writeFileSync(values.json, text);
      }
      return outcome.status;
    } catch (e) {
      if (e instanceof CommandNotFound) {
        io.stderr.write(`vsys run: ${e.message}\n`);
        return 127;
      }
      throw e;
    }
  },
};
