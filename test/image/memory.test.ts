// Issue 23 item 4: a layer of 2,000,000 empty files (tar bytes generated here, nothing extracted)
// is scanned under 512 MB of RSS: complete, or stopped with a coded error naming the cap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildOciLayout } from '../support/images.js';
import { spawnSync } from 'node:child_process';
import { ROOT } from '../helpers.js';

/** Runs the CLI in a child; its stdout and its peak RSS in MB (VmHWM at exit). */
function runMeasured(args: string[], dir: string): { stdout: string; peakMb: number } {
  const hook = path.join(dir, 'hwm.cjs');
  fs.writeFileSync(hook, "process.on('exit', () => { const m = /VmHWM:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8')); require('fs').writeSync(2, 'VSYS_HWM_KB ' + (m ? m[1] : '0') + '\\n'); });\n");
  const r = spawnSync(process.execPath, ['-r', hook, path.join(ROOT, 'bin', 'vsys.js'), ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 300_000 });
  return { stdout: r.stdout, peakMb: Number(/VSYS_HWM_KB (\d+)/.exec(r.stderr)?.[1] ?? NaN) / 1024 };
}

const ENTRIES = 2_000_000;

/** A ustar header for an empty regular file: the template's name and checksum patched. */
function writeLayer(file: string, n: number): void {
  const tpl = Buffer.alloc(512);
  tpl.write('0000644\0', 100); tpl.write('0000000\0', 108); tpl.write('0000000\0', 116);
  tpl.write('00000000000\0', 124); tpl.write('00000000000\0', 136); tpl.write('        ', 148);
  tpl.write('0', 156); tpl.write('ustar\0', 257); tpl.write('00', 263);
  let base = 0;
  for (const b of tpl) base += b;
  const fd = fs.openSync(file, 'w');
  const per = 4096;
  const buf = Buffer.alloc(512 * per);
  try {
    for (let i = 0; i < n; i += per) {
      const k = Math.min(per, n - i);
      for (let j = 0; j < k; j++) {
        const h = buf.subarray(j * 512, j * 512 + 512);
        tpl.copy(h);
        const name = `d${Math.floor((i + j) / 1000)}/f${i + j}`;
        h.write(name, 0, 'latin1');
        let sum = base;
        for (let c = 0; c < name.length; c++) sum += name.charCodeAt(c);
        h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
      }
      fs.writeSync(fd, buf, 0, k * 512);
    }
    fs.writeSync(fd, Buffer.alloc(1024));
  } finally {
    fs.closeSync(fd);
  }
}

test('a layer of 2,000,000 empty files stays under 512 MB of RSS and ends in a coded error naming the cap', { timeout: 600_000 }, (t) => {
  if (!fs.existsSync('/proc/self/status')) return t.skip('no /proc');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-memory-'));
  try {
    const tar = path.join(dir, 'layer.tar');
    writeLayer(tar, ENTRIES);
    const oci = path.join(dir, 'oci');
    buildOciLayout(oci, [{ tar, compress: 'gzip' }]);
    fs.rmSync(tar);
    const r = runMeasured(['scan', '--json', `oci:${oci}`], dir);
    const recs = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const err = recs.find((x) => x.record === 'error');
    const image = recs.find((x) => x.record === 'image');
    if (err) {
      assert.equal(err.code, 'IMAGE_TOO_LARGE', err.message);
      assert.match(err.message, /more than \d+ entries.*maxLayerEntries/);
    } else {
      assert.equal(image?.layers?.[0]?.files, ENTRIES);
    }
    // 846 MB before the cap (every entry kept); 175 MB with it.
    assert.ok(r.peakMb < 512, `peak RSS ${r.peakMb.toFixed(0)} MB`);
    t.diagnostic(`peak RSS ${r.peakMb.toFixed(0)} MB`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('three layers of 400,000 entries each (each under the layer cap) stop at the image-wide cap, under 512 MB', { timeout: 600_000 }, (t) => {
  if (!fs.existsSync('/proc/self/status')) return t.skip('no /proc');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-memory-image-'));
  try {
    const tars = [0, 1, 2].map((i) => {
      const tar = path.join(dir, `layer${i}.tar`);
      writeLayer(tar, 400_000);
      return tar;
    });
    const oci = path.join(dir, 'oci');
    buildOciLayout(oci, tars.map((tar) => ({ tar, compress: 'gzip' as const })));
    const r = runMeasured(['scan', '--json', `oci:${oci}`], dir);
    const err = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((x) => x.record === 'error');
    assert.equal(err?.code, 'IMAGE_TOO_LARGE', r.stdout.slice(0, 500));
    assert.match(err.message, /more than 1000000 entries in all.*--max-image-entries/);
    assert.ok(r.peakMb < 512, `peak RSS ${r.peakMb.toFixed(0)} MB`);
    console.log(`# 3 × 400,000 entries: IMAGE_TOO_LARGE at ${r.peakMb.toFixed(0)} MB peak RSS`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
