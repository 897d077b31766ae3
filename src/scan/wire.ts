// How analysis results cross between threads. A report's imports are most of its objects (a scan
// of a 1 GB image: 126k imports in 1,621 reports), and structured clone copies each one: 60 ms to
// serialize them in the worker and 110–160 ms to rebuild them here, more than the worker saved.
// So a worker sends each report's imports packed into one string, and this thread unpacks them
// only when something reads them: the reachability lookup, which runs only for programs that load
// an affected library, or the JSON output.
import type { FileResult } from './read-file.js';
import type { FileReport, Symbolic } from './analyse-file.js';

/** Import names and version names never hold a NUL (ELF strings end at one). */
const SEP = '\0';
/** Before a version: defined ('=') or not ('-'), so an empty version name stays distinct from none. */
const HAS = '=';
const NONE = '-';

function pack(imports: Symbolic[]): string {
  let s = '';
  for (const i of imports) s += i.name + SEP + (i.version === undefined ? NONE : HAS + i.version) + SEP;
  return s;
}

function unpack(s: string): Symbolic[] {
  const out: Symbolic[] = [];
  const parts = s.split(SEP);
  const versions = new Map<string, string>(); // one string per version name, as in a report made here
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

/** In the worker, before posting: each report's imports as one string, in `packed` (same order as `results`). */
export function packResults(results: FileResult[]): string[] {
  return results.map((r) => {
    if (r.kind !== 'elf' || r.report.imports.length === 0) return '';
    const s = pack(r.report.imports);
    r.report.imports = [];
    return s;
  });
}

/** The imports as a plain property of `on`. */
function settle(on: object, value: Symbolic[]): void {
  Object.defineProperty(on, 'imports', { value, writable: true, enumerable: true, configurable: true });
}

/**
 * `report.imports` unpacked on first read (then a plain property), or replaced by a write. The
 * accessor settles whichever object it is read on, so a copy made by `extendReport` stays lazy too.
 */
function lazyImports(report: FileReport, packed: string): void {
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

/** Here, on receipt: the inverse of packResults. */
export function unpackResults(results: FileResult[], packed: readonly string[] | undefined): FileResult[] {
  if (!packed) return results;
  results.forEach((r, i) => {
    const s = packed[i];
    if (r.kind === 'elf' && s) lazyImports(r.report, s);
  });
  return results;
}
