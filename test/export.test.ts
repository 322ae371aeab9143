// `pipec export --target torch` and `pipec prepare` (docs/export.md): the generated program is
// deterministic (golden files), every shipped pipeline exports, the shards hold pipec's own
// micro-batches in pipec's order, and, where /usr/bin/python3 has torch, the exported trainer
// reproduces pipec's per-step losses (wasm, fp32), also data-parallel under the real torchrun (2 gloo
// processes; the generated launch.sh trains the quickstart's two stages), and its checkpoints load back into
// pipec with the same logits. Refresh the golden files with UPDATE_GOLDEN=1.
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Graph } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { initBackend } from '../runtime/backend/backends.js';
import { collate } from '../runtime/data/batch.js';
import { imageShapeOf, prepareDataset } from '../runtime/data/datasets.js';
import { deepspeedConfig } from '../runtime/export/launch.js';
import { prepareStages, runTokenizer } from '../runtime/export/prepare.js';
import { exportTorch } from '../runtime/export/torch.js';
import { ModelRunner } from '../runtime/model.js';
import { ParamStore, paramSpecs } from '../runtime/params.js';
import { loadComponents } from '../runtime/train/checkpoint.js';
import { readMetrics } from '../runtime/train/metrics.js';
import { Progress } from '../runtime/train/progress.js';
import { graphHash, microBatch, runProgram, stageSteps } from '../runtime/train/run.js';
import { repo } from './paths.js';

const PY = process.env.PIPEC_TEST_PYTHON ?? '/usr/bin/python3'; // the skip path: PIPEC_TEST_PYTHON=/nonexistent
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const GOLDEN = repo('test/export/golden');
const quiet = new Progress({ write: () => true });

/** Compiles a program of the repository; `source` is kept repository-relative so exports are machine-independent. */
function graphOf(rel: string, sets: string[] = []): Graph {
  const r = compile({ file: repo(rel), configFiles: [], sets, lower: true });
  assert.ok(r.graph, `${rel} compiles: ${r.diagnostics.map((d) => d.message).join('; ')}`);
  return { ...r.graph, source: rel };
}

function tmpDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `pipec-export-${name}-`));
}

function writeExport(g: Graph, dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, text] of exportTorch(g)) (fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true }), fs.writeFileSync(path.join(dir, name), text));
  return dir;
}

let torchChecked: boolean | undefined;
function hasTorch(): boolean {
  if (torchChecked === undefined) torchChecked = fs.existsSync(PY) && spawnSync(PY, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
  return torchChecked;
}

function python(args: string[], cwd?: string): string {
  const r = spawnSync(PY, args, { encoding: 'utf8', cwd, maxBuffer: 64 * 1024 * 1024 });
  assert.equal(r.status, 0, `python3 ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** A TCP port nobody listens on now (for torchrun's rendezvous). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Debian's torch 1.13 torchrun under Python 3.11 crashes in to_map without these (docs/export.md). */
const TORCHRUN_FIX = ['--redirects', '1', '--tee', '1'];

/** Runs `torchrun --nproc_per_node N` (py -m torch.distributed.run, gloo on CPU) in `cwd`, its logs under cwd/torchrun-logs; returns its output. */
async function torchrun(nproc: number, script: string, args: string[], cwd: string, py = PY): Promise<string> {
  const port = await freePort();
  const r = spawnSync(py, ['-m', 'torch.distributed.run', '--nproc_per_node', String(nproc), ...TORCHRUN_FIX, '--log_dir', path.join(cwd, 'torchrun-logs'), '--master_addr', '127.0.0.1', '--master_port', String(port), script, ...args],
    { encoding: 'utf8', cwd, maxBuffer: 64 * 1024 * 1024 });
  const output = `${r.stdout}\n${r.stderr}`;
  assert.equal(r.status, 0, `torchrun --nproc_per_node ${nproc} ${script} ${args.join(' ')} failed:\n${output.slice(-4000)}`);
  return output;
}

/** Mean of the losses of `rows`. */
const meanLoss = (rows: { loss: number }[]) => rows.reduce((a, m) => a + m.loss, 0) / rows.length;

/** Relative difference of two losses. */
const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(a), 1e-12);

/** pipec's logits for prepared micro-batch `k` of `stage` under the given weights folder. */
function pipecLogits(g: Graph, stageName: string, weightsDir: string, k: number): { data: Float32Array; shape: number[] } {
  const stage = g.stages.find((s) => s.name === stageName)!;
  const model = g.models.find((m) => m.name === stage.model)!;
  const { tokenizer } = runTokenizer(g, repo(path.dirname(g.source)));
  const data = prepareDataset(stage.data, { graph: g, baseDir: repo(path.dirname(g.source)), model, tokenizer, maxLength: stage.max_length });
  const { microPerEpoch } = stageSteps(stage, data.train.length);
  const batch = collate(microBatch(data.train, stage, microPerEpoch, k), tokenizer.padId ?? 0, imageShapeOf(model));
  const store = new ParamStore(paramSpecs(model.components), 12345);
  loadComponents(weightsDir, model.components.map((c) => c.name), store);
  const out = tf.tidy(() => {
    const r = new ModelRunner(model, store).forward({ pixels: batch.pixels ? tf.tensor4d(batch.pixels.data, batch.pixels.shape) : null, inputIds: batch.inputIds, info: batch.info });
    return { data: r.logits.dataSync() as Float32Array, shape: r.logits.shape };
  });
  store.dispose();
  return out;
}

function readF32(file: string): Float32Array {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** max |a - b| / max |a|: logits agreement relative to their scale. */
function maxRelDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) (d = Math.max(d, Math.abs(a[i]! - b[i]!)), m = Math.max(m, Math.abs(a[i]!)));
  return d / Math.max(m, 1e-12);
}

describe('export: generated PyTorch program', function () {
  this.timeout(120_000);

  it('is deterministic, names the source and graph hash, and matches the golden files (tiny.pipe)', () => {
    const g = graphOf('test/runtime/tiny.pipe');
    const a = exportTorch(g), b = exportTorch(graphOf('test/runtime/tiny.pipe'));
    assert.deepEqual([...a.keys()].slice(0, 2), ['model.py', 'train.py']);
    for (const [name, text] of a) {
      assert.equal(text, b.get(name), `${name} differs between two exports`);
      if (name.endsWith('.py')) assert.ok(text.split('\n').slice(0, 3).join('\n').includes(`from test/runtime/tiny.pipe (graph ${graphHash(g)}`), `${name} header`);
      const file = path.join(GOLDEN, 'tiny', name);
      if (UPDATE) (fs.mkdirSync(path.dirname(file), { recursive: true }), fs.writeFileSync(file, text));
      assert.equal(text, fs.readFileSync(file, 'utf8'), `${name} differs from ${path.relative(repo(), file)} (UPDATE_GOLDEN=1 refreshes it)`);
    }
  });

  it('exports every shipped pipeline, with every parameter under its pipec name', () => {
    for (const f of fs.readdirSync(repo('pipelines')).filter((x) => x.endsWith('.pipe')).sort()) {
      const g = graphOf(`pipelines/${f}`);
      const files = exportTorch(g, { customAsBase: true }); // tanuki's custom LM is Mixtral underneath
      const model = files.get('model.py')!;
      for (const m of g.models) for (const c of m.components) for (const t of c.tensors) assert.ok(model.includes(JSON.stringify(t.name)), `${f}: ${t.name}`);
      for (const s of g.stages) assert.ok(files.get('train.py')!.includes(`"name": ${JSON.stringify(s.name)}`), `${f}: stage ${s.name}`);
    }
  });

  it('refuses custom components with a clear message, or exports them as their base when asked', () => {
    const g = graphOf('test/runtime/custom.pipe');
    assert.throws(() => exportTorch(g), /custom component.*cannot be exported.*--custom-as-base/);
    const model = exportTorch(g, { customAsBase: true }).get('model.py')!;
    assert.match(model, /# NOTE: custom class \w+ \(.*\) exported as its base, (llama|mistral|mixtral); its own forward is not translated/);
  });

  it('the generated files are valid Python (syntax), when python3 is present', function () {
    if (!fs.existsSync(PY)) this.skip();
    const dir = writeExport(graphOf('pipelines/quickstart.pipe'), tmpDir('syntax'));
    python(['-c', 'import ast, sys\nfor f in sys.argv[1:]: ast.parse(open(f).read(), f)', path.join(dir, 'model.py'), path.join(dir, 'train.py')]);
  });
});

describe('export: CLI', function () {
  this.timeout(120_000);
  const pipec = (args: string[]) => spawnSync(process.execPath, [repo('bin/pipec.js'), ...args], { encoding: 'utf8', cwd: repo(), env: { ...process.env, NO_COLOR: '1' } });

  it('pipec export / prepare write their files; wrong use exits 2, an unexportable program 1', () => {
    const out = tmpDir('cli');
    let r = pipec(['export', 'test/runtime/tiny.pipe', '--target', 'torch', '-o', path.join(out, 'ex')]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(fs.readFileSync(path.join(out, 'ex', 'model.py'), 'utf8'), fs.readFileSync(path.join(GOLDEN, 'tiny', 'model.py'), 'utf8'));
    assert.ok(fs.statSync(path.join(out, 'ex', 'launch', 'launch.sh')).mode & 0o100, 'launch.sh is executable');
    r = pipec(['prepare', 'test/runtime/tiny.pipe', '--stage', 'align', '-o', path.join(out, 'data', 'align'), '--init']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /stage align: 24 micro-batches \(24 steps\) from 87 records/);
    assert.ok(fs.existsSync(path.join(out, 'data', 'align', 'init', 'lm', 'model.safetensors')));
    assert.equal(pipec(['export', 'test/runtime/tiny.pipe', '-o', out]).status, 2); // no --target
    assert.equal(pipec(['export', 'test/runtime/tiny.pipe', '--target', 'onnx', '-o', out]).status, 2);
    assert.equal(pipec(['prepare', 'test/runtime/tiny.pipe', '--stage', 'nope', '-o', out]).status, 2);
    r = pipec(['export', 'pipelines/tanuki-8x8b-vision.pipe', '--target', 'torch', '-o', path.join(out, 'tanuki')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /custom component \(TanukiForCausalLM\).*--custom-as-base/);
    assert.equal(pipec(['export', 'pipelines/tanuki-8x8b-vision.pipe', '--target', 'torch', '--custom-as-base', '-o', path.join(out, 'tanuki')]).status, 0);
  });
});

describe('export: launch configurations', function () {
  it('tanuki-8x8b-vision: 2 nodes x 8 GPUs, each stage\'s DeepSpeed JSON field by field (ZeRO-3, bf16, batch sizes, MoE leaf modules, no optimizer/scheduler), accelerate and torchrun', () => {
    const g = graphOf('pipelines/tanuki-8x8b-vision.pipe');
    const files = exportTorch(g, { customAsBase: true });
    const model = g.models[0]!;
    const lm = model.components.find((c) => c.name === 'lm')!;
    assert.equal(lm.custom?.base, 'mixtral', 'the custom LM is a Mixtral underneath');
    // what the program declares (pipelines/tanuki-8x8b-vision.pipe): batch / accumulate per stage, 2 x 8 GPUs, zero3, bf16
    const declared: Record<string, { batch: number; accumulate: number; global: number }> = { align: { batch: 16, accumulate: 1, global: 256 }, finetune: { batch: 2, accumulate: 4, global: 128 } };
    assert.deepEqual(g.stages.map((s) => s.name), Object.keys(declared));
    for (const s of g.stages) {
      assert.deepEqual([s.devices.nodes, s.devices.per_node, s.devices.kind, s.sharding, s.precision, s.clip_grad], [2, 8, 'gpu', 'zero3', 'bf16', 1], `stage ${s.name}'s plan (clipping: the default, 1)`);
      assert.deepEqual([s.batch, s.accumulate, s.global_batch], [declared[s.name]!.batch, declared[s.name]!.accumulate, declared[s.name]!.global], `stage ${s.name}'s batch, accumulate and global batch`);
      const world = s.devices.nodes * s.devices.per_node;
      const ds = JSON.parse(files.get(`launch/${s.name}.deepspeed.json`)!);
      // every field, so that an added, dropped or changed one fails
      assert.deepEqual(Object.keys(ds).sort(), ['bf16', 'fp16', 'gradient_accumulation_steps', 'gradient_clipping', 'steps_per_print', 'train_batch_size', 'train_micro_batch_size_per_gpu', 'wall_clock_breakdown', 'zero_optimization']);
      assert.ok(!('optimizer' in ds) && !('scheduler' in ds), 'the trainer brings its own optimizer and schedule');
      assert.equal(ds.train_batch_size, s.global_batch);
      assert.equal(ds.train_micro_batch_size_per_gpu, s.batch);
      assert.equal(ds.gradient_accumulation_steps, s.accumulate);
      assert.equal(ds.train_micro_batch_size_per_gpu * ds.gradient_accumulation_steps * world, ds.train_batch_size, 'per-device batch x accumulation x 16 devices = global batch');
      assert.equal(ds.gradient_clipping, s.clip_grad);
      assert.deepEqual(ds.bf16, { enabled: true });
      assert.deepEqual(ds.fp16, { enabled: false });
      assert.equal(ds.steps_per_print, 10);
      assert.equal(ds.wall_clock_breakdown, false);
      assert.deepEqual(ds.zero_optimization, {
        stage: 3, overlap_comm: true, contiguous_gradients: true, reduce_bucket_size: 5e8,
        stage3_prefetch_bucket_size: 5e8, stage3_param_persistence_threshold: 1e6, stage3_gather_16bit_weights_on_model_save: true,
        // DeepSpeed's DeepSpeedZeroLeafModuleConfig: every layer's MoE block is gathered whole
        leaf_module: { classes: ['MixtralSparseMoeBlock'], name_suffixes: ['block_sparse_moe'] },
      });
      const manifest = JSON.parse(files.get(`launch/${s.name}.launch.json`)!);
      assert.deepEqual(manifest.zero3_leaf_modules, [{ component: 'lm', modules: 'model.layers.{i}.block_sparse_moe', repeat: { i: Number(lm.attrs['layers']) } }]);
      assert.deepEqual([manifest.world_size, manifest.batch_per_device, manifest.accumulate, manifest.global_batch, manifest.zero_stage], [16, s.batch, s.accumulate, s.global_batch, 3]);
      const acc = files.get(`launch/${s.name}.accelerate.yaml`)!;
      assert.match(acc, /distributed_type: DEEPSPEED/);
      assert.match(acc, new RegExp(`deepspeed_config_file: launch/${s.name}\\.deepspeed\\.json`));
      assert.match(acc, /num_machines: 2\nnum_processes: 16/);
      assert.match(acc, /mixed_precision: bf16/);
    }
    const sh = files.get('launch/launch.sh')!;
    // sharding zero3: FSDP FULL_SHARD in the exported trainer
    assert.match(sh, /torchrun \$\{TORCHRUN_ARGS:-\} --nnodes 2 --nproc_per_node 8 .*\n  train\.py --data data --out run --until align --fsdp full\n/);
    assert.match(sh, /train\.py --data data --out run --resume --until finetune --fsdp full\n/);
    assert.match(sh, /TORCHRUN_ARGS="--redirects 1 --tee 1"/, 'launch.sh says what Debian\'s torch 1.13 needs');
  });

  it('adds MoE leaf modules only at ZeRO-3 and only for a model with a Mixtral component', () => {
    const tanuki = graphOf('pipelines/tanuki-8x8b-vision.pipe');
    const align = tanuki.stages[0]!;
    for (const sharding of ['none', 'ddp', 'zero1', 'zero2'] as const) {
      const zero = deepspeedConfig({ ...align, sharding }, tanuki.models[0]!)['zero_optimization'] as Record<string, unknown>;
      assert.ok(!('leaf_module' in zero), `${sharding}: no leaf_module`);
    }
    assert.ok('leaf_module' in (deepspeedConfig(align, tanuki.models[0]!)['zero_optimization'] as object));
    // llava-1.5-7b: a llama LM; its finetune stage is ZeRO-3, its pretrain ZeRO-2
    const llava = graphOf('pipelines/llava-1.5-7b.pipe');
    const files = exportTorch(llava);
    assert.deepEqual(llava.stages.map((s) => s.sharding), ['zero2', 'zero3']);
    for (const s of llava.stages) {
      const ds = JSON.parse(files.get(`launch/${s.name}.deepspeed.json`)!);
      assert.equal(ds.zero_optimization.stage, s.sharding === 'zero3' ? 3 : 2);
      assert.ok(!('leaf_module' in ds.zero_optimization), `llava ${s.name}: no MoE, no leaf_module`);
      assert.deepEqual(JSON.parse(files.get(`launch/${s.name}.launch.json`)!).zero3_leaf_modules, []);
    }
    // tiny-moe: Mixtral on one CPU, no sharding
    const moe = exportTorch(graphOf('test/export/tiny-moe.pipe'));
    assert.ok(!('leaf_module' in JSON.parse(moe.get('launch/joint.deepspeed.json')!).zero_optimization));
  });

  it('refuses a stage whose batch x accumulate x world size is not its global batch', () => {
    const g = graphOf('test/runtime/tiny.pipe');
    const bad = { ...g, stages: g.stages.map((s, i) => (i === 0 ? { ...s, global_batch: s.global_batch + 1 } : s)) };
    assert.throws(() => exportTorch(bad), /stage align: batch 8 x accumulate 1 x world size 1 = 8, but the stage's global batch is 9/);
  });
});

describe('export: pipec prepare', function () {
  this.timeout(120_000);

  it('writes pipec\'s own micro-batches, in its training order, with sha256 checksums', () => {
    const g = graphOf('test/runtime/tiny.pipe');
    const out = tmpDir('prepare');
    const done = prepareStages({ graph: g, baseDir: repo('test/runtime'), outDir: out, shardBytes: 100_000 });
    assert.deepEqual(done.map((d) => [d.stage, d.steps, d.microBatches]), [['align', 24, 24], ['finetune', 8, 8]]);
    const dir = path.join(out, 'align');
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
    assert.equal(index.format, 'pipec.shards');
    assert.equal(index.graph_hash, graphHash(g));
    assert.ok(index.shards.length > 1, 'small shards split the stage');
    for (const s of index.shards) assert.equal(createHash('sha256').update(fs.readFileSync(path.join(dir, s.file))).digest('hex'), s.sha256);
    // decode micro-batches and compare with what pipec run collates for the same step
    const stage = g.stages[0]!, model = g.models[0]!;
    const { tokenizer } = runTokenizer(g, repo('test/runtime'));
    const data = prepareDataset(stage.data, { graph: g, baseDir: repo('test/runtime'), model, tokenizer, maxLength: stage.max_length });
    const { microPerEpoch } = stageSteps(stage, data.train.length);
    for (const k of [0, 5, 11, 23]) {
      const want = collate(microBatch(data.train, stage, microPerEpoch, k), tokenizer.padId ?? 0, imageShapeOf(model));
      const e = index.batches[k];
      const buf = fs.readFileSync(path.join(dir, e.shard));
      const n = e.batch * e.length;
      let off = e.offset;
      const i32 = (count: number) => {
        const a = new Int32Array(count);
        for (let i = 0; i < count; i++) a[i] = buf.readInt32LE(off + 4 * i);
        off += 4 * count;
        return a;
      };
      assert.deepEqual([...i32(n)], [...want.inputIds], `input_ids of micro-batch ${k}`);
      assert.deepEqual([...i32(n)], [...want.labels], `labels of micro-batch ${k}`);
      assert.deepEqual([...i32(n)], [...want.info.attentionMask]);
      assert.deepEqual([...i32(e.batch)], want.info.imageStart);
      const px = want.pixels!.data;
      for (const i of [0, 1, px.length - 1]) assert.equal(buf.readFloatLE(off + 4 * i), px[i]);
    }
  });
});

/** The first `steps` losses of two runs agree step by step to `tol` (relative); returns the worst difference. */
function compareLosses(name: string, a: { loss: number; stage: string; step: number }[], b: { loss: number; stage: string; step: number }[], steps: number, tol = 1e-4): number {
  assert.ok(a.length >= steps && b.length >= steps, `${name}: ${a.length} pipec steps, ${b.length} torch steps`);
  let worst = 0;
  for (let i = 0; i < steps; i++) {
    assert.deepEqual([b[i]!.stage, b[i]!.step], [a[i]!.stage, a[i]!.step]);
    const r = rel(a[i]!.loss, b[i]!.loss);
    worst = Math.max(worst, r);
    assert.ok(r < tol, `${name} ${a[i]!.stage} step ${a[i]!.step}: pipec ${a[i]!.loss}, torch ${b[i]!.loss} (relative ${r.toExponential(2)})`);
  }
  console.log(`      ${name}: ${steps} steps, worst relative loss difference ${worst.toExponential(2)}`);
  return worst;
}

describe('export: the exported trainer reproduces pipec (python3 + torch)', function () {
  this.timeout(600_000);

  before(async function () {
    if (!hasTorch()) {
      console.log(`      skipped: ${PY} cannot import torch (apt-get install -y python3-torch)`);
      this.skip();
    }
    await initBackend('wasm');
  });

  /** pipec run (wasm) and the exported trainer from the same prepared shards; returns both metrics and folders. */
  async function both(rel: string, o: { stopAfter?: number; stage?: string; init: boolean }) {
    const g = graphOf(rel);
    const base = repo(path.dirname(rel));
    const work = tmpDir(path.basename(rel, '.pipe'));
    const t0 = performance.now();
    await runProgram({ graph: g, baseDir: base, runDir: path.join(work, 'pipec'), backend: 'wasm', out: quiet, stopAfterSteps: o.stopAfter, evaluate: false });
    const tPipec = (performance.now() - t0) / 1000;
    const data = path.join(work, 'data');
    prepareStages({ graph: g, baseDir: base, outDir: o.stage ? path.join(data, o.stage) : data, stage: o.stage, init: o.init });
    writeExport(g, path.join(work, 'torch'));
    const first = o.stage ?? g.stages[0]!.name;
    const t1 = performance.now();
    python([path.join(work, 'torch', 'train.py'), '--data', data, '--out', path.join(work, 'torch-run'),
      ...(o.init ? ['--init', path.join(data, first, 'init')] : []), ...(o.stopAfter ? ['--stop-after', String(o.stopAfter)] : [])]);
    const tTorch = (performance.now() - t1) / 1000;
    return { g, work, data, pipec: readMetrics(path.join(work, 'pipec')), torch: readMetrics(path.join(work, 'torch-run')), tPipec, tTorch };
  }



  it('tiny.pipe (vit, mlp_gelu, llama; two stages with hand-off): every step\'s loss to 1e-4, the checkpoint loads into pipec with the same logits', async () => {
    const r = await both('test/runtime/tiny.pipe', { init: true });
    console.log(`      times: pipec run ${r.tPipec.toFixed(1)} s, exported trainer ${r.tTorch.toFixed(1)} s (incl. python start)`);
    compareLosses('tiny', r.pipec, r.torch, 32);
    // the exported program's final checkpoint, loaded by pipec, gives the logits the exported program computes
    const ckpt = path.join(r.work, 'torch-run', 'checkpoints', '01-finetune-step000008');
    const out = path.join(r.work, 'logits.bin');
    python([path.join(r.work, 'torch', 'train.py'), '--data', r.data, '--eval-logits', out, '--checkpoint', ckpt, '--stage', 'finetune', '--micro', '3']);
    const mine = pipecLogits(r.g, 'finetune', ckpt, 3);
    const d = maxRelDiff(mine.data, readF32(out));
    console.log(`      logits of a torch-trained checkpoint, pipec vs torch: max difference ${d.toExponential(2)} of the largest logit`);
    assert.ok(d < 1e-4, `logits differ by ${d}`);
    // and the trainer's own bookkeeping is pipec's: same checkpoint names, trainer state, optimizer tensor names
    const names = (run: string) => fs.readdirSync(path.join(r.work, run, 'checkpoints')).sort();
    assert.deepEqual(names('torch-run'), names('pipec'));
    const st = JSON.parse(fs.readFileSync(path.join(ckpt, 'trainer_state.json'), 'utf8'));
    assert.deepEqual([st.graph_hash, st.stage, st.step, st.final, st.stage_checkpoints], [graphHash(r.g), 'finetune', 8, true, { align: '00-align-step000024', finetune: '01-finetune-step000008' }]);
  });

  it('without --init the trainer draws pipec\'s own initial weights (its seeded streams, ported)', async function () {
    const g = graphOf('test/runtime/tiny.pipe', ['stage.align.steps=3', 'stage.finetune.steps=1']);
    const work = tmpDir('init');
    const data = path.join(work, 'data');
    prepareStages({ graph: g, baseDir: repo('test/runtime'), outDir: data, init: true });
    writeExport(g, path.join(work, 'torch'));
    python([path.join(work, 'torch', 'train.py'), '--data', data, '--out', path.join(work, 'run')]);
    const init = path.join(work, 'run', 'checkpoints', '00-align-step000003');
    // frozen components after align are untouched fresh weights: compare with pipec's init/ bit for bit
    for (const c of ['vision', 'lm']) {
      const a = fs.readFileSync(path.join(init, c, 'model.safetensors')), b = fs.readFileSync(path.join(data, 'align', 'init', c, 'model.safetensors'));
      const body = (x: Buffer) => x.subarray(8 + Number(x.readBigUInt64LE(0)));
      assert.ok(body(a).equals(body(b)), `${c}: fresh weights differ from pipec's`);
    }
  });

  it('tiny-moe (siglip_vit, linear, mixtral top-2 + aux loss, accumulate 2, clipping, AdamW then SGD): every step to 1e-4', async () => {
    const r = await both('test/export/tiny-moe.pipe', { init: false });
    assert.ok(r.pipec.every((m) => (m.aux_loss ?? 0) > 0), 'the load-balancing loss is part of the loss');
    compareLosses('tiny-moe', r.pipec, r.torch, 20);
    for (let i = 0; i < 20; i++) assert.ok(rel(r.pipec[i]!.aux_loss!, r.torch[i]!.aux_loss!) < 1e-4, `aux loss at ${i + 1}`);
  });

  it('--stop-after then --resume gives the same losses as an uninterrupted exported run', () => {
    const g = graphOf('test/runtime/tiny.pipe');
    const work = tmpDir('resume');
    const data = path.join(work, 'data');
    prepareStages({ graph: g, baseDir: repo('test/runtime'), outDir: data });
    writeExport(g, path.join(work, 'torch'));
    const train = (out: string, extra: string[]) => python([path.join(work, 'torch', 'train.py'), '--data', data, '--out', path.join(work, out), ...extra]);
    train('ref', []);
    train('cut', ['--stop-after', '22']); // last periodic checkpoint: align step 20
    train('cut', ['--resume']);
    const a = readMetrics(path.join(work, 'ref')), b = readMetrics(path.join(work, 'cut'));
    assert.equal(b.length, 32);
    for (let i = 0; i < 32; i++) assert.ok(rel(a[i]!.loss, b[i]!.loss) < 1e-6, `step ${i + 1}: ${a[i]!.loss} vs ${b[i]!.loss}`);
  });

  it('data parallel under torchrun: 2 processes (gloo) x accumulate 1 give the losses of pipec with accumulate 2', async () => {
    const g = graphOf('test/runtime/tiny.pipe');
    const work = tmpDir('ddp');
    await runProgram({ graph: graphOf('test/runtime/tiny.pipe', ['stage.align.accumulate=2', 'stage.finetune.accumulate=2']), baseDir: repo('test/runtime'), runDir: path.join(work, 'pipec'), backend: 'wasm', out: quiet, evaluate: false });
    const data = path.join(work, 'data');
    prepareStages({ graph: g, baseDir: repo('test/runtime'), outDir: data, worldSize: 2 });
    writeExport(g, path.join(work, 'torch'));
    const log = await torchrun(2, path.join(work, 'torch', 'train.py'), ['--data', data, '--out', path.join(work, 'ddp')], work);
    assert.match(log, /stage align: .*16 samples \(batch 8 x accumulate 1 x 2 process\(es\)\)/, 'train.py saw WORLD_SIZE 2 from torchrun');
    const a = readMetrics(path.join(work, 'pipec')), b = readMetrics(path.join(work, 'ddp'));
    compareLosses('data parallel (torchrun, 2 processes)', a, b, 32);
    assert.deepEqual(b.map((m) => m.tokens), a.map((m) => m.tokens));
  });

  it('quickstart under torchrun --nproc_per_node 2 via the generated launch.sh: both stages train, the loss falls, the DDP checkpoint loads into pipec', async () => {
    // Two processes per stage (devices: 2 x cpu, so global batch = 16 per process x 2), half an epoch each to keep it short.
    const sets = ['stage.pretrain.devices.count=2', 'stage.instruct.devices.count=2', 'stage.pretrain.epochs=0.5', 'stage.instruct.epochs=0.5'];
    const g = graphOf('pipelines/quickstart.pipe', sets);
    for (const s of g.stages) assert.deepEqual([s.devices.nodes * s.devices.per_node, s.global_batch], [2, s.batch * s.accumulate * 2], `stage ${s.name}: 2 processes, global batch = batch x accumulate x 2`);
    const work = tmpDir('quickstart-ddp');
    const out = writeExport(g, path.join(work, 'export'));
    const prepared = prepareStages({ graph: g, baseDir: repo('pipelines'), outDir: path.join(out, 'data'), worldSize: 2 });
    // launch.sh calls `torchrun`: make it this interpreter's (PIPEC_TEST_PYTHON), with the flags Debian's 1.13 needs
    const bin = path.join(work, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'torchrun'), `#!/bin/sh\nexec '${PY}' -m torch.distributed.run "$@"\n`, { mode: 0o755 });
    const r = spawnSync('bash', [path.join(out, 'launch', 'launch.sh')], {
      encoding: 'utf8', maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}`, TORCHRUN_ARGS: [...TORCHRUN_FIX, '--log_dir', path.join(work, 'torchrun-logs')].join(' '), MASTER_PORT: String(await freePort()) },
    });
    const log = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.status, 0, `launch.sh failed:\n${log.slice(-4000)}`);
    // both ranks ran (torchrun --tee prefixes each process's lines), and each stage ran with 2 processes
    assert.match(log, /\[default0\]:resuming from/);
    assert.match(log, /\[default1\]:resuming from/);
    for (const s of g.stages) assert.match(log, new RegExp(`stage ${s.name}: .* of ${s.batch * 2} samples \\(batch ${s.batch} x accumulate 1 x 2 process\\(es\\)\\)`));
    const metrics = readMetrics(path.join(out, 'run'));
    for (const p of prepared) {
      const rows = metrics.filter((m) => m.stage === p.stage);
      assert.deepEqual(rows.map((m) => m.step), Array.from({ length: p.steps }, (_, i) => i + 1), `stage ${p.stage}: every step once`);
      assert.ok(p.steps >= 20, `stage ${p.stage}: ${p.steps} steps`);
      const first = meanLoss(rows.slice(0, 5)), last = meanLoss(rows.slice(-5));
      console.log(`      quickstart ${p.stage} under torchrun (2 processes, ${p.steps} steps): mean loss of the first 5 steps ${first.toFixed(3)}, of the last 5 ${last.toFixed(3)}`);
      assert.ok(last < 0.8 * first, `stage ${p.stage}: the loss did not fall (first 5 steps ${first}, last 5 ${last})`);
    }
    // the final checkpoint, written by process 0 under DDP, is pipec's layout and loads into pipec with the exported program's logits
    const [pre, ins] = prepared.map((p, i) => `${String(i).padStart(2, '0')}-${p.stage}-step${String(p.steps).padStart(6, '0')}`);
    const ckpt = path.join(out, 'run', 'checkpoints', ins!);
    const st = JSON.parse(fs.readFileSync(path.join(ckpt, 'trainer_state.json'), 'utf8'));
    assert.deepEqual([st.graph_hash, st.stage, st.step, st.final, st.stage_checkpoints], [graphHash(g), 'instruct', prepared[1]!.steps, true, { pretrain: pre, instruct: ins }]);
    const logits = path.join(work, 'logits.bin');
    python([path.join(out, 'train.py'), '--data', path.join(out, 'data'), '--eval-logits', logits, '--checkpoint', ckpt, '--stage', 'instruct', '--micro', '5']);
    const mine = pipecLogits(g, 'instruct', ckpt, 5);
    const d = maxRelDiff(mine.data, readF32(logits));
    console.log(`      logits of the DDP-trained checkpoint, pipec vs torch: max difference ${d.toExponential(2)} of the largest logit`);
    assert.ok(d < 1e-4, `logits differ by ${d}`);
  });

  it('the DeepSpeed leaf_module suffix names every MoE block of an exported model, and nothing else', () => {
    const tanuki = exportTorch(graphOf('pipelines/tanuki-8x8b-vision.pipe'), { customAsBase: true });
    const leaf = JSON.parse(tanuki.get('launch/align.deepspeed.json')!).zero_optimization.leaf_module as { name_suffixes: string[] };
    const g = graphOf('test/export/tiny-moe.pipe');
    const dir = writeExport(g, tmpDir('leaf'));
    const names = JSON.parse(python(['-c', 'import json, sys\nsys.path.insert(0, sys.argv[1])\nfrom model import MODELS\nprint(json.dumps([n for n, _ in list(MODELS.values())[0]().named_modules()]))', dir])) as string[];
    // DeepSpeed's set_z3_leaf_modules_by_suffix: every named_modules() name that ends with a suffix
    const matched = names.filter((n) => leaf.name_suffixes.some((x) => n.endsWith(x)));
    const layers = Number(g.models[0]!.components.find((c) => c.name === 'lm')!.attrs['layers']);
    assert.deepEqual(matched, Array.from({ length: layers }, (_, i) => `components.lm.model.layers.${i}.block_sparse_moe`));
    assert.ok(names.includes('components.lm.model.layers.0.block_sparse_moe.experts.0.w1'), 'the experts are inside the leaf');
  });

  it('pipelines/quickstart.pipe: the first 20 steps match pipec to 1e-4', async () => {
    const r = await both('pipelines/quickstart.pipe', { stopAfter: 20, stage: 'pretrain', init: true });
    console.log(`      times (20 steps): pipec run ${r.tPipec.toFixed(1)} s, exported trainer ${r.tTorch.toFixed(1)} s (incl. python start)`);
    compareLosses('quickstart', r.pipec, r.torch, 20);
  });
});

/** A Python with PyTorch >= 2 (FSDP with use_orig_params): PIPEC_TORCH2_PYTHON, or the venv `npm run setup:torch` makes. */
function torch2Python(): string | undefined {
  for (const py of [process.env.PIPEC_TORCH2_PYTHON, repo('.venv-torch/bin/python')]) {
    if (py && fs.existsSync(py) && spawnSync(py, ['-c', 'import sys, torch; sys.exit(0 if int(torch.__version__.split(".")[0]) >= 2 else 1)']).status === 0) return py;
  }
  return undefined;
}

/** The float32 tensors of a safetensors file. */
function readF32Tensors(file: string): Map<string, Float32Array> {
  const b = fs.readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const out = new Map<string, Float32Array>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    assert.equal(t.dtype, 'F32', name);
    const at = 8 + n + t.data_offsets[0];
    out.set(name, new Float32Array(b.buffer.slice(b.byteOffset + at, b.byteOffset + 8 + n + t.data_offsets[1])));
  }
  return out;
}

describe('export: sharded training with FSDP (torch >= 2)', function () {
  this.timeout(600_000);
  const py = torch2Python();
  const work = tmpDir('fsdp');
  const g = graphOf('test/runtime/tiny.pipe');
  const data = path.join(work, 'data');
  const train = path.join(work, 'torch', 'train.py');

  before(async function () {
    if (!py) {
      console.log('      skipped: no Python with torch >= 2 (npm run setup:torch makes .venv-torch, or set PIPEC_TORCH2_PYTHON)');
      this.skip();
    }
    await initBackend('wasm');
    // pipec with accumulate 2 is the reference for 2 processes x accumulate 1 (as for DDP)
    await runProgram({ graph: graphOf('test/runtime/tiny.pipe', ['stage.align.accumulate=2', 'stage.finetune.accumulate=2']), baseDir: repo('test/runtime'), runDir: path.join(work, 'pipec'), backend: 'wasm', out: quiet, evaluate: false });
    prepareStages({ graph: g, baseDir: repo('test/runtime'), outDir: data, worldSize: 2 });
    writeExport(g, path.join(work, 'torch'));
  });

  /** Two whole runs: the same steps, and every loss to `tol`. */
  function sameLosses(name: string, a: { loss: number; step: number; stage: string }[], b: { loss: number; step: number; stage: string }[], tol: number): void {
    assert.equal(b.length, a.length, `${name}: ${b.length} steps, pipec ${a.length}`);
    compareLosses(name, a, b, a.length, tol);
  }

  /** Largest |a - b| over every tensor of two checkpoint files, relative to the largest |a| of its tensor. */
  function tensorsAgree(name: string, fa: string, fb: string, tol: number): void {
    const a = readF32Tensors(fa), b = readF32Tensors(fb);
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), `${name}: the same tensors`);
    let worst = 0;
    for (const [k, x] of a) worst = Math.max(worst, maxRelDiff(x, b.get(k)!));
    console.log(`      ${name}: ${a.size} tensors, worst difference ${worst.toExponential(2)} of the tensor's largest value`);
    assert.ok(worst < tol, `${name}: ${worst}`);
  }

  it('--fsdp full under torchrun (2 processes): both stages\' losses, and the final weights and AdamW moments, equal pipec\'s with accumulate 2', async () => {
    const log = await torchrun(2, train, ['--data', data, '--out', path.join(work, 'full'), '--fsdp', 'full'], work, py);
    assert.match(log, /stage align: .*16 samples \(batch 8 x accumulate 1 x 2 process\(es\)\), sharded by FSDP \(FULL_SHARD\)/);
    sameLosses('FSDP full_shard', readMetrics(path.join(work, 'pipec')), readMetrics(path.join(work, 'full')), 1e-4);
    // the checkpoint written from the shards is whole, in pipec's layout, and matches pipec's own
    const ck = (run: string) => path.join(work, run, 'checkpoints', '01-finetune-step000008');
    for (const c of g.models[0]!.components.map((x) => x.name)) tensorsAgree(`weights of ${c}`, path.join(ck('pipec'), c, 'model.safetensors'), path.join(ck('full'), c, 'model.safetensors'), 1e-4);
    tensorsAgree('optimizer moments', path.join(ck('pipec'), 'optimizer.safetensors'), path.join(ck('full'), 'optimizer.safetensors'), 1e-3);
    const params = new ParamStore(paramSpecs(g.models[0]!.components), 0);
    loadComponents(ck('full'), g.models[0]!.components.map((c) => c.name), params); // pipec loads it as its own
    params.dispose();
  });

  it('--fsdp full: --stop-after then --resume (the moments gathered into the checkpoint, then split again) continues as if never stopped', async () => {
    const out = path.join(work, 'cut');
    await torchrun(2, train, ['--data', data, '--out', out, '--fsdp', 'full', '--stop-after', '22'], work, py); // last periodic checkpoint: align step 20
    await torchrun(2, train, ['--data', data, '--out', out, '--fsdp', 'full', '--resume'], work, py);
    sameLosses('FSDP resumed vs uninterrupted', readMetrics(path.join(work, 'full')), readMetrics(out), 1e-5);
  });

  it('--fsdp grad_op (SHARD_GRAD_OP, for zero1/zero2 stages) gives pipec\'s losses too', async () => {
    await torchrun(2, train, ['--data', data, '--out', path.join(work, 'grad-op'), '--fsdp', 'grad_op'], work, py);
    sameLosses('FSDP shard_grad_op', readMetrics(path.join(work, 'pipec')), readMetrics(path.join(work, 'grad-op')), 1e-4);
  });

  it('--fsdp full with a Mixtral MoE (tiny-moe: top-2 routing, aux loss, AdamW then SGD) gives pipec\'s losses', async () => {
    // pipec as declared (accumulate 2, one process) against 2 FSDP processes x accumulate 1, in both stages
    const moe = path.join(work, 'moe');
    await runProgram({ graph: graphOf('test/export/tiny-moe.pipe'), baseDir: repo('test/export'), runDir: path.join(moe, 'pipec'), backend: 'wasm', out: quiet, evaluate: false });
    const g1 = graphOf('test/export/tiny-moe.pipe', ['stage.joint.accumulate=1', 'stage.tune.accumulate=1']); // tune inherits joint's 2
    prepareStages({ graph: g1, baseDir: repo('test/export'), outDir: path.join(moe, 'data'), worldSize: 2 });
    writeExport(g1, path.join(moe, 'torch'));
    await torchrun(2, path.join(moe, 'torch', 'train.py'), ['--data', path.join(moe, 'data'), '--out', path.join(moe, 'fsdp'), '--fsdp', 'full'], moe, py);
    sameLosses('FSDP tiny-moe', readMetrics(path.join(moe, 'pipec')), readMetrics(path.join(moe, 'fsdp')), 1e-4);
  });

  it('on torch 1.13 (Debian), --fsdp stops with what it needs', function () {
    if (!hasTorch() || spawnSync(PY, ['-c', 'import sys, torch; sys.exit(0 if torch.__version__.startswith("1.") else 1)']).status !== 0) this.skip();
    const r = spawnSync(PY, [train, '--data', data, '--out', path.join(work, 'old'), '--fsdp', 'full'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--fsdp needs PyTorch 2\.0 or newer .*this is torch 1\./);
  });
});
