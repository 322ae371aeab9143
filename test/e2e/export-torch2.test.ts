// The exported PyTorch program on torch >= 2 (.venv-torch from `npm run setup:torch`, with the safetensors
// package): model.py of every shipped pipeline loads, on the meta device (no memory), with pipec's
// parameters by name and shape, and train.py's stage plans are the graph's; DeepSpeed's MoE leaf modules;
// sharded training with FSDP against pipec. Without torch >= 2 the suites are skipped locally and fail in CI.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readSafetensorsHeader } from '../../compiler/check/checkpoint-io.js';
import type { Graph } from '../../compiler/ir/graph.js';
import { initBackend } from '../../runtime/backend/backends.js';
import { prepareStages } from '../../runtime/export/prepare.js';
import { MOE_BLOCK_CLASS, MOE_BLOCK_SUFFIX, zero3LeafClasses } from '../../runtime/export/launch.js';
import { ParamStore, paramSpecs } from '../../runtime/params.js';
import { checkpointName, loadComponents, saveCheckpoint } from '../../runtime/train/checkpoint.js';
import { readMetrics } from '../../runtime/train/metrics.js';
import { graphOf, pipecReference, sameLosses, tensorsAgree, tinyAccumulate2, torchrun, writeExport } from '../export/helpers.js';
import { runPython, TORCH2_FIX, torch2Python } from '../helpers/python.js';
import { unavailable } from '../helpers/required.js';
import { tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

const PIPELINES = fs.readdirSync(repo('pipelines')).filter((f) => f.endsWith('.pipe')).sort().map((f) => `pipelines/${f}`);

/** Loads each export folder's model.py and train.py in one Python: every model's state_dict (names, shapes) built on the meta device, and STAGES. */
const LOAD_EXPORTS = `
import json, sys, torch
out = {}
for folder in sys.argv[1:]:
    for m in [m for m in sys.modules if m in ("model", "train") or m.split(".")[0].startswith("custom_")]:
        sys.modules.pop(m, None)
    sys.path.insert(0, folder)
    import model, train
    sys.path.pop(0)
    with torch.device("meta"):  # shapes without memory: a 7B model costs nothing
        models = {name: [[k, list(v.shape)] for k, v in cls().state_dict().items()] for name, cls in model.MODELS.items()}
    out[folder] = {"models": models, "stages": train.STAGES}
print(json.dumps(out))
`;

type Loaded = Record<string, { models: Record<string, [string, number[]][]>; stages: Record<string, unknown>[] }>;

describe('export: model.py and train.py of every shipped pipeline load in PyTorch (torch >= 2)', function () {
  this.timeout(300_000);
  let PY: string;

  before(async function () {
    const found = torch2Python();
    if (!found) unavailable(this, 'no Python with torch >= 2', TORCH2_FIX);
    PY = found.python;
    console.log(`      ${PY}: torch ${found.torch}`);
  });

  it('every model\'s state_dict holds exactly pipec\'s parameters (names, shapes), and train.py\'s stages are the graph\'s', async () => {
    const dir = tmpDir('torch2-load');
    const programs: [string, Graph][] = [...PIPELINES, 'test/runtime/tiny.pipe', 'test/export/tiny-moe.pipe'].map((rel) => [rel, graphOf(rel)]);
    const folders = programs.map(([rel, g]) => writeExport(g, path.join(dir, path.basename(rel, '.pipe')))); // tanuki-8x8b's LM: the user's class, from its package
    const loaded = JSON.parse(runPython(PY, ['-c', LOAD_EXPORTS, ...folders])) as Loaded;
    programs.forEach(([rel, g], i) => {
      const got = loaded[folders[i]!]!;
      assert.deepEqual(Object.keys(got.models).sort(), g.models.map((m) => m.name).sort(), `${rel}: models`);
      for (const m of g.models) {
        // what pipec's checkpoints hold: each component's parameters under their Hugging Face names
        const want = new Map(paramSpecs(m.components).map((s) => [`components.${s.component}.${s.name}`, s.shape]));
        const have = new Map(got.models[m.name]!);
        assert.equal(have.size, got.models[m.name]!.length, `${rel}: a name twice in the state_dict`);
        assert.deepEqual([...have.keys()].filter((k) => !want.has(k)), [], `${rel}: state_dict entries pipec does not have`);
        assert.deepEqual([...want.keys()].filter((k) => !have.has(k)), [], `${rel}: pipec parameters missing from the state_dict`);
        for (const [k, shape] of want) assert.deepEqual(have.get(k), shape, `${rel}: ${k}`);
      }
      // the stage plans the trainer follows are the graph's, field by field
      assert.deepEqual(got.stages.map((s) => s['name']), g.stages.map((s) => s.name), `${rel}: stages`);
      got.stages.forEach((s, k) => {
        const plan = g.stages[k]! as unknown as Record<string, unknown>;
        for (const field of ['model', 'after', 'handoff', 'train', 'freeze', 'data', 'optimizer', 'batch', 'accumulate', 'global_batch', 'precision', 'gradient_checkpointing', 'clip_grad', 'seed', 'checkpoint', 'devices', 'sharding']) {
          assert.ok(field in s, `${rel}: train.py's stage ${s['name']} has no ${field}`);
          assert.deepEqual(s[field] ?? null, plan[field] ?? null, `${rel}: stage ${s['name']}: ${field}`);
        }
      });
    });
  });

  it('tiny.pipe: the state_dict has the names and shapes of a checkpoint pipec writes', async () => {
    await initBackend('wasm');
    const g = graphOf('test/runtime/tiny.pipe');
    const model = g.models[0]!;
    const dir = tmpDir('torch2-checkpoint');
    const params = new ParamStore(paramSpecs(model.components), 1);
    const ckpt = saveCheckpoint({ runDir: dir, name: checkpointName(0, 'x', 1), components: model.components, params, optimizer: null, keep: 1,
      state: { format: 'pipec.checkpoint', version: 1, graph_hash: 'h', stage: 'x', stage_index: 0, step: 1, total_steps: 1, final: true, stage_checkpoints: {}, optimizer: null, time: '' } });
    params.dispose();
    const written = model.components.flatMap((c) => [...readSafetensorsHeader(path.join(ckpt, c.name, 'model.safetensors')).tensors.values()].map((t) => [`components.${c.name}.${t.name}`, t.shape] as [string, number[]]));
    const folder = writeExport(g, path.join(dir, 'export'));
    const loaded = JSON.parse(runPython(PY, ['-c', LOAD_EXPORTS, folder])) as Loaded;
    const sorted = (xs: [string, number[]][]) => [...xs].sort((a, b) => a[0].localeCompare(b[0]));
    assert.deepEqual(sorted(loaded[folder]!.models['tiny']!), sorted(written));
  });

  it('the MoE block suffix names every MoE block of an exported model; train.py --deepspeed keeps whole what launch.json lists (the user\'s MoE class, model.py\'s layers)', () => {
    const probe = 'import json, sys\nsys.path.insert(0, sys.argv[1])\nfrom model import MODELS\nimport train\nm = list(MODELS.values())[0]()\nprint(json.dumps({"names": [n for n, _ in m.named_modules()], "leaves": [c.__name__ for c in train.zero3_leaf_classes(m)]}))';
    for (const rel of ['test/export/tiny-moe.pipe', 'pipelines/tanuki-8x8b-vision.pipe']) {
      const g = graphOf(rel);
      const dir = writeExport(g, tmpDir('torch2-leaf'));
      const meta = rel.includes('tanuki') ? 'import torch\ntorch.set_default_device("meta")\n' : '';
      const got = JSON.parse(runPython(PY, ['-c', meta + probe, dir])) as { names: string[]; leaves: string[] };
      // DeepSpeed's suffix matching: every named_modules() name that ends with the suffix
      const matched = got.names.filter((n) => n.endsWith(MOE_BLOCK_SUFFIX));
      const layers = Number(g.models[0]!.components.find((c) => c.name === 'lm')!.attrs['layers']);
      assert.deepEqual(matched, Array.from({ length: layers }, (_, i) => `components.lm.model.layers.${i}.block_sparse_moe`), rel);
      assert.ok(got.names.includes('components.lm.model.layers.0.block_sparse_moe.experts.0.w1'), `${rel}: the experts are inside the leaf`);
      // launch.json also names transformers' MixtralSparseMoeBlock for trainers built on transformers; model.py's
      // own Mixtral block is inside its DecoderLayer, already whole
      assert.deepEqual(got.leaves, zero3LeafClasses(g.models[0]).filter((c) => c !== MOE_BLOCK_CLASS), `${rel}: train.py's leaves are launch.json's`);
    }
  });

});

describe('export: sharded training with FSDP (torch >= 2)', function () {
  this.timeout(600_000);
  const g = graphOf('test/runtime/tiny.pipe');
  let PY: string, work: string, data: string, train: string;

  before(async function () {
    const found = torch2Python();
    if (!found) unavailable(this, 'no Python with torch >= 2', TORCH2_FIX);
    PY = found.python;
    await initBackend('wasm');
    work = tmpDir('torch2-fsdp');
    data = path.join(work, 'data');
    prepareStages({ graph: g, baseDir: repo('test/runtime'), outDir: data, worldSize: 2 });
    train = path.join(writeExport(g, path.join(work, 'torch')), 'train.py');
  });

  let full: string | undefined;
  /** The uninterrupted --fsdp full run (2 processes), made by whichever test needs it first. */
  async function fullRun(): Promise<{ out: string; log: string }> {
    const out = path.join(work, 'full');
    if (full === undefined) full = await torchrun(PY, 2, train, ['--data', data, '--out', out, '--fsdp', 'full'], work);
    return { out, log: full };
  }

  it('--fsdp full under torchrun (2 processes): both stages\' losses, and the final weights and AdamW moments, equal pipec\'s with accumulate 2', async () => {
    const { out, log } = await fullRun();
    assert.match(log, /stage align: .*16 samples \(batch 8 x accumulate 1 x 2 process\(es\)\), sharded by FSDP \(FULL_SHARD\)/);
    const ref = await tinyAccumulate2(); // pipec with accumulate 2 is the reference for 2 processes x accumulate 1 (as for DDP)
    sameLosses('FSDP full_shard', ref.metrics, readMetrics(out), 1e-4);
    // the checkpoint written from the shards is whole, in pipec's layout, and matches pipec's own
    const ck = (run: string) => path.join(run, 'checkpoints', '01-finetune-step000008');
    for (const c of g.models[0]!.components.map((x) => x.name)) tensorsAgree(`weights of ${c}`, path.join(ck(ref.dir), c), path.join(ck(out), c), 1e-4);
    tensorsAgree('optimizer moments', ck(ref.dir), ck(out), 1e-3);
    const params = new ParamStore(paramSpecs(g.models[0]!.components), 0);
    loadComponents(ck(out), g.models[0]!.components.map((c) => c.name), params); // pipec loads it as its own
    params.dispose();
  });

  it('--fsdp full: --stop-after then --resume (the moments gathered into the checkpoint, then split again) continues as if never stopped', async () => {
    const out = path.join(work, 'cut');
    await torchrun(PY, 2, train, ['--data', data, '--out', out, '--fsdp', 'full', '--stop-after', '22'], work); // last periodic checkpoint: align step 20
    await torchrun(PY, 2, train, ['--data', data, '--out', out, '--fsdp', 'full', '--resume'], work);
    sameLosses('FSDP resumed vs uninterrupted', readMetrics((await fullRun()).out), readMetrics(out), 1e-5);
  });

  it('--fsdp grad_op (SHARD_GRAD_OP, for zero1/zero2 stages) gives pipec\'s losses too', async () => {
    await torchrun(PY, 2, train, ['--data', data, '--out', path.join(work, 'grad-op'), '--fsdp', 'grad_op'], work);
    sameLosses('FSDP shard_grad_op', (await tinyAccumulate2()).metrics, readMetrics(path.join(work, 'grad-op')), 1e-4);
  });

  it('--fsdp full with a Mixtral MoE (tiny-moe: top-2 routing, aux loss, AdamW then SGD) gives pipec\'s losses', async () => {
    // pipec as declared (accumulate 2, one process) against 2 FSDP processes x accumulate 1, in both stages
    const moe = path.join(work, 'moe');
    const g1 = graphOf('test/export/tiny-moe.pipe', ['stage.joint.accumulate=1', 'stage.tune.accumulate=1']); // tune inherits joint's 2
    prepareStages({ graph: g1, baseDir: repo('test/export'), outDir: path.join(moe, 'data'), worldSize: 2 });
    writeExport(g1, path.join(moe, 'torch'));
    await torchrun(PY, 2, path.join(moe, 'torch', 'train.py'), ['--data', path.join(moe, 'data'), '--out', path.join(moe, 'fsdp'), '--fsdp', 'full'], moe);
    sameLosses('FSDP tiny-moe', (await pipecReference('test/export/tiny-moe.pipe')).metrics, readMetrics(path.join(moe, 'fsdp')), 1e-4);
  });

  it('--fsdp full with gradient_checkpointing (each sharded layer run under torch.utils.checkpoint; tiny-moe) gives pipec\'s checkpointed losses', async () => {
    const gc = ['stage.joint.gradient_checkpointing=true', 'stage.tune.gradient_checkpointing=true'];
    const moe = path.join(work, 'moe-gc');
    const g1 = graphOf('test/export/tiny-moe.pipe', ['stage.joint.accumulate=1', 'stage.tune.accumulate=1', ...gc]);
    prepareStages({ graph: g1, baseDir: repo('test/export'), outDir: path.join(moe, 'data'), worldSize: 2 });
    writeExport(g1, path.join(moe, 'torch'));
    await torchrun(PY, 2, path.join(moe, 'torch', 'train.py'), ['--data', path.join(moe, 'data'), '--out', path.join(moe, 'fsdp'), '--fsdp', 'full'], moe);
    sameLosses('FSDP tiny-moe, checkpointed', (await pipecReference('test/export/tiny-moe.pipe', { sets: gc })).metrics, readMetrics(path.join(moe, 'fsdp')), 1e-4);
  });
});
