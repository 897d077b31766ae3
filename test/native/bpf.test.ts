// The eBPF plumbing against the real kernel: a program the verifier refuses comes back as a coded
// error carrying the verifier's own words; a map round-trips values; an ARRAY map written by a
// program attached to a raw tracepoint counts what the kernel did (this thread's own system calls).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { BpfMap, HELPER, MAP_TYPE, attachRawTracepoint, loadRawTracepointProgram, programMisses } from '../../src/native/bpf.js';
import { Asm, FP } from '../../src/native/bpf-asm.js';
import { VsysError } from '../../src/errors.js';
import { libcBindings, rawSyscall } from '../../src/native/libc.js';
import { bpfCountersProblem } from '../../src/trace/bpf-counters.js';

const skip = process.getuid?.() !== 0 ? 'needs root' : (bpfCountersProblem()?.message ?? false);

test('a program the verifier refuses: BPF_UNAVAILABLE with the verifier log, not a permission error', { skip }, () => {
  // Returns without setting r0.
  const bad = new Asm().exit().build();
  assert.throws(() => loadRawTracepointProgram(bad, 'vsys_bad'), (e: unknown) => {
    assert.ok(e instanceof VsysError);
    assert.equal(e.code, 'BPF_UNAVAILABLE');
    assert.match(e.message, /R0 !read_ok/, e.message);
    return true;
  });
});

test('maps: update, lookup, delete and key iteration round-trip', { skip }, () => {
  const m = new BpfMap({ type: MAP_TYPE.HASH, keySize: 4, valueSize: 8, maxEntries: 8, name: 'vsys_t' });
  try {
    for (const k of [3, 1, 2]) {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(k);
      const v = Buffer.alloc(8);
      v.writeBigUInt64LE(BigInt(k) * 1000n);
      m.update(key, v);
    }
    const keys = m.keys().map((k) => Buffer.from(k).readUInt32LE(0)).sort();
    assert.deepEqual(keys, [1, 2, 3]);
    const two = Buffer.alloc(4);
    two.writeUInt32LE(2);
    assert.equal(Buffer.from(m.lookup(two)!).readBigUInt64LE(0), 2000n);
    two.writeUInt32LE(9);
    assert.equal(m.lookup(two), null);
    assert.equal(m.remove(two), false);
    two.writeUInt32LE(3);
    assert.equal(m.remove(two), true);
    assert.equal(m.lookup(two), null);
    assert.deepEqual(m.keys().map((k) => Buffer.from(k).readUInt32LE(0)).sort(), [1, 2]);
  } finally {
    m.close();
  }
});

test('a raw-tracepoint program counts exactly this thread’s calls of an unused syscall number (sys_enter, filtered in the program)', { skip }, () => {
  const counts = new BpfMap({ type: MAP_TYPE.ARRAY, keySize: 4, valueSize: 8, maxEntries: 1, name: 'vsys_t2' });
  const tid = Number(rawSyscall(186)); // gettid
  // sys_enter(regs, id): count when id is 999 (no such syscall: ENOSYS, but the tracepoint fires; no
  // library makes it behind our back) and the current thread is this one.
  const NR = 999;
  const a = new Asm();
  a.ldx('dw', 6, 1, 8).jmp('jne', 6, { imm: NR }, 'out')
    .call(HELPER.get_current_pid_tgid).alu32('mov', 0, 0).jmp('jne', 0, { imm: tid }, 'out')
    .st('w', FP, -4, 0).ldMap(1, counts).mov(2, FP).alu64('add', 2, { imm: -4 }).call(HELPER.map_lookup_elem)
    .jmp('jeq', 0, { imm: 0 }, 'out').mov(1, { imm: 1 }).atomicAdd64(0, 0, 1)
    .label('out').mov(0, { imm: 0 }).exit();
  const prog = loadRawTracepointProgram(a.build(), 'vsys_sys999');
  const link = attachRawTracepoint(prog, 'sys_enter');
  try {
    for (let i = 0; i < 777; i++) rawSyscall(NR);
    // The kernel's own account of the program: it never had to skip a run.
    assert.match(fs.readFileSync(`/proc/self/fdinfo/${prog}`, 'utf8'), /^recursion_misses:\s*0$/m);
    assert.equal(programMisses(prog), 0);
  } finally {
    libcBindings().close(link);
    libcBindings().close(prog);
  }
  const v = counts.lookup(Buffer.alloc(4));
  counts.close();
  assert.equal(Buffer.from(v!).readBigUInt64LE(0), 777n);
});
