// Which libraries a dynamically linked program would load in its root, in the loader's order
// (ld.so(8): DT_RPATH unless DT_RUNPATH, DT_RUNPATH, ld.so.conf directories, the default
// directories), breadth-first over DT_NEEDED; and which of its imports land on an affected export.
import fs from 'node:fs';
import path from 'node:path';
import type { FileReport } from './analyse-file.js';
import type { AffectedExport } from './reach.js';
import { innerPath, resolveInRoot } from './root-path.js';

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

/** Extra directories from /etc/ld.so.conf and ld.so.conf.d/*.conf inside the root (one level of include). */
export function ldSoConfDirs(root: string): string[] {
  const out: string[] = [];
  const readConf = (inner: string, depth: number): void => {
    const host = resolveInRoot(root, inner);
    if (!host || depth > 2) return;
    let text: string;
    try {
      text = fs.readFileSync(host, 'utf8');
    } catch {
      return;
    }
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (line === '') continue;
      const inc = /^include\s+(.+)$/.exec(line);
      if (inc?.[1]) {
        const pattern = inc[1].startsWith('/') ? inc[1] : path.posix.join('/etc', inc[1]);
        const dir = path.posix.dirname(pattern);
        const re = new RegExp(`^${path.posix.basename(pattern).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
        const hostDir = resolveInRoot(root, dir);
        let names: string[] = [];
        try {
          names = hostDir ? fs.readdirSync(hostDir).sort() : [];
        } catch {
          names = [];
        }
        for (const n of names) if (re.test(n)) readConf(path.posix.join(dir, n), depth + 1);
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

/** Finds `name` for a program/library at host path `fromHost`, following the loader's search order. */
/** What library lookups share within one scan: the root, its ld.so.conf directories, and the answers so far. */
export interface LookupContext {
  root: string;
  confDirs: string[];
  cache: Map<string, string | undefined>;
}

export function lookupContext(root: string): LookupContext {
  return { root, confDirs: ldSoConfDirs(root), cache: new Map() };
}

function cachedResolve(ctx: LookupContext, inner: string): string | undefined {
  if (ctx.cache.has(inner)) return ctx.cache.get(inner);
  let host = resolveInRoot(ctx.root, inner);
  if (host !== undefined) {
    try {
      if (!fs.statSync(host).isFile()) host = undefined;
    } catch {
      host = undefined;
    }
  }
  ctx.cache.set(inner, host);
  return host;
}

function findLibrary(ctx: LookupContext, name: string, from: FileReport): string | undefined {
  const { root, confDirs } = ctx;
  if (name.includes('/')) return cachedResolve(ctx, name.startsWith('/') ? name : `/${name}`);
  const originInner = path.posix.dirname(innerPath(root, from.path) ?? '/');
  const id = from.identity;
  const dirs = [
    ...(id?.runpath === undefined ? expandOrigin(id?.rpath, originInner) : []),
    ...expandOrigin(id?.runpath, originInner),
    ...confDirs,
    ...DEFAULT_DIRS,
  ];
  for (const d of dirs) {
    const host = cachedResolve(ctx, path.posix.join(d, name));
    if (host) return host;
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
