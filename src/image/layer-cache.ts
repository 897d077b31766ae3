// Layers already analysed, kept so that an identical layer (same digest) is analysed once. A scan of
// a few images keeps them all (a Map); a whole registry cannot, so there the cache holds at most a
// number of entries (each ~200–400 bytes, layer-builder.ts' MAX_ENTRIES) and lets the least
// recently used layers go: a layer met again after that is read again, never judged wrongly.
import type { LayerResult } from './layer-builder.js';

/** What the image sources use of a cache (a Map is one). */
export interface LayerCache {
  has(key: string): boolean;
  get(key: string): Promise<LayerResult> | undefined;
  set(key: string, value: Promise<LayerResult>): unknown;
}

export class BoundedLayerCache implements LayerCache {
  private readonly map = new Map<string, { p: Promise<LayerResult>; entries?: number }>();
  private held = 0;
  /** Layers let go to stay under the bound (tests and the summary read it). */
  evicted = 0;

  constructor(readonly maxEntries: number) {}

  has(key: string): boolean {
    return this.map.has(key);
  }

  get(key: string): Promise<LayerResult> | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    // Most recently used last.
    this.map.delete(key);
    this.map.set(key, e);
    return e.p;
  }

  set(key: string, p: Promise<LayerResult>): this {
    const old = this.map.get(key);
    if (old?.entries !== undefined) this.held -= old.entries;
    const e: { p: Promise<LayerResult>; entries?: number } = { p };
    this.map.delete(key);
    this.map.set(key, e);
    p.then(
      (r) => {
        if (this.map.get(key) !== e) return;
        e.entries = r.ops.length;
        this.held += e.entries;
        this.trim(key);
      },
      // A layer that failed is not kept: the next image that names it reads it again.
      () => {
        if (this.map.get(key) === e) this.map.delete(key);
      },
    );
    return this;
  }

  /** Entries held by the layers finished. */
  get heldEntries(): number {
    return this.held;
  }

  get size(): number {
    return this.map.size;
  }

  /** Oldest finished layers let go until under the bound; `keep` (the one just finished) stays. */
  private trim(keep: string): void {
    for (const [k, e] of this.map) {
      if (this.held <= this.maxEntries) return;
      if (k === keep || e.entries === undefined) continue;
      this.map.delete(k);
      this.held -= e.entries;
      this.evicted++;
    }
  }
}
