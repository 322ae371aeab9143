// The compiled training step (runtime/graph-step) against eager execution, the reference, on each
// backend that compiles one (tensorflow: a TensorFlow graph; wasm: a replay of its kernels): the same
// losses to 1e-5 over 30 steps, the same parameters afterwards, resume as exact as an uninterrupted
// run, and an eager step (with the reason said) wherever a trace cannot be replayed.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Graph } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { collate, type Batch } from '../runtime/data/batch.js';
import { imageShapeOf, prepareDataset, syntheticTokenizer } from '../runtime/data/datasets.js';
import { bucketLength, CompiledStepper, padBatch } from '../runtime/graph-step/compiled-step.js';
import { KernelReplay, ReplayMismatch } from '../runtime/graph-step/kernel-replay.js';
import { KernelTrace } from '../runtime/graph-step/kernel-trace.js';
import { savedModelBytes } from '../runtime/graph-step/graph-def.js';
import { ProtoWriter } from '../runtime/graph-step/proto.js';
import { ModelRunner } from '../runtime/model.js';
import { withFeedRecorder } from '../runtime/ops/batch-feeds.js';
import { ParamStore, paramSpecs } from '../runtime/params.js';
import { clipByGlobalNorm, Optimizer } from '../runtime/train/optimizer.js';
import { readMetrics } from '../runtime/train/metrics.js';
import { accumulateGradients } from '../runtime/train/step.js';
import { testBackends, useBackend } from './helpers/numeric.js';
import { unavailable } from './helpers/required.js';
import { repo } from './paths.js';
import { runIn, tmpDir, tinyGraph } from './run-fixtures.js';

const backends = await testBackends();

describe('protocol-buffers writer (the compiled step\'s GraphDef)', () => {
  it('writes varints, negative int64s in ten bytes, floats and nested messages', () => {
    const hex = (w: ProtoWriter) => Buffer.from(w.finish()).toString('hex');
    assert.equal(hex(new ProtoWriter().varint(1, 300)), '08ac02');
    assert.equal(hex(new ProtoWriter().varint(3, -1)), '18ffffffffffffffffff01');
    assert.equal(hex(new ProtoWriter().float(4, 1)), '250000803f');
    assert.equal(hex(new ProtoWriter().message(2, (m) => m.string(1, 'ab'))), '12040a026162');
    assert.equal(hex(new ProtoWriter().packedVarints(3, [1, -1])), '1a0b01ffffffffffffffffff01');
  });

  it('names a SavedModel tag and every node of the graph', () => {
    const bytes = Buffer.from(savedModelBytes([{ kind: 'placeholder', name: 'in0', dtype: 1, shape: [2] }, { kind: 'op', name: 'n1', op: 'Neg', inputs: ['in0'], attrs: [{ name: 'T', type: 4, value: 1 }] }], 'serve'));
    for (const s of ['serve', 'Placeholder', 'in0', 'Neg', 'n1']) assert.ok(bytes.includes(Buffer.from(s)), s);
  });
});

/**
 * How each backend compiles, as its log line says; how close its parameters stay to eager's; how close a
 * resumed run's losses are to an uninterrupted one's. A resume traces (runs eagerly) the first two steps
 * of each shape again: tensorflow's eager kernels and its graph's differ in the last bits, wasm's replay
 * runs the eager step's own kernels, so there it is exact.
 */
const COMPILING = {
  tensorflow: { what: /run as one TensorFlow graph \(\d+ ops, \d+ inputs\)/, paramTolerance: 2e-4, resumeTolerance: 1e-6 },
  wasm: { what: /run as a replay of \d+ wasm kernels \(\d+ inputs\)/, paramTolerance: 1e-5, resumeTolerance: 0 },
} as const;

for (const backend of ['tensorflow', 'wasm'] as const) describe(`compiled training step on ${backend}`, function () {
  let restore: (() => void) | undefined;
  before(async function () {
    if (!backends.includes(backend))
      unavailable(this, `the ${backend} backend`, backend === 'tensorflow' ? 'run `bash scripts/setup-tensorflow.sh` (docs/tensorflow-backend.md)' : 'see docs/runtime.md');
    restore = await useBackend(backend);
  });
  after(() => restore?.());
  const { what, paramTolerance, resumeTolerance } = COMPILING[backend];

  function graphOf(file: string): Graph {
    const r = compile({ file, configFiles: [], sets: [], lower: true });
    assert.ok(r.graph, `${file} compiles`);
    return r.graph;
  }

  /** n micro-batches of the program's synthetic captions; `sameLength`: only records of the most common length. */
  function batchesOf(g: Graph, n: number, size: number, sameLength = false): Batch[] {
    const m = g.models[0]!;
    const data = prepareDataset('captions', { graph: g, model: m, tokenizer: syntheticTokenizer(g, 512), maxLength: 64 });
    let records = data.train;
    if (sameLength) {
      const count = new Map<number, number>();
      for (const r of records) count.set(r.ids.length, (count.get(r.ids.length) ?? 0) + 1);
      const common = [...count].sort((a, b) => b[1] - a[1])[0]![0];
      records = records.filter((r) => r.ids.length === common);
    }
    assert.ok(records.length >= n * size, `${records.length} records for ${n} batches of ${size}`);
    const out: Batch[] = [];
    for (let i = 0; i < n; i++) out.push(collate(records.slice(i * size, (i + 1) * size), 0, imageShapeOf(m)));
    return out;
  }

  function trainer(g: Graph) {
    const m = g.models[0]!;
    const params = new ParamStore(paramSpecs(m.components), 0);
    const trainable = new Map([...params.vars]);
    const optimizer = new Optimizer('adamw', { lr: 2e-3, weight_decay: 0.01 }, trainable);
    return { params, trainable, optimizer, runner: new ModelRunner(m, params) };
  }

  function flat(params: ParamStore): Float32Array[] {
    return [...params.vars.values()].map((v) => v.dataSync() as Float32Array);
  }

  it('30 steps of the quickstart model: losses equal the eager step\'s to 1e-5, parameters too; the graph ran from step 3', function () {
    this.timeout(300_000);
    const g = graphOf(repo('pipelines/quickstart.pipe'));
    const batches = batchesOf(g, 30, 8);
    const clip = 0.5; // small enough that clipping scales the gradients in the first steps
    const e = trainer(g);
    const eager: number[] = [], norms: number[] = [];
    for (const b of batches) {
      const { grads, loss } = accumulateGradients(e.runner, e.trainable, [b]);
      norms.push(clipByGlobalNorm(grads, clip));
      e.optimizer.apply(grads, 2e-3);
      for (const t of grads.values()) t.dispose();
      eager.push(loss);
    }
    assert.ok(norms.some((n) => n > clip), `clipping was exercised (norms ${norms.slice(0, 3).map((n) => n.toFixed(2)).join(', ')})`);
    const c = trainer(g);
    const notes: string[] = [];
    const stepper = new CompiledStepper(CompiledStepper.compilerFor()!, c.runner, c.params.vars, c.trainable, c.optimizer, { clip, note: (l) => notes.push(l) });
    const held: number[] = []; // data on the backend after each step: a replay frees what it makes
    const compiled = batches.map((b) => {
      const r = stepper.step([b], 2e-3);
      held.push(tf.engine().backend.numDataIds());
      return r;
    });
    stepper.dispose();
    assert.deepEqual(new Set(held.slice(2)).size, 1, `data ids after steps 3..30: ${held.join(', ')}`);
    const modes = compiled.map((r) => r.mode[0]).join('');
    // the captions are 23 or 24 tokens long; padded to 24, they all take one graph
    assert.equal(modes, `tt${'g'.repeat(28)}`, notes.join(' | '));
    compiled.forEach((r, i) => assert.ok(Math.abs(r.loss - eager[i]!) <= 1e-5, `step ${i + 1}: compiled ${r.loss} eager ${eager[i]}`));
    compiled.forEach((r, i) => assert.ok(Math.abs(r.gradNorm - norms[i]!) <= 1e-4 * Math.max(1, norms[i]!), `step ${i + 1}: grad norm ${r.gradNorm} vs ${norms[i]}`));
    const [pe, pc] = [flat(e.params), flat(c.params)];
    let worst = 0;
    pe.forEach((a, k) => a.forEach((x, j) => (worst = Math.max(worst, Math.abs(x - pc[k]![j]!)))));
    // On tensorflow the graph's convolution kernels (oneDNN's, in Grappler's fused forms) sum in another
    // order than the eager ones; Adam turns that into parameter differences of about 1e-4 over 30 steps:
    // a tenth of one step's size (lr 2e-3). A wrong update (bias correction, decay, clipping) would move
    // them by steps. wasm's replay runs eager's own kernels: only clipping's float32 scale differs.
    assert.ok(worst <= paramTolerance, `parameters after 30 steps differ by ${worst}`);
    assert.equal(c.optimizer.state.step, 30);
    assert.equal(notes.length, 1, notes.join(' | '));
    assert.match(notes[0]!, /^compiled step: micro-batches of 8x24 tokens, images 8x3x32x32 /);
    assert.match(notes[0]!, what);
    assert.match(notes[0]!, / from step 3$/);
    e.params.dispose(), c.params.dispose(), e.optimizer.dispose(), c.optimizer.dispose();
  });

  it('pads a micro-batch to a few bucket lengths without changing its loss or gradients', () => {
    assert.deepEqual([5, 9, 23, 24, 33, 100, 129, 1000, 2047].map((t) => bucketLength(t, 4096)), [5, 10, 24, 24, 40, 112, 160, 1024, 2048]);
    assert.equal(bucketLength(1000, 1010), 1010, 'never past max_length');
    const g = graphOf(repo('pipelines/quickstart.pipe'));
    const [b] = batchesOf(g, 1, 8);
    const padded = padBatch(b!, 32);
    assert.equal(padded.info.length, 32);
    const e = trainer(g);
    const run = (x: Batch) => accumulateGradients(e.runner, e.trainable, [x]);
    const [plain, more] = [run(b!), run(padded)];
    assert.ok(Math.abs(plain.loss - more.loss) <= 1e-6, `loss ${plain.loss} vs padded ${more.loss}`);
    assert.equal(more.tokens, plain.tokens);
    for (const [n, gt] of plain.grads) {
      const [x, y] = [gt.dataSync(), more.grads.get(n)!.dataSync()];
      x.forEach((v, i) => assert.ok(Math.abs(v - y[i]!) <= 1e-6 + 1e-4 * Math.abs(v), `${n}[${i}]: ${v} vs padded ${y[i]}`));
    }
    tf.dispose([...plain.grads.values(), ...more.grads.values()]);
    e.params.dispose(), e.optimizer.dispose();
  });

  it('a ViT LLaVA with two micro-batches a step and gradient checkpointing: the same as eager', function () {
    this.timeout(300_000);
    const g = graphOf(repo('pipelines/tiny-llava.pipe'));
    const batches = batchesOf(g, 16, 4, true);
    const e = trainer(g);
    const eager: number[] = [];
    for (let s = 0; s < 8; s++) {
      const { grads, loss } = accumulateGradients(e.runner, e.trainable, batches.slice(2 * s, 2 * s + 2), { gradientCheckpointing: true });
      clipByGlobalNorm(grads, 1);
      e.optimizer.apply(grads, 2e-3);
      for (const t of grads.values()) t.dispose();
      eager.push(loss);
    }
    const c = trainer(g);
    const stepper = new CompiledStepper(CompiledStepper.compilerFor()!, c.runner, c.params.vars, c.trainable, c.optimizer, { clip: 1, gradientCheckpointing: true });
    const compiled = [0, 1, 2, 3, 4, 5, 6, 7].map((s) => stepper.step(batches.slice(2 * s, 2 * s + 2), 2e-3));
    stepper.dispose();
    assert.deepEqual(compiled.map((r) => r.mode), ['traced', 'traced', 'graph', 'graph', 'graph', 'graph', 'graph', 'graph']);
    compiled.forEach((r, i) => assert.ok(Math.abs(r.loss - eager[i]!) <= 1e-5, `step ${i + 1}: compiled ${r.loss} eager ${eager[i]}`));
    e.params.dispose(), c.params.dispose(), e.optimizer.dispose(), c.optimizer.dispose();
  });

  it('a text-only batch takes its own graph, and each matches eager execution', function () {
    this.timeout(120_000);
    const g = graphOf(repo('pipelines/quickstart.pipe'));
    const [b1, b2, b3, b4] = batchesOf(g, 4, 8, true);
    const textOnly: Batch = { ...b4!, pixels: null, info: { ...b4!.info, imageStart: new Array(b4!.info.batch).fill(-1) } };
    const order = [b1!, b2!, b3!, textOnly, textOnly, textOnly, b4!];
    const e = trainer(g);
    const eager = order.map((b) => {
      const { grads, loss } = accumulateGradients(e.runner, e.trainable, [b]);
      clipByGlobalNorm(grads, 1);
      e.optimizer.apply(grads, 1e-3);
      for (const t of grads.values()) t.dispose();
      return loss;
    });
    const c = trainer(g);
    const stepper = new CompiledStepper(CompiledStepper.compilerFor()!, c.runner, c.params.vars, c.trainable, c.optimizer, { clip: 1 });
    const before = tf.memory().numTensors;
    const compiled = order.map((b) => stepper.step([b], 1e-3));
    assert.equal(tf.memory().numTensors, before, 'no tensor is left behind by a step');
    stepper.dispose();
    assert.deepEqual(compiled.map((r) => r.mode), ['traced', 'traced', 'graph', 'traced', 'traced', 'graph', 'graph']);
    compiled.forEach((r, i) => assert.ok(Math.abs(r.loss - eager[i]!) <= 1e-5, `step ${i + 1}: compiled ${r.loss} eager ${eager[i]}`));
    e.params.dispose(), c.params.dispose(), e.optimizer.dispose(), c.optimizer.dispose();
  });

  it('a step that reads a tensor back to JavaScript is refused, with the reason', () => {
    const compiler = CompiledStepper.compilerFor()!;
    const trace = compiler.recording(new Map());
    trace.record(() => withFeedRecorder(trace, () => tf.tidy(() => tf.add(tf.scalar(1), tf.scalar(2)).dataSync())));
    assert.equal(trace.refusal, 'the step reads a tensor back to JavaScript');
    const fine = compiler.recording(new Map());
    const x = tf.scalar(5); // made before the step: captured as a constant
    let sum: tf.Tensor | undefined;
    fine.record(() => (sum = tf.tidy(() => tf.add(tf.add(tf.scalar(1), tf.scalar(2)), x))));
    assert.equal(fine.refusal, undefined);
    fine.finish([sum!]);
    const exec = compiler.build(fine);
    const [again] = exec.run([]);
    assert.equal(again!.dataSync()[0], 8, 'the built step computes what the traced one did');
    tf.dispose([again!, sum!, x]);
    exec.dispose();
  });

  describe('in `pipec run`', () => {
    const sets = ['stage.align.steps=12', 'stage.align.checkpoint.every=4', 'stage.finetune.steps=4', 'stage.finetune.checkpoint.every=2'];
    const lossesOf = (dir: string) => readMetrics(dir).map((m) => m.loss);

    it('trains tiny.pipe as eager execution does (losses to 1e-5), and says so', async function () {
      this.timeout(300_000);
      const [a, b] = [tmpDir('compiled-run'), tmpDir('eager-run')];
      const compiled = await runIn(a, { graph: tinyGraph(sets), backend });
      const eager = await runIn(b, { graph: tinyGraph(sets), backend, compiledStep: false });
      assert.equal(compiled.error, undefined, compiled.log);
      assert.equal(eager.error, undefined, eager.log);
      assert.match(compiled.log, /compiled step: micro-batches of 8x\d+ tokens, images 8x3x16x16 run as /);
      assert.match(compiled.log, what);
      assert.doesNotMatch(eager.log, /compiled step/);
      const [lc, le] = [lossesOf(a), lossesOf(b)];
      assert.equal(lc.length, 16);
      lc.forEach((l, i) => assert.ok(Math.abs(l - le[i]!) <= 1e-5, `step ${i + 1}: compiled ${l}, eager ${le[i]}`));
    });

    it('a model whose LoRA adapter has dropout trains op by op, unpadded: the losses of compiledStep: false exactly', async function () {
      this.timeout(300_000);
      const lora = compile({ file: repo('test/runtime/tiny-lora.pipe'), configFiles: [], sets: [], lower: true }).graph!;
      const [a, b] = [tmpDir('lora-default'), tmpDir('lora-eager')];
      const ran = await runIn(a, { graph: lora, backend });
      assert.equal(ran.error, undefined, ran.log);
      assert.equal((await runIn(b, { graph: lora, backend, compiledStep: false })).error, undefined);
      assert.match(ran.log, /note: the compiled step is off for stage align: LoRA dropout draws its masks in JavaScript; it trains op by op/);
      assert.doesNotMatch(ran.log, /compiled step: micro-batches/);
      assert.deepEqual(lossesOf(a), lossesOf(b), 'a padded micro-batch would have drawn other dropout masks');
    });

    it('resumes: an interrupted and resumed run logs the losses of an uninterrupted one (wasm: bit for bit)', async function () {
      this.timeout(300_000);
      const [whole, cut] = [tmpDir('compiled-whole'), tmpDir('compiled-cut')];
      assert.equal((await runIn(whole, { graph: tinyGraph(sets), backend })).error, undefined);
      assert.equal((await runIn(cut, { graph: tinyGraph(sets), backend, stopAfterSteps: 9 })).error, undefined);
      const resumed = await runIn(cut, { graph: tinyGraph(sets), backend, resume: true });
      assert.equal(resumed.error, undefined, resumed.log);
      const [lw, lr] = [lossesOf(whole), lossesOf(cut)];
      assert.equal(lr.length, lw.length);
      lr.forEach((l, i) => assert.ok(Math.abs(l - lw[i]!) <= resumeTolerance, `step ${i + 1}: resumed ${l}, uninterrupted ${lw[i]}`));
      assert.ok(fs.existsSync(path.join(cut, 'summary.json')));
    });
  });
});

describe('the wasm kernel replay, kernel by kernel', function () {
  let restore: (() => void) | undefined;
  before(async function () {
    if (!backends.includes('wasm')) unavailable(this, 'the wasm backend', 'see docs/runtime.md');
    restore = await useBackend('wasm');
  });
  after(() => restore?.());
  const held = () => tf.engine().backend.numDataIds();

  /** A trace of `f(x)` with x an input (a "parameter"), and its replay. */
  function traced(x: tf.Tensor, f: (x: tf.Tensor) => tf.Tensor): { trace: KernelTrace; replay: KernelReplay; first: tf.Tensor } {
    const trace = new KernelTrace('wasm', tf.backend() as never, new Map([['param:x', x]]));
    let first: tf.Tensor | undefined;
    trace.record(() => (first = tf.tidy(() => f(x))));
    assert.equal(trace.refusal, undefined);
    trace.finish([first!]);
    return { trace, replay: new KernelReplay(tf.backend() as never, trace), first: first! };
  }

  it('kernels that only copy share their input\'s data, and the results equal the eager ones', () => {
    const x = tf.tensor3d([1, 2, 3, 4, 5, 6], [1, 2, 3]);
    // a Transpose that moves only the size-1 axis, an Identity, a Cast to float32; then real work
    const f = (t: tf.Tensor) => tf.mul(tf.clone(tf.cast(tf.transpose(t, [1, 0, 2]), 'float32')), tf.transpose(t, [1, 0, 2]));
    const { trace, replay, first } = traced(x, f);
    const kernels = trace.calls.map((c) => c.kernel);
    for (const k of ['Transpose', 'Identity', 'Cast', 'Multiply']) assert.ok(kernels.includes(k), `${k} in ${kernels.join(', ')}`);
    const y = tf.tensor3d([2, 0, -1, 1, 3, 0.5], [1, 2, 3]);
    const before = held();
    const [again] = replay.run([y]);
    assert.deepEqual(Array.from(again!.dataSync()), [4, 0, 1, 1, 9, 0.25]);
    assert.deepEqual(again!.shape, first.shape);
    again!.dispose();
    assert.equal(held(), before, 'the replay freed all it made');
    replay.dispose();
    tf.dispose([x, y, first]);
  });

  it('a kernel whose output shape follows the data stops the replay, which frees what it made', () => {
    // a kernel of the test's own: as many rows as x's first value says
    tf.registerKernel({
      kernelName: 'PipecTestRows',
      backendName: 'wasm',
      kernelFunc: ({ inputs, backend }) => {
        const b = backend as unknown as { readSync(id: object): Float32Array; makeOutput(shape: number[], dtype: string): tf.TensorInfo; typedArrayFromHeap(t: tf.TensorInfo): Float32Array };
        const x = (inputs as { x: tf.TensorInfo }).x;
        const out = b.makeOutput([b.readSync(x.dataId)[0]!], 'float32');
        b.typedArrayFromHeap(out).fill(1);
        return out;
      },
    });
    try {
      const x = tf.tensor1d([2, 0]);
      const { replay, first } = traced(x, (t) => tf.add(tf.engine().runKernel('PipecTestRows', { x: tf.mul(t, 1) }) as tf.Tensor, 1));
      assert.deepEqual(Array.from(first.dataSync()), [2, 2]);
      const same = tf.tensor1d([2, 5]), other = tf.tensor1d([3, 0]);
      const [ok] = replay.run([same]);
      assert.deepEqual(Array.from(ok!.dataSync()), [2, 2]);
      const before = held();
      assert.throws(() => replay.run([other]), (e: unknown) => e instanceof ReplayMismatch && /PipecTestRows made \[3\] where the trace saw \[2\]/.test(e.message));
      assert.equal(held(), before, 'nothing the stopped replay made is left');
      replay.dispose();
      tf.dispose([x, first, same, other, ok!]);
    } finally {
      tf.unregisterKernel('PipecTestRows', 'wasm');
    }
  });
});
