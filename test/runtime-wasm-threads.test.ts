// The wasm backend's thread pool (runtime/backend/wasm-threads.ts): how many threads it asks for, that a
// threaded run gives bit-identical losses to a single-threaded one, and that its idle workers do not keep
// the process alive after the command.
import { strict as assert } from 'node:assert';
import * as os from 'node:os';
import * as path from 'node:path';
import { THREADS_MIN_WORK, wasmThreadsWanted } from '../runtime/backend/wasm-threads.js';
import { readMetrics } from '../runtime/train/metrics.js';
import { pipec } from './helpers/cli.js';
import { tmpDir } from './helpers/tmp.js';
import { repo } from './paths.js';

function withEnv<T>(value: string | undefined, f: () => T): T {
  const saved = process.env.PIPEC_WASM_THREADS;
  if (value === undefined) delete process.env.PIPEC_WASM_THREADS;
  else process.env.PIPEC_WASM_THREADS = value;
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env.PIPEC_WASM_THREADS;
    else process.env.PIPEC_WASM_THREADS = saved;
  }
}


describe('wasm backend threads', function () {
  this.timeout(300_000);

  it('asks for one thread per core for large workloads, one for small ones, and obeys PIPEC_WASM_THREADS', () => {
    const cores = Math.min(os.availableParallelism(), 8);
    withEnv(undefined, () => {
      assert.equal(wasmThreadsWanted(), cores);
      assert.equal(wasmThreadsWanted(THREADS_MIN_WORK * 10), cores);
      assert.equal(wasmThreadsWanted(THREADS_MIN_WORK / 10), 1);
    });
    withEnv('3', () => assert.equal(wasmThreadsWanted(1), 3)); // the variable wins over the size rule
    withEnv('1', () => assert.equal(wasmThreadsWanted(THREADS_MIN_WORK * 10), 1));
    withEnv('64', () => assert.equal(wasmThreadsWanted(), 8)); // Emscripten pre-creates 8 workers
    withEnv('zero', () => assert.equal(wasmThreadsWanted(), 1));
  });

  it('a 2-thread run gives the same losses, bit for bit, as a 1-thread run, and exits when done', () => {
    const work = tmpDir('threads');
    const runs = ['1', '2'].map((threads) => {
      const out = path.join(work, `t${threads}`);
      const r = pipec(['run', repo('test/runtime/tiny.pipe'), '--out', out, '--backend', 'wasm'], { env: { PIPEC_WASM_THREADS: threads }, timeout: 120_000 });
      assert.equal(r.error, undefined, `the ${threads}-thread run did not exit by itself: ${String(r.error)}`);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`backend wasm \\(WebAssembly with SIMD \\(XNNPACK\\), ${threads} threads?;`));
      return readMetrics(out).map((m) => m.loss);
    });
    assert.equal(runs[0]!.length, 32);
    assert.deepEqual(runs[1], runs[0]);
  });
});
