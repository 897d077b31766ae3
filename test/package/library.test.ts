// vsys as a library, imported the way a user would: `npm pack` of this checkout, installed into an
// empty project with `npm install ./vsys-VERSION.tgz` (its dependencies from the npm registry's
// cache), then `import { ... } from 'vsys'` in a script of that project. The script scans the
// corpus' static busybox 1.15.2 (two direct calls of the page, corpus README), analyses it alone,
// and reads the model; the test checks what it printed. TypeScript users get the types: a .ts file
// importing the package type-checks with tsc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CORPUS, ROOT } from '../helpers.js';

const BUSYBOX = path.join(CORPUS, 'busybox-1.15.2-static', 'busybox');

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 300_000, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' } });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} in ${cwd}: ${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test('npm pack + npm install of the tarball: import from "vsys" scans, analyses and has types', { timeout: 600_000, skip: !fs.existsSync(BUSYBOX) && 'corpus not present' }, (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-package-'));
  try {
    // --ignore-scripts: the checkout is built already (npm test builds it); prepare would build it again.
    const packed = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir, ROOT], ROOT)) as { filename: string; files: { path: string }[] }[];
    const tarball = path.join(dir, packed[0]!.filename);
    const names = packed[0]!.files.map((f) => f.path);
    assert.ok(names.includes('dist/src/index.js') && names.includes('dist/src/index.d.ts'), 'the entry point and its types are in the package');
    assert.ok(!names.some((n) => n.startsWith('dist/test/') || n.startsWith('src/')), 'no tests or sources in the package');

    const app = path.join(dir, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', private: true }));
    run('npm', ['install', '--no-package-lock', '--prefer-offline', tarball], app);

    fs.writeFileSync(path.join(app, 'main.mjs'), `
import { scanPaths, analyseFile, VSYSCALL_ENTRIES, VSYSCALL_MODES, classOfKinds } from 'vsys';
const r = await scanPaths({ paths: [process.argv[2]], workers: 0 });
const f = r.files[0];
const one = analyseFile(process.argv[2]);
console.log(JSON.stringify({
  files: r.files.length,
  cls: f.class,
  none: f.verdicts.none.outcome,
  sites: f.findings.map((x) => x.kind + ' ' + x.entry + ' 0x' + x.address.toString(16)).sort(),
  alone: one.kind === 'elf' ? one.report.class : one.kind,
  entries: VSYSCALL_ENTRIES.map((e) => e.name),
  modes: VSYSCALL_MODES,
  worst: classOfKinds(['fallback', 'direct-call']),
}));
`);
    const out = JSON.parse(run(process.execPath, ['main.mjs', BUSYBOX], app));
    assert.deepEqual(out, {
      files: 1,
      cls: 'direct',
      none: 'crash',
      sites: ['direct-call gettimeofday 0x4e13b4', 'direct-call time 0x4e1394'],
      alone: 'direct',
      entries: ['gettimeofday', 'time', 'getcpu'],
      modes: ['none', 'xonly', 'emulate', 'native'],
      worst: 'direct',
    });

    // The types: a TypeScript user's file type-checks against the installed package, and a misuse does not.
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const opts = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules', '@types')];
    fs.writeFileSync(path.join(app, 'good.mts'), "import { scanPaths, type ScanResult, type VsyscallMode } from 'vsys';\nconst r: ScanResult = await scanPaths({ paths: ['/bin'] });\nconst m: VsyscallMode = 'none';\nconsole.log(r.files.map((f) => f.verdicts[m].outcome));\n");
    fs.writeFileSync(path.join(app, 'bad.mts'), "import { scanPaths } from 'vsys';\nawait scanPaths({ paths: '/bin' });\n");
    run(process.execPath, [tsc, ...opts, 'good.mts'], app);
    const bad = spawnSync(process.execPath, [tsc, ...opts, 'bad.mts'], { cwd: app, encoding: 'utf8' });
    assert.notEqual(bad.status, 0, 'a wrong argument type is caught');
    assert.match(bad.stdout, /bad\.mts.*error TS2322/);
    // The README's library example type-checks against the package as it is.
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const example = /## As a library[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(example, 'the README has a library example');
    fs.writeFileSync(path.join(app, 'readme.mjs'), example);
    run(process.execPath, [tsc, ...opts, '--allowJs', '--checkJs', 'readme.mjs'], app);
    fs.writeFileSync(path.join(app, 'readme-wrong.mjs'), example.replace('stillCrash', 'stillCrashes'));
    const wrong = spawnSync(process.execPath, [tsc, ...opts, '--allowJs', '--checkJs', 'readme-wrong.mjs'], { cwd: app, encoding: 'utf8' });
    assert.match(wrong.stdout, /readme-wrong\.mjs.*error TS2551/, 'the check can fail: a misspelt field is caught');
    t.diagnostic(`package ${packed[0]!.filename}: ${names.length} files`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
