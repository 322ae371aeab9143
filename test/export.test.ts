// `pipec export --target torch` and `pipec prepare` without PyTorch (docs/export.md): the generated
// program is deterministic, names its source, and compiles as Python for every shipped pipeline; the
// launch files (JSON, YAML, launch.sh: data) equal reviewed goldens (UPDATE_GOLDEN=1 rewrites them);
// the CLI's exit codes; the shards hold pipec's own micro-batches in pipec's order, for one process or
// --world-size N. The generated Python is tested by running it: test/e2e/export-torch1.test.ts (the
// trainer against pipec on Debian's torch 1.13) and test/e2e/export-torch2.test.ts (model.py of every
// shipped pipeline loaded in torch >= 2; FSDP).
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { collate } from '../runtime/data/batch.js';
import { imageShapeOf, prepareDataset } from '../runtime/data/datasets.js';
import { deepspeedConfig, zero3LeafClasses } from '../runtime/export/launch.js';
import { prepareStages, runTokenizer } from '../runtime/export/prepare.js';
import { exportTorch } from '../runtime/export/torch.js';
import { graphHash, microBatch, stageSteps } from '../runtime/train/run.js';
import { graphOf, writeExport } from './export/helpers.js';
import { pipec } from './helpers/cli.js';
import { runPython, torch2Python, TORCH1_PYTHON } from './helpers/python.js';
import { unavailable } from './helpers/required.js';
import { tmpDir } from './helpers/tmp.js';
import { repo } from './paths.js';

const UPDATE = process.env.UPDATE_GOLDEN === '1';
const GOLDEN = repo('test/export/golden/tiny');
const PIPELINES = fs.readdirSync(repo('pipelines')).filter((f) => f.endsWith('.pipe')).sort().map((f) => `pipelines/${f}`);

describe('export: generated PyTorch program', function () {
  this.timeout(120_000);

  it('is deterministic and names the source and graph hash; its launch files equal the reviewed goldens (tiny.pipe)', () => {
    const g = graphOf('test/runtime/tiny.pipe');
    const a = exportTorch(g), b = exportTorch(graphOf('test/runtime/tiny.pipe'));
    assert.deepEqual([...a.keys()].slice(0, 2), ['model.py', 'train.py']);
    for (const [name, text] of a) {
      assert.equal(text, b.get(name), `${name} differs between two exports`);
      if (name.endsWith('.py')) {
        // the Python is checked by running it (test/export-torch*.test.ts), not against a copy of itself
        assert.ok(text.split('\n').slice(0, 3).join('\n').includes(`from test/runtime/tiny.pipe (graph ${graphHash(g)}`), `${name} header`);
        continue;
      }
      if (name === 'graph.json') {
        // the graph itself, which train.py copies into its run folder (RUN/graph.json, as pipec run writes it)
        assert.equal(graphHash(JSON.parse(text) as typeof g), graphHash(g), 'graph.json is the exported graph');
        continue;
      }
      const file = path.join(GOLDEN, name);
      if (UPDATE) (fs.mkdirSync(path.dirname(file), { recursive: true }), fs.writeFileSync(file, text));
      assert.ok(fs.existsSync(file), `no golden ${path.relative(repo(), file)}: UPDATE_GOLDEN=1 writes it; review it and commit it`);
      assert.equal(text, fs.readFileSync(file, 'utf8'), `${name} differs from ${path.relative(repo(), file)} (UPDATE_GOLDEN=1 refreshes it; review the diff)`);
    }
    for (const f of fs.readdirSync(path.join(GOLDEN, 'launch'))) assert.ok(a.has(`launch/${f}`), `stale golden launch/${f}`);
  });

  it('refuses a custom component without a PyTorch half with a clear message, or exports it as its base when asked', () => {
    const g = graphOf('test/runtime/custom.pipe');
    assert.throws(() => exportTorch(g), /custom component \(ScaledLlamaForCausalLM\) without a PyTorch half: name its modeling file with `python:` to carry the class, or export with --custom-as-base/);
    const model = exportTorch(g, { customAsBase: true }).get('model.py')!;
    assert.match(model, /# NOTE: custom class \w+ \(.*\) exported as its base, (llama|mistral|mixtral); its own forward is not translated/);
  });

  it('the Python of every shipped pipeline and test program compiles, warnings as errors (py_compile)', function () {
    // any Python 3 will do: no torch needed to compile
    const python = fs.existsSync(TORCH1_PYTHON) ? TORCH1_PYTHON : torch2Python()?.python;
    if (!python) unavailable(this, `no Python 3 (${TORCH1_PYTHON})`, 'install python3');
    const dir = tmpDir('export-syntax');
    const files = [...PIPELINES, 'test/runtime/tiny.pipe', 'test/export/tiny-moe.pipe'].flatMap((rel) => {
      const out = writeExport(graphOf(rel), path.join(dir, path.basename(rel, '.pipe'))); // tanuki-8x8b's class comes in its package
      return [path.join(out, 'model.py'), path.join(out, 'train.py'), ...(fs.existsSync(path.join(out, 'custom_lm')) ? fs.readdirSync(path.join(out, 'custom_lm')).map((f) => path.join(out, 'custom_lm', f)) : [])];
    });
    runPython(python, ['-W', 'error', '-m', 'py_compile', ...files]);
  });
});

describe('export: CLI', function () {
  this.timeout(120_000);
  const run = (args: string[]) => pipec(args, { cwd: repo() });

  it('pipec export / prepare write their files; wrong use exits 2, an unexportable program 1', () => {
    const out = tmpDir('export-cli');
    let r = run(['export', 'test/runtime/tiny.pipe', '--target', 'torch', '-o', path.join(out, 'ex')]);
    assert.equal(r.status, 0, r.stderr);
    for (const [name, text] of exportTorch(graphOf('test/runtime/tiny.pipe'))) assert.equal(fs.readFileSync(path.join(out, 'ex', name), 'utf8'), text, `the CLI's ${name} is the library's`);
    assert.ok(fs.statSync(path.join(out, 'ex', 'launch', 'launch.sh')).mode & 0o100, 'launch.sh is executable');
    r = run(['prepare', 'test/runtime/tiny.pipe', '--stage', 'align', '-o', path.join(out, 'data', 'align'), '--init']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /stage align: 24 micro-batches \(24 steps\) from 87 records/);
    assert.ok(fs.existsSync(path.join(out, 'data', 'align', 'init', 'lm', 'model.safetensors')));
    assert.equal(run(['export', 'test/runtime/tiny.pipe', '-o', out]).status, 2); // no --target
    assert.equal(run(['export', 'test/runtime/tiny.pipe', '--target', 'onnx', '-o', out]).status, 2);
    assert.equal(run(['prepare', 'test/runtime/tiny.pipe', '--stage', 'nope', '-o', out]).status, 2);
    r = run(['export', 'test/runtime/custom.pipe', '--target', 'torch', '-o', path.join(out, 'custom')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /error PIPE6036: custom component `ScaledLlamaForCausalLM` has no PyTorch half/);
    assert.equal(run(['export', 'test/runtime/custom.pipe', '--target', 'torch', '--custom-as-base', '-o', path.join(out, 'custom')]).status, 0);
    // the seed's model exports without flags: its class's package, imported relatively
    r = run(['export', 'pipelines/tanuki-8x8b-vision.pipe', '--target', 'torch', '-o', path.join(out, 'tanuki')]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(fs.readdirSync(path.join(out, 'tanuki', 'custom_lm')).sort(), ['__init__.py', 'configuration_tanuki.py', 'modeling_tanuki.py']);
    assert.match(fs.readFileSync(path.join(out, 'tanuki', 'model.py'), 'utf8'), /"python": \{"package": "custom_lm", "module": "modeling_tanuki", "class": "TanukiForCausalLM", "aux_loss_coef": 0\.02\}/);
  });

  it('pipec prepare --world-size N: a step takes N x accumulate micro-batches of pipec\'s own sequence', () => {
    const out = tmpDir('export-world-size');
    const prepare = (name: string, extra: string[]) => {
      const r = run(['prepare', 'test/runtime/tiny.pipe', '--stage', 'align', '-o', path.join(out, name), ...extra]);
      assert.equal(r.status, 0, r.stderr);
      return { log: r.stderr, index: JSON.parse(fs.readFileSync(path.join(out, name, 'index.json'), 'utf8')) };
    };
    // a stage of declared steps keeps them, each taking 2 micro-batches; one of epochs has half the steps
    const w1 = prepare('w1', []), w2 = prepare('w2', ['--world-size', '2']);
    assert.match(w2.log, /stage align: 48 micro-batches \(24 steps\) from 87 records/);
    assert.deepEqual([w1.index.world_size, w1.index.steps, w1.index.micro_batches], [1, 24, 24]);
    assert.deepEqual([w2.index.world_size, w2.index.steps, w2.index.micro_batches], [2, 24, 48]);
    assert.match(prepare('e2', ['--set', 'stage.align.epochs=1', '--world-size', '2']).log, /stage align: 10 micro-batches \(5 steps\)/);
    assert.match(prepare('e1', ['--set', 'stage.align.epochs=1']).log, /stage align: 10 micro-batches \(10 steps\)/);
    // micro-batch k is pipec's k-th either way: the first 24 of 2 processes are those of one, byte for byte
    const bytes = (dir: string, index: { image_shape: number[]; batches: { shard: string; offset: number; batch: number; length: number; pixels: boolean }[] }, k: number) => {
      const e = index.batches[k]!;
      const size = 4 * (3 * e.batch * e.length + e.batch) + (e.pixels ? 4 * e.batch * index.image_shape.reduce((x, y) => x * y, 1) : 0);
      return fs.readFileSync(path.join(out, dir, e.shard)).subarray(e.offset, e.offset + size);
    };
    for (let k = 0; k < 24; k++) assert.ok(bytes('w2', w2.index, k).equals(bytes('w1', w1.index, k)), `micro-batch ${k}`);
    assert.ok(!bytes('w2', w2.index, 24).equals(bytes('w2', w2.index, 0)), 'micro-batch 24 is a later one, not a repeat of the first');
    for (const bad of ['0', 'two']) {
      const r = run(['prepare', 'test/runtime/tiny.pipe', '--world-size', bad, '-o', path.join(out, 'bad')]);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /--world-size (must be at least 1|needs a whole number)/);
    }
  });
});

describe('export: launch configurations', function () {
  it('tanuki-8x8b-vision: 2 nodes x 8 GPUs, each stage\'s DeepSpeed JSON field by field (ZeRO-3, bf16, batch sizes, no leaf_module key, no optimizer/scheduler), the class\'s MoE block as leaf, accelerate and torchrun (DeepSpeed where it imports, else FSDP)', () => {
    const g = graphOf('pipelines/tanuki-8x8b-vision.pipe');
    const files = exportTorch(g, { baseDir: repo('pipelines') }); // the class's package is read from the program's folder
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
        // no leaf_module: DeepSpeed before 0.18 rejects the key (extra_forbidden); train.py sets the leaves with set_z3_leaf_modules
      });
      const manifest = JSON.parse(files.get(`launch/${s.name}.launch.json`)!);
      assert.deepEqual(manifest.zero3_leaf_modules, [{ component: 'lm', modules: 'model.layers.{i}.block_sparse_moe', repeat: { i: Number(lm.attrs['layers']) } }]);
      // the user's MoE block (read from its PyTorch half) and the exported encoder's layers are kept whole at ZeRO-3
      assert.deepEqual(manifest.zero3_leaf_classes, ['TanukiSparseMoeBlock', 'VisionLayer']);
      assert.deepEqual([manifest.world_size, manifest.batch_per_device, manifest.accumulate, manifest.global_batch, manifest.zero_stage], [16, s.batch, s.accumulate, s.global_batch, 3]);
      const acc = files.get(`launch/${s.name}.accelerate.yaml`)!;
      assert.match(acc, /distributed_type: DEEPSPEED/);
      assert.match(acc, new RegExp(`deepspeed_config_file: launch/${s.name}\\.deepspeed\\.json`));
      assert.match(acc, /num_machines: 2\nnum_processes: 16/);
      assert.match(acc, /mixed_precision: bf16/);
    }
    const sh = files.get('launch/launch.sh')!;
    // sharding zero3: DeepSpeed ZeRO-3 with the stage's JSON where it imports, FSDP FULL_SHARD otherwise
    assert.match(sh, /torchrun \$\{TORCHRUN_ARGS:-\} --nnodes 2 --nproc_per_node 8 .*\n  train\.py --data data --out run --until align \$\(shard align full\)\n/);
    assert.match(sh, /train\.py --data data --out run --resume --until finetune \$\(shard finetune full\)\n/);
    assert.match(sh, /if "\$\{PYTHON:-python3\}" -c "import deepspeed" >\/dev\/null 2>&1; then echo "--deepspeed launch\/\$1\.deepspeed\.json"; else echo "--fsdp \$2"; fi/);
    assert.match(sh, /TORCHRUN_ARGS="--redirects 1 --tee 1"/, 'launch.sh says what Debian\'s torch 1.13 needs');
  });

  it('names ZeRO-3 leaf classes only at ZeRO-3: the MoE blocks of a Mixtral component (the user\'s class when carried, transformers\' otherwise) and model.py\'s layers; the DeepSpeed JSON never has leaf_module', () => {
    const tanuki = graphOf('pipelines/tanuki-8x8b-vision.pipe');
    const align = tanuki.stages[0]!;
    for (const sharding of ['none', 'ddp', 'zero1', 'zero2', 'zero3'] as const) {
      const zero = deepspeedConfig({ ...align, sharding }, tanuki.models[0]!)['zero_optimization'] as Record<string, unknown>;
      assert.ok(!('leaf_module' in zero), `${sharding}: no leaf_module`);
    }
    assert.deepEqual(zero3LeafClasses(tanuki.models[0]), ['TanukiSparseMoeBlock', 'VisionLayer']);
    assert.deepEqual(zero3LeafClasses(tanuki.models[0], { customAsBase: true }), ['DecoderLayer', 'MixtralSparseMoeBlock', 'VisionLayer']);
    // llava-1.5-7b: a llama LM; its finetune stage is ZeRO-3, its pretrain ZeRO-2
    const llava = graphOf('pipelines/llava-1.5-7b.pipe');
    const files = exportTorch(llava);
    assert.deepEqual(llava.stages.map((s) => s.sharding), ['zero2', 'zero3']);
    for (const s of llava.stages) {
      const ds = JSON.parse(files.get(`launch/${s.name}.deepspeed.json`)!);
      assert.equal(ds.zero_optimization.stage, s.sharding === 'zero3' ? 3 : 2);
      assert.ok(!('leaf_module' in ds.zero_optimization), `llava ${s.name}: no MoE, no leaf_module`);
      assert.deepEqual(JSON.parse(files.get(`launch/${s.name}.launch.json`)!).zero3_leaf_modules, []);
      assert.deepEqual(JSON.parse(files.get(`launch/${s.name}.launch.json`)!).zero3_leaf_classes, s.sharding === 'zero3' ? ['DecoderLayer', 'VisionLayer'] : []);
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
    const out = tmpDir('export-prepare');
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
