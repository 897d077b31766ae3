// Text and SARIF renderings of a scan. Text: one block per file that uses the page, clean files
// counted in the summary (listed with --all). SARIF 2.1.0: one result per finding.
import path from 'node:path';
import type { VsyscallMode } from '../model/modes.js';
import { VSYSCALL_MODES } from '../model/modes.js';
import { describeIdentity, isProgram } from '../scan/identify.js';
import type { ScanResult, ScannedFile } from '../scan/scan.js';
import type { Finding } from '../scan/find-uses.js';
import type { Outcome } from '../scan/verdict.js';
import type { ImageReport } from '../image/analyse-image.js';

const MARK: Record<Outcome, string> = { crash: '✗', slow: '!', review: '?', fallback: '~', ok: '✓' };

function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

function where(f: Finding): string {
  if (f.function?.name) return `in ${f.function.name}`;
  if (f.function) return `in the function at ${hex(f.function.start)} (${f.function.source === 'eh_frame' ? 'FDE ' : ''}${hex(f.function.start)}–${hex(f.function.end)})`;
  if (f.dataWord?.symbol) return `word ${f.dataWord.symbol}`;
  return '';
}

export function formatFinding(f: Finding): string {
  const how = f.useInstruction ? `${f.instruction}; ${f.useInstruction}` : f.instruction;
  const word = f.dataWord && f.use !== 'data-word' ? ` (via the word at ${hex(f.dataWord.address)}${f.dataWord.symbol ? ` ${f.dataWord.symbol}` : ''})` : '';
  return `${f.kind.padEnd(11)} ${f.entry.padEnd(12)} ${hex(f.address).padStart(12)}  ${how}  ${where(f)}${word}`;
}

export function formatFile(f: ScannedFile, mode: VsyscallMode): string[] {
  const v = f.verdicts[mode];
  const lines = [`${MARK[v.outcome]} ${f.path} — ${f.identity ? describeIdentity(f.identity) : 'ELF'}`];
  for (const x of f.findings) lines.push(`    ${formatFinding(x)}`);
  if (f.affectedExports.length > 0) {
    const names = f.affectedExports.map((e) => `${e.name}${e.chain.length > 1 ? ` (→ ${e.chain.slice(1).join(' → ')})` : ''}`);
    const shown = names.slice(0, 12).join(', ');
    lines.push(`    exports that reach it: ${shown}${names.length > 12 ? `, … ${names.length - 12} more` : ''}`);
  }
  for (const t of f.through ?? []) {
    lines.push(`    ${t.how === 'import' ? 'imports' : `${t.importer} imports`} ${t.symbol}${t.version ? `@${t.version}` : ''} from ${t.libraryPath} (${t.export.kind}, ${t.export.entry})`);
  }
  if (f.missingLibraries?.length) lines.push(`    libraries not found in the root: ${f.missingLibraries.join(', ')}`);
  lines.push(`    ${VSYSCALL_MODES.map((m) => `${m}: ${f.verdicts[m].outcome}`).join(' · ')}`);
  lines.push(`    → vsyscall=${mode}: ${v.why}`);
  return lines;
}

export function formatScan(r: ScanResult, mode: VsyscallMode, modeSource: string, all: boolean): string {
  const out: string[] = [];
  const shown = r.files.filter((f) => all || f.class !== 'clean' || (f.through?.length ?? 0) > 0 || f.verdicts[mode].outcome !== 'ok');
  for (const f of shown) out.push(...formatFile(f, mode), '');
  for (const e of r.errors) out.push(`! ${e.path}: ${e.code}: ${e.message.replace(`${e.path}: `, '')}`);
  if (r.errors.length > 0) out.push('');
  const s = r.summary;
  const o = s.byOutcome[mode];
  const mb = s.bytes / 1e6;
  out.push(`${s.elfFiles} ELF files of ${s.files} (${mb.toFixed(1)} MB) in ${s.seconds.toFixed(2)} s, ${(mb / Math.max(s.seconds, 1e-6)).toFixed(0)} MB/s; root ${s.root}`);
  out.push(`under vsyscall=${mode} (${modeSource}): ${o.crash} crash, ${o.slow} slow, ${o.review} to review, ${o.fallback} fallback only, ${o.ok} ok${s.errors ? `; ${s.errors} unreadable or malformed` : ''}`);
  if (!all && shown.length < r.files.length) out.push(`(${r.files.length - shown.length} clean files not listed; --all lists them)`);
  return out.join('\n') + '\n';
}

/** One image: identity, the verdict per mode, then each affected file as `vsys scan` shows files. */
export function formatImage(img: ImageReport, mode: VsyscallMode, all = false): string {
  const v = img.verdicts[mode];
  const os = img.os?.prettyName ?? img.os?.id ?? 'unknown OS';
  const libc = img.libc ? `${img.libc.name}${img.libc.version ? ` ${img.libc.version}` : ''} (${img.libc.path})` : 'no libc found';
  const mb = img.layers.reduce((a, l) => a + l.bytes, 0) / 1e6;
  const out = [
    `${MARK[v.outcome]} image ${img.ref} [${img.platform}] — ${os}, ${libc}; ${img.layers.length} layers, ${mb.toFixed(1)} MB, ${img.elfFiles} ELF files`,
    `    ${VSYSCALL_MODES.map((m) => `${m}: ${img.verdicts[m].outcome}`).join(' · ')}`,
    `    → ${v.why}`,
  ];
  if (img.skippedPlatforms?.length) out.push(`    (platforms skipped: ${img.skippedPlatforms.join(', ')})`);
  // Programs first (they are what crashes), then libraries; --all for every file.
  const files = [...img.files].sort((a, b) => Number(isProgram(b.identity)) - Number(isProgram(a.identity)));
  const shown = all ? files : files.slice(0, 12);
  for (const f of shown) out.push(...formatFile(f, mode).map((l) => `    ${l}`));
  if (shown.length < files.length) out.push(`    … ${files.length - shown.length} more affected files (--all or --json lists them)`);
  for (const p of img.problems) out.push(`    ! ${p.path}: ${p.code}: ${p.message}`);
  return out.join('\n') + '\n\n';
}

const RULES: Record<Finding['kind'], { name: string; text: string; level: 'error' | 'warning' | 'note' }> = {
  'direct-call': { name: 'VsyscallDirectCall', text: 'Calls the legacy vsyscall page directly: SIGSEGV under vsyscall=none, emulated (slow) under xonly/emulate.', level: 'error' },
  misaligned: { name: 'VsyscallMisalignedCall', text: 'Calls into the vsyscall page at an address that is not an entry start: SIGSEGV in every mode.', level: 'error' },
  indirect: { name: 'VsyscallIndirectCall', text: 'Calls the vsyscall page from a function reached only through a pointer (its address is taken; nothing calls it directly): runs only if that pointer is used.', level: 'warning' },
  fallback: { name: 'VsyscallFallback', text: 'Uses the vsyscall page only when the vDSO lacks the symbol.', level: 'note' },
  'data-ref': { name: 'VsyscallDataReference', text: 'Holds a vsyscall page address as data; no call through it was found.', level: 'warning' },
};

/** SARIF 2.1.0: rule id per finding kind, location = file + address (and byte offset). */
export function formatSarif(r: ScanResult, mode: VsyscallMode, version: string, images: ImageReport[] = []): string {
  const kinds = Object.keys(RULES) as Finding['kind'][];
  // Files inside images are named IMAGE-REF/path (relative URIs, one per image).
  const all = [...r.files.map((f) => ({ f, uri: pathToUri(f.path) })), ...images.flatMap((img) => img.files.map((f) => ({ f, uri: `${encodeURIComponent(img.ref)}${f.path.split('/').map(encodeURIComponent).join('/')}` })))];
  const results = all.flatMap(({ f, uri }) =>
    f.findings.map((x) => ({
      ruleId: `vsys/${x.kind}`,
      ruleIndex: kinds.indexOf(x.kind),
      level: RULES[x.kind].level,
      message: { text: `${x.kind} (${x.entry}) at ${hex(x.address)}: ${x.useInstruction ? `${x.instruction}; ${x.useInstruction}` : x.instruction}. Under vsyscall=${mode}: ${f.verdicts[mode].why}.` },
      locations: [{
        physicalLocation: {
          artifactLocation: { uri },
          region: { byteOffset: x.offset, byteLength: 1 },
          address: { absoluteAddress: Number(x.address), ...(x.function?.name ? { fullyQualifiedName: x.function.name } : {}) },
        },
        ...(x.function?.name ? { logicalLocations: [{ name: x.function.name, kind: 'function' }] } : {}),
      }],
      properties: { entry: x.entry, target: hex(x.target), use: x.use, verdicts: Object.fromEntries(VSYSCALL_MODES.map((m) => [m, f.verdicts[m].outcome])) },
    })),
  );
  const doc = {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [{
      tool: {
        driver: {
          name: 'vsys', version, informationUri: 'https://github.com/vsys/vsys',
          rules: kinds.map((k) => ({ id: `vsys/${k}`, name: RULES[k].name, shortDescription: { text: RULES[k].text }, defaultConfiguration: { level: RULES[k].level } })),
        },
      },
      results,
    }],
  };
  return JSON.stringify(doc, null, 2) + '\n';
}

function pathToUri(p: string): string {
  return `file://${path.resolve(p).split('/').map(encodeURIComponent).join('/')}`;
}
