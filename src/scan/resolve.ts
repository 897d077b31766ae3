// Which libraries a dynamically linked program would load in its root, in the loader's order
// (ld.so(8): DT_RPATH unless DT_RUNPATH, DT_RUNPATH, ld.so.conf directories, the default
// directories), breadth-first over DT_NEEDED; and which of its imports land on an affected export.
import fs from 'node:fs';
import path from 'node:path';
import type { AffectedExport } from './reach.js';
import { innerPath, resolveInRoot, type LinkStep } from './root-path.js';
import type { FileReport } from './types.js';

const DEFAULT_DIRS = ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib64', '/usr/lib64', '/lib', '/usr/lib'];
const MAX_LIBS = 512;

export interface LoadedLibrary {
  name: string;
  /** Host path of the file found, when found. */
  path?: string;
}

/** How a program reaches the page through a library. */
export interface ReachThrough {
  /** The import (or the library's own import) that leads there. */
  symbol: string;
  version?: string;
  library: string;
  libraryPath: string;
  export: AffectedExport;
  /** 'import': the program imports it; 'library-import': a loaded library imports it. */
  how: 'import' | 'library-import';
  importer: string;
}

/** A root filesystem as the loader sees it: the host below a directory, or an image in memory. */
export interface RootView {
  /** Display name of the root ("/", "./rootfs", "debian:wheezy"). */
  name: string;
  /** A key for the regular file at `inner`, links resolved inside the root; undefined if none. */
  fileKey(inner: string): string | undefined;
  readText(inner: string): string | undefined;
  list(innerDir: string): string[];
  /** Where a report's file lives inside this root (for $ORIGIN). */
  innerOf(report: FileReport): string | undefined;
}

/** The host's filesystem below `root` (absolute symlinks restart at `root`). Keys are host paths. */
export function hostRoot(root: string): RootView {
  // Lookups within one scan share what they learnt about each path (the files do not move meanwhile).
  const seen = new Map<string, LinkStep>();
  return {
    name: root,
    fileKey(inner) {
      const host = resolveInRoot(root, inner, seen);
      if (host === undefined) return undefined;
      try {
        return fs.statSync(host).isFile() ? host : undefined;
      } catch {
        return undefined;
      }
    },
    readText(inner) {
      const host = resolveInRoot(root, inner, seen);
      try {
        return host === undefined ? undefined : fs.readFileSync(host, 'utf8');
      } catch {
        return undefined;
      }
    },
    list(innerDir) {
      const host = resolveInRoot(root, innerDir, seen);
      try {
        return host === undefined ? [] : fs.readdirSync(host).sort();
      } catch {
        return [];
      }
    },
    innerOf: (report) => innerPath(root, report.path),
  };
}

/** Extra directories from /etc/ld.so.conf and ld.so.conf.d/*.conf inside the root (includes followed two deep). */
export function ldSoConfDirs(root: RootView): string[] {
  const out: string[] = [];
  const readConf = (inner: string, depth: number): void => {
    if (depth > 2) return;
    const text = root.readText(inner);
    if (text === undefined) return;
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (line === '') continue;
      const inc = /^include\s+(.+)$/.exec(line);
      if (inc?.[1]) {
        const pattern = inc[1].startsWith('/') ? inc[1] : path.posix.join('/etc', inc[1]);
        const dir = path.posix.dirname(pattern);
        const re = new RegExp(`^${path.posix.basename(pattern).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
        for (const n of root.list(dir)) if (re.test(n)) readConf(path.posix.join(dir, n), depth + 1);
      } else if (line.startsWith('/')) out.push(line);
    }
  };
  readConf('/etc/ld.so.conf', 0);
  return out;
}

function expandOrigin(dirs: string | undefined, originInner: string): string[] {
  if (!dirs) return [];
  return dirs.split(':').filter((d) => d !== '').map((d) => d.replace(/\$\{?ORIGIN\}?/g, originInner));
}

/** What library lookups share within one scan: the root, its ld.so.conf directories, and the answers so far. */
export interface LookupContext {
  root: RootView;
  confDirs: string[];
  cache: Map<string, string | undefined>;
  /** Library name (plus the file's own RUNPATH/RPATH and origin, when it has them) → the file found. */
  found: Map<string, string | undefined>;
}

export function lookupContext(root: RootView): LookupContext {
  return { root, confDirs: ldSoConfDirs(root), cache: new Map(), found: new Map() };
}

function cachedResolve(ctx: LookupContext, inner: string): string | undefined {
  if (ctx.cache.has(inner)) return ctx.cache.get(inner);
  const key = ctx.root.fileKey(inner);
  ctx.cache.set(inner, key);
  return key;
}

function findLibrary(ctx: LookupContext, name: string, from: FileReport): string | undefined {
  if (name.includes('/')) {
    // A DT_NEEDED path may hold $ORIGIN, as RUNPATH does (ld.so(8)).
    const expanded = expandOrigin(name, path.posix.dirname(ctx.root.innerOf(from) ?? '/'))[0] ?? name;
    return cachedResolve(ctx, path.posix.normalize(expanded.startsWith('/') ? expanded : `/${expanded}`));
  }
  const id = from.identity;
  // Most files have neither RUNPATH nor RPATH: their lookups of a name all search the same dirs.
  if (id?.runpath === undefined && id?.rpath === undefined) {
    if (ctx.found.has(name)) return ctx.found.get(name);
    const hit = searchDirs(ctx, name, from);
    ctx.found.set(name, hit);
    return hit;
  }
  return searchDirs(ctx, name, from);
}

function searchDirs(ctx: LookupContext, name: string, from: FileReport): string | undefined {
  const originInner = path.posix.dirname(ctx.root.innerOf(from) ?? '/');
  const id = from.identity;
  const dirs = [
    ...(id?.runpath === undefined ? expandOrigin(id?.rpath, originInner) : []),
    ...expandOrigin(id?.runpath, originInner),
    ...ctx.confDirs,
    ...DEFAULT_DIRS,
  ];
  for (const d of dirs) {
    const key = cachedResolve(ctx, path.posix.join(d, name));
    if (key) return key;
  }
  return undefined;
}

/**
 * The libraries `program` loads (breadth-first over DT_NEEDED, each once) and its ways to the page.
 * `reportOf` gives the analysis of a library file (cached by the caller).
 */
export function resolveProgram(
  ctx: LookupContext,
  program: FileReport,
  reportOf: (hostPath: string) => FileReport | undefined,
): { libraries: LoadedLibrary[]; missing: string[]; through: ReachThrough[] } {
  const libraries: LoadedLibrary[] = [];
  const missing: string[] = [];
  const loaded: FileReport[] = [];
  const seen = new Set<string>();
  const queue: { name: string; from: FileReport }[] = (program.identity?.needed ?? []).map((name) => ({ name, from: program }));
  while (queue.length > 0 && libraries.length < MAX_LIBS) {
    const { name, from } = queue.shift() as { name: string; from: FileReport };
    if (seen.has(name)) continue;
    seen.add(name);
    const host = findLibrary(ctx, name, from);
    if (!host) {
      missing.push(name);
      libraries.push({ name });
      continue;
    }
    libraries.push({ name, path: host });
    const rep = reportOf(host);
    if (!rep) continue;
    loaded.push(rep);
    for (const n of rep.identity?.needed ?? []) queue.push({ name: n, from: rep });
  }
  // Symbol lookup: the first loaded object that exports the name wins (the loader's global scope).
  const through: ReachThrough[] = [];
  const affectedIn = loaded.filter((l) => l.affectedExports.length > 0);
  if (affectedIn.length === 0) return { libraries, missing, through };
  const importers: FileReport[] = [program, ...loaded];
  for (const importer of importers) {
    for (const imp of importer.imports) {
      for (const lib of affectedIn) {
        if (lib === importer) continue;
        const ex = lib.affectedExports.find((e) => e.name === imp.name && (imp.version === undefined || e.versions.length === 0 || e.versions.includes(imp.version)));
        if (!ex) continue;
        const t: ReachThrough = {
          symbol: imp.name, library: path.basename(lib.path), libraryPath: lib.path, export: ex,
          how: importer === program ? 'import' : 'library-import', importer: path.basename(importer.path),
        };
        if (imp.version !== undefined) t.version = imp.version;
        through.push(t);
        break;
      }
    }
  }
  return { libraries, missing, through };
}
