// Reports crossing threads: imports packed into one string by the worker and unpacked on first read
// here give back exactly the imports analysed, through a real structured clone (a MessageChannel).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { extendReport, packResults, unpackResults } from '../../src/scan/wire.js';
import { analyseFile, type FileResult } from '../../src/scan/read-file.js';

function across(results: FileResult[]): FileResult[] {
  const packed = packResults(results);
  const { port1, port2 } = new MessageChannel();
  port1.postMessage({ results, packed });
  const got = receiveMessageOnPort(port2)?.message as { results: FileResult[]; packed: string[] };
  port1.close();
  return unpackResults(got.results, got.packed);
}

test('imports survive the trip: no version, an empty version, names holding the markers', () => {
  const imports = [
    { name: 'time', version: 'GLIBC_2.2.5' },
    { name: 'free' },
    { name: '=odd-', version: '' },
    { name: '-', version: '=' },
    { name: 'é\u00ff', version: 'GLIBC_2.2.5' },
  ];
  const report = { path: '/x', size: 1, class: 'clean' as const, findings: [], affectedExports: [], imports: imports.map((i) => ({ ...i })) };
  const [back] = across([{ kind: 'elf', report }, { kind: 'not-elf', path: '/y', size: 2 }]);
  assert.equal(back?.kind, 'elf');
  if (back?.kind !== 'elf') return;
  assert.deepEqual(back.report.imports, imports);
  assert.equal('version' in (back.report.imports[1] as object), false, 'no version stays absent, not empty');
  assert.deepEqual(JSON.parse(JSON.stringify(back.report)).imports, imports);
  back.report.imports = [{ name: 'replaced' }];
  assert.deepEqual(back.report.imports, [{ name: 'replaced' }]);
});

test('a real program\'s report is the same after the trip as before it', () => {
  const r = analyseFile('/usr/bin/ls');
  assert.equal(r.kind, 'elf');
  const before = structuredClone(r);
  const [after] = across([r]);
  assert.ok(before.kind === 'elf' && before.report.imports.length > 50, 'ls imports dozens of functions');
  assert.deepEqual(after, before);
});

test('a copy made with extendReport keeps the imports packed until read, then has them all; the original is left packed', () => {
  const r = analyseFile('/usr/bin/ls');
  assert.ok(r.kind === 'elf');
  const imports = structuredClone(r.report.imports);
  const [after] = across([r]);
  assert.ok(after?.kind === 'elf');
  const lazy = (o: object) => typeof Object.getOwnPropertyDescriptor(o, 'imports')?.get === 'function';
  assert.ok(lazy(after.report), 'unpacked only when read');
  const copy = extendReport(after.report, { path: '/elsewhere', verdicts: 1 });
  assert.ok(lazy(copy), 'copying does not unpack');
  assert.equal(copy.path, '/elsewhere');
  assert.equal(copy.verdicts, 1);
  assert.equal(after.report.path, '/usr/bin/ls');
  assert.deepEqual(copy.imports, imports);
  assert.ok(!lazy(copy), 'a plain property once read');
  assert.ok(lazy(after.report), 'reading the copy leaves the original packed');
  assert.deepEqual(after.report.imports, imports);
  assert.deepEqual(JSON.parse(JSON.stringify(copy)).imports, JSON.parse(JSON.stringify(imports)));
});

test('imports are made packed: a fresh report holds one string until read, and a worker sends that string without unpacking it', () => {
  const a = analyseFile('/usr/bin/ls');
  const b = analyseFile('/usr/bin/ls');
  assert.ok(a.kind === 'elf' && b.kind === 'elf');
  const lazy = (o: object) => typeof Object.getOwnPropertyDescriptor(o, 'imports')?.get === 'function';
  assert.ok(lazy(a.report) && lazy(b.report), 'packed until read');
  const [packed] = packResults([b]);
  assert.ok(typeof packed === 'string' && packed.includes('\0'), 'one string');
  assert.deepEqual(b.report.imports, [], 'the report itself then carries none (nothing for structured clone to copy)');
  const names = a.report.imports; // unpacked here, from a's own string
  assert.ok(names.length > 50 && names.some((i) => i.version?.startsWith('GLIBC_')));
  assert.deepEqual(unpackResults([b], [packed as string]), [a]);
});
