// The version vsys reports is package.json's: --version, SARIF's tool version and the exporter's vsys_info use src/version.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { VSYS_VERSION } from '../src/version.js';
import { ROOT, runVsys } from './helpers.js';

test('src/version.ts says package.json\'s version, and vsys --version prints it', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(VSYS_VERSION, pkg.version);
  assert.equal(runVsys(['--version']).stdout, `vsys ${pkg.version}\n`);
});
