// Reports crossing threads: a report's imports are one string (Imports), made straight from the
// file's string table; through a real structured clone (a MessageChannel) and revived, they give
// back exactly the imports analysed, and JSON shows them as the array they stand for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { Imports } from '../../src/scan/wire.js';
import { reviveResults } from '../../src/scan/pool.js';
import { analyseFile } from '../../src/scan/read-file.js';
import type { FileResult } from '../../src/scan/types.js';

function across(results: FileResult[]): FileResult[] {
  const { port1, port2 } = new MessageChannel();
  port1.postMessage({ results });
  const got = receiveMessageOnPort(port2)?.message as { results: FileResult[] };
  port1.close();
  return reviveResults(got.results);
}

test('imports survive the trip: no version, an empty version, names holding the markers', () => {
  const imports = [
    { name: 'time', version: 'GLIBC_2.2.5' },
    { name: 'free' },
    { name: '=odd-', version: '' },
    { name: '-', version: '=' },
    { name: 'é\u00ff', version: 'GLIBC_2.2.5' },
  ];
  const report = { path: '/x', size: 1, class: 'clean' as const, findings: [], affectedExports: [], imports: Imports.of(imports) };
  const [back] = across([{ kind: 'elf', report }, { kind: 'not-elf', path: '/y', size: 2 }]);
  assert.equal(back?.kind, 'elf');
  if (back?.kind !== 'elf') return;
  assert.ok(back.report.imports instanceof Imports, 'revived');
  assert.deepEqual([...back.report.imports], imports);
  assert.equal('version' in (back.report.imports.list()[1] as object), false, 'no version stays absent, not empty');
  assert.deepEqual(JSON.parse(JSON.stringify(back.report)).imports, imports);
  assert.deepEqual(JSON.parse(JSON.stringify({ ...back.report })).imports, imports, 'a spread copy keeps them');
});

test('a real program\'s report is the same after the trip as before it, and its imports are what it imports', () => {
  const r = analyseFile('/usr/bin/ls');
  assert.equal(r.kind, 'elf');
  if (r.kind !== 'elf') return;
  const [after] = across([r]);
  assert.deepEqual(after, r);
  const list = r.report.imports.list();
  assert.ok(list.length > 50, 'ls imports dozens of functions');
  assert.ok(list.some((i) => i.name === 'opendir' && i.version?.startsWith('GLIBC_')), 'opendir@GLIBC_…');
  assert.deepEqual(after?.kind === 'elf' && after.report.imports.list(), list);
});

test('the trip carries one string per report, not an object per import', () => {
  const r = analyseFile('/usr/bin/ls');
  assert.ok(r.kind === 'elf');
  const { port1, port2 } = new MessageChannel();
  port1.postMessage({ results: [r] });
  const got = receiveMessageOnPort(port2)?.message as { results: FileResult[] };
  port1.close();
  const raw = (got.results[0] as Extract<FileResult, { kind: 'elf' }>).report.imports as unknown;
  assert.deepEqual(Object.keys(raw as object), ['packed'], 'only the string crossed');
  assert.equal(typeof (raw as { packed: unknown }).packed, 'string');
  assert.deepEqual(Imports.revive(raw).list(), r.report.imports.list());
  assert.deepEqual(Imports.revive(undefined).list(), [], 'anything else revives as no imports');
});
