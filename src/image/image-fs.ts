// The final filesystem of a container image, in memory: layers applied in order with OCI whiteouts
// (`.wh.NAME` deletes NAME, `.wh..wh..opq` hides what lower layers put in a directory), symlinks and
// hard links resolved inside the image root. Holds ELF reports and a few small texts, never file data.
import path from 'node:path/posix';
import { walkLinks } from '../scan/root-path.js';
import type { FileReport } from '../scan/types.js';

export type FsNode =
  | { kind: 'dir'; layer: number }
  | { kind: 'file'; layer: number; size: number; report?: FileReport; text?: string; interpreter?: string }
  | { kind: 'symlink'; layer: number; target: string }
  | { kind: 'hardlink'; layer: number; target: string };

/** What one layer does, in archive order: computed once per layer digest, applied to any image. */
export type LayerOp =
  | { op: 'add'; path: string; node: FsNode }
  | { op: 'whiteout'; path: string }
  | { op: 'opaque'; dir: string };

/** '/usr/bin/x' from './usr/bin/x', 'usr/bin/x/', …; undefined for names that climb out ('..'). */
export function normalisePath(name: string): string | undefined {
  // Most names ('./usr/bin/x', 'usr/lib/', '/etc/passwd') have no empty, '.' or '..' component
  // once the leading './' or '/' and one trailing '/' are off: they are answered without a split.
  let s = name.startsWith('./') ? name.slice(2) : name.startsWith('/') ? name.slice(1) : name;
  if (s.endsWith('/')) s = s.slice(0, -1);
  if (s !== '' && s[0] !== '/' && s[0] !== '.' && !s.endsWith('/') && !s.includes('//') && !s.includes('/.')) return `/${s}`;
  return normaliseParts(name);
}

/** normalisePath by components, for any name. */
export function normaliseParts(name: string): string | undefined {
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') return undefined;
    parts.push(c);
  }
  return `/${parts.join('/')}`;
}

export class ImageFs {
  private readonly nodes = new Map<string, FsNode>([['/', { kind: 'dir', layer: -1 }]]);
  private readonly children = new Map<string, Set<string>>([['/', new Set()]]);

  private link(p: string): void {
    if (p === '/') return;
    const dir = path.dirname(p);
    if (!this.nodes.has(dir)) {
      this.nodes.set(dir, { kind: 'dir', layer: -1 });
      this.link(dir);
    }
    let set = this.children.get(dir);
    if (!set) this.children.set(dir, (set = new Set()));
    set.add(path.basename(p));
  }

  private removeTree(p: string, belowLayer?: number): void {
    const kids = this.children.get(p);
    if (kids) {
      for (const k of [...kids]) {
        const child = p === '/' ? `/${k}` : `${p}/${k}`;
        const n = this.nodes.get(child);
        if (belowLayer !== undefined && n && n.layer >= belowLayer) continue;
        this.removeTree(child);
        kids.delete(k);
      }
    }
    if (belowLayer !== undefined) return;
    this.nodes.delete(p);
    this.children.delete(p);
    if (p !== '/') this.children.get(path.dirname(p))?.delete(path.basename(p));
  }

  apply(ops: readonly LayerOp[], layer: number): void {
    for (const o of ops) {
      if (o.op === 'whiteout') this.removeTree(o.path);
      else if (o.op === 'opaque') this.removeTree(o.dir, layer);
      else {
        const old = this.nodes.get(o.path);
        // A directory over a directory merges; anything else replaces what was there.
        if (old && !(old.kind === 'dir' && o.node.kind === 'dir')) this.removeTree(o.path);
        if (old?.kind === 'dir' && o.node.kind === 'dir') continue;
        this.nodes.set(o.path, { ...o.node, layer });
        this.link(o.path);
      }
    }
  }

  get(p: string): FsNode | undefined {
    return this.nodes.get(p);
  }

  list(dir: string): string[] {
    return [...(this.children.get(dir) ?? [])].sort();
  }

  /** Every regular file (hard links included once, under their own names). */
  *files(): Generator<[string, Extract<FsNode, { kind: 'file' }>]> {
    for (const [p, n] of this.nodes) if (n.kind === 'file') yield [p, n];
  }

  /** Every hard link, with the path it names. */
  *hardlinks(): Generator<[string, Extract<FsNode, { kind: 'hardlink' }>]> {
    for (const [p, n] of this.nodes) if (n.kind === 'hardlink') yield [p, n];
  }

  /**
   * Resolves an inner path through symlinks (absolute targets restart at the image root, `..` stops
   * at it) and hard links; the canonical path of what it names, or undefined (missing, loop).
   */
  resolve(p: string): string | undefined {
    const done = walkLinks(p, (prefix) => {
      const n = this.nodes.get(`/${prefix.join('/')}`);
      if (!n) return 'missing';
      if (n.kind === 'symlink') return { link: n.target };
      // Hard link targets are stored normalised from the image root ('/usr/bin/x'): an absolute link.
      if (n.kind === 'hardlink') return { link: n.target };
      return 'other';
    });
    return done === undefined ? undefined : `/${done.join('/')}`;
  }

  /** The regular file at `p` after resolution. */
  file(p: string): Extract<FsNode, { kind: 'file' }> | undefined {
    const r = this.resolve(p);
    const n = r ? this.nodes.get(r) : undefined;
    return n?.kind === 'file' ? n : undefined;
  }

  get size(): number {
    return this.nodes.size;
  }
}
