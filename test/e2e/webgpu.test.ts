// The webgpu backend (Dawn through the `webgpu` package, @tensorflow/tfjs-backend-webgpu): a missing
// adapter is a clear PIPE9020 and `auto` falls back; synchronous reads; the kernels replaced for it;
// a 2-layer tiny training run matches wasm step by step; the CLI exits with Dawn loaded.
// Runs on whatever adapter Dawn finds, a software one included (lavapipe or llvmpipe in CI); the
// suites that need one are skipped, with the probe's reason in their title, only when there is none.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import type { Graph } from '../../compiler/ir/graph.js';
import { compile } from '../../compiler/service/service.js';
import { initBackend, probeBackends } from '../../runtime/backend/backends.js';
import { probeWebgpu, type WebgpuProbe } from '../../runtime/backend/webgpu.js';
import { PipeRuntimeError } from '../../runtime/errors.js';
import { readMetrics } from '../../runtime/train/metrics.js';
import { Progress } from '../../runtime/train/progress.js';
import { runProgram } from '../../runtime/train/run.js';
import { close, randn } from '../helpers/numeric.js';
import { pipec } from '../helpers/cli.js';
import { unavailable } from '../helpers/required.js';
import { tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

const quiet = new Progress({ write: () => true });
const probe: WebgpuProbe = await probeWebgpu();


/** Runs `f` with PIPEC_WEBGPU_ADAPTER=none (the probe then finds no adapter), restoring the variable. */
async function withoutAdapter<T>(f: () => Promise<T>): Promise<T> {
  const before = process.env.PIPEC_WEBGPU_ADAPTER;
  process.env.PIPEC_WEBGPU_ADAPTER = 'none';
  try {
    return await f();
  } finally {
    if (before === undefined) delete process.env.PIPEC_WEBGPU_ADAPTER;
    else process.env.PIPEC_WEBGPU_ADAPTER = before;
  }
}

/**
 * Runs `f` with tfjs-backend-webgpu's WEBGPU_CPU_FORWARD flag set to `value`, then puts the flag back:
 * true (tfjs's default, as `pipec run` trains) runs an op on the CPU when all its inputs are small and
 * CPU-resident; false keeps every op on the GPU. Each test says which it needs; none inherits it.
 */
async function withCpuForward<T>(value: boolean, f: () => Promise<T> | T): Promise<T> {
  const before = tf.env().getBool('WEBGPU_CPU_FORWARD');
  tf.env().set('WEBGPU_CPU_FORWARD', value);
  try {
    return await f();
  } finally {
    tf.env().set('WEBGPU_CPU_FORWARD', before);
  }
}

/** tiny.pipe with both the vision encoder and the LM at 2 layers. */
function tiny2Graph(): Graph {
  const file = repo('test/runtime/tiny.pipe');
  const text = fs.readFileSync(file, 'utf8').replaceAll('layers: 1,', 'layers: 2,');
  assert.equal(text.match(/layers: 2,/g)?.length, 2, 'tiny.pipe has a 1-layer encoder and LM');
  const r = compile({ file, text, configFiles: [], sets: [], lower: true });
  assert.ok(r.graph, 'the 2-layer tiny program compiles');
  return r.graph;
}

describe('webgpu: no adapter', function () {
  this.timeout(120_000);

  it('--backend webgpu is PIPE9020 naming the backend and the Debian packages to install', async () => {
    await withoutAdapter(async () => {
      await assert.rejects(initBackend('webgpu'), (e: unknown) => {
        assert.ok(e instanceof PipeRuntimeError);
        assert.equal(e.code, 'PIPE9020');
        assert.match(e.message, /backend `webgpu` is not available here: no WebGPU adapter/);
        assert.match(e.message, /apt-get install libvulkan1/);
        assert.match(e.message, /apt-get install libegl-dev libegl-mesa0 libgl1-mesa-dri/);
        return true;
      });
    });
  });

  it('auto skips webgpu without an error and takes the next backend', async () => {
    await withoutAdapter(async () => {
      const p = (await probeBackends()).find((b) => b.name === 'webgpu')!;
      assert.equal(p.available, false);
      const active = await initBackend('auto');
      assert.notEqual(active.name, 'webgpu');
      if (active.name !== 'tensorflow-gpu') assert.match(active.note, /skipped tensorflow-gpu, webgpu/);
    });
  });

  it('the CLI prints PIPE9020 and exits 1 for `run --backend webgpu`, and `backends` says why', () => {
    const r = pipec(['run', repo('test/runtime/tiny.pipe'), '--backend', 'webgpu', '--out', tmpDir('webgpu-none')], { env: { PIPEC_WEBGPU_ADAPTER: 'none' }, timeout: 300_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /error PIPE9020: backend `webgpu` is not available here: no WebGPU adapter/);
    const b = pipec(['backends'], { env: { PIPEC_WEBGPU_ADAPTER: 'none' }, timeout: 300_000 });
    assert.equal(b.status, 0, b.stderr);
    assert.match(b.stdout, /^no +webgpu +no WebGPU adapter/m);
    assert.match(b.stdout, /^auto: (tensorflow-gpu|tensorflow|wasm) chosen by auto/m);
  });
});

// mocha's this.skip() takes no reason, so the reason is in the suite's title, which the reporter prints
describe(probe.available ? `webgpu: on the adapter Dawn finds (${probe.detail})` : `webgpu: SKIPPED, no adapter here (${probe.detail.split(';')[0]})`, function () {
  this.timeout(600_000);

  before(function () {
    if (!probe.available) unavailable(this, `no WebGPU adapter (${probe.detail})`, 'apt-get install libegl-dev libegl-mesa0 libgl1-mesa-dri (a software adapter)');
  });

  it('the probe names the adapter and whether it is software; auto takes it only when it is not', async () => {
    assert.ok(probe.adapter);
    assert.match(probe.detail, /^Dawn \w+: /);
    // Without a GPU device node (DRM render node, NVIDIA device) no adapter can be hardware: what CI has.
    const gpuNodes = ['/dev/dri', '/dev'].flatMap((d) => (fs.existsSync(d) ? fs.readdirSync(d).filter((n) => /^(renderD\d+|nvidia\d+)$/.test(n)) : []));
    if (gpuNodes.length === 0) assert.equal(probe.adapter.software, true, `no GPU device here, yet the adapter is called hardware: ${probe.detail}`);
    if (probe.adapter.fallback) assert.equal(probe.adapter.software, true, 'a fallback adapter is a software one');
    assert.equal(probe.detail.includes('software adapter'), probe.adapter.software, `the detail says so: ${probe.detail}`);
    const active = await initBackend('auto');
    if (probe.adapter.software) assert.notEqual(active.name, 'webgpu');
    else assert.ok(['tensorflow-gpu', 'webgpu'].includes(active.name), `a hardware adapter comes before ${active.name}`);
  });

  it('reads GPU-resident tensors synchronously (dataSync) and asynchronously, float32, int32 and bool', async () => {
    await initBackend('webgpu');
    const a = randn([64, 48], 1), b = randn([48, 32], 2);
    const { sync, async } = await withCpuForward(false, async () => {
      const c = tf.matMul(a, b); // computed on the GPU: no CPU copy until read
      return { sync: c.dataSync().slice(), async: await tf.matMul(a, b).data() };
    });
    close(sync, async, 0);
    const i = tf.cast(tf.mul(tf.range(0, 300), 3), 'int32');
    assert.deepEqual([...i.dataSync()].slice(0, 4), [0, 3, 6, 9]);
    assert.deepEqual([...tf.greater(tf.range(0, 300), 150).dataSync()].slice(149, 153), [0, 0, 1, 1]);
    // and the values are right: against wasm's, float32 tolerance 1e-5 relative for K = 48
    const ad = a.dataSync().slice(), bd = b.dataSync().slice();
    await initBackend('wasm');
    close(sync, tf.matMul(tf.tensor2d(ad, [64, 48]), tf.tensor2d(bd, [48, 32])).dataSync(), 1e-5, 'matmul');
  });

  it('AddN of more inputs than the storage-buffer limit (the gradient norm of many tensors) sums them all', async () => {
    await initBackend('webgpu');
    // CPU forwarding off, or small CPU-resident inputs are added on the CPU
    await withCpuForward(false, () => {
      for (const n of [3, 17, 40]) {
        const xs = Array.from({ length: n }, (_, k) => tf.fill([5], k + 1));
        close(tf.addN(xs).dataSync(), new Array(5).fill((n * (n + 1)) / 2), 0, `addN of ${n}`);
      }
    });
  });

  it('UnsortedSegmentSum (the gradient of gather, hence of every embedding) matches hand values', async () => {
    await initBackend('webgpu');
    await withCpuForward(false, () => {
      const out = tf.unsortedSegmentSum(tf.tensor2d([[1, 2], [3, 4], [5, 6], [7, 8]]), tf.tensor1d([1, 0, 1, 3], 'int32'), 4);
      close(out.dataSync(), [3, 4, 6, 8, 0, 0, 7, 8], 0);
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.gather(t, tf.tensor1d([0, 2, 0], 'int32'))))(tf.zeros([3, 2]));
      close(g.dataSync(), [2, 2, 0, 0, 1, 1], 0);
    });
  });

  it('a command the device rejects (reported asynchronously by WebGPU) makes the next read throw, not read zeros', async () => {
    await initBackend('webgpu');
    const device = (tf.backend() as unknown as { device: { createBuffer(d: { size: number; usage: number }): unknown } }).device;
    const usage = (globalThis as unknown as { GPUBufferUsage: Record<string, number> }).GPUBufferUsage;
    await withCpuForward(false, () => {
      device.createBuffer({ size: 4, usage: usage.MAP_READ! | usage.STORAGE! }); // invalid: a validation error
      assert.throws(() => tf.add(tf.ones([2000]), 1).dataSync(), /webgpu: the device rejected a kernel/);
      close(tf.add(tf.ones([2000]), 1).dataSync().slice(0, 3), [2, 2, 2], 0); // and it is reported once
    });
  });

  it('a 2-layer tiny training run matches wasm step by step (loss within 1e-5 relative, float32)', async () => {
    const graph = tiny2Graph();
    await initBackend('webgpu');
    const losses: Record<string, { stage: number; step: number; loss: number; grad_norm: number }[]> = {};
    await withCpuForward(true, async () => { // tfjs's default, as `pipec run` trains
      for (const backend of ['wasm', 'webgpu'] as const) {
        const runDir = tmpDir(`webgpu-tiny-${backend}`);
        await runProgram({ graph, baseDir: repo('test/runtime'), runDir, backend, out: quiet });
        losses[backend] = readMetrics(runDir).map((m) => ({ stage: m.stage_index, step: m.step, loss: m.loss, grad_norm: m.grad_norm ?? 0 }));
        fs.rmSync(runDir, { recursive: true, force: true });
      }
    });
    const [w, g] = [losses.wasm!, losses.webgpu!];
    assert.equal(g.length, 32, 'both stages ran: 24 + 8 steps');
    assert.deepEqual(g.map((m) => [m.stage, m.step]), w.map((m) => [m.stage, m.step]));
    // Measured on lavapipe: 2e-7 relative in loss and 1.8e-6 in gradient norm over the 32 steps (cpu vs
    // wasm: 1.1e-7 and 1.9e-6), float32 summation order. A wrong kernel is off by far more.
    close(g.map((m) => m.loss), w.map((m) => m.loss), 1e-5, 'loss');
    close(g.map((m) => m.grad_norm), w.map((m) => m.grad_norm), 1e-4, 'gradient norm');
  });

  it('pipec run --backend webgpu trains and exits (Dawn released), and `backends` lists the adapter', () => {
    const out = tmpDir('webgpu-cli');
    const r = pipec(['run', repo('test/runtime/tiny.pipe'), '--backend', 'webgpu', '--out', out, '--stop-after', '3'], { timeout: 300_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /backend webgpu \(Dawn \w+: /);
    assert.equal(readMetrics(out).length, 3);
    const b = pipec(['backends'], { timeout: 300_000 });
    assert.equal(b.status, 0, b.stderr);
    assert.match(b.stdout, new RegExp(`^yes +webgpu +Dawn ${probe.adapter!.route}: `, 'm'));
    if (probe.adapter!.software) assert.match(b.stdout, /software adapter/);
    fs.rmSync(out, { recursive: true, force: true });
  });
});
