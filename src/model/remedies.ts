// What to do about a crash or slow verdict, as data with sources: the first glibc without direct
// vsyscall calls, the first releases of common bases that ship one, the kernel parameter and where
// each common host sets it (with its security cost), and whether `vsys fix` exists yet.
// Facts checked against the corpus (../shared/corpus/README.md) and DESIGN.md §4.
import type { VsyscallMode } from './modes.js';

export interface Source {
  /** What a user reads: the document and where to find it. */
  readonly title: string;
  readonly url?: string;
}

/** glibc from this version on picks the vDSO for time()/gettimeofday() (IFUNC) and keeps the page only as a fallback. */
export const FIRST_GLIBC_WITHOUT_DIRECT_CALLS = {
  version: '2.14',
  /** The last release whose shared libc calls the page directly. */
  lastAffected: '2.13',
  sources: [
    { title: 'glibc 2.14: sysdeps/unix/sysv/linux/x86_64/time.c and gettimeofday.c became IFUNCs choosing __vdso_time / __vdso_gettimeofday', url: 'https://sourceware.org/git/?p=glibc.git;a=blob;f=sysdeps/unix/sysv/linux/x86_64/time.c;hb=glibc-2.14' },
    { title: 'vsys corpus: Debian EGLIBC 2.13 and Gentoo glibc 2.13 call the page directly; glibc 2.16 only in IFUNC fallbacks (checked with objdump -d)' },
  ],
} as const satisfies { version: string; lastAffected: string; sources: readonly Source[] };

export type LibcFamily = 'glibc' | 'eglibc' | 'musl';

export interface BaseRelease {
  /** As users name it: "Debian 8 (jessie)". */
  readonly name: string;
  readonly libc: LibcFamily;
  /** Upstream version of the libc it ships (eglibc follows glibc's numbers); absent for musl. */
  readonly libcVersion?: string;
  /** Month of its first release. */
  readonly released: string;
  readonly note?: string;
  readonly source: Source;
}

/** The first release of each common base image whose libc never calls the page directly. */
export const FIXED_BASES: readonly BaseRelease[] = [
  { name: 'CentOS 7', libc: 'glibc', libcVersion: '2.17', released: '2014-07', source: { title: 'CentOS 7.0-1406: glibc-2.17-55.el7', url: 'https://vault.centos.org/7.0.1406/os/x86_64/Packages/' } },
  { name: 'RHEL 7', libc: 'glibc', libcVersion: '2.17', released: '2014-06', source: { title: 'Red Hat Enterprise Linux 7.0 release notes: glibc 2.17', url: 'https://access.redhat.com/documentation/en-us/red_hat_enterprise_linux/7/html/7.0_release_notes/' } },
  { name: 'Debian 8 (jessie)', libc: 'glibc', libcVersion: '2.19', released: '2015-04', source: { title: 'Debian jessie: libc6 2.19-18', url: 'https://snapshot.debian.org/package/glibc/2.19-18/' } },
  { name: 'Ubuntu 12.04 LTS (precise)', libc: 'eglibc', libcVersion: '2.15', released: '2012-04', source: { title: 'Ubuntu precise: eglibc 2.15-0ubuntu10', url: 'https://launchpad.net/ubuntu/precise/+source/eglibc' } },
  { name: 'Alpine Linux (every release)', libc: 'musl', released: '2010-08', note: 'musl finds the vDSO through AT_SYSINFO_EHDR or makes a real syscall; it never used the page', source: { title: 'musl: src/time/clock_gettime.c (vDSO or syscall)', url: 'https://git.musl-libc.org/cgit/musl/tree/src/time/clock_gettime.c' } },
];

/** Common bases whose libc does call the page directly (for the README and tests). */
export const AFFECTED_BASES: readonly BaseRelease[] = [
  { name: 'CentOS 5', libc: 'glibc', libcVersion: '2.5', released: '2007-04', source: { title: 'AppNexus engineering blog, 2014 (CentOS 5, glibc 2.5)' } },
  { name: 'CentOS 6', libc: 'glibc', libcVersion: '2.12', released: '2011-07', source: { title: 'vsys corpus: RHEL/CentOS 6 libpthread (glibc 2.12) calls the page directly' } },
  { name: 'Debian 7 (wheezy)', libc: 'eglibc', libcVersion: '2.13', released: '2013-05', source: { title: 'vsys corpus: Debian EGLIBC 2.13-38 libc-2.13.so calls the page directly; Sysdig blog, 2018 (redis:2.8.22)' } },
];

export interface HostSetting {
  /** Where: "GRUB (most distributions)", "WSL2", … */
  readonly host: string;
  /** Whether a user can set the parameter there at all. */
  readonly settable: boolean;
  /** How, in one plain sentence. */
  readonly how: string;
  readonly source?: Source;
}

/** The kernel command-line parameter that makes the page callable again, and what it costs. */
export const KERNEL_PARAMETER = {
  parameter: 'vsyscall=emulate',
  /** Kernels since 5.3 also take vsyscall=xonly: calls work, the page cannot be read (smaller exposure). */
  alternative: 'vsyscall=xonly',
  securityCost: 'it maps an executable page at the same fixed address (0xffffffffff600000) in every process: a known address for return-oriented-programming gadgets that ASLR does not move',
  source: { title: 'Linux Documentation/admin-guide/kernel-parameters.txt: vsyscall=', url: 'https://www.kernel.org/doc/html/latest/admin-guide/kernel-parameters.html' },
  hosts: [
    {
      host: 'GRUB (most distributions, VMs and bare metal)', settable: true,
      how: 'add vsyscall=emulate to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub (Debian, Ubuntu) or grub2-mkconfig -o /boot/grub2/grub.cfg (RHEL, CentOS, Fedora), and reboot',
    },
    {
      host: 'WSL2 (and Docker Desktop with the WSL 2 engine)', settable: true,
      how: 'in %UserProfile%\\.wslconfig under [wsl2] add kernelCommandLine = vsyscall=emulate, then run wsl --shutdown',
      source: { title: 'microsoft/WSL issue 4694', url: 'https://github.com/microsoft/WSL/issues/4694' },
    },
    {
      host: 'Docker Desktop on macOS (and Windows with the Hyper-V engine)', settable: false,
      how: 'not settable: its LinuxKit VM kernel takes no user command line',
    },
    {
      host: 'Cloud VMs', settable: true,
      how: 'as GRUB, in the image the VM boots (Debian cloud kernels default to vsyscall=none); managed Kubernetes node images often offer no way',
    },
  ] satisfies readonly HostSetting[],
} as const;

/** `vsys fix` rewrites call sites in place (DESIGN.md §4); texts mention it only once it exists. */
export const VSYS_FIX = {
  command: 'vsys fix',
  available: true,
  what: 'rewrites direct calls of the page as real system calls, in files, root filesystems and images (vsys fix DIR -o FIXED, vsys fix IMAGE -o OUT.tar), verified before it writes',
} as const;

/** glibc version ("2.13", "2.5") compared with the first one without direct calls; undefined when unparsable. */
export function glibcCallsPageDirectly(version: string): boolean | undefined {
  const m = /^(\d+)\.(\d+)/.exec(version);
  if (!m) return undefined;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  const [fmaj, fmin] = FIRST_GLIBC_WITHOUT_DIRECT_CALLS.version.split('.').map(Number) as [number, number];
  return maj < fmaj || (maj === fmaj && min < fmin);
}

export interface LibcId {
  /** "glibc", "eglibc", "musl", or a file name such as libc-2.13.so. */
  name: string;
  version?: string;
}

function basesLine(): string {
  const glibc = FIXED_BASES.filter((b) => b.libcVersion).map((b) => `${b.name} (${b.libc} ${b.libcVersion})`);
  const musl = FIXED_BASES.filter((b) => b.libc === 'musl').map((b) => `${b.name.replace(/ \(every release\)$/, '')} (musl never used the page)`);
  return `Rebase on a release whose libc uses the vDSO: ${[...glibc, ...musl].join(', ')}.`;
}

/**
 * Plain-English lines to print under a crash or slow verdict: the cause, the bases without it,
 * the kernel parameter (only where the page is missing: `none`) with where to set it and its cost,
 * and `vsys fix` once it exists. `outcome` defaults to what the mode does to a direct call.
 */
export function remedyLines(libc: LibcId | undefined, mode: VsyscallMode, outcome: 'crash' | 'slow' = mode === 'none' ? 'crash' : 'slow'): string[] {
  const first = FIRST_GLIBC_WITHOUT_DIRECT_CALLS.version;
  const lines: string[] = [];
  const direct = libc?.version ? glibcCallsPageDirectly(libc.version) : undefined;
  if (libc && libc.name !== 'musl' && direct !== false) {
    lines.push(`Cause: ${libc.name}${libc.version ? ` ${libc.version}` : ''} calls the vsyscall page directly (glibc before ${first} does; ${first} and later use the vDSO).`);
  } else if (libc && direct === false) {
    lines.push(`Cause: not ${libc.name} ${libc.version} (glibc ${first} and later use the vDSO): the program itself calls the page (a static binary of an old libc, or an old Go runtime); rebuild it.`);
  } else {
    lines.push(`Cause: code built against glibc before ${first} (or an old static binary or Go runtime) calls the vsyscall page directly.`);
  }
  lines.push(basesLine());
  if (outcome === 'crash' && mode === 'none') {
    const k = KERNEL_PARAMETER;
    const where = k.hosts.map((h) => `${h.host}: ${h.how}`).join('; ');
    lines.push(`Or boot the host with ${k.parameter} (kernels since 5.3 also take ${k.alternative}). ${where}.`);
    lines.push(`Its cost: ${k.securityCost}.`);
  } else if (outcome === 'slow') {
    lines.push('The kernel parameter cannot speed this up: every call of the page traps into the kernel and is emulated; only code that uses the vDSO is fast.');
  }
  if (VSYS_FIX.available) lines.push(`Or patch them, without a toolchain: ${VSYS_FIX.command} ${VSYS_FIX.what}.`);
  return lines;
}
