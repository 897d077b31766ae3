// The exporter's periodic scan --processes: a running program holding a direct call of the page
// (not yet made) is counted in vsys_running_programs_using_vsyscall with outcome "crash" (what it
// would do under vsyscall=none if it called), a running program without one is not; the scan's
// duration and time are exported. Oracle: the programs are gcc-built here, with and without the call.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startExporter } from '../../src/exporter/exporter.js';
import { scratchBytes } from '../../src/native/file-read.js';

const root = process.getuid?.() === 0;
const tracing = fs.existsSync('/sys/kernel/tracing/events/vsyscall');

test('a periodic scan counts the running programs that would crash under none, by their labels', { skip: (!root || !tracing) && 'needs root and the vsyscall tracepoints', timeout: 180_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsys-exporter-scan-'));
  const tag = `vx${process.pid}`;
  const src = (withCall: boolean) => `#include <unistd.h>\n${withCall ? 'long later(void) { long (*f)(long *) = (void *)0xffffffffff600400UL; return f(0); }\n' : ''}int main(void) { for (;;) pause(); }\n`;
  const build = (name: string, withCall: boolean) => {
    fs.writeFileSync(path.join(dir, `${name}.c`), src(withCall));
    execFileSync('gcc', ['-O1', '-static', '-o', path.join(dir, name), path.join(dir, `${name}.c`)]);
    return path.join(dir, name);
  };
  const bad = build(`${tag}old`, true);
  const good = build(`${tag}new`, false);
  const procs = [spawn(bad, { stdio: 'ignore' }), spawn(good, { stdio: 'ignore' })];
  const exporter = await startExporter({ host: '127.0.0.1', port: 0, scanIntervalMs: 3_600_000 });
  try {
    await new Promise((r) => setTimeout(r, 200));
    const scan = await exporter.processScan();
    assert.ok(scan, 'a scan ran');
    const text = await (await fetch(`${exporter.url}/metrics`)).text();
    const line = (comm: string) => text.split('\n').find((l) => l.startsWith('vsys_running_programs_using_vsyscall{') && l.includes(`comm="${comm}"`));
    assert.equal(line(`${tag}old`), `vsys_running_programs_using_vsyscall{comm="${tag}old",exe="${bad}",container="",pod="",namespace="",outcome="crash"} 1`);
    assert.equal(line(`${tag}new`), undefined, 'a program without a use of the page is not counted');
    // The scan read files (among them this test's own node, ~100 MB) and kept no read buffer for the next one.
    assert.equal(scratchBytes(), 0, 'the read buffer was let go after the scan');
    const seconds = Number(/^vsys_process_scan_seconds (\S+)$/m.exec(text)?.[1]);
    assert.ok(seconds > 0 && seconds < 170, `scan took ${seconds} s`);
    const at = Number(/^vsys_process_scan_timestamp_seconds (\S+)$/m.exec(text)?.[1]);
    assert.ok(Math.abs(at - Date.now() / 1000) < 180, 'the scan time is now');
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    await exporter.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
