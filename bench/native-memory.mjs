// The native memory a long-running process keeps per access of native memory (the exporter reads
// its eBPF maps through a scratch page every poll). Baseline: the way vsys accessed it before, a
// koffi pointer and view made per read (koffi.decode + koffi.view) and koffi.encode of a JS array
// per write. Now: one view of the page, made once (ExecPage). Same run, alternating rounds; each
// round does N accesses, forces a GC and reads the malloc heap's resident size ([heap] in
// /proc/self/smaps, where glibc's main arena lives). Then real eBPF map churn through BpfMap
// (update, keys, lookup, remove: what the exporter does per process), where root allows.
// usage: node bench/native-memory.mjs [--rounds N (default 5)] [--n N (default 200000)] [--json]
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, d) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : d);
const rounds = opt('--rounds', 5);
const n = opt('--n', 200_000);
const json = args.includes('--json');
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const { ExecPage } = await import(path.join(ROOT, 'dist', 'src', 'native', 'memory.js'));
const koffi = createRequire(import.meta.url)(path.join(ROOT, 'node_modules', 'koffi'));

function mallocHeapKb() {
  const t = fs.readFileSync('/proc/self/smaps', 'utf8');
  const i = t.indexOf('[heap]');
  return i < 0 ? 0 : Number(/Rss:\s+(\d+)/.exec(t.slice(i))?.[1] ?? 0);
}

const page = new ExecPage(1 << 20);
const pointerTo = (address) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(address);
  return koffi.decode(b, 'void *');
};
const value = Buffer.alloc(64, 7);
const ways = {
  // As vsys did before: an encode of a JS array per write, a pointer and a view per read.
  'per-access koffi pointer/view (before)': () => {
    koffi.encode(page.ptr, 4096, 'uint8_t', Array.from(value), value.length);
    return new Uint8Array(koffi.view(pointerTo(page.address + 4096n), 64).slice(0));
  },
  'one view of the page (now)': () => {
    page.write(value, 4096);
    return page.read(4096, 64);
  },
};

const results = Object.fromEntries(Object.keys(ways).map((k) => [k, { bytesPerCall: [], nsPerCall: [] }]));
for (let r = 0; r < rounds; r++) {
  for (const [name, fn] of Object.entries(ways)) {
    gc();
    const before = mallocHeapKb();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if (fn()[0] !== 7) throw new Error('read back the wrong bytes');
    const ns = Number(process.hrtime.bigint() - t0) / n;
    gc();
    results[name].bytesPerCall.push(((mallocHeapKb() - before) * 1024) / n);
    results[name].nsPerCall.push(ns);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

// Real map churn, as the exporter's poll does it for each process (root: bpf(2)).
let churn;
try {
  const { BpfMap } = await import(path.join(ROOT, 'dist', 'src', 'native', 'bpf.js'));
  const map = new BpfMap({ type: 1 /* BPF_MAP_TYPE_HASH */, keySize: 16, valueSize: 8, maxEntries: 4096, name: 'vsys_bench' });
  const key = Buffer.alloc(16);
  const v = Buffer.alloc(8);
  const ops = () => {
    for (let i = 0; i < 1000; i++) {
      key.writeUInt32LE(i, 0);
      v.writeBigUInt64LE(BigInt(i));
      map.update(key, v);
    }
    for (const k of map.keys()) if (!map.lookup(k)) throw new Error('a key without its value');
    for (let i = 0; i < 1000; i++) {
      key.writeUInt32LE(i, 0);
      map.remove(key);
    }
  };
  ops();
  gc();
  const before = mallocHeapKb();
  const cycles = Math.max(1, Math.round(n / 4000));
  for (let c = 0; c < cycles; c++) ops();
  gc();
  churn = { cycles, mapOps: cycles * 4000, heapGrowthKb: mallocHeapKb() - before };
  map.close();
} catch (e) {
  churn = { skipped: e.message };
}

const out = {
  calls: n,
  rounds,
  ways: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, { bytesPerCall: median(v.bytesPerCall), nsPerCall: median(v.nsPerCall) }])),
  churn,
};
if (json) console.log(JSON.stringify(out, null, 2));
else {
  console.log(`native memory kept per access of native memory (median of ${rounds} rounds of ${n} accesses, malloc heap after GC):`);
  for (const [k, v] of Object.entries(out.ways)) console.log(`  ${k.padEnd(42)} ${v.bytesPerCall.toFixed(1).padStart(7)} bytes/access  ${v.nsPerCall.toFixed(0).padStart(6)} ns/access`);
  const [a, b] = Object.values(out.ways);
  console.log(`  time ratio now/before: ${(b.nsPerCall / a.nsPerCall).toFixed(3)}×`);
  if (churn.skipped) console.log(`  eBPF map churn: skipped (${churn.skipped})`);
  else console.log(`  eBPF map churn through BpfMap: ${churn.mapOps} map operations, malloc heap grew ${churn.heapGrowthKb} KB`);
}
