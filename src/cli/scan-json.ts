// `vsys scan --json`: NDJSON records in the order of the text (images with their files, image
// errors, the files of the paths, every input not judged), then one summary. The record shapes are
// described by schema/scan-record.schema.json, which the tests validate every line against.
import type { ImageReport } from '../image/analyse-image.js';
import type { ImageError } from '../image/scan-image.js';
import { VSYSCALL_MODES, type VsyscallMode } from '../model/modes.js';
import { countOutcomes, fileRecord, imageRecord, type ErrorRecord, type FileRecord, type ImageRecord, type Unjudged } from './scan-records.js';
import type { ScanResult, ScanSummary } from '../scan/scan.js';
import type { SlowdownFor } from '../scan/verdict.js';

export interface SummaryRecord extends Omit<ScanSummary, 'byOutcome'> {
  record: 'summary';
  mode: VsyscallMode;
  modeSource: string;
  images: number;
  /**
   * Over the files of the paths and of every image (an image's unlisted files are clean, ok in every
   * mode); `files` and `bytes` count image layers' entries and bytes too.
   */
  byOutcome: ScanSummary['byOutcome'];
  unjudged: number;
  warnings: string[];
  exit: number;
}

export interface JsonInput {
  result: ScanResult;
  images: ImageReport[];
  imageErrors: ImageError[];
  unjudged: Unjudged[];
  mode: VsyscallMode;
  modeSource: string;
  all: boolean;
  slow?: SlowdownFor;
  exit: number;
  warnings: string[];
  showPaths: boolean;
}

export function* jsonRecords(x: JsonInput): Generator<FileRecord | ImageRecord | ErrorRecord | SummaryRecord> {
  for (const img of x.images) {
    yield imageRecord(img, x.mode, img.files.length, x.slow);
    for (const f of img.files) yield fileRecord(f, x.mode, img);
  }
  for (const f of x.result.files) yield fileRecord(f, x.mode);
  for (const u of x.unjudged) yield { record: 'error', ...u };
  const byOutcome = countOutcomes([...x.result.files, ...x.images.flatMap((i) => i.files)]);
  // Files of an image that are not listed use nothing: ok in every mode.
  for (const img of x.images) for (const m of VSYSCALL_MODES) byOutcome[m].ok += img.elfFiles - img.files.length;
  const s = x.result.summary;
  const byClass = { ...s.byClass };
  for (const img of x.images) {
    for (const f of img.files) byClass[f.class] = (byClass[f.class] ?? 0) + 1;
    if (img.elfFiles > img.files.length) byClass.clean = (byClass.clean ?? 0) + img.elfFiles - img.files.length;
  }
  const sum = (f: (l: ImageReport['layers'][number]) => number) => x.images.reduce((a, i) => a + i.layers.reduce((b, l) => b + f(l), 0), 0);
  const elfFiles = s.elfFiles + x.images.reduce((a, i) => a + i.elfFiles, 0);
  yield {
    // errors: inputs that could not be read, paths and images alike (the text's count).
    record: 'summary', ...s, errors: s.errors + x.imageErrors.length, elfFiles, byClass, byOutcome, files: s.files + sum((l) => l.files), bytes: s.bytes + sum((l) => l.bytes),
    mode: x.mode, modeSource: x.modeSource, images: x.images.length, unjudged: x.unjudged.length, warnings: x.warnings, exit: x.exit,
  };
}
