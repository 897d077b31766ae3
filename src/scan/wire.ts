// A report's imports, packed. They are most of a report's objects (a 1 GB image: 126k imports in
// 1,621 reports), and the reports live until the image's verdicts: as objects they were copied by
// every scavenge of the heap, and structured clone between threads copied each one, costs that
// bench/README.md measures ("Figures behind the code"). So a report's imports are one
// `Imports`: a string made straight from the file's string table, unpacked only when something
// reads them (the reachability lookup, which runs only for programs that load an affected library,
// or the JSON output). Structured clone carries the string as it is; the receiver revives the class.

/** A symbol's name and, where it has one, its version (an import, or an export reaching a use). */
export interface Symbolic {
  name: string;
  version?: string;
}

/** Import names and version names never hold a NUL (ELF strings end at one). */
const SEP = '\0';
/** Before a version: defined ('=') or not ('-'), so an empty version name stays distinct from none. */
const HAS = '=';
const NONE = '-';

/** The imports packed (their order kept). */
export function packImports(imports: readonly Symbolic[]): string {
  if (imports.length === 0) return '';
  const parts: string[] = [];
  for (const i of imports) parts.push(i.name, i.version === undefined ? NONE : HAS + i.version);
  // One flat string (join), not a tree of concatenations holding every name alive.
  return parts.join(SEP) + SEP;
}

/** The thread's reused bytes for packing straight from a file (packImportBytes). */
let sink = Buffer.allocUnsafeSlow(64 * 1024);
const SINK_KEEP = 4 * 1024 * 1024;
const SEP_BYTE = SEP.charCodeAt(0);
const HAS_BYTE = HAS.charCodeAt(0);
const NONE_BYTE = NONE.charCodeAt(0);

/**
 * Imports packed straight from the file's bytes, as packImports packs the same names (decoded as
 * latin1, the string tables' encoding): `each(add)` calls `add(start, end, version)` for each import
 * in order, its name being bytes [start, end) of `bytes` (visitSymbolNames). No string is made per
 * name; an empty name is left out, as analysis leaves it out of the imports.
 */
export function packImportBytes(bytes: Uint8Array, each: (add: (start: number, end: number, version: string | undefined) => void) => void): string {
  let used = 0;
  each((start, end, version) => {
    if (end <= start) return;
    const need = end - start + 3 + (version?.length ?? 0);
    if (used + need > sink.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(sink.length * 2, used + need));
      sink.copy(grown, 0, 0, used);
      sink = grown;
    }
    const out = sink;
    for (let i = start; i < end; i++) out[used++] = bytes[i] as number;
    out[used++] = SEP_BYTE;
    if (version === undefined) out[used++] = NONE_BYTE;
    else {
      out[used++] = HAS_BYTE;
      // A few characters, latin1 already (decoded from the string table): no native write per import.
      for (let k = 0; k < version.length; k++) out[used++] = version.charCodeAt(k);
    }
    out[used++] = SEP_BYTE;
  });
  const packed = used === 0 ? '' : sink.toString('latin1', 0, used);
  if (sink.length > SINK_KEEP) sink = Buffer.allocUnsafeSlow(64 * 1024);
  return packed;
}

function unpack(s: string): Symbolic[] {
  const out: Symbolic[] = [];
  const parts = s.split(SEP);
  const versions = new Map<string, string>(); // one string per version name
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const imp: Symbolic = { name: parts[i] as string };
    const v = parts[i + 1] as string;
    if (v.startsWith(HAS)) {
      let name = versions.get(v);
      if (name === undefined) versions.set(v, (name = v.slice(1)));
      imp.version = name;
    }
    out.push(imp);
  }
  return out;
}

/**
 * A file's imports (undefined dynamic function symbols, with versions), in order. Iterable, and
 * written to JSON as the array of `{ name, version? }` it stands for.
 */
export class Imports implements Iterable<Symbolic> {
  #list: Symbolic[] | undefined;

  /** `packed`: name NUL ('=' version | '-') NUL, for each import (packImports, packImportBytes). */
  constructor(readonly packed = '') {}

  static of(list: readonly Symbolic[]): Imports {
    return new Imports(packImports(list));
  }

  /** Imports that crossed threads: structured clone keeps the string (an own property), not the class. */
  static revive(v: unknown): Imports {
    if (v instanceof Imports) return v;
    const packed = (v as { packed?: unknown } | undefined)?.packed;
    return new Imports(typeof packed === 'string' ? packed : '');
  }

  /** Unpacked once, on first use. */
  list(): readonly Symbolic[] {
    return (this.#list ??= unpack(this.packed));
  }

  [Symbol.iterator](): Iterator<Symbolic> {
    return this.list()[Symbol.iterator]();
  }

  toJSON(): readonly Symbolic[] {
    return this.list();
  }
}
