// A report's imports, packed. They are most of a report's objects (a 1 GB image: 126k imports in
// 1,621 reports), and the reports live until the image's verdicts: as objects they were copied by
// every scavenge of the heap (~45 ms per scan), and structured clone between threads copied each
// one (60 ms to serialize in the worker, 110–160 ms to rebuild here). So imports are made packed
// into one string per report and unpacked only when something reads them: the reachability lookup,
// which runs only for programs that load an affected library, or the JSON output. A worker sends
// the string as it is.
import type { FileResult } from './read-file.js';
import type { FileReport, Symbolic } from './analyse-file.js';

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
      used += out.write(version, used, 'latin1');
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

/** Reports whose imports are still packed, and the string. */
const packedOf = new WeakMap<object, string>();

/** The imports as a plain property of `on`. */
function settle(on: object, value: Symbolic[]): void {
  packedOf.delete(on);
  Object.defineProperty(on, 'imports', { value, writable: true, enumerable: true, configurable: true });
}

/**
 * Sets `report.imports` from its packed form: unpacked on first read (then a plain property), or
 * replaced by a write. The accessor settles whichever object it is read on, so a copy made by
 * `extendReport` stays packed too.
 */
export function setPackedImports(report: FileReport, packed: string): void {
  if (packed === '') {
    settle(report, []);
    return;
  }
  packedOf.set(report, packed);
  Object.defineProperty(report, 'imports', {
    enumerable: true,
    configurable: true,
    get(this: object) {
      const value = unpack(packed);
      settle(this, value);
      return value;
    },
    set(this: object, value: Symbolic[]) {
      settle(this, value);
    },
  });
}

/**
 * A copy of `r` with `extra` over it. Imports not yet unpacked stay packed in the copy (a spread
 * would read them, and unpacking a thousand reports' imports was a fifth of an image's verdicts).
 */
export function extendReport<T extends object>(r: FileReport, extra: T): FileReport & T {
  return Object.assign(Object.defineProperties({}, Object.getOwnPropertyDescriptors(r)) as FileReport, extra);
}

/**
 * In the worker, before posting: each report's imports as one string, in `packed` (same order as
 * `results`); the reports themselves then carry none (structured clone would read the accessor).
 */
export function packResults(results: FileResult[]): string[] {
  return results.map((r) => {
    if (r.kind !== 'elf') return '';
    const s = packedOf.get(r.report) ?? packImports(r.report.imports);
    settle(r.report, []);
    return s;
  });
}

/** Here, on receipt: the inverse of packResults. */
export function unpackResults(results: FileResult[], packed: readonly string[] | undefined): FileResult[] {
  if (!packed) return results;
  results.forEach((r, i) => {
    const s = packed[i];
    if (r.kind === 'elf' && s) setPackedImports(r.report, s);
  });
  return results;
}
