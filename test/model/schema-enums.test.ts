// The record schema (schema/scan-record.schema.json) lists the modes, site kinds, file classes and
// outcomes by hand, for consumers who read JSON, not TypeScript. The compiler cannot see it, so this
// test holds it to the model: a kind or mode added in src/model/ and not in the schema fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { VSYSCALL_MODES } from '../../src/model/modes.js';
import { SITE_KINDS, classOfKind, classOfKinds, callsThePage, siteKindOf, KIND_RANK } from '../../src/model/site-kinds.js';
import { OUTCOME_RANK } from '../../src/scan/verdict.js';
import { ROOT } from '../helpers.js';

const schema = JSON.parse(fs.readFileSync(path.join(ROOT, 'schema', 'scan-record.schema.json'), 'utf8')) as { $defs: Record<string, { enum?: string[] }> };
const sorted = (xs: Iterable<string>) => [...xs].sort();

test('the schema lists exactly the model\'s modes, site kinds, file classes and outcomes', () => {
  assert.deepEqual(sorted(schema.$defs.mode!.enum!), sorted(VSYSCALL_MODES));
  assert.deepEqual(sorted(schema.$defs.siteKind!.enum!), sorted(SITE_KINDS));
  assert.deepEqual(sorted(schema.$defs.fileClass!.enum!), sorted([...SITE_KINDS.map(classOfKind), 'clean']));
  assert.deepEqual(sorted(schema.$defs.outcome!.enum!), sorted(Object.keys(OUTCOME_RANK)));
});

test('site kinds: the evidence decides the kind, the worst kind the class', () => {
  const entry = 0xffffffffff600400n; // time
  const inside = 0xffffffffff600404n; // not an entry start
  assert.equal(siteKindOf('register-call', entry), 'direct-call');
  assert.equal(siteKindOf('memory-jump', entry), 'direct-call');
  assert.equal(siteKindOf('register-call', inside), 'misaligned');
  assert.equal(siteKindOf('cmov', entry), 'fallback');
  assert.equal(siteKindOf('store', entry), 'data-ref');
  assert.equal(siteKindOf('data-word', entry), 'data-ref');
  assert.equal(siteKindOf('register-call', entry, { vdsoSlot: true }), 'fallback', 'a vDSO slot is a fallback whatever the code does with it');
  assert.equal(classOfKinds([]), 'clean');
  assert.equal(classOfKinds(['data-ref', 'fallback', 'indirect']), 'indirect');
  assert.equal(classOfKinds(['fallback', 'direct-call', 'indirect']), 'direct');
  assert.equal(classOfKinds(['direct-call', 'misaligned']), 'misaligned');
  assert.deepEqual(SITE_KINDS.filter(callsThePage), ['misaligned', 'direct-call', 'indirect']);
  assert.deepEqual(SITE_KINDS.map((k) => KIND_RANK[k]), [4, 3, 2, 1, 0]);
});
