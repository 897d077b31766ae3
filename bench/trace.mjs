// Benchmark of `vsys trace`: (1) counting overhead on a process making ~1-2 M emulated vsyscalls/s,
// its run time traced ÷ untraced, alternating in the same run (target ≤ 1.02); (2) the event rate
// --events sustains, and how many events were lost (target ≥ 200k events/s). Needs root + tracefs.
// usage: node bench/trace.mjs [--calls N] [--rounds R] [--json]
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : dflt);
const calls = opt('--calls', 3_000_000);
const rounds = opt('--rounds', 5);
const json = args.includes('--json');
if (process.getuid?.() !== 0) {
  console.error('bench/trace.mjs needs root (perf tracepoints)');
  process.exit(4);
}
if (!fs.existsSync(path.join(ROOT, 'dist', 'src', 'trace', 'session.js'))) execFileSync('npx', ['tsc', '-p', '.'], { cwd: ROOT, stdio: 'inherit' });
const { runTrace } = await import(path.join(ROOT, 'dist', 'src', 'trace', 'session.js'));
const bin = path.join(ROOT, '.cache', 'bench', 'call-n');
fs.mkdirSync(path.dirname(bin), { recursive: true });
execFileSync('gcc', ['-O2', '-o', bin, path.join(ROOT, 'test', 'fixtures', 'trace', 'call-n.c')]);

const plain = [];
const traced = [];
for (let r = 0; r < rounds; r++) {
  for (const mode of r % 2 ? ['traced', 'plain'] : ['plain', 'traced']) {
    if (mode === 'plain') {
      const t0 = performance.now();
      spawnSync(bin, ['time', String(calls)]);
      plain.push((performance.now() - t0) / 1000);
    } else {
      const s = await runTrace({ target: { k: 'command', argv: [bin, 'time', String(calls)] }, stdio: 'ignore' });
      if (s.counts.emulated.time !== calls) throw new Error(`counted ${s.counts.emulated.time}, expected ${calls}`);
      traced.push(s.seconds);
    }
  }
}
const min = (a) => Math.min(...a);
const overhead = min(traced) / min(plain);

// Events: every emulated call gives a page_fault and an emulate_vsyscall event. The producer is
// paced (call-n -r RATE) and the rate doubled until events are lost: the last lossless rate is the
// sustained one. An unpaced run shows what happens past it (losses counted, never silent).
const steps = [];
let best = 0;
for (let rate = 50_000; rate <= 3_200_000; rate *= 2) {
  let seen = 0;
  const n = Math.round(rate * 1.5);
  const e = await runTrace({ target: { k: 'command', argv: [bin, '-r', String(rate), 'time', String(n)] }, events: true, onEvent: () => { seen++; }, stdio: 'ignore' });
  const perS = seen / e.seconds;
  steps.push({ callsPerS: rate, events: seen, lost: e.lostEvents, eventsPerS: perS });
  if (e.lostEvents === 0 && seen >= 2 * n) best = Math.max(best, perS);
  else break;
}
let seen = 0;
const e = await runTrace({ target: { k: 'command', argv: [bin, 'time', String(1_000_000)] }, events: true, onEvent: () => { seen++; }, stdio: 'ignore' });
const eventsPerS = best;
const result = {
  calls, rounds,
  untracedSeconds: min(plain), tracedSeconds: min(traced), callsPerSecond: calls / min(plain),
  overhead, overheadMet: overhead <= 1.02,
  events: { sustainedPerSecond: best, met: best >= 200_000, steps, unpaced: { delivered: seen, lost: e.lostEvents, seconds: e.seconds } },
};
if (json) console.log(JSON.stringify(result, null, 2));
else {
  console.log(`counting: ${calls.toLocaleString('en')} emulated time() calls (${Math.round(result.callsPerSecond).toLocaleString('en')}/s untraced), min of ${rounds}: untraced ${result.untracedSeconds.toFixed(3)} s, traced ${result.tracedSeconds.toFixed(3)} s → ${overhead.toFixed(3)}× (target ≤ 1.02: ${result.overheadMet ? 'met' : 'MISSED'})`);
  for (const st of steps) console.log(`events at ${st.callsPerS.toLocaleString('en')} calls/s: ${st.events.toLocaleString('en')} delivered, ${st.lost.toLocaleString('en')} lost (${Math.round(st.eventsPerS).toLocaleString('en')} events/s)`);
  console.log(`sustained without loss: ${Math.round(best).toLocaleString('en')} events/s (target ≥ 200,000: ${result.events.met ? 'met' : 'MISSED'}); unpaced: ${seen.toLocaleString('en')} delivered, ${e.lostEvents.toLocaleString('en')} lost and reported`);
}
