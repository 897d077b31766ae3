// The state of a long image scan (`vsys scan --state FILE`): NDJSON, a header naming the scan, then
// one line per image reference finished, holding its reports whole (every field, addresses as hex
// strings tagged so they come back as bigints). A scan killed midway leaves the lines of the
// references it finished (each line is written whole and synced before the next reference is
// counted); run again with the same file, it scans only the rest. `vsys scan --merge` reads the
// same files: the shards of an Indexed Job each write one, and the merge reports them as one run.
import fs from 'node:fs';
import readline from 'node:readline';
import { VsysError } from '../errors.js';
import { errno, libcBindings, rawSyscall } from '../native/libc.js';
import { Imports, type Symbolic } from '../scan/wire.js';
import type { ImageReport } from './analyse-image.js';
import type { ImageError } from './scan-image.js';

/** 2: runs' listing and complete records (version 1 had neither). */
export const STATE_VERSION = 2;

/** What a state file is the state of: a whole registry's catalog (with --repos and --shard), or a list of images. */
export interface StateScan {
  registry?: string;
  repos?: string[];
  shard?: string;
}

interface Header {
  record: 'vsys-scan-state';
  version: number;
  scan: StateScan;
}

export interface DoneRecord {
  record: 'done';
  ref: string;
  images: ImageReport[];
  errors: ImageError[];
}

/** What a run set out to judge: the references it listed, and what could not be listed (a repository's tags, the catalog). */
export interface ListingRecord {
  record: 'listing';
  refs: string[];
  errors: ImageError[];
}

/** Written once a run judged every reference of its listing (not after an interrupt or a kill). */
export interface CompleteRecord {
  record: 'complete';
}

/** Addresses (bigints) tagged; an Imports written as its list (its own toJSON). */
export function encodeDone(d: DoneRecord): string {
  return JSON.stringify(d, (_k, v) => (typeof v === 'bigint' ? { $bigint: `0x${v.toString(16)}` } : v));
}

function revive(key: string, v: unknown): unknown {
  if (v !== null && typeof v === 'object') {
    const big = (v as { $bigint?: unknown }).$bigint;
    if (typeof big === 'string' && Object.keys(v).length === 1 && /^0x[0-9a-f]+$/.test(big)) return BigInt(big);
    if (key === 'imports' && Array.isArray(v)) return Imports.of(v as Symbolic[]);
  }
  return v;
}

function bad(file: string, line: number, why: string): VsysError {
  return new VsysError('SCAN_STATE_BAD', `${file}:${line}: ${why} (not a state file this vsys can read; give another --state file, or remove this one to start over)`, { path: file });
}

function parseRecord(text: string, file: string, line: number): DoneRecord | ListingRecord | CompleteRecord {
  let d: unknown;
  try {
    d = JSON.parse(text, revive);
  } catch (e) {
    throw bad(file, line, `not JSON (${(e as Error).message})`);
  }
  const r = d as { record?: unknown; ref?: unknown; refs?: unknown; images?: unknown; errors?: unknown } | null;
  if (r?.record === 'complete') return { record: 'complete' };
  if (r?.record === 'listing' && Array.isArray(r.refs) && r.refs.every((x: unknown) => typeof x === 'string') && Array.isArray(r.errors)) return r as unknown as ListingRecord;
  if (r?.record !== 'done' || typeof r.ref !== 'string' || !Array.isArray(r.images) || !Array.isArray(r.errors)) throw bad(file, line, 'not a "done", "listing" or "complete" record');
  return r as unknown as DoneRecord;
}

export interface StateFile {
  file: string;
  scan: StateScan;
  /** The last record of each reference, in the order first met. */
  done: Map<string, DoneRecord>;
  /** The last run's listing, when it wrote one. */
  listing?: ListingRecord;
  /** The last run judged its whole listing. */
  complete: boolean;
  /** Bytes of whole lines: a last line cut off by a kill ends before it. */
  wholeBytes: number;
}

/**
 * A state file read line by line. A last line without its newline (the writer was killed while
 * writing it) is left out; any other line that is not a record is an error.
 */
export async function readStateFile(file: string): Promise<StateFile> {
  const out: StateFile = { file, scan: {}, done: new Map(), wholeBytes: 0, complete: false };
  let stream: fs.ReadStream;
  try {
    stream = fs.createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 });
    await new Promise<void>((resolve, reject) => stream.once('open', () => resolve()).once('error', reject));
  } catch (e) {
    throw new VsysError('IO_FAILED', `cannot read ${file}: ${(e as Error).message}`, { path: file });
  }
  const size = fs.statSync(file).size;
  let line = 0;
  let pending: { text: string; line: number } | undefined;
  const take = (p: { text: string; line: number }): void => {
    if (p.line === 1) {
      let h: Partial<Header> | undefined;
      try {
        h = JSON.parse(p.text) as Partial<Header>;
      } catch {
        h = undefined;
      }
      if (h?.record !== 'vsys-scan-state') throw bad(file, 1, 'no vsys-scan-state header');
      if (h.version !== STATE_VERSION) throw bad(file, 1, `state version ${String(h.version)}, this vsys reads ${STATE_VERSION}`);
      out.scan = h.scan ?? {};
    } else if (p.text.trim() !== '') {
      const d = parseRecord(p.text, file, p.line);
      if (d.record === 'listing') {
        out.listing = d;
        out.complete = false;
      } else if (d.record === 'complete') {
        out.complete = true;
      } else {
        out.done.delete(d.ref);
        out.done.set(d.ref, d);
      }
    }
    out.wholeBytes += Buffer.byteLength(p.text) + 1;
  };
  const rl = readline.createInterface({ input: stream, crlfDelay: Infinity });
  for await (const text of rl) {
    if (pending) take(pending);
    pending = { text, line: ++line };
  }
  // readline gives the last line whether or not a newline ended it: only a whole one counts.
  if (pending && out.wholeBytes + Buffer.byteLength(pending.text) + 1 <= size) take(pending);
  if (line === 0) throw bad(file, 1, 'empty');
  return out;
}

function sameScan(a: StateScan, b: StateScan): boolean {
  const norm = (s: StateScan) => JSON.stringify({ registry: s.registry ?? null, repos: [...(s.repos ?? [])].sort(), shard: s.shard ?? null });
  return norm(a) === norm(b);
}

/** The first line of a state file for `scan`. */
function headerLine(scan: StateScan): string {
  return JSON.stringify({ record: 'vsys-scan-state', version: STATE_VERSION, scan } satisfies Header);
}

/** The scan as its command line names it: `registry://HOST --repos … --shard K/N`, or a list of images. */
export function describeScan(s: StateScan): string {
  if (!s.registry) return 'a list of images';
  return `registry://${s.registry}${s.repos?.length ? ` --repos ${s.repos.join(',')}` : ''}${s.shard ? ` --shard ${s.shard}` : ''}`;
}

const NR_FLOCK = 73; // arch/x86/entry/syscalls/syscall_64.tbl
const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

/**
 * flock(2) on the open file, not waiting. Released by the kernel when the file is closed or the
 * process dies, so a killed scan leaves no stale lock. Where the filesystem cannot lock (some
 * network filesystems), the file is written unlocked.
 */
function lockExclusive(fd: number, file: string): string | undefined {
  if (Number(rawSyscall(NR_FLOCK, fd, LOCK_EX | LOCK_NB)) === 0) return undefined;
  const e = errno();
  if (e !== EWOULDBLOCK) return `flock: ${libcBindings().strerror(e)}`;
  throw new VsysError('SCAN_STATE_LOCKED', `${file} is being written by another vsys scan (it holds the file's lock); wait for it to end, or give another --state file`, { path: file });
}

/**
 * What a state file already holds for `scan`: undefined when it is missing, empty or only a cut-off
 * header; refused when it is another scan's or not a state file.
 */
async function readExisting(file: string, scan: StateScan): Promise<StateFile | undefined> {
  if (fs.statSync(file).size === 0) return undefined;
  const existing = await readStateFile(file);
  if (existing.wholeBytes === 0) {
    // Only a cut-off header (killed as it was written) is started over; any other file is not ours to overwrite.
    if (!headerLine(scan).startsWith(fs.readFileSync(file, 'utf8'))) throw new VsysError('USAGE', `${file} is not a vsys state file (and is not empty): give another --state file`);
    return undefined;
  }
  if (!sameScan(existing.scan, scan)) throw new VsysError('USAGE', `${file} holds the state of another scan (${describeScan(existing.scan)}), not of ${describeScan(scan)}: give another --state file, or remove it to start over`);
  return existing;
}

/** A state file open for appending: what it already holds, and `add` for each reference finished. */
export class StateWriter {
  /** Why writing stopped (the disk full, the file gone): the run goes on, and says so. */
  failed: string | undefined;
  /** Why the file could not be locked (a filesystem without locks): written all the same. */
  unlocked: string | undefined;
  private closed = false;

  private constructor(private readonly fd: number, readonly file: string, readonly done: ReadonlyMap<string, DoneRecord>) {}

  /**
   * Opens `file` for the scan `scan`: created with its header when missing, empty or holding only a
   * cut-off header; else read (a cut-off last line dropped), and refused when it is the state of
   * another scan. Lines are appended (O_APPEND), each whole. The file is locked (flock) while open:
   * a second writer is refused (SCAN_STATE_LOCKED, exit 3).
   */
  static async open(file: string, scan: StateScan): Promise<StateWriter> {
    let fd: number;
    try {
      fd = fs.openSync(file, 'a');
    } catch (e) {
      throw new VsysError('IO_FAILED', `cannot write --state ${file}: ${(e as Error).message}`, { path: file });
    }
    try {
      // Locked before it is read: a second writer (a retried pod whose first still runs, the same
      // command started twice) would otherwise truncate and interleave the first one's lines.
      const unlocked = lockExclusive(fd, file);
      const existing = await readExisting(file, scan);
      try {
        fs.ftruncateSync(fd, existing?.wholeBytes ?? 0);
      } catch (e) {
        throw new VsysError('IO_FAILED', `cannot write --state ${file}: ${(e as Error).message}`, { path: file });
      }
      const w = new StateWriter(fd, file, existing?.done ?? new Map());
      w.unlocked = unlocked;
      if (!existing) w.line(headerLine(scan));
      if (w.failed) throw new VsysError('IO_FAILED', `cannot write --state ${file}: ${w.failed}`, { path: file });
      return w;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** One line, whole (short writes continued), synced; the first failure stops all writing. */
  private line(text: string): void {
    if (this.closed || this.failed) return;
    try {
      const b = Buffer.from(text + '\n');
      for (let off = 0; off < b.length;) off += fs.writeSync(this.fd, b, off, b.length - off);
      fs.fdatasyncSync(this.fd);
    } catch (e) {
      this.failed = (e as Error).message;
    }
  }

  /** What this run set out to judge. */
  listing(refs: string[], errors: ImageError[]): void {
    this.line(JSON.stringify({ record: 'listing', refs, errors } satisfies ListingRecord));
  }

  /** One reference finished. Its report is not kept here: the caller has it. */
  add(d: DoneRecord): void {
    this.line(encodeDone(d));
  }

  /** Every reference of the listing judged. */
  complete(): void {
    this.line(JSON.stringify({ record: 'complete' } satisfies CompleteRecord));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}
