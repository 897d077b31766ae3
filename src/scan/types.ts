// The report of one file, as analysis makes it and every layer above reads it (scan, image, fix,
// cli): kept apart from the modules that build it, so none of them imports another for its types.
import type { AffectedExport } from './reach.js';
import type { Finding } from './find-uses.js';
import type { Identity } from './identify.js';
import type { Imports } from './wire.js';
import type { FileClass } from '../model/site-kinds.js';

export interface FileReport {
  path: string;
  size: number;
  identity?: Identity;
  class: FileClass;
  findings: Finding[];
  /** Libraries: exported functions that reach a use (through calls inside the library). */
  affectedExports: AffectedExport[];
  /** Functions this file imports (undefined dynamic symbols), with versions; packed until read (wire.ts). */
  imports: Imports;
  error?: { code: string; message: string };
}

/** What reading one file gave: its report, or why it is not ELF, or why it could not be read. */
export type FileResult =
  | { kind: 'elf'; report: FileReport }
  | { kind: 'not-elf'; path: string; size: number }
  | { kind: 'error'; path: string; size: number; error: { code: string; message: string } };
