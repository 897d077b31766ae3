// `vsys scan` over whole registries and long lists of images: registry://HOST walked through its
// catalog (--repos, --shard), --state FILE to resume a scan that was stopped, --merge to report the
// state files of several shards as one run.
import fs from 'node:fs';
import { VsysError } from '../errors.js';
import type { ImageReport } from '../image/analyse-image.js';
import type { ImageError } from '../image/scan-image.js';
import type { DoneRecord, StateWriter } from '../image/scan-state.js';
import type { Io } from './io.js';

export interface CatalogArgs {
  repos?: string[];
  shard?: string;
  state?: string;
  creds?: string;
  insecure?: boolean;
}

export interface PreparedRefs {
  /** References still to scan, in order. */
  refs: string[];
  /** Judged by an earlier run (--state): reported with the rest. */
  prior: ImageReport[];
  /** Catalog problems (a repository whose tags could not be listed, a catalog not served). */
  errors: ImageError[];
  writer?: StateWriter;
  /** Images in all (resumed and to scan), for progress. */
  total: number;
  /** A whole registry or a resumable list: one line per image, one order at the end, a bounded layer cache. */
  long: boolean;
  /**
   * A catalog could not be read at all: the state file gets no listing and is never marked
   * complete, so the run counts as stopped (a Job retries it) and a merge keeps the last good listing.
   */
  catalogFailed: boolean;
}

/** --repos a,b --repos c: every glob, split at commas. */
export function repoGlobs(values: string[] | undefined): string[] | undefined {
  const globs = (values ?? []).flatMap((v) => v.split(',')).map((g) => g.trim()).filter((g) => g !== '');
  return globs.length ? globs : undefined;
}

/** What a registry client of this scan is given: its credentials, and whether plain http is allowed. */
function clientOptions(a: CatalogArgs): { creds?: string; insecure?: boolean } {
  return { ...(a.creds ? { creds: a.creds } : {}), ...(a.insecure ? { insecure: true } : {}) };
}

/** Tags checked at once when a scan resumes, and how long one check may take. */
const DIGEST_CHECKS = 8;
const DIGEST_CHECK_MS = 30_000;

/**
 * Judged registry images whose tag names another digest now (pushed again since: `changed`) or
 * whose digest could not be had (`unchecked`), ref → why; both are judged again. One client per
 * repository, so a token is asked for once per repository, not per tag. A record written without
 * a digest (an archive, an older vsys) is kept as it is.
 */
async function recheckDigests(io: Io, done: DoneRecord[], a: CatalogArgs): Promise<{ changed: Map<string, string>; unchecked: Map<string, string> }> {
  const { RegistryClient, parseRegistryRef } = await import('../image/registry.js');
  const check = done.filter((d) => d.ref.startsWith('registry://') && d.images.length > 0 && d.images.every((i) => i.tagDigest !== undefined));
  const changed = new Map<string, string>();
  const unchecked = new Map<string, string>();
  if (check.length === 0) return { changed, unchecked };
  io.stderr.write(`vsys: checking the tags of ${check.length} images judged before against the registry…\n`);
  const clients = new Map<string, InstanceType<typeof RegistryClient>>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < check.length) {
      const d = check[next++]!;
      const was = d.images[0]!.tagDigest!;
      try {
        const ref = parseRegistryRef(d.ref);
        if (ref.tag === undefined) throw new Error('not a reference by tag');
        const key = `${ref.host}/${ref.repo}`;
        let client = clients.get(key);
        if (!client) clients.set(key, (client = new RegistryClient(ref, clientOptions(a))));
        const now = await client.tagDigest(ref.tag, AbortSignal.timeout(DIGEST_CHECK_MS));
        if (now !== was) changed.set(d.ref, `${d.ref}: ${was.slice(0, 19)}… then, ${now.slice(0, 19)}… now`);
      } catch (e) {
        unchecked.set(d.ref, `${d.ref}: ${(e as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DIGEST_CHECKS, check.length) }, worker));
  return { changed, unchecked };
}

const some = (m: Map<string, string>): string => `${[...m.values()].slice(0, 3).join('; ')}${m.size > 3 ? '; …' : ''}`;

/**
 * Catalog references (registry://HOST) replaced by the images they list; with --state, the
 * references an earlier run finished without error left out, their reports kept.
 */
export async function prepareImageRefs(io: Io, imageRefs: string[], a: CatalogArgs): Promise<PreparedRefs> {
  const { parseCatalogRef, parseShard } = await import('../image/catalog.js');
  const catalogs = imageRefs.map(parseCatalogRef);
  const hosts = catalogs.filter((h): h is string => h !== undefined);
  if ((a.repos || a.shard) && hosts.length === 0) throw new VsysError('USAGE', 'scan: --repos and --shard go with a whole registry (registry://HOST[:PORT], no repository)');
  if (a.state !== undefined && imageRefs.length === 0) throw new VsysError('USAGE', 'scan: --state records images as they are judged: give images or a registry (it does not apply to paths)');
  if (hosts.length > 1) throw new VsysError('USAGE', 'scan: one whole registry per run (registry://HOST[:PORT])');
  const shard = a.shard !== undefined ? parseShard(a.shard) : undefined;
  const long = hosts.length > 0 || a.state !== undefined;
  let writer: StateWriter | undefined;
  if (a.state !== undefined) {
    const { StateWriter } = await import('../image/scan-state.js');
    // Opened (and locked) before the catalog is read: a second writer is refused at once.
    writer = await StateWriter.open(a.state, hosts[0] ? { registry: hosts[0], ...(a.repos ? { repos: a.repos } : {}), ...(a.shard ? { shard: a.shard } : {}) } : {});
    if (writer.unlocked) io.stderr.write(`vsys: ${a.state} could not be locked (${writer.unlocked}): nothing stops a second scan from writing it at once\n`);
  }
  try {
    const listed = await listRefs(io, imageRefs, catalogs, a, shard);
    if (!writer) return { ...listed, prior: [], total: listed.refs.length, long };
    return { ...(await resumeFrom(io, writer, listed, a)), errors: listed.errors, writer, total: listed.refs.length, long, catalogFailed: listed.catalogFailed };
  } catch (e) {
    writer?.close();
    throw e;
  }
}

type Listed = Pick<PreparedRefs, 'refs' | 'errors' | 'catalogFailed'>;

/** Each registry://HOST replaced by the images of its catalog (with --repos and --shard), in order. */
async function listRefs(io: Io, imageRefs: string[], catalogs: (string | undefined)[], a: CatalogArgs, shard: { index: number; count: number } | undefined): Promise<Listed> {
  const { listCatalog } = await import('../image/catalog.js');
  const refs: string[] = [];
  const errors: ImageError[] = [];
  let catalogFailed = false;
  for (const [i, ref] of imageRefs.entries()) {
    const host = catalogs[i];
    if (host === undefined) {
      refs.push(ref);
      continue;
    }
    io.stderr.write(`vsys: reading the catalog of registry://${host}…\n`);
    try {
      const listing = await listCatalog(host, { ...clientOptions(a), ...(a.repos ? { repos: a.repos } : {}), ...(shard ? { shard } : {}) });
      refs.push(...listing.images.map((x) => x.ref));
      errors.push(...listing.errors);
      // A gate must not pass on nothing: a --repos that matches no repository is an input not judged.
      if (a.repos && listing.matched === 0) errors.push({ ref, code: 'REGISTRY_NO_MATCH', message: `no repository of the ${listing.repositories} in the catalog matches --repos ${a.repos.join(',')}` });
      const kept = a.repos || shard ? `, ${listing.kept} kept${a.repos ? ` (--repos ${a.repos.join(',')})` : ''}${shard ? ` (shard ${a.shard})` : ''}` : '';
      io.stderr.write(`vsys: registry://${host}: ${listing.repositories} repositories${kept}, ${listing.images.length} tags\n`);
    } catch (e) {
      if (!(e instanceof VsysError) || e.code === 'USAGE') throw e;
      errors.push({ ref, code: e.code, message: e.message });
      catalogFailed = true;
    }
  }
  return { refs, errors, catalogFailed };
}

/**
 * The run's listing recorded; the references an earlier run finished without error (and whose tag
 * names the digest judged) left out, their reports kept.
 */
async function resumeFrom(io: Io, writer: StateWriter, listed: Listed, a: CatalogArgs): Promise<Pick<PreparedRefs, 'refs' | 'prior'>> {
  const { refs, errors, catalogFailed } = listed;
  if (!catalogFailed) writer.listing(refs, errors);
  const wanted = new Set(refs);
  // Finished without error: kept, unless its tag names another digest now. An error is tried
  // again (it may have been the network).
  const finished = [...writer.done.values()].filter((d) => wanted.has(d.ref) && d.errors.length === 0);
  const { changed, unchecked } = await recheckDigests(io, finished, a);
  const prior: ImageReport[] = [];
  for (const d of finished) {
    if (changed.has(d.ref) || unchecked.has(d.ref)) continue;
    prior.push(...d.images);
    wanted.delete(d.ref);
  }
  const resumed = refs.length - wanted.size;
  if (changed.size > 0) io.stderr.write(`vsys: ${changed.size} of the images judged in ${writer.file} were pushed again since (their tag names another digest): judged again (${some(changed)})\n`);
  if (unchecked.size > 0) io.stderr.write(`vsys: ${unchecked.size} of the images judged in ${writer.file} could not be checked against the registry: judged again (${some(unchecked)})\n`);
  if (resumed > 0) io.stderr.write(`vsys: ${resumed} of ${refs.length} images already judged in ${writer.file}; scanning the other ${refs.length - resumed}\n`);
  return { refs: refs.filter((r) => wanted.has(r)), prior };
}

/** Reports in one order whatever order they finished in: by reference, then platform. */
export function sortImages<T extends { ref: string; input?: string; platform?: string }>(images: T[]): T[] {
  const key = (i: T) => `${i.input ?? i.ref}\0${i.platform ?? ''}`;
  return images.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

export function sortErrors(errors: ImageError[]): ImageError[] {
  return errors.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : a.message < b.message ? -1 : a.message > b.message ? 1 : 0));
}

/**
 * --merge FILE…: the state files of several runs (an Indexed Job's shards) as one report. Only what
 * each file's last listing names is reported (a tag deleted since is not). What was not judged is
 * said, so that a merge gates as one run would: a run that stopped before its listing was judged
 * (SCAN_INCOMPLETE), a shard of a registry with no file (SCAN_SHARD_MISSING), and the listing's own
 * errors. A reference in two files is kept once (the later file's) and said in the warnings.
 */
export async function mergeStates(files: string[]): Promise<{ images: ImageReport[]; errors: ImageError[]; warnings: string[] }> {
  const { describeScan, readStateFile } = await import('../image/scan-state.js');
  const byRef = new Map<string, { d: DoneRecord; file: string }>();
  const errors: ImageError[] = [];
  const warnings: string[] = [];
  const twice: string[] = [];
  const shards = new Map<string, { count: number; seen: Set<number> }>();
  for (const file of files) {
    let s: Awaited<ReturnType<typeof readStateFile>>;
    try {
      s = await readStateFile(file);
    } catch (e) {
      // A shard that never wrote its file: said, and the other files still reported.
      if (!(e instanceof VsysError) || e.code !== 'IO_FAILED' || fs.existsSync(file)) throw e;
      errors.push({ ref: file, code: 'SCAN_STATE_MISSING', message: `${file} does not exist: the images of the run that was to write it were not judged` });
      continue;
    }
    const listed = s.listing ? new Set(s.listing.refs) : undefined;
    if (s.listing) errors.push(...s.listing.errors);
    const missing = s.listing ? s.listing.refs.filter((r) => !s.done.has(r)) : [];
    if (!s.listing) errors.push({ ref: file, code: 'SCAN_INCOMPLETE', message: `${file}: the scan stopped before it listed its images (run it again with --state ${file})` });
    else if (!s.complete || missing.length) errors.push({ ref: file, code: 'SCAN_INCOMPLETE', message: `${file}: the scan stopped before it finished: ${missing.length} of ${s.listing.refs.length} images not judged${missing.length ? ` (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''})` : ''}; run it again with --state ${file} to finish` });
    if (s.scan.registry && s.scan.shard) {
      const [k, n] = s.scan.shard.split('/').map(Number) as [number, number];
      // The shards of one scan: the same registry and --repos, whatever their order.
      const key = describeScan({ registry: s.scan.registry, ...(s.scan.repos ? { repos: [...s.scan.repos].sort() } : {}) });
      const g = shards.get(key) ?? { count: n, seen: new Set<number>() };
      if (g.count !== n) errors.push({ ref: file, code: 'SCAN_SHARD_MISSING', message: `${file} is shard ${k}/${n} of ${key}, which other files split into ${g.count}` });
      g.seen.add(k);
      shards.set(key, g);
    }
    for (const d of s.done.values()) {
      if (listed && !listed.has(d.ref)) continue;
      const before = byRef.get(d.ref);
      if (before && before.file !== file) twice.push(`${d.ref} (${before.file}, ${file})`);
      byRef.set(d.ref, { d, file });
    }
  }
  for (const [key, g] of shards) {
    const absent = Array.from({ length: g.count }, (_, k) => k).filter((k) => !g.seen.has(k));
    if (absent.length) errors.push({ ref: key, code: 'SCAN_SHARD_MISSING', message: `no file of shard${absent.length > 1 ? 's' : ''} ${absent.map((k) => `${k}/${g.count}`).join(', ')} of ${key} was given: its images were not judged` });
  }
  if (twice.length) warnings.push(`${twice.length} image(s) judged in more than one file, the later kept (shards overlap, or a file was given twice): ${twice.slice(0, 5).join('; ')}${twice.length > 5 ? '; …' : ''}`);
  const all = [...byRef.values()].map((x) => x.d);
  return { images: sortImages(all.flatMap((d) => d.images)), errors: sortErrors([...dedupeErrors(errors), ...all.flatMap((d) => d.errors)]), warnings };
}

/** The same error from two files (a file given twice) once. */
function dedupeErrors(errors: ImageError[]): ImageError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = `${e.ref}\0${e.code}\0${e.message}`;
    return !seen.has(k) && !!seen.add(k);
  });
}
