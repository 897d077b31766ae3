// The page as a debugger sees it: process_vm_readv(2) of the whole vsyscall page, by a child process
// of its own memory, as tools/testing/selftests/x86/test_vsyscall.c does (ptrace's peeks go the same
// way). It must fail where the page is not readable (xonly, none) and read the page where it is
// (emulate; native before 4.15); when it reads, the bytes are compared with a direct read.
import { constants } from 'node:os';
import { VSYSCALL_PAGE_ADDR, VSYSCALL_PAGE_SIZE } from '../model/vsyscall-page.js';
import { processVmRead } from '../native/libc.js';
import { ExecPage, pointerAt, readMemory } from '../native/memory.js';
import { describeChildEnd, firstTryNote, runNodeChildSteady } from './child.js';

export interface VmReadvCheck {
  /** `ran`: the call was made (whatever it returned); `failed`: the child could not make it. */
  status: 'ran' | 'failed';
  /** true: process_vm_readv copied the whole page; false: it failed or copied less; null unless ran. */
  readable: boolean | null;
  /** Bytes copied, when it returned a count. */
  bytes: number | null;
  /** The error it failed with (EFAULT where the page is not readable), when it failed. */
  errno: string | null;
  /** When it read the page: whether the bytes equal a direct read of the page; null when not compared. */
  matchesDirectRead: boolean | null;
  detail: string;
}

/** The child's two lines: the call's result, then (only after a full read) the comparison. */
export interface VmReadvLines {
  read: { bytes: number } | { errno: number } | null;
  matches: boolean | null;
  /** How the child ended: 'exit 0', or what killed it. */
  ended: string;
}

export function errnoName(n: number): string {
  const e = Object.entries(constants.errno).find(([, v]) => v === n);
  return e ? e[0] : `errno ${n}`;
}

/** What the child saw. Pure: a test can feed a read that succeeded where it must not. */
export function judgeVmReadv(l: VmReadvLines): VmReadvCheck {
  if (!l.read) return { status: 'failed', readable: null, bytes: null, errno: null, matchesDirectRead: null, detail: `the child did not report a result (${l.ended})` };
  if ('errno' in l.read) {
    const name = errnoName(l.read.errno);
    return { status: 'ran', readable: false, bytes: null, errno: name, matchesDirectRead: null, detail: `process_vm_readv of the page fails (${name}): a debugger cannot read it` };
  }
  const n = l.read.bytes;
  if (n !== VSYSCALL_PAGE_SIZE) return { status: 'ran', readable: false, bytes: n, errno: null, matchesDirectRead: null, detail: `process_vm_readv of the page copied ${n} of ${VSYSCALL_PAGE_SIZE} bytes` };
  const base = { status: 'ran' as const, readable: true, bytes: n, errno: null };
  if (l.matches === true) return { ...base, matchesDirectRead: true, detail: 'process_vm_readv reads the page (4096 bytes), the same bytes a direct read finds' };
  if (l.matches === false) return { ...base, matchesDirectRead: false, detail: 'process_vm_readv reads the page, but not the bytes a direct read finds' };
  return { ...base, matchesDirectRead: null, detail: `process_vm_readv reads the page, but a direct read of it then failed (${l.ended})` };
}

/** Child side: prints the call's result, and after a full read compares it with a direct read. */
export function readPageAsDebugger(write: (line: string) => void): void {
  const buf = new ExecPage(VSYSCALL_PAGE_SIZE);
  try {
    const r = processVmRead(process.pid, buf.address, VSYSCALL_PAGE_ADDR, VSYSCALL_PAGE_SIZE);
    write(JSON.stringify({ read: r }));
    if ('bytes' in r && r.bytes === VSYSCALL_PAGE_SIZE) {
      // May die of SIGSEGV if the kernel let the debugger read a page this process cannot: the parent says so.
      const direct = readMemory(pointerAt(VSYSCALL_PAGE_ADDR), VSYSCALL_PAGE_SIZE);
      const got = buf.read(0, VSYSCALL_PAGE_SIZE);
      write(JSON.stringify({ matches: Buffer.from(direct).equals(Buffer.from(got)) }));
    }
  } finally {
    buf.free();
  }
}

export function parseVmReadvLines(stdout: string, ended: string): VmReadvLines {
  const out: VmReadvLines = { read: null, matches: null, ended };
  for (const line of stdout.split('\n')) {
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      continue;
    }
    const o = v as { read?: VmReadvLines['read']; matches?: boolean };
    if (o.read && (typeof (o.read as { bytes?: unknown }).bytes === 'number' || typeof (o.read as { errno?: unknown }).errno === 'number')) out.read = o.read;
    if (typeof o.matches === 'boolean') out.matches = o.matches;
  }
  return out;
}

export async function runVmReadvCheck(): Promise<VmReadvCheck> {
  const o = await runNodeChildSteady(new URL('./vsyscall-child.js', import.meta.url), ['vm-readv']);
  const ended = o.outcome === 'works' ? 'exit 0' : describeChildEnd(o);
  const v = judgeVmReadv(parseVmReadvLines(o.stdout, ended));
  return { ...v, detail: v.detail + firstTryNote(o) };
}
