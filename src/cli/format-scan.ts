// Text and SARIF renderings of a scan. Text: one block per file that uses the page, clean files
// counted in the summary (listed with --all). SARIF 2.1.0: one result per finding.
import path from 'node:path';
import type { VsyscallMode } from '../model/modes.js';
import { VSYSCALL_MODES } from '../model/modes.js';
import { describeIdentity, isProgram } from '../scan/identify.js';
import { useOf, type ScanResult, type ScannedFile } from '../scan/scan.js';
import type { Finding } from '../scan/find-uses.js';
import type { Outcome } from '../scan/verdict.js';
import type { EntrypointRun, ImageReport } from '../image/analyse-image.js';
import type { ImageError } from '../image/scan-image.js';
import { remedyLines } from '../model/remedies.js';
import { causesOf, type Cause, type Unjudged } from './scan-records.js';
import { OUTCOME_RANK, verdictOfUse, type ModeVerdict, type SlowdownFor } from '../scan/verdict.js';

/** Paths below the working directory are shown relative to it; the others as they are. */
export function displayPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  // Relative only below the working directory: "../x" would read differently from every other place.
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}

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

/** For an `indirect` site: where the function's address is taken ("its address taken at 0x… in os::…"). */
function takenAt(f: Finding): string {
  const refs = f.addressTakenAt ?? [];
  if (refs.length === 0) return '';
  const shown = refs.slice(0, 3).map((r) => `${hex(r.address)}${r.function ? ` in ${r.function}` : ''} (${r.instruction})`);
  return `; its address taken at ${shown.join(', ')}${refs.length > 3 ? `, … ${refs.length - 3} more` : ''}`;
}

export function formatFinding(f: Finding): string {
  const how = f.useInstruction ? `${f.instruction}; ${f.useInstruction}` : f.instruction;
  const word = f.dataWord && f.use !== 'data-word' ? ` (via the word at ${hex(f.dataWord.address)}${f.dataWord.symbol ? ` ${f.dataWord.symbol}` : ''})` : '';
  return `${f.kind.padEnd(11)} ${f.entry.padEnd(12)} ${hex(f.address).padStart(12)}  ${how}  ${where(f)}${word}${takenAt(f)}`;
}

export function formatFile(f: ScannedFile, mode: VsyscallMode, layers?: ImageReport['layers'], showRoot = true): string[] {
  const v = f.verdicts[mode];
  const where = [showRoot && f.root !== undefined && f.root !== '/' ? `root ${displayPath(f.root)}` : '', layerName(f.layer, layers)].filter((x) => x !== '').join(', ');
  const lines = [`${MARK[v.outcome]} ${f.path} — ${f.identity ? describeIdentity(f.identity) : 'ELF'}${where ? ` [${where}]` : ''}`];
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
  if (f.error) lines.push(`    could not be fully analysed: ${f.error.code}`);
  lines.push(`    ${VSYSCALL_MODES.map((m) => `${m}: ${f.verdicts[m].outcome}`).join(' · ')}`);
  lines.push(`    → vsyscall=${mode}: ${v.why}`);
  return lines;
}

function layerName(index: number | undefined, layers: ImageReport['layers'] | undefined): string {
  if (index === undefined || !layers) return '';
  const l = layers[index];
  const hex = l ? /[0-9a-f]{64}/.exec(l.digest)?.[0] : undefined;
  return `layer ${index + 1}/${layers.length}${hex ? ` sha256:${hex.slice(0, 12)}` : l ? ` ${l.digest}` : ''}`;
}

const VERB: Record<Outcome, string> = { crash: 'crash', slow: 'run slowly', review: 'need review', fallback: 'fall back', ok: 'run' };

/** One cause: "✗ 158 programs crash if they call time() of libc-2.13.so (/lib64/libc-2.13.so): bash, date, …". */
export function formatCause(c: Cause, mode: VsyscallMode, all: boolean, layerOf?: (p: string) => string, show: (p: string) => string = displayPath): string[] {
  const names = (paths: string[]): string => {
    const shown = all ? paths : paths.slice(0, 20);
    const text = shown.map((p) => `${path.basename(p)}${layerOf ? layerOf(p) : ''}`).join(', ');
    return `${text}${shown.length < paths.length ? `, … ${paths.length - shown.length} more (--all or --json lists them)` : ''}`;
  };
  const n = c.programs.length;
  const what = n > 0 ? `${n} program${n === 1 ? '' : 's'}` : `${c.libraries.length} librar${c.libraries.length === 1 ? 'y' : 'ies'}`;
  const verb = n === 1 || (n === 0 && c.libraries.length === 1) ? VERB[c.outcome].replace(/^(\w+)/, (w) => (w === 'crash' ? 'crashes' : w === 'need' ? 'needs' : w === 'fall' ? 'falls' : `${w}s`)) : VERB[c.outcome];
  const out = [`${MARK[c.outcome]} ${what} ${verb} under vsyscall=${mode} if ${n === 1 ? 'it calls' : 'they call'} ${c.function}() of ${c.library} (${show(c.libraryPath)}, the ${c.entry} entry), through their imports:`];
  if (n > 0) out.push(`    ${names(c.programs)}`);
  if (n > 0 && c.libraries.length > 0) out.push(`    and ${c.libraries.length} librar${c.libraries.length === 1 ? 'y' : 'ies'} that import it: ${names(c.libraries)}`);
  if (n === 0) out.push(`    ${names(c.libraries)}`);
  return out;
}

/** What to do about crash and slow verdicts, and how to be sure: said once per run. */
export function formatAdvice(worst: Outcome, mode: VsyscallMode, libcs: readonly { name: string; version?: string; path: string }[]): string[] {
  if (worst !== 'crash' && worst !== 'slow') return [];
  const out = ['', 'These verdicts are predictions from the code: a program crashes (or pays for emulation) only if it calls the function on the way it runs.'];
  out.push('  To see what a command really does on this host: vsys trace -- COMMAND counts every vsyscall it makes (a none kernel kills it at the first).');
  out.push('  To see what a vsyscall=none kernel does to it, here and without root: vsys run --as none -- COMMAND (or --root DIR, or --image IMAGE).');
  const [first, ...more] = libcs;
  const label = (l: { name: string; version?: string; path: string }) => `${l.name}${l.version ? ` ${l.version}` : ''} (${l.path})`;
  if (first) out.push(`  What to do about ${label(first)}${more.length ? ` and ${more.map(label).join(', ')}` : ''}:`);
  else out.push('  What to do:');
  for (const line of remedyLines(first, mode, worst)) out.push(`    ${line}`);
  return out;
}

export interface ScanTextInput {
  result: ScanResult;
  images: ImageReport[];
  imageErrors: ImageError[];
  unjudged: Unjudged[];
  warnings: string[];
  mode: VsyscallMode;
  modeSource: string;
  all: boolean;
  slow?: SlowdownFor;
  /** The directory scan ran (paths given, or nothing else): its blocks and summary are shown. */
  showPaths: boolean;
}

/** Blocks for files with their own uses (or errors), then one group per cause, then clean files with --all. */
function formatFiles(files: readonly ScannedFile[], mode: VsyscallMode, all: boolean, slow: SlowdownFor | undefined, layers?: ImageReport['layers'], indent = ''): string[] {
  const out: string[] = [];
  const showRoot = new Set(files.map((f) => f.root)).size > 1;
  const { causes, grouped } = causesOf(files, mode, slow);
  const notOk = files.filter((f) => !grouped.has(f) && (f.class !== 'clean' || f.error || (f.through?.length ?? 0) > 0 || f.verdicts[mode].outcome !== 'ok'));
  // Programs first (they are what crashes), then libraries.
  notOk.sort((a, b) => OUTCOME_RANK[b.verdicts[mode].outcome] - OUTCOME_RANK[a.verdicts[mode].outcome] || Number(isProgram(b.identity)) - Number(isProgram(a.identity)));
  const layerOf = layers && layers.length > 1 ? (p: string) => {
    const f = files.find((x) => x.path === p);
    return f?.layer === undefined ? '' : ` (layer ${f.layer + 1})`;
  } : undefined;
  for (const c of causes) out.push(...formatCause(c, mode, all, layerOf, layers ? (p) => p : displayPath).map((l) => indent + l), '');
  const shownBlocks = all ? notOk : notOk.slice(0, 12);
  for (const f of shownBlocks) out.push(...formatFile(f, mode, layers, showRoot).map((l) => indent + l), '');
  if (shownBlocks.length < notOk.length) out.push(`${indent}… ${notOk.length - shownBlocks.length} more files with uses of their own (--all or --json lists them)`, '');
  if (all) {
    const clean = files.filter((f) => !grouped.has(f) && !notOk.includes(f));
    for (const f of clean) out.push(`${indent}${MARK.ok} ${f.path} — ${f.identity ? describeIdentity(f.identity) : 'ELF'}${layers ? ` [${layerName(f.layer, layers)}]` : ''}: ${f.verdicts[mode].why}`);
    if (clean.length) out.push('');
  }
  return out;
}

export function formatScanText(x: ScanTextInput): string {
  const out: string[] = [];
  for (const img of x.images) out.push(formatImage(img, x.mode, x.all, x.slow).trimEnd(), '');
  for (const e of x.imageErrors) out.push(`! ${e.ref}: ${e.code}: ${e.message}`, '');
  const r = x.result;
  if (x.showPaths) {
    out.push(...formatFiles(r.files, x.mode, x.all, x.slow));
    const s = r.summary;
    const o = s.byOutcome[x.mode];
    const mb = s.bytes / 1e6;
    const roots = Object.entries(s.roots);
    const rootText = roots.length <= 1 ? `root ${displayPath(s.root)}` : `roots ${roots.map(([k, n]) => `${displayPath(k)} (${n})`).join(', ')}`;
    out.push(`${s.elfFiles} ELF files of ${s.files} (${mb.toFixed(1)} MB) in ${s.seconds.toFixed(2)} s, ${(mb / Math.max(s.seconds, 1e-6)).toFixed(0)} MB/s; judged in ${rootText}`);
    out.push(`under vsyscall=${x.mode} (${x.modeSource}): ${o.crash} crash, ${o.slow} slow, ${o.review} to review, ${o.fallback} fallback only, ${o.ok} ok${s.errors ? `; ${s.errors} could not be read or judged` : ''}`);
    const listed = r.files.filter((f) => x.all || f.class !== 'clean' || f.error || (f.through?.length ?? 0) > 0 || f.verdicts[x.mode].outcome !== 'ok').length;
    if (!x.all && listed < r.files.length) out.push(`(${r.files.length - listed} clean files not listed; --all lists them)`);
    if (s.skipped.special > 0) out.push(`skipped ${s.skipped.special} special file(s) (fifos, sockets, devices: no code in them): ${s.special.join(', ')}${s.skipped.special > s.special.length ? ', …' : ''}`);
  } else {
    out.push(`${x.images.length} image(s), ${x.imageErrors.length} error(s); verdicts for vsyscall=${x.mode} (${x.modeSource})`);
  }
  const worst = [...r.files.map((f) => f.verdicts[x.mode].outcome), ...x.images.map((i) => i.verdicts[x.mode].outcome)].reduce<Outcome>((a, b) => (OUTCOME_RANK[b] > OUTCOME_RANK[a] ? b : a), 'ok');
  out.push(...formatAdvice(worst, x.mode, affectingLibcs(r.files, x.images, x.mode)));
  if (x.unjudged.length > 0) {
    out.push('', `could not be read or judged (${x.unjudged.length}; exit status 3 unless --fail-on found something):`);
    for (const u of x.unjudged) out.push(`  ! ${[u.image, u.path].filter(Boolean).join(': ')}: ${u.code}: ${u.message.replace(`${u.path}: `, '')}`);
  }
  return out.join('\n') + '\n';
}

/** The libcs behind crash and slow verdicts (named in the advice). */
function affectingLibcs(files: readonly ScannedFile[], images: readonly ImageReport[], mode: VsyscallMode): { name: string; version?: string; path: string }[] {
  const out = new Map<string, { name: string; version?: string; path: string }>();
  const bad = (f: ScannedFile) => OUTCOME_RANK[f.verdicts[mode].outcome] >= OUTCOME_RANK.slow;
  const add = (f: ScannedFile) => {
    const libc = f.identity?.libc;
    if (libc && f.identity?.type !== 'executable' && /^(e?glibc|libc)/.test(libc.name) && f.findings.length > 0) out.set(f.path, { name: libc.name, ...(libc.version ? { version: libc.version } : {}), path: f.path });
  };
  for (const f of [...files, ...images.flatMap((i) => i.files)]) {
    if (!bad(f)) continue;
    add(f);
    for (const t of f.through ?? []) {
      if (out.has(t.libraryPath)) continue;
      // Known only by its file name here (libc-2.13.so), unless it was scanned too (below).
      const version = /^lib[a-z]+-(\d+\.\d+(?:\.\d+)?)\.so$/.exec(t.library)?.[1];
      out.set(t.libraryPath, { name: 'glibc', ...(version ? { version } : {}), path: t.libraryPath });
    }
  }
  // Images name their libc, and a scanned library has its identity: use them for the paths they cover.
  for (const img of images) if (img.libc && out.has(img.libc.path)) out.set(img.libc.path, { ...img.libc });
  for (const f of files) {
    const libc = f.identity?.libc;
    if (libc && out.has(f.path)) out.set(f.path, { name: libc.name, ...(libc.version ? { version: libc.version } : {}), path: f.path });
  }
  const inImages = new Set(images.flatMap((i) => i.files.flatMap((f) => [f.path, ...(f.through ?? []).map((t) => t.libraryPath)])));
  for (const [k, v] of out) if (!inImages.has(k)) out.set(k, { ...v, path: displayPath(v.path) });
  return [...out.values()];
}

/** What running the entrypoint under `vsys run --as none` showed. */
export function formatEntrypointRun(r: EntrypointRun): string {
  if (r.error) return `run under vsys run --as none: could not be run (${r.error})`;
  const f = r.first;
  const where = f ? `the ${f.entry} entry, by ${f.process}${f.file ? `, from ${f.file}${f.address ? ` (+${f.address}${f.function ? `, in ${f.function}` : ''})` : ''}` : ''}` : '';
  if (r.wouldCrash) return `confirmed by running it (vsys run --as none, ${r.seconds} s): killed at the first call of ${where}; exit status ${r.status}`;
  if (r.timedOut) return `run under vsys run --as none: no call of the page in ${r.seconds} s (stopped then; later calls not seen)`;
  return `run under vsys run --as none: ran to completion (exit status ${r.status}) without calling the page`;
}

/** One image: identity, its entrypoint judged first, the verdict per mode, then causes and files. */
export function formatImage(img: ImageReport, mode: VsyscallMode, all = false, slow?: SlowdownFor): string {
  const v = img.verdicts[mode];
  const os = img.os?.prettyName ?? img.os?.id ?? 'unknown OS';
  const libc = img.libc ? `${img.libc.name}${img.libc.version ? ` ${img.libc.version}` : ''} (${img.libc.path})` : 'no libc found';
  const mb = img.layers.reduce((a, l) => a + l.bytes, 0) / 1e6;
  const out = [
    `${MARK[v.outcome]} image ${img.ref} [${img.platform}] — ${os}, ${libc}; ${img.layers.length} layers, ${mb.toFixed(1)} MB, ${img.elfFiles} ELF files`,
  ];
  const ep = img.entrypoint;
  if (ep) {
    const ev = ep.verdicts[mode];
    const judged = ep.judged && ep.judged !== ep.path ? ` (a script run by ${ep.judged})` : '';
    out.push(`    entrypoint ${JSON.stringify(ep.argv)}${ep.path ? ` = ${ep.path}` : ''}${judged}: ${MARK[ev.outcome]} ${ev.outcome} under vsyscall=${mode}: ${ev.why}`);
    if (ep.run) out.push(`    ${formatEntrypointRun(ep.run)}`);
    else if (ev.outcome === 'crash' || img.verdicts.none.outcome === 'crash') out.push(`    see it for real, here: vsys run --as none --image ${img.input ?? img.ref}`);
  }
  out.push(`    ${VSYSCALL_MODES.map((m) => `${m}: ${img.verdicts[m].outcome}`).join(' · ')}`, `    → ${v.why}`);
  if (img.skippedPlatforms?.length) out.push(`    (platforms skipped: ${img.skippedPlatforms.join(', ')})`);
  out.push('', ...formatFiles(img.files, mode, all, slow, img.layers, '    '));
  for (const p of img.problems) out.push(`    ! ${p.path}: ${p.code}: ${p.message}`);
  return out.join('\n') + '\n\n';
}

const RULES: Record<Finding['kind'] | 'import' | 'not-analysed', { name: string; text: string; level: 'error' | 'warning' | 'note' }> = {
  'direct-call': { name: 'VsyscallDirectCall', text: 'Calls the legacy vsyscall page directly: SIGSEGV under vsyscall=none, emulated (slow) under xonly/emulate.', level: 'error' },
  misaligned: { name: 'VsyscallMisalignedCall', text: 'Calls into the vsyscall page at an address that is not an entry start: SIGSEGV in every mode.', level: 'error' },
  indirect: { name: 'VsyscallIndirectCall', text: 'Calls the vsyscall page from a function reached only through a pointer (its address is taken; nothing calls it directly): runs only if that pointer is used.', level: 'warning' },
  fallback: { name: 'VsyscallFallback', text: 'Uses the vsyscall page only when the vDSO lacks the symbol.', level: 'note' },
  'data-ref': { name: 'VsyscallDataReference', text: 'Holds a vsyscall page address as data; no call through it was found.', level: 'warning' },
  import: { name: 'VsyscallThroughImport', text: 'Imports a library function that calls the legacy vsyscall page: the program crashes (vsyscall=none) or is slow (xonly, emulate) if it calls that function.', level: 'error' },
  'not-analysed': { name: 'VsyscallNotAnalysed', text: 'The file could not be fully analysed: its verdict is unknown.', level: 'warning' },
};

const LEVEL: Record<Outcome, 'error' | 'warning' | 'note' | 'none'> = { crash: 'error', slow: 'warning', review: 'warning', fallback: 'note', ok: 'none' };

type RuleId = keyof typeof RULES;

/**
 * SARIF 2.1.0: a result per finding (at the file, address and byte offset), and for every file whose
 * verdict in `mode` is not ok without a site of its own, one result at the file with its import
 * chain; inputs that could not be read are the run's tool notifications.
 */
export function formatSarif(r: ScanResult, mode: VsyscallMode, version: string, images: ImageReport[] = [], unjudged: Unjudged[] = [], slow?: SlowdownFor): string {
  const ids = Object.keys(RULES) as RuleId[];
  // Files inside images are named IMAGE-REF/path (relative URIs, one per image).
  const all = [...r.files.map((f) => ({ f, uri: pathToUri(f.path) })), ...images.flatMap((img) => img.files.map((f) => ({ f, uri: imageUri(img.ref, f.path) })))];
  const rule = (id: RuleId) => ({ ruleId: `vsys/${id}`, ruleIndex: ids.indexOf(id) });
  const verdicts = (f: ScannedFile) => Object.fromEntries(VSYSCALL_MODES.map((m) => [m, f.verdicts[m].outcome]));
  const results = all.flatMap(({ f, uri }): Record<string, unknown>[] => {
    const v = f.verdicts[mode];
    const own = f.findings.map((x) => ({
      ...rule(x.kind),
      level: RULES[x.kind].level,
      // Each site's own verdict (not the file's worst): the getcpu site is not "crashes if time() is called".
      message: { text: `${x.kind} (${x.entry}) at ${hex(x.address)}: ${x.useInstruction ? `${x.instruction}; ${x.useInstruction}` : x.instruction}${takenAt(x)}. Under vsyscall=${mode}: ${siteVerdict(x, mode, slow).why}.` },
      locations: [{
        physicalLocation: {
          artifactLocation: { uri },
          region: { byteOffset: x.offset, byteLength: 1 },
          address: { absoluteAddress: Number(x.address), ...(x.function?.name ? { fullyQualifiedName: x.function.name } : {}) },
        },
        ...(x.function?.name ? { logicalLocations: [{ name: x.function.name, kind: 'function' }] } : {}),
      }],
      properties: { entry: x.entry, target: hex(x.target), use: x.use, outcome: v.outcome, verdicts: verdicts(f) },
    }));
    if (v.outcome === 'ok' || own.length > 0) return own;
    const at = { locations: [{ physicalLocation: { artifactLocation: { uri } } }] };
    if (f.error) {
      return [{ ...rule('not-analysed'), level: LEVEL[v.outcome], message: { text: `${f.path}: ${v.why}.` }, ...at, properties: { code: f.error.code, outcome: v.outcome, verdicts: verdicts(f) } }];
    }
    const chains = (f.through ?? []).map((t) => `${t.how === 'import' ? path.basename(f.path) : t.importer} imports ${t.symbol}${t.version ? `@${t.version}` : ''} from ${t.libraryPath}${t.export.chain.length > 1 ? ` (${t.export.chain.join(' → ')})` : ''}`);
    return [{
      ...rule('import'),
      level: LEVEL[v.outcome],
      message: { text: `Under vsyscall=${mode}: ${v.why}. Import chain: ${chains.join('; ')}.` },
      ...at,
      properties: { outcome: v.outcome, certainty: v.certainty, ...(v.condition ? { condition: v.condition } : {}), chain: chains, verdicts: verdicts(f) },
    }];
  });
  const notifications = unjudged.map((u) => ({
    level: 'error',
    message: { text: `${[u.image, u.path].filter(Boolean).join(': ')}: ${u.code}: ${u.message}` },
    ...(u.path && !u.image ? { locations: [{ physicalLocation: { artifactLocation: { uri: pathToUri(u.path) } } }] } : {}),
    properties: { code: u.code },
  }));
  const doc = {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [{
      tool: {
        driver: {
          name: 'vsys', version, informationUri: 'https://github.com/vsys/vsys',
          rules: ids.map((k) => ({ id: `vsys/${k}`, name: RULES[k].name, shortDescription: { text: RULES[k].text }, defaultConfiguration: { level: RULES[k].level } })),
        },
      },
      invocations: [{ executionSuccessful: unjudged.length === 0, ...(notifications.length ? { toolExecutionNotifications: notifications } : {}) }],
      results,
    }],
  };
  return JSON.stringify(doc, null, 2) + '\n';
}

function siteVerdict(x: Finding, mode: VsyscallMode, slow: SlowdownFor | undefined): ModeVerdict {
  return verdictOfUse(useOf(x), mode, slow);
}

function imageUri(ref: string, p: string): string {
  return `${encodeURIComponent(ref)}${p.split('/').map(encodeURIComponent).join('/')}`;
}

function pathToUri(p: string): string {
  return `file://${path.resolve(p).split('/').map(encodeURIComponent).join('/')}`;
}
