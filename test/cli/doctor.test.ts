// The doctor's cost figure and advice: one like-for-like slowdown (vsyscall time() against vDSO
// time()) taken from this host's bench, labelled by where it comes from; remedies under the verdict;
// no internal names of the published sources.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { modeFromMaps } from '../../src/host/vsyscall-mode.js';
import { runVsys } from '../helpers.js';

const mode = modeFromMaps(fs.readFileSync('/proc/self/maps', 'utf8')).says;

test('the doctor quotes the ratio this host\'s bench saved (vsyscall time() over vDSO time()), by its source, with remedies', { skip: mode !== 'xonly' && mode !== 'emulate-or-native' && 'needs a callable vsyscall page', timeout: 120_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-doctor-'));
  try {
    const env = { ...process.env, XDG_CACHE_HOME: dir };
    const b = runVsys(['bench', '--paths', 'vdso-time,vsyscall-time', '--budget', '40', '--repeats', '3'], { env });
    assert.equal(b.status, 0, b.stderr);
    const saved = JSON.parse(fs.readFileSync(path.join(dir, 'vsys', 'host-figures.json'), 'utf8'));
    const ratio = Math.round(saved.ns['vsyscall-time'] / saved.ns['vdso-time']);
    const d = runVsys(['doctor'], { env, timeout: 110_000 });
    assert.equal(d.status, 0, d.stderr);
    assert.match(d.stdout, new RegExp(`a vsyscall time\\(\\) costs ~${ratio}× a vDSO time\\(\\) \\(this host, vsys bench ${saved.measuredAt.slice(0, 10)}`));
    // One figure: no second, different ratio elsewhere on the screen.
    const ratios = [...d.stdout.matchAll(/~?(\d+)× (?:a|the cost of a) vDSO/g)].map((m) => Number(m[1]));
    assert.deepEqual([...new Set(ratios)], [ratio], d.stdout);
    assert.match(d.stdout, /Rebase on a release whose libc uses the vDSO: CentOS 7 \(glibc 2\.17\)/);
    assert.doesNotMatch(d.stdout, /seed|\bcep\b/i);
    const j = JSON.parse(runVsys(['doctor', '--json'], { env, timeout: 110_000 }).stdout);
    assert.equal(j.slowdown.measuredHere, true);
    assert.equal(Math.round(j.slowdown.ratio), ratio);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('without this host\'s figures for a dead page the doctor names the published source (article and year)', () => {
  // The published fallback, as the doctor and scan's verdicts word it.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-doctor-'));
  try {
    const d = runVsys(['doctor', '--json'], { env: { ...process.env, XDG_CACHE_HOME: dir }, timeout: 110_000 });
    const j = JSON.parse(d.stdout);
    if (j.slowdown.measuredHere) {
      assert.match(j.slowdown.source, /^this host, measured just now$/);
    } else {
      assert.match(j.slowdown.source, /^published: Sysdig blog, 2018/);
    }
    assert.doesNotMatch(d.stdout, /seed 0|\bcep\b/i);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
