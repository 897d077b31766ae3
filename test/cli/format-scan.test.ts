// The scan's text and SARIF renderings from scan results built here (no file is read): every line
// of a finding, a file block, a cause group and the summary exact, with the edge cases (stripped
// functions, data words, indirect sites with long address lists, 12+ exports, 20+ programs, errors,
// an empty scan, unjudged inputs, image errors); SARIF's results, rules and notifications.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { displayPath, formatAdvice, formatCause, formatFile, formatFinding, formatSarif, formatScanText, type ScanTextInput } from '../../src/cli/format-scan.js';
import type { Cause } from '../../src/cli/scan-records.js';
import type { Finding } from '../../src/scan/find-uses.js';
import type { ScannedFile, ScanResult } from '../../src/scan/scan.js';
import type { ModeVerdict, Outcome } from '../../src/scan/verdict.js';
import type { VsyscallMode } from '../../src/model/modes.js';
import { remedyLines } from '../../src/model/remedies.js';

/** Imports are packed (wire.ts) and the formatters never read them. */
const NO_IMPORTS = {} as ScannedFile['imports'];

function verdicts(o: Record<VsyscallMode, Outcome>, why: (m: VsyscallMode) => string = (m) => `why ${m}`): Record<VsyscallMode, ModeVerdict> {
  const v = (m: VsyscallMode): ModeVerdict => ({ outcome: o[m], why: why(m), certainty: o[m] === 'ok' ? 'certain' : 'conditional', ...(o[m] === 'ok' ? {} : { condition: 'time() is called' }) });
  return { none: v('none'), xonly: v('xonly'), emulate: v('emulate'), native: v('native') };
}

const BAD = { none: 'crash', xonly: 'slow', emulate: 'slow', native: 'ok' } as const;
const OK = { none: 'ok', xonly: 'ok', emulate: 'ok', native: 'ok' } as const;

const timeSite = (): Finding => ({
  kind: 'direct-call', use: 'register-call', entry: 'time', target: 0xffffffffff600400n, offset: 0x9cf54, address: 0x9cf54n,
  instruction: 'mov $0xffffffffff600400,%rax', useInstruction: 'call *%rax', useAddress: 0x9cf5bn,
  function: { name: 'time', start: 0x9cf50n, end: 0x9cf70n, source: 'dynsym' },
});

function libc(): ScannedFile {
  return {
    path: '/r/lib/libc-2.13.so', size: 1_600_000, class: 'direct', imports: NO_IMPORTS,
    identity: { class: 64, machine: 'x86-64', type: 'shared-library', linkage: 'dynamic', needed: ['ld-linux-x86-64.so.2'], soname: 'libc.so.6', stripped: true, warnings: [], libc: { name: 'eglibc', version: '2.13', source: 'banner' } },
    findings: [timeSite()],
    affectedExports: [{ kind: 'direct-call', entry: 'time', target: 0xffffffffff600400n, chain: ['time'], name: 'time', versions: ['GLIBC_2.2.5'] }],
    verdicts: verdicts(BAD, (m) => `libc ${m}`),
  };
}

function program(name: string, outcome: typeof BAD | typeof OK = BAD): ScannedFile {
  return {
    path: `/r/usr/bin/${name}`, size: 9000, class: 'clean', imports: NO_IMPORTS, findings: [], affectedExports: [],
    identity: { class: 64, machine: 'x86-64', type: 'executable', linkage: 'dynamic', needed: ['libc.so.6'], interpreter: '/lib64/ld-linux-x86-64.so.2', stripped: true, warnings: [], libc: { name: 'glibc', version: '2.3', source: 'version-needs' } },
    through: outcome === OK ? [] : [{ symbol: 'time', version: 'GLIBC_2.2.5', library: 'libc-2.13.so', libraryPath: '/r/lib/libc-2.13.so', how: 'import', importer: name, export: libc().affectedExports[0]! }],
    verdicts: verdicts(outcome, (m) => `${name} ${m}`),
  };
}

function result(files: ScannedFile[], over: Partial<ScanResult['summary']> = {}): ScanResult {
  const byOutcome = Object.fromEntries((['none', 'xonly', 'emulate', 'native'] as const).map((m) => {
    const counts: Record<Outcome, number> = { crash: 0, slow: 0, review: 0, fallback: 0, ok: 0 };
    for (const f of files) counts[f.verdicts[m].outcome]++;
    return [m, counts];
  })) as ScanResult['summary']['byOutcome'];
  return {
    files, errors: [], warnings: [],
    summary: {
      files: files.length + 3, elfFiles: files.length, notElf: 3, errors: 0, skipped: { special: 0 } as ScanResult['summary']['skipped'], bytes: 12_345_678, seconds: 0.5,
      root: '/r', roots: { '/r': files.length }, special: [], byClass: {}, byOutcome, ...over,
    },
  };
}

test('displayPath: relative below the working directory only', () => {
  assert.equal(displayPath(path.join(process.cwd(), 'a', 'b.so')), path.join('a', 'b.so'));
  assert.equal(displayPath(process.cwd()), process.cwd(), 'the directory itself stays absolute (not "")');
  assert.equal(displayPath(path.dirname(process.cwd())), path.dirname(process.cwd()), 'no "../"');
  if (process.cwd() !== '/') assert.equal(displayPath('/nonexistent-elsewhere/x'), '/nonexistent-elsewhere/x', 'outside the working directory: as given');
});

test('formatFinding: kind, entry and address in columns; the use; where (symbol, FDE range, data word); indirect sites list 3 places then count', () => {
  assert.equal(formatFinding(timeSite()), 'direct-call time              0x9cf54  mov $0xffffffffff600400,%rax; call *%rax  in time');
  const fde: Finding = { ...timeSite(), address: 0x4e1394n, function: { start: 0x4e1390n, end: 0x4e13b0n, source: 'eh_frame' } };
  assert.equal(formatFinding(fde), 'direct-call time             0x4e1394  mov $0xffffffffff600400,%rax; call *%rax  in the function at 0x4e1390 (FDE 0x4e1390–0x4e13b0)');
  const word: Finding = { kind: 'data-ref', use: 'data-word', entry: 'getcpu', target: 0xffffffffff600800n, offset: 0x3010, address: 0x4010n, instruction: '.quad 0xffffffffff600800', dataWord: { address: 0x4010n, symbol: 'vs_word' } };
  assert.equal(formatFinding(word), 'data-ref    getcpu             0x4010  .quad 0xffffffffff600800  word vs_word');
  const bare: Finding = { ...word, dataWord: { address: 0x4010n } };
  assert.equal(formatFinding(bare), 'data-ref    getcpu             0x4010  .quad 0xffffffffff600800  ');
  const through: Finding = { ...timeSite(), use: 'memory-call', instruction: 'mov 0x2e8a(%rip),%rax', useInstruction: 'call *%rax', dataWord: { address: 0x4018n, symbol: 'vsys_time_ptr' }, function: { name: 'call_through_word', start: 0x1130n, end: 0x1150n, source: 'symtab' } };
  assert.equal(formatFinding(through), 'direct-call time              0x9cf54  mov 0x2e8a(%rip),%rax; call *%rax  in call_through_word (via the word at 0x4018 vsys_time_ptr)');
  const taken = (n: number) => Array.from({ length: n }, (_, i) => ({ address: BigInt(0x2000 + i * 16), instruction: `lea -0x${(i + 1).toString(16)}0(%rip),%rax`, ...(i === 1 ? {} : { function: `f${i}` }) }));
  const indirect: Finding = { ...timeSite(), kind: 'indirect', addressTakenAt: taken(5) };
  assert.equal(formatFinding(indirect), 'indirect    time              0x9cf54  mov $0xffffffffff600400,%rax; call *%rax  in time; its address taken at 0x2000 in f0 (lea -0x10(%rip),%rax), 0x2010 (lea -0x20(%rip),%rax), 0x2020 in f2 (lea -0x30(%rip),%rax), … 2 more');
  assert.equal(formatFinding({ ...indirect, addressTakenAt: taken(3) }).endsWith('0x2020 in f2 (lea -0x30(%rip),%rax)'), true);
  assert.equal(formatFinding({ ...indirect, addressTakenAt: [] }), 'indirect    time              0x9cf54  mov $0xffffffffff600400,%rax; call *%rax  in time');
  const misaligned: Finding = { ...timeSite(), kind: 'misaligned', entry: 'misaligned', target: 0xffffffffff600010n, useInstruction: undefined } as Finding;
  delete misaligned.useInstruction;
  assert.equal(formatFinding(misaligned), 'misaligned  misaligned        0x9cf54  mov $0xffffffffff600400,%rax  in time');
});

test('formatFile: a library block with its site, exports, verdicts per mode and the reason in the chosen mode', () => {
  assert.deepEqual(formatFile(libc(), 'none'), [
    '✗ /r/lib/libc-2.13.so — shared library, eglibc 2.13, stripped',
    '    direct-call time              0x9cf54  mov $0xffffffffff600400,%rax; call *%rax  in time',
    '    exports that reach it: time',
    '    none: crash · xonly: slow · emulate: slow · native: ok',
    '    → vsyscall=none: libc none',
  ]);
  assert.equal(formatFile(libc(), 'xonly')[0], '! /r/lib/libc-2.13.so — shared library, eglibc 2.13, stripped');
  assert.equal(formatFile(libc(), 'native')[0], '✓ /r/lib/libc-2.13.so — shared library, eglibc 2.13, stripped');
});

test('formatFile: more than 12 exports are cut with a count; chains shown; imports, missing libraries, errors, root and layer', () => {
  const f = libc();
  f.affectedExports = Array.from({ length: 15 }, (_, i) => ({ ...f.affectedExports[0]!, name: `e${String(i).padStart(2, '0')}`, chain: i === 0 ? ['e00', 'helper', 'time'] : [`e${i}`] }));
  f.root = '/elsewhere/root';
  f.layer = 1;
  f.missingLibraries = ['libfoo.so.1', 'libbar.so.2'];
  f.error = { code: 'ELF_TRUNCATED', message: 'cut' };
  f.through = [
    { symbol: 'time', version: 'GLIBC_2.2.5', library: 'libc-2.13.so', libraryPath: '/r/lib/libc-2.13.so', how: 'import', importer: 'x', export: libc().affectedExports[0]! },
    { symbol: 'clock', library: 'librt.so.1', libraryPath: '/r/lib/librt.so.1', how: 'library-import', importer: 'libdep.so', export: { ...libc().affectedExports[0]!, kind: 'fallback', entry: 'gettimeofday' } },
  ];
  const layers = [{ digest: 'sha256:' + 'a'.repeat(64), bytes: 1, files: 1, elfFiles: 1, cached: false }, { digest: 'sha256:0123456789ab' + 'c'.repeat(52), bytes: 1, files: 1, elfFiles: 1, cached: false }];
  const lines = formatFile(f, 'xonly', layers);
  assert.deepEqual(lines, [
    '! /r/lib/libc-2.13.so — shared library, eglibc 2.13, stripped [root /elsewhere/root, layer 2/2 sha256:0123456789ab]',
    '    direct-call time              0x9cf54  mov $0xffffffffff600400,%rax; call *%rax  in time',
    '    exports that reach it: e00 (→ helper → time), e01, e02, e03, e04, e05, e06, e07, e08, e09, e10, e11, … 3 more',
    '    imports time@GLIBC_2.2.5 from /r/lib/libc-2.13.so (direct-call, time)',
    '    libdep.so imports clock from /r/lib/librt.so.1 (fallback, gettimeofday)',
    '    libraries not found in the root: libfoo.so.1, libbar.so.2',
    '    could not be fully analysed: ELF_TRUNCATED',
    '    none: crash · xonly: slow · emulate: slow · native: ok',
    '    → vsyscall=xonly: libc xonly',
  ]);
  // The root "/" and showRoot=false say nothing of the root; a file with no identity is "ELF".
  f.root = '/';
  delete f.layer;
  delete f.identity;
  assert.equal(formatFile(f, 'xonly')[0], '! /r/lib/libc-2.13.so — ELF');
  f.root = '/elsewhere';
  assert.equal(formatFile(f, 'xonly', undefined, false)[0], '! /r/lib/libc-2.13.so — ELF');
});

const cause = (programs: number, libraries: number, outcome: Outcome = 'crash'): Cause => ({
  outcome, library: 'libc-2.13.so', libraryPath: '/r/lib/libc-2.13.so', function: 'time', entry: 'time',
  programs: Array.from({ length: programs }, (_, i) => `/r/usr/bin/p${i}`), libraries: Array.from({ length: libraries }, (_, i) => `/r/usr/lib/l${i}.so`),
});

test('formatCause: singular and plural, programs and libraries, a long list cut at 20 unless --all', () => {
  const show = (p: string) => p;
  assert.deepEqual(formatCause(cause(1, 0), 'none', false, undefined, show), [
    '✗ 1 program crashes under vsyscall=none if it calls time() of libc-2.13.so (/r/lib/libc-2.13.so, the time entry), through their imports:',
    '    p0',
  ]);
  assert.deepEqual(formatCause(cause(2, 1, 'slow'), 'xonly', false, undefined, show), [
    '! 2 programs run slowly under vsyscall=xonly if they call time() of libc-2.13.so (/r/lib/libc-2.13.so, the time entry), through their imports:',
    '    p0, p1',
    '    and 1 library that import it: l0.so',
  ]);
  assert.deepEqual(formatCause(cause(0, 1, 'review'), 'xonly', false, undefined, show), [
    '? 1 library needs review under vsyscall=xonly if they call time() of libc-2.13.so (/r/lib/libc-2.13.so, the time entry), through their imports:',
    '    l0.so',
  ]);
  assert.deepEqual(formatCause(cause(0, 3, 'fallback'), 'none', false, undefined, show), [
    '~ 3 libraries fall back under vsyscall=none if they call time() of libc-2.13.so (/r/lib/libc-2.13.so, the time entry), through their imports:',
    '    l0.so, l1.so, l2.so',
  ]);
  const long = formatCause(cause(25, 0), 'none', false, undefined, show);
  assert.equal(long[1], `    ${Array.from({ length: 20 }, (_, i) => `p${i}`).join(', ')}, … 5 more (--all or --json lists them)`);
  assert.equal(formatCause(cause(25, 0), 'none', true, undefined, show)[1], `    ${Array.from({ length: 25 }, (_, i) => `p${i}`).join(', ')}`);
  assert.equal(formatCause(cause(1, 0), 'none', false, (p) => ` (layer ${p.length})`, show)[1], '    p0 (layer 13)', 'the layer of the full path, shown after its basename');
});

test('formatAdvice: nothing unless a crash or a slow verdict; the libcs behind it named; the remedies indented', () => {
  assert.deepEqual(formatAdvice('ok', 'none', []), []);
  assert.deepEqual(formatAdvice('review', 'none', []), []);
  assert.deepEqual(formatAdvice('fallback', 'none', [{ name: 'glibc', version: '2.16', path: '/x' }]), []);
  const libcs = [{ name: 'eglibc', version: '2.13', path: '/r/lib/libc-2.13.so' }, { name: 'glibc', path: '/s/lib/libc.so.6' }];
  assert.deepEqual(formatAdvice('crash', 'none', libcs), [
    '',
    'These verdicts are predictions from the code: a program crashes (or pays for emulation) only if it calls the function on the way it runs.',
    '  To see what a command really does on this host: vsys trace -- COMMAND counts every vsyscall it makes (a none kernel kills it at the first).',
    '  To see what a vsyscall=none kernel does to it, here and without root: vsys run --as none -- COMMAND (or --root DIR, or --image IMAGE).',
    '  What to do about eglibc 2.13 (/r/lib/libc-2.13.so) and glibc (/s/lib/libc.so.6):',
    ...remedyLines(libcs[0], 'none', 'crash').map((l) => `    ${l}`),
  ]);
  const none = formatAdvice('slow', 'xonly', []);
  assert.equal(none[4], '  What to do:');
  assert.deepEqual(none.slice(5), remedyLines(undefined, 'xonly', 'slow').map((l) => `    ${l}`));
  assert.ok(remedyLines(libcs[0], 'none', 'crash').length > 0, 'remedies exist for glibc 2.13 under none');
});

test('formatScanText: an empty scan is the summary alone', () => {
  const x: ScanTextInput = { result: result([]), images: [], imageErrors: [], unjudged: [], warnings: [], mode: 'xonly', modeSource: 'this host', all: false, showPaths: true };
  assert.equal(formatScanText(x), [
    '0 ELF files of 3 (12.3 MB) in 0.50 s, 25 MB/s; judged in root /r',
    'under vsyscall=xonly (this host): 0 crash, 0 slow, 0 to review, 0 fallback only, 0 ok',
    '',
  ].join('\n'));
});

test('formatScanText: a cause groups the programs, the library gets its block, clean files counted, advice and unjudged inputs last', () => {
  const files = [libc(), program('date'), program('bash'), program('dash', OK)];
  const r = result(files, { errors: 1, skipped: { special: 3 } as ScanResult['summary']['skipped'], special: ['/r/dev/null', '/r/run/fifo'] });
  const x: ScanTextInput = {
    result: r, images: [], imageErrors: [], warnings: [], mode: 'none', modeSource: '--mode', all: false, showPaths: true,
    unjudged: [{ path: '/r/usr/bin/broken', code: 'ELF_TRUNCATED', message: '/r/usr/bin/broken: section headers past the end' }],
  };
  const lines = formatScanText(x).split('\n');
  assert.deepEqual(lines.slice(0, 12), [
    '✗ 2 programs crash under vsyscall=none if they call time() of libc-2.13.so (/r/lib/libc-2.13.so, the time entry), through their imports:',
    '    date, bash',
    '',
    '✗ /r/lib/libc-2.13.so — shared library, eglibc 2.13, stripped',
    '    direct-call time              0x9cf54  mov $0xffffffffff600400,%rax; call *%rax  in time',
    '    exports that reach it: time',
    '    none: crash · xonly: slow · emulate: slow · native: ok',
    '    → vsyscall=none: libc none',
    '',
    '4 ELF files of 7 (12.3 MB) in 0.50 s, 25 MB/s; judged in root /r',
    'under vsyscall=none (--mode): 3 crash, 0 slow, 0 to review, 0 fallback only, 1 ok; 1 could not be read or judged',
    '(1 clean files not listed; --all lists them)',
  ]);
  assert.equal(lines[12], 'skipped 3 special file(s) (fifos, sockets, devices: no code in them): /r/dev/null, /r/run/fifo, …');
  assert.equal(lines[13], '');
  assert.match(lines[15]!, /^ {2}To see what a command really does/);
  assert.match(lines[16]!, /^ {2}To see what a vsyscall=none kernel does to it, here and without root: vsys run --as none/);
  assert.equal(lines[17], '  What to do about eglibc 2.13 (/r/lib/libc-2.13.so):');
  assert.deepEqual(lines.slice(-4), ['', 'could not be read or judged (1; exit status 3 unless --fail-on found something):', '  ! /r/usr/bin/broken: ELF_TRUNCATED: section headers past the end', '']);
  // --all lists the clean file too, with its reason.
  const all = formatScanText({ ...x, all: true });
  assert.match(all, /^✓ \/r\/usr\/bin\/dash — dynamic executable, needs glibc ≥ 2\.3, stripped: dash none$/m);
  assert.doesNotMatch(all, /clean files not listed/);
});

test('formatScanText: more than 12 files with uses of their own are cut with a count; several roots are counted', () => {
  const files = Array.from({ length: 14 }, (_, i) => ({ ...libc(), path: `/r/lib/l${i}.so` }));
  const r = result(files, { roots: { '/r': 10, '/s': 4 } });
  const text = formatScanText({ result: r, images: [], imageErrors: [], unjudged: [], warnings: [], mode: 'none', modeSource: 'x', all: false, showPaths: true });
  assert.equal(text.match(/^✗ \/r\/lib\/l\d+\.so/gm)?.length, 12);
  assert.match(text, /^… 2 more files with uses of their own \(--all or --json lists them\)$/m);
  assert.match(text, /; judged in roots \/r \(10\), \/s \(4\)$/m);
});

test('formatScanText without paths: images only, image errors listed', () => {
  const text = formatScanText({ result: result([]), images: [], imageErrors: [{ ref: 'debian:wheezy', code: 'IMAGE_NOT_FOUND', message: 'no such image' }], unjudged: [], warnings: [], mode: 'none', modeSource: '--mode', all: false, showPaths: false });
  assert.equal(text, '! debian:wheezy: IMAGE_NOT_FOUND: no such image\n\n0 image(s), 1 error(s); verdicts for vsyscall=none (--mode)\n');
});

test('formatSarif: one result per site with its own verdict, an import result for a program, not-analysed for an error, notifications for unjudged inputs', () => {
  const broken: ScannedFile = { ...program('broken'), through: [], error: { code: 'ELF_TRUNCATED', message: 'cut' }, verdicts: verdicts({ none: 'review', xonly: 'review', emulate: 'review', native: 'review' }, () => 'could not be read') };
  const r = result([libc(), program('date'), program('dash', OK), broken]);
  const doc = JSON.parse(formatSarif(r, 'none', '9.9.9', [], [{ path: '/r/x', code: 'IO_FAILED', message: 'EACCES' }]));
  assert.equal(doc.version, '2.1.0');
  const run = doc.runs[0];
  assert.equal(run.tool.driver.name, 'vsys');
  assert.equal(run.tool.driver.version, '9.9.9');
  const ids: string[] = run.tool.driver.rules.map((x: { id: string }) => x.id);
  assert.deepEqual(run.results.map((x: { ruleId: string }) => x.ruleId), ['vsys/direct-call', 'vsys/import', 'vsys/not-analysed']);
  for (const x of run.results) assert.equal(ids[x.ruleIndex], x.ruleId);
  const [site, imp, na] = run.results;
  assert.match(site.message.text, /^direct-call \(time\) at 0x9cf54: mov \$0xffffffffff600400,%rax; call \*%rax\. Under vsyscall=none: .+\.$/);
  assert.deepEqual(site.locations[0].physicalLocation, { artifactLocation: { uri: 'file:///r/lib/libc-2.13.so' }, region: { byteOffset: 0x9cf54, byteLength: 1 }, address: { absoluteAddress: 0x9cf54, fullyQualifiedName: 'time' } });
  assert.deepEqual(site.locations[0].logicalLocations, [{ name: 'time', kind: 'function' }]);
  assert.deepEqual(site.properties, { entry: 'time', target: '0xffffffffff600400', use: 'register-call', outcome: 'crash', verdicts: { none: 'crash', xonly: 'slow', emulate: 'slow', native: 'ok' } });
  assert.equal(imp.message.text, 'Under vsyscall=none: date none. Import chain: date imports time@GLIBC_2.2.5 from /r/lib/libc-2.13.so.');
  assert.equal(imp.locations[0].physicalLocation.artifactLocation.uri, 'file:///r/usr/bin/date');
  assert.equal(imp.properties.condition, 'time() is called');
  assert.equal(na.message.text, '/r/usr/bin/broken: could not be read.');
  assert.equal(na.properties.code, 'ELF_TRUNCATED');
  assert.equal(run.invocations[0].executionSuccessful, false);
  assert.deepEqual(run.invocations[0].toolExecutionNotifications, [{ level: 'error', message: { text: '/r/x: IO_FAILED: EACCES' }, locations: [{ physicalLocation: { artifactLocation: { uri: 'file:///r/x' } } }], properties: { code: 'IO_FAILED' } }]);
  // Nothing found, nothing unjudged: no results, a successful run, no notifications.
  const clean = JSON.parse(formatSarif(result([program('dash', OK)]), 'none', '1'));
  assert.deepEqual(clean.runs[0].results, []);
  assert.deepEqual(clean.runs[0].invocations, [{ executionSuccessful: true }]);
});
