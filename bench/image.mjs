// Benchmark of image scanning: a ~1 GB docker-archive built from this machine's /usr (one layer of
// /usr/bin and /usr/lib/x86_64-linux-gnu) scanned by vsys, against `tar -xOf` of the same archive
// to /dev/null, alternating in the same run (target: vsys ≥ 0.8× tar's throughput).
// usage: node bench/image.mjs [--rounds R] [--json]
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const rounds = args.includes('--rounds') ? Number(args[args.indexOf('--rounds') + 1]) : 3;
const json = args.includes('--json');
if (!fs.existsSync(path.join(ROOT, 'dist', 'test', 'support', 'images.js'))) execFileSync('npx', ['tsc', '-p', '.'], { cwd: ROOT, stdio: 'inherit' });
const { buildDockerArchive } = await import(path.join(ROOT, 'dist', 'test', 'support', 'images.js'));
const { scanImageRefs } = await import(path.join(ROOT, 'dist', 'src', 'image', 'scan-image.js'));

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-bench-image-'));
try {
  const layerDir = path.join(work, 'layer');
  fs.mkdirSync(path.join(layerDir, 'usr', 'lib'), { recursive: true });
  // Hard links keep the layer's content identical to /usr without copying it.
  execFileSync('cp', ['-al', '/usr/bin', path.join(layerDir, 'usr', 'bin')]);
  execFileSync('cp', ['-al', '/usr/lib/x86_64-linux-gnu', path.join(layerDir, 'usr', 'lib', 'x86_64-linux-gnu')]);
  const archive = path.join(work, 'usr.tar');
  buildDockerArchive(archive, [{ dir: layerDir }], { repoTag: 'host-usr:bench' });
  const bytes = fs.statSync(archive).size;
  execFileSync('sh', ['-c', `cat ${archive} > /dev/null`]); // warm the page cache
  const tarS = [];
  const vsysS = [];
  const nestedS = [];
  const unpackS = [];
  const inner = JSON.parse(execFileSync('tar', ['-xOf', archive, 'manifest.json'], { encoding: 'utf8' }))[0].Layers[0];
  let report;
  for (let r = 0; r < rounds; r++) {
    for (const which of r % 2 ? ['vsys', 'tar'] : ['tar', 'vsys']) {
      const t0 = performance.now();
      if (which === 'tar') {
        const x = spawnSync('sh', ['-c', `tar -xOf ${archive} > /dev/null`]);
        if (x.status !== 0) throw new Error('tar failed');
        tarS.push((performance.now() - t0) / 1000);
        // Both levels: the layer's own entries read out too (what unpacking the image reads).
        const t1 = performance.now();
        const y = spawnSync('sh', ['-c', `tar -xOf ${archive} ${inner} | tar -xOf - > /dev/null`]);
        if (y.status !== 0) throw new Error('nested tar failed');
        nestedS.push((performance.now() - t1) / 1000);
        // What an operator does without vsys: unpack the image to disk before scanning it.
        const dest = path.join(work, `unpack-${r}`);
        fs.mkdirSync(dest);
        const t2 = performance.now();
        const z = spawnSync('sh', ['-c', `tar -xOf ${archive} ${inner} | tar -xf - -C ${dest}`]);
        if (z.status !== 0) throw new Error('unpack failed');
        unpackS.push((performance.now() - t2) / 1000);
        fs.rmSync(dest, { recursive: true, force: true });
      } else {
        const out = await scanImageRefs([archive]);
        if (out.errors.length) throw new Error(JSON.stringify(out.errors));
        report = out.images[0];
        vsysS.push((performance.now() - t0) / 1000);
      }
    }
  }
  const min = (a) => Math.min(...a);
  const mbs = (s) => bytes / 1e6 / s;
  const res = {
    archiveBytes: bytes, elfFiles: report.elfFiles, tarSeconds: min(tarS), nestedTarSeconds: min(nestedS), unpackSeconds: min(unpackS), vsysSeconds: min(vsysS),
    tarMBs: mbs(min(tarS)), vsysMBs: mbs(min(vsysS)), ratio: min(tarS) / min(vsysS), ratioNested: min(nestedS) / min(vsysS), ratioUnpack: min(unpackS) / min(vsysS),
  };
  res.met = res.ratio >= 0.8;
  if (json) console.log(JSON.stringify(res, null, 2));
  else {
    console.log(`docker-archive of /usr/bin + /usr/lib/x86_64-linux-gnu: ${(bytes / 1e6).toFixed(0)} MB, ${report.elfFiles} ELF files; verdict under none: ${report.verdicts.none.outcome}`);
    console.log(`tar -xOf > /dev/null: ${res.tarSeconds.toFixed(2)} s (${res.tarMBs.toFixed(0)} MB/s); vsys scan: ${res.vsysSeconds.toFixed(2)} s (${res.vsysMBs.toFixed(0)} MB/s); min of ${rounds}`);
    console.log(`both levels, tar -xOf | tar -xOf - > /dev/null: ${res.nestedTarSeconds.toFixed(2)} s; unpacked to disk: ${res.unpackSeconds.toFixed(2)} s`);
    console.log(`vsys / tar throughput: ${res.ratio.toFixed(2)}× against tar -xOf (target ≥ 0.8×: ${res.met ? 'met' : 'MISSED'}); ${res.ratioNested.toFixed(2)}× against both levels; ${res.ratioUnpack.toFixed(2)}× against unpacking to disk`);
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
