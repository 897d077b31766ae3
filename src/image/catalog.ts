// A whole registry as a list of images: the catalog (GET /v2/_catalog) and each repository's tags
// (GET /v2/NAME/tags/list), both followed page by page through their Link headers (distribution-spec
// "Listing Tags", and the registry's catalog extension), filtered by --repos globs and cut to one
// shard's stable share (--shard K/N) before any tags are asked for.
import { createHash } from 'node:crypto';
import { minimatch } from 'minimatch';
import { VsysError } from '../errors.js';
import { readBody, RegistryClient, REPO_NAME, type RegistryOptions } from './registry.js';

/** registry://HOST[:PORT] with no repository (a trailing slash allowed): the whole catalog. */
export function parseCatalogRef(s: string): string | undefined {
  return /^registry:\/\/([^/]+)\/?$/.exec(s)?.[1];
}

export interface Shard {
  index: number;
  count: number;
}

/** `K/N`, 0 ≤ K < N. */
export function parseShard(s: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || !(count >= 1) || count > 100_000 || !(index < count)) throw new VsysError('USAGE', `--shard must be K/N with 0 ≤ K < N (the Job's completion index and completions), not '${s}'`);
  return { index, count };
}

/**
 * The shard a repository falls in: the first 4 bytes of sha256(name), mod N. Stable: it depends on
 * the name alone, not on the catalog's order or on what else it holds, so shards run at different
 * times still split the same way. Whole repositories, not tags: a repository's tags share most of
 * their layers, and one process analyses a shared layer once.
 */
export function shardOf(repo: string, count: number): number {
  return createHash('sha256').update(repo).digest().readUInt32BE(0) % count;
}

export interface CatalogOptions extends RegistryOptions {
  /** Repository globs (minimatch, `/` separated like paths): keep a repository matching any. */
  repos?: string[];
  shard?: Shard;
  /** Entries asked for per page (default 1000; the registry may send fewer and a Link to the rest). */
  pageSize?: number;
  /** Called for each page fetched (tests count pages). */
  onPage?: (what: 'catalog' | 'tags', url: string) => void;
}

export interface CatalogListing {
  host: string;
  /** Every repository in the catalog. */
  repositories: number;
  /** Those matching --repos and in this shard, with their tags (sorted). */
  images: { repo: string; tag: string; ref: string }[];
  /** Repositories kept whose tags could not be listed. */
  errors: { ref: string; code: string; message: string }[];
  /** Repositories kept (matching --repos, in this shard). */
  kept: number;
  /** Repositories matching --repos, in any shard. */
  matched: number;
}

/** A page of names may hold at most this many bytes, and a listing at most this many names. */
const PAGE_MAX_BYTES = 16 * 1024 * 1024;
const LIST_MAX_NAMES = 1_000_000;
/** Pages a listing may take (a registry sending empty pages with a next link forever stops here). */
const LIST_MAX_PAGES = 100_000;

/**
 * The next page from a Link header (`<url>; rel="next"`), made absolute against `from`. A link to
 * another origin is refused: the registry's credentials would go with the request.
 */
function nextPage(link: string | null, from: string, what: string): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(',')) {
    const m = /<([^>]*)>\s*;(.*)$/.exec(part.trim());
    if (m?.[1] === undefined || !/\brel="?next"?/.test(m[2] ?? '')) continue;
    const next = new URL(m[1], from);
    if (next.origin !== new URL(from).origin) throw new VsysError('REGISTRY_FAILED', `${what}: the registry's next page is on another origin (${next.origin}); not followed`);
    return next.href;
  }
  return undefined;
}

/** Every page of a list, each a JSON object whose `key` holds an array of strings. */
async function allPages(client: RegistryClient, first: string, key: 'repositories' | 'tags', what: string, o: CatalogOptions): Promise<string[]> {
  const out: string[] = [];
  const seen = new Set<string>();
  for (let url: string | undefined = first; url !== undefined;) {
    if (seen.has(url)) throw new VsysError('REGISTRY_FAILED', `${what}: the registry's Link header loops back to ${url}`);
    if (seen.size >= LIST_MAX_PAGES) throw new VsysError('REGISTRY_FAILED', `${what}: more than ${LIST_MAX_PAGES} pages (a registry that never stops paging?); stopped`);
    seen.add(url);
    o.onPage?.(key === 'repositories' ? 'catalog' : 'tags', url);
    const r = await client.send('GET', url, { accept: 'application/json' });
    if (r.status === 404) {
      await r.body?.cancel();
      throw new VsysError(key === 'repositories' ? 'REGISTRY_NO_CATALOG' : 'IMAGE_MISSING_BLOB', key === 'repositories' ? `${what}: the registry does not serve /v2/_catalog (name the repositories instead: registry://HOST/REPO:TAG, or --from FILE)` : `${what}: not found`);
    }
    if (!r.ok) {
      await r.body?.cancel();
      throw new VsysError('REGISTRY_FAILED', `${what}: HTTP ${r.status}`);
    }
    const bytes = await readBody(r, `${what} (${url})`, undefined, PAGE_MAX_BYTES);
    let doc: unknown;
    try {
      doc = JSON.parse(bytes.toString('utf8'));
    } catch (e) {
      throw new VsysError('REGISTRY_FAILED', `${what}: the answer is not JSON (${(e as Error).message})`);
    }
    const list = (doc as Record<string, unknown> | null)?.[key];
    // A repository with no tags left is listed by some registries with "tags": null.
    if (list !== null && list !== undefined && (!Array.isArray(list) || list.some((x) => typeof x !== 'string'))) throw new VsysError('REGISTRY_FAILED', `${what}: '${key}' is not a list of names`);
    out.push(...((list ?? []) as string[]));
    if (out.length > LIST_MAX_NAMES) throw new VsysError('REGISTRY_FAILED', `${what}: more than ${LIST_MAX_NAMES} names (a registry that never stops paging?); stopped`);
    url = nextPage(r.headers.get('link'), url, what);
  }
  return out;
}

/** A tag as the distribution spec allows it. */
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** Does a repository match any --repos glob (all when none is given)? */
export function repoMatches(repo: string, globs: readonly string[] | undefined): boolean {
  return !globs?.length || globs.some((g) => minimatch(repo, g));
}

/**
 * The images of a registry: its catalog, the repositories kept (--repos, --shard), and their tags.
 * A repository whose tags cannot be listed is an error of its own; the rest are still listed.
 */
export async function listCatalog(host: string, o: CatalogOptions = {}): Promise<CatalogListing> {
  const n = o.pageSize ?? 1000;
  const catalog = new RegistryClient({ host, repo: '' }, o);
  const origin = catalog.baseUrl.replace(/\/v2\/$/, '');
  const repos = await allPages(catalog, `${origin}/v2/_catalog?n=${n}`, 'repositories', `registry://${host} catalog`, o);
  const matched = [...new Set(repos)].filter((r) => repoMatches(r, o.repos));
  const kept = matched.filter((r) => !o.shard || shardOf(r, o.shard.count) === o.shard.index).sort();
  const images: CatalogListing['images'] = [];
  const errors: CatalogListing['errors'] = [];
  for (const repo of kept.filter((r) => !REPO_NAME.test(r))) errors.push({ ref: `registry://${host}`, code: 'REGISTRY_FAILED', message: `the catalog lists a name that is not a valid repository name: ${JSON.stringify(repo.slice(0, 200))}` });
  for (const repo of kept.filter((r) => REPO_NAME.test(r))) {
    const client = new RegistryClient({ host, repo }, o);
    try {
      const tags = await allPages(client, `${client.baseUrl}/tags/list?n=${n}`, 'tags', `registry://${host}/${repo} tags`, o);
      for (const tag of [...new Set(tags)].sort()) {
        if (TAG.test(tag)) images.push({ repo, tag, ref: `registry://${host}/${repo}:${tag}` });
        else errors.push({ ref: `registry://${host}/${repo}`, code: 'REGISTRY_FAILED', message: `the registry lists a tag that is not a valid tag name: ${JSON.stringify(tag.slice(0, 200))}` });
      }
    } catch (e) {
      if (!(e instanceof VsysError)) throw e;
      errors.push({ ref: `registry://${host}/${repo}`, code: e.code, message: e.message });
    }
  }
  return { host, repositories: repos.length, images, errors, kept: kept.length, matched: matched.length };
}
