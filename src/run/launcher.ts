// The launcher of `vsys run --as none`: a tiny static x86-64 executable vsys writes itself (no
// compiler on the user's machine). It optionally enters a private root (a mount namespace, and a user
// namespace when not root, then chroot), sets no_new_privs, installs a seccomp filter that hands
// every call of the vsyscall page to vsys (SECCOMP_RET_USER_NOTIF), tells vsys the listener's fd,
// waits for vsys to take it, and execs the command. The kernel runs the filter inside
// emulate_vsyscall() with the instruction pointer still at the entry: see src/model/seccomp.ts.
//
// Protocol with vsys, on two descriptors the launcher inherits:
//   fd 3 (write): 8-byte records {u32 tag, u32 value}: READY (value = the listener's fd), or
//                 FAILED + step (value = errno) and then exit status 127. fd 3 is close-on-exec, so
//                 vsys reads end-of-file once the command runs.
//   fd 4 (read):  one byte from vsys once it holds the listener: then the launcher execs.
// argv: launcher PATH ARGV0 ARGS... (PATH as seen inside the root).
import { EHDR64, PHDR64, writeFields } from '../elf/layouts.js';
import { ELFCLASS64, ELFDATA2LSB, EM, ET, EV_CURRENT, PF, PT } from '../elf/constants.js';
import { Asm } from '../x86/assemble.js';
import {
  AT_FDCWD, AUDIT_ARCH_X86_64, O_DIRECTORY, BPF, CLONE_NEWNS, CLONE_NEWUSER, FD_CLOEXEC, F_SETFD, MS_BIND, MS_PRIVATE, MS_REC, O_WRONLY,
  PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, SIGKILL, SECCOMP_DATA, SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_RET_ALLOW, SECCOMP_RET_USER_NOTIF,
  SECCOMP_SET_MODE_FILTER, SYS_X86_64 as SYS, VSYSCALL_PAGE_ADDR,
} from '../model/index.js';

const LOAD_ADDRESS = 0x400000;
const PT_GNU_STACK = 0x6474e551;

/** Record tags on fd 3. */
export const LAUNCHER_READY = 1;
export const LAUNCHER_FAILED = 0x100;
/** The steps a launcher can fail at, by the number it reports (LAUNCHER_FAILED + step). */
export const LAUNCHER_STEPS = ['prctl(PR_SET_PDEATHSIG)', 'drop to the unprivileged user', 'unshare', 'write /proc/self/setgroups', 'write /proc/self/uid_map', 'write /proc/self/gid_map', 'mount / private', 'chroot', 'chdir', 'prctl(PR_SET_NO_NEW_PRIVS)', 'seccomp', 'fcntl', 'handshake', 'execve'] as const;
export type LauncherStep = (typeof LAUNCHER_STEPS)[number];
const step = (s: LauncherStep) => LAUNCHER_STEPS.indexOf(s);

export interface LauncherOptions {
  /** Enter this directory as the root (a private mount namespace, then chroot). */
  root?: string;
  /** A user namespace first, mapping this uid and gid (the launcher's own, after `drop`) to 0 inside it. */
  userns?: { uid: number; gid: number };
  /** Started as root: become this user and group first (no supplementary groups), so that root inside the user namespace is them outside it. */
  drop?: { uid: number; gid: number };
  /** Bind-mounted into the root before chroot (paths outside → inside), each only if it works. */
  binds?: { from: string; to: string }[];
  /** Working directory inside the root (default "/"). */
  cwd?: string;
}

/**
 * The filter, in classic BPF: x86-64 system calls whose instruction pointer lies in the vsyscall
 * page go to the listener; everything else is allowed (32-bit processes have no page).
 */
export function vsyscallFilter(): Uint8Array {
  const page = VSYSCALL_PAGE_ADDR;
  const hi = Number(page >> 32n);
  const lo = Number(page & 0xffffffffn);
  // [code, jt, jf, k]; jumps count from the next instruction. ALLOW is the last.
  const insns: [number, number, number, number][] = [
    [BPF.LD_W_ABS, 0, 0, SECCOMP_DATA.arch],
    [BPF.JEQ_K, 0, 6, AUDIT_ARCH_X86_64],
    [BPF.LD_W_ABS, 0, 0, SECCOMP_DATA.instructionPointerHigh],
    [BPF.JEQ_K, 0, 4, hi],
    [BPF.LD_W_ABS, 0, 0, SECCOMP_DATA.instructionPointerLow],
    [BPF.AND_K, 0, 0, 0xfffff000],
    [BPF.JEQ_K, 0, 1, lo],
    [BPF.RET_K, 0, 0, SECCOMP_RET_USER_NOTIF],
    [BPF.RET_K, 0, 0, SECCOMP_RET_ALLOW],
  ];
  const out = new Uint8Array(insns.length * 8);
  const v = new DataView(out.buffer);
  insns.forEach(([code, jt, jf, k], i) => {
    v.setUint16(i * 8, code, true);
    v.setUint8(i * 8 + 2, jt);
    v.setUint8(i * 8 + 3, jf);
    v.setUint32(i * 8 + 4, k >>> 0, true);
  });
  return out;
}

/** Read-only data laid out after the headers, each item at a fixed address the code names. */
class Data {
  private readonly parts: Uint8Array[] = [];
  size = 0;
  constructor(readonly base: number) {}
  add(bytes: Uint8Array, align = 8): number {
    const pad = (align - (this.size % align)) % align;
    if (pad) this.parts.push(new Uint8Array(pad));
    this.size += pad;
    const at = this.base + this.size;
    this.parts.push(bytes);
    this.size += bytes.length;
    return at;
  }
  str(s: string): number {
    return this.add(Buffer.from(`${s}\0`, 'utf8'), 1);
  }
  bytes(): Uint8Array {
    return Buffer.concat(this.parts);
  }
}

/** Emits the launcher's code: each step a system call whose failure reports the step and errno on fd 3. */
class Emitter {
  constructor(private readonly a: Asm, private readonly d: Data) {}

  sys(nr: number, ...args: (number | bigint)[]): void {
    const regs = ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'] as const;
    args.forEach((x, i) => this.a.movImm(regs[i]!, x));
    this.a.movImm('rax', nr).syscall();
  }

  orFail(s: LauncherStep): void {
    this.a.cmpImm('rax', -4095).jcc('ae', `fail_${step(s)}`);
  }

  /** sys() then orFail(): the common case. */
  checked(s: LauncherStep, nr: number, ...args: (number | bigint)[]): void {
    this.sys(nr, ...args);
    this.orFail(s);
  }

  str(x: string): number {
    return this.d.str(x);
  }

  writeFile(file: string, text: string, s: LauncherStep): void {
    const { a, d } = this;
    const body = d.add(Buffer.from(text, 'utf8'), 1);
    this.checked(s, SYS.openat, BigInt.asUintN(64, BigInt(AT_FDCWD)), d.str(file), O_WRONLY, 0);
    a.mov('r13', 'rax');
    a.mov('rdi', 'r13').movImm('rsi', body).movImm('rdx', Buffer.byteLength(text)).movImm('rax', SYS.write).syscall();
    this.orFail(s);
    a.mov('rdi', 'r13').movImm('rax', SYS.close).syscall();
  }

  dropPrivileges(drop: { uid: number; gid: number }): void {
    this.checked('drop to the unprivileged user', SYS.setgroups, 0, 0);
    this.checked('drop to the unprivileged user', SYS.setresgid, drop.gid, drop.gid, drop.gid);
    this.checked('drop to the unprivileged user', SYS.setresuid, drop.uid, drop.uid, drop.uid);
    // Its /proc/self files (uid_map) are root's while it is not dumpable, as after any setuid.
    this.checked('drop to the unprivileged user', SYS.prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
  }

  mapIds(u: { uid: number; gid: number }): void {
    this.writeFile('/proc/self/setgroups', 'deny', 'write /proc/self/setgroups');
    this.writeFile('/proc/self/uid_map', `0 ${u.uid} 1\n`, 'write /proc/self/uid_map');
    this.writeFile('/proc/self/gid_map', `0 ${u.gid} 1\n`, 'write /proc/self/gid_map');
  }

  privateMounts(binds: LauncherOptions['binds']): void {
    this.checked('mount / private', SYS.mount, 0, this.str('/'), 0, MS_REC | MS_PRIVATE, 0);
    for (const b of binds ?? []) this.sys(SYS.mount, this.str(b.from), this.str(b.to), 0, MS_BIND | MS_REC, 0); // best effort
  }

  /**
   * Into the root. Started as root: the root is opened and the mounts made while still root (the
   * root may lie below a directory only root may pass), then root is dropped, a user namespace made
   * (root in it is the dropped user outside), and the open root entered by descriptor. Otherwise: a
   * user namespace (if asked) and a mount namespace, then chroot by path.
   */
  enterRoot(o: LauncherOptions & { root: string }): void {
    const { a } = this;
    if (o.drop) {
      this.checked('chroot', SYS.openat, BigInt.asUintN(64, BigInt(AT_FDCWD)), this.str(o.root), O_DIRECTORY, 0);
      a.mov('r15', 'rax');
      this.checked('unshare', SYS.unshare, CLONE_NEWNS);
      this.privateMounts(o.binds);
      this.dropPrivileges(o.drop);
      this.checked('unshare', SYS.unshare, CLONE_NEWUSER);
      this.mapIds(o.userns ?? o.drop);
      a.mov('rdi', 'r15').movImm('rax', SYS.fchdir).syscall();
      this.orFail('chroot');
      this.checked('chroot', SYS.chroot, this.str('.'));
      a.mov('rdi', 'r15').movImm('rax', SYS.close).syscall();
    } else {
      this.checked('unshare', SYS.unshare, o.userns ? CLONE_NEWUSER | CLONE_NEWNS : CLONE_NEWNS);
      if (o.userns) this.mapIds(o.userns);
      this.privateMounts(o.binds);
      this.checked('chroot', SYS.chroot, this.str(o.root));
    }
    this.checked('chdir', SYS.chdir, this.str(o.cwd ?? '/'));
  }

  /** no_new_privs, the parent-death signal, the filter; the listener's fd left in r12. */
  installFilter(): void {
    this.checked('prctl(PR_SET_NO_NEW_PRIVS)', SYS.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    // If vsys dies, so does the command: nothing would answer its calls of the page any more (the
    // kernel would answer ENOSYS, not SIGSEGV). Set after every change of credentials (which clears
    // it) and kept across execve (no set-uid exec under no_new_privs).
    this.checked('prctl(PR_SET_PDEATHSIG)', SYS.prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    const filter = vsyscallFilter();
    const filterAt = this.d.add(filter);
    const prog = new Uint8Array(16); // struct sock_fprog { u16 len; (pad) ; struct sock_filter *filter; }
    new DataView(prog.buffer).setUint16(0, filter.length / 8, true);
    new DataView(prog.buffer).setBigUint64(8, BigInt(filterAt), true);
    this.checked('seccomp', SYS.seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, this.d.add(prog));
    this.a.mov('r12', 'rax'); // the listener
  }

  /** READY with the listener's fd on fd 3 (close-on-exec), vsys's go on fd 4, then execve(argv[1], &argv[2], envp). */
  handshakeAndExec(): void {
    const { a } = this;
    this.checked('fcntl', SYS.fcntl, 3, F_SETFD, FD_CLOEXEC);
    // READY record: {1, listener fd} on the stack (r12 stored whole: its upper half, zero, lands past the 8 bytes written).
    a.subImm('rsp', 16).storeImm32({ base: 'rsp' }, LAUNCHER_READY).store({ base: 'rsp', disp: 4 }, 'r12');
    a.movImm('rdi', 3).mov('rsi', 'rsp').movImm('rdx', 8).movImm('rax', SYS.write).syscall();
    this.orFail('handshake');
    a.movImm('rdi', 4).mov('rsi', 'rsp').movImm('rdx', 1).movImm('rax', SYS.read).syscall();
    a.cmpImm('rax', 1).jcc('ne', 'quit'); // vsys went away or said no: run nothing
    a.mov('rdi', 'r12').movImm('rax', SYS.close).syscall();
    a.movImm('rdi', 4).movImm('rax', SYS.close).syscall();
    // envp = rsp0 + 8 * (argc + 2).
    a.load('rdi', { base: 'rbx', disp: 16 }).lea('rsi', { base: 'rbx', disp: 24 });
    a.load('rdx', { base: 'rbx' }).shlImm('rdx', 3).add_('rdx', 'rbx').addImm('rdx', 16);
    a.movImm('rax', SYS.execve).syscall();
    a.jmp(`fail_${step('execve')}`);
  }

  /** `quit` (exit 125) and the failure path: {FAILED + step, errno = -rax} on fd 3, then exit 127 (as a shell does for a command it cannot run). */
  exits(): void {
    const { a } = this;
    a.label('quit');
    a.movImm('rdi', 125).movImm('rax', SYS.exit_group).syscall();
    for (let i = 0; i < LAUNCHER_STEPS.length; i++) {
      a.label(`fail_${i}`);
      a.movImm('r14', LAUNCHER_FAILED + i);
      a.jmp('fail');
    }
    a.label('fail');
    a.xor('rcx', 'rcx').sub('rcx', 'rax');
    a.subImm('rsp', 16).store({ base: 'rsp' }, 'r14').store({ base: 'rsp', disp: 4 }, 'ecx');
    a.movImm('rdi', 3).mov('rsi', 'rsp').movImm('rdx', 8).movImm('rax', SYS.write).syscall();
    a.movImm('rdi', 127).movImm('rax', SYS.exit_group).syscall();
  }
}

/** The launcher's code: into the root (if any), the filter, the handshake, execve; every failure reported. */
function launcherCode(a: Asm, d: Data, o: LauncherOptions): void {
  const e = new Emitter(a, d);
  a.mov('rbx', 'rsp'); // argc, argv[], NULL, envp[]
  if (o.root !== undefined) e.enterRoot({ ...o, root: o.root });
  else if (o.cwd !== undefined) e.checked('chdir', SYS.chdir, d.str(o.cwd));
  e.installFilter();
  e.handshakeAndExec();
  e.exits();
}

/**
 * The launcher's bytes: an ET_EXEC for x86-64 mapped from offset 0 at 0x400000 (R+X: headers, data,
 * code), a non-executable stack, no sections and no interpreter.
 */
export function buildLauncher(o: LauncherOptions = {}): Uint8Array {
  const dataOffset = EHDR64.size + 2 * PHDR64.size;
  const d = new Data(LOAD_ADDRESS + dataOffset);
  // Generating the code lays out the data it names; the code goes after the data.
  const a = new Asm(64);
  launcherCode(a, d, o);
  const data = d.bytes();
  const codeOffset = Math.ceil((dataOffset + data.length) / 16) * 16;
  const code = a.assemble(BigInt(LOAD_ADDRESS + codeOffset));
  const total = codeOffset + code.length;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, ELFCLASS64, ELFDATA2LSB, EV_CURRENT], EHDR64.f.e_ident.offset);
  writeFields(view, 0, EHDR64, {
    e_type: ET.EXEC, e_machine: EM.X86_64, e_version: EV_CURRENT, e_entry: LOAD_ADDRESS + codeOffset,
    e_phoff: EHDR64.size, e_ehsize: EHDR64.size, e_phentsize: PHDR64.size, e_phnum: 2,
  });
  // One R+X mapping from offset 0 (headers, data, code), and a non-executable stack.
  writeFields(view, EHDR64.size, PHDR64, { p_type: PT.LOAD, p_flags: PF.R | PF.X, p_offset: 0, p_vaddr: LOAD_ADDRESS, p_paddr: LOAD_ADDRESS, p_filesz: total, p_memsz: total, p_align: 0x1000 });
  writeFields(view, EHDR64.size + PHDR64.size, PHDR64, { p_type: PT_GNU_STACK, p_flags: PF.R | PF.W, p_align: 16 });
  out.set(data, dataOffset);
  out.set(code, codeOffset);
  return out;
}
