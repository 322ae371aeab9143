// The exported PyTorch program on torch >= 2 (.venv-torch from `npm run setup:torch`, with the safetensors
// package): model.py of every shipped pipeline loads, on the meta device (no memory), with pipec's
// parameters by name and shape, and train.py's stage plans are the graph's; DeepSpeed's MoE leaf modules;
// sharded training with FSDP against pipec. Without torch >= 2 the suites are skipped locally and fail in CI.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readSafetensorsHeader } from '../../compiler/check/checkpoint-io.js';
import type { Graph } from '../../compiler/ir/graph.js';
import { compile } from '../../compiler/service/service.js';
import { exportTorch } from '../../runtime/export/torch.js';
import { initBackend } from '../../runtime/backend/backends.js';
import { prepareStages } from '../../runtime/export/prepare.js';
import { MOE_BLOCK_CLASS, MOE_BLOCK_SUFFIX, zero3LeafClasses } from '../../runtime/export/launch.js';
import { modelParamSpecs, ParamStore, paramSpecs } from '../../runtime/params.js';
import { PEFT_PREFIX } from '../../runtime/train/adapters.js';
import { checkpointName, loadComponents, saveCheckpoint } from '../../runtime/train/checkpoint.js';
import { mergeCommand } from '../../runtime/train/merge.js';
import { readMetrics } from '../../runtime/train/metrics.js';
import { runProgram } from '../../runtime/train/run.js';
import { Rng } from '../../runtime/random.js';
import { readWeights } from '../../runtime/weights/safetensors.js';
import { graphOf, maxRelDiff, pipecLogits, pipecReference, quiet, readF32, sameLosses, tensorsAgree, tinyAccumulate2, torchrun, writeExport } from '../export/helpers.js';
import { runPython, TORCH2_FIX, torch2Python, peftPython } from '../helpers/python.js';
import { PYTHON_ENV } from '../helpers/reference.js';
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
        // what pipec's checkpoints hold: each component's parameters under their Hugging Face names, each
        // adapter's under PEFT's (model.py keeps an adapter in PipeModel.adapters, "lm.lora" as "lm-lora")
        const want = new Map([
          ...paramSpecs(m.components).map((s): [string, number[]] => [`components.${s.component}.${s.name}`, s.shape]),
          ...modelParamSpecs(m).filter((s) => s.component.includes('.')).map((s): [string, number[]] => [`adapters.${s.component.replace(/\./g, '-')}.${s.name}`, s.shape]),
        ]);
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

describe('export: LoRA adapters (test/runtime/tiny-lora.pipe, torch >= 2)', function () {
  this.timeout(600_000);
  const rel = 'test/runtime/tiny-lora.pipe';
  const g = graphOf(rel);
  let PY: string, work: string, data: string, train: string, out: string;

  before(async function () {
    const found = torch2Python();
    if (!found) unavailable(this, 'no Python with torch >= 2', TORCH2_FIX);
    PY = found.python;
    await initBackend('wasm');
    work = tmpDir('torch2-lora');
    data = path.join(work, 'data');
    prepareStages({ graph: g, baseDir: repo('test/runtime'), outDir: data, init: true });
    train = path.join(writeExport(g, path.join(work, 'torch')), 'train.py');
    out = path.join(work, 'run');
    runPython(PY, [train, '--data', data, '--out', out]); // the trainer's own initial weights (pipec's seeded streams, adapters included)
  });

  const ck = (run: string, name: string) => path.join(run, 'checkpoints', name);
  /** Every tensor of two folders bit for bit (names from `names`, or all). */
  const identical = (what: string, a: string, b: string, names?: string[]) => {
    const x = readWeights(a, names), y = readWeights(b, names);
    assert.ok(x.size > 0 && (!names || x.size === names.length), `${what}: ${a} holds the tensors`);
    assert.deepEqual([...y.keys()].sort(), [...x.keys()].sort(), `${what}: the same tensors`);
    for (const [n, t] of x) assert.ok(Buffer.from(t.data.buffer).equals(Buffer.from(y.get(n)!.data.buffer)), `${what}: ${n} differs`);
  };
  const adapterNames = modelParamSpecs(g.models[0]!).filter((s) => s.component === 'lm.lora').map((s) => PEFT_PREFIX + s.name);

  it('22 steps (align trains lm.lora with dropout 0.1, finetune the projector after it): every loss equals pipec\'s to 1e-4', async () => {
    const ref = await pipecReference(rel);
    assert.ok(g.models[0]!.adapters![0]!.dropout > 0, 'the adapter has dropout, so the masks must be pipec\'s');
    sameLosses('tiny-lora (pipec run vs the exported trainer)', ref.metrics, readMetrics(out), 1e-4);
    // the same checkpoints, and each adapter folder is pipec's: tensor names, shapes, values close to pipec's
    const names = (run: string) => fs.readdirSync(path.join(run, 'checkpoints')).sort();
    assert.deepEqual(names(out), names(ref.dir));
    tensorsAgree('lm.lora after align (pipec vs torch)', ck(ref.dir, '00-align-step000020/lm.lora'), ck(out, '00-align-step000020/lm.lora'), 1e-3);
    const cfg = (run: string) => JSON.parse(fs.readFileSync(ck(run, '00-align-step000020/lm.lora/adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual({ ...cfg(out), base_model_name_or_path: null }, { ...cfg(ref.dir), base_model_name_or_path: null });
    assert.equal(cfg(out)['base_model_name_or_path'], path.resolve(ck(out, '00-align-step000020/lm')));
  });

  it('only the adapter, then only the projector, moves: the base stays bit-identical to pipec\'s initial weights; align\'s optimizer holds only the adapter', () => {
    const init = path.join(data, 'align', 'init');
    const align = ck(out, '00-align-step000020'), fin = ck(out, '01-finetune-step000002');
    for (const c of ['vision', 'proj', 'lm']) identical(`${c} after align`, path.join(init, c), path.join(align, c));
    // the adapter itself moved from pipec's initial A (and zero B)
    const fresh = readWeights(path.join(init, 'lm.lora'), adapterNames), trained = readWeights(path.join(align, 'lm.lora'), adapterNames);
    for (const n of adapterNames) assert.ok(maxRelDiff(trained.get(n)!.data, fresh.get(n)!.data) > 1e-3, `${n} was trained`);
    const moments = [...readSafetensorsHeader(path.join(align, 'optimizer.safetensors')).tensors.keys()].sort();
    assert.deepEqual(moments, adapterNames.flatMap((n) => [`exp_avg.${n.slice(PEFT_PREFIX.length)}`, `exp_avg_sq.${n.slice(PEFT_PREFIX.length)}`]).sort());
    // finetune starts from align's adapter (its hand-off) and keeps it frozen; only proj moves
    identical('lm.lora in finetune', path.join(align, 'lm.lora'), path.join(fin, 'lm.lora'), adapterNames);
    for (const c of ['vision', 'lm']) identical(`${c} after finetune`, path.join(init, c), path.join(fin, c));
    assert.ok(maxRelDiff(readWeights(path.join(fin, 'proj')).get('multi_modal_projector.linear_1.weight')!.data, readWeights(path.join(init, 'proj')).get('multi_modal_projector.linear_1.weight')!.data) > 0, 'finetune trains proj');
  });

  it('--stop-after 7 then --resume (from align step 6: the adapter and its moments read back, the dropout masks follow the micro-batch) gives the uninterrupted losses', () => {
    const cut = path.join(work, 'cut');
    runPython(PY, [train, '--data', data, '--out', cut, '--stop-after', '7']);
    runPython(PY, [train, '--data', data, '--out', cut, '--resume']);
    sameLosses('tiny-lora resumed vs uninterrupted (exported trainer)', readMetrics(out), readMetrics(cut), 1e-6);
  });

  it('the exported run reads as pipec\'s: pipec\'s logits on its checkpoint equal --eval-logits (which loads the adapter), and pipec merge folds its adapter', async () => {
    const fin = ck(out, '01-finetune-step000002');
    const logits = path.join(work, 'logits.bin');
    runPython(PY, [train, '--data', data, '--eval-logits', logits, '--checkpoint', fin, '--stage', 'finetune', '--micro', '1']);
    const d = maxRelDiff(pipecLogits(g, 'finetune', fin, 1).data, readF32(logits));
    console.log(`      logits of the torch-trained checkpoint with its adapter, pipec vs torch: ${d.toExponential(2)} of the largest logit`);
    assert.ok(d < 1e-4, `logits differ by ${d}`);
    const io = { out: () => undefined, err: () => undefined };
    assert.equal(mergeCommand(out, { out: path.join(work, 'merged') }, io), 0);
  });

  it('PEFT (PeftModel.from_pretrained over the lm folder) loads the exported run\'s adapter with the exported program\'s logits; transformers on pipec merge\'s folder too', function () {
    const found = peftPython();
    if ('why' in found) unavailable(this, 'a Python with torch, transformers and peft to load the adapter', found.why);
    const merged = path.join(work, 'merged');
    if (!fs.existsSync(merged)) this.skip(); // made by the test before
    const ids = [[1, 5, 17, 33, 64, 2, 9, 100, 127, 3], [4, 4, 8, 15, 16, 23, 42, 0, 77, 90]];
    const py = JSON.parse(runPython(found.python, [repo('test/lora/check_peft_export.py'), JSON.stringify({
      export: path.join(work, 'torch'), model: 'tiny', component: 'lm', adapter: 'lm.lora', checkpoint: ck(out, '01-finetune-step000002'), ids, merged,
    })], { env: PYTHON_ENV }).trim().split('\n').pop()!) as Record<string, number | string[]>;
    console.log(`      PEFT vs the exported program ${(py['peft_vs_export'] as number).toExponential(2)}, transformers on the merged folder ${(py['merged_vs_export'] as number).toExponential(2)} (largest logit ${(py['logit_scale'] as number).toFixed(2)}; the adapter moves the logits by ${(py['adapter_effect'] as number).toExponential(2)})`);
    assert.deepEqual(py['lora_modules'], ['base_model.model.model.layers.0.self_attn.q_proj', 'base_model.model.model.layers.0.self_attn.v_proj']);
    assert.ok((py['adapter_effect'] as number) > 1e-3, 'the adapter changes the logits (else the comparison shows nothing)');
    assert.ok((py['peft_vs_export'] as number) <= 1e-5, `PEFT differs from the exported program by ${py['peft_vs_export']}`);
    assert.ok((py['merged_vs_export'] as number) <= 1e-5, `the merged folder differs by ${py['merged_vs_export']}`);
  });

  it('a param group by adapter name (train: [lm.lora(lr: ...)]) and the parameters FSDP wraps include the adapter; its dropout mask is pipec\'s element for element', () => {
    const probe = `
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from model import MODELS
import train
m = MODELS["tiny"]()
stage = dict(train.STAGES[0], param_groups=[{"name": "lm.lora", "lr": 0.5}])
own = train.own_settings(stage, dict(m.owners()))
import model
mask = model.dropout_mask(7, "align/13", "model.layers.0.self_attn.q_proj", [3, 5, 32], 0.1, torch.device("cpu"))
print(json.dumps({"own": sorted(own), "owners": [n for n, _ in m.owners()],
                  "fsdp_named": sorted(n for n, p in m.named_parameters() if n.startswith("adapters.")), "mask": mask.reshape(-1).tolist()}))`;
    const got = JSON.parse(runPython(PY, ['-c', probe, path.join(work, 'torch')])) as { own: string[]; owners: string[]; fsdp_named: string[]; mask: number[] };
    // the dropout mask is pipec's (runtime/ops/lora.ts): the stream of (seed, micro-batch key, module), 1 / (1 - p) where a draw is >= p
    const rng = Rng.derive(7, 'lora-dropout/align/13/model.layers.0.self_attn.q_proj');
    const want = Float32Array.from({ length: 3 * 5 * 32 }, () => (rng.next() >= 0.1 ? 1 / (1 - 0.1) : 0));
    assert.deepEqual(Float32Array.from(got.mask), want, 'the dropout mask is pipec\'s, element for element');
    assert.ok(want.includes(0) && want.some((x) => x > 1), 'the mask drops some inputs and scales the rest');
    assert.deepEqual(got.own, adapterNames.map((n) => n.slice(PEFT_PREFIX.length)).sort());
    assert.deepEqual(got.owners, ['vision', 'proj', 'lm', 'lm.lora']);
    assert.deepEqual(got.fsdp_named, adapterNames.map((n) => `adapters.lm-lora.${n.slice(PEFT_PREFIX.length)}`).sort());
  });

  it('--fsdp full (2 processes): the adapter trains sharded, with pipec\'s losses (accumulate 2) and the base unchanged', async () => {
    const g2 = graphOf(rel, ['stage.align.steps=6']);
    const w2 = tmpDir('torch2-lora-fsdp');
    prepareStages({ graph: g2, baseDir: repo('test/runtime'), outDir: path.join(w2, 'data'), worldSize: 2, init: true });
    writeExport(g2, path.join(w2, 'torch'));
    const log = await torchrun(PY, 2, path.join(w2, 'torch', 'train.py'), ['--data', path.join(w2, 'data'), '--out', path.join(w2, 'fsdp'), '--fsdp', 'full'], w2);
    assert.match(log, /stage align: train \[lm\.lora\], frozen \[vision, proj, lm\].*sharded by FSDP \(FULL_SHARD\)/);
    const ref = await pipecReference(rel, { sets: ['stage.align.steps=6', 'stage.align.accumulate=2', 'stage.finetune.accumulate=2'] });
    sameLosses('tiny-lora under FSDP (2 processes) vs pipec accumulate 2', ref.metrics, readMetrics(path.join(w2, 'fsdp')), 1e-4);
    for (const c of ['vision', 'lm']) identical(`${c} under FSDP`, path.join(w2, 'data', 'align', 'init', c), path.join(w2, 'fsdp', 'checkpoints', '01-finetune-step000002', c));
  });

  it('QLoRA (quantize: nf4) without a GPU: train.py says once that the base runs in full precision and trains as pipec; the CUDA path (bitsandbytes\' layers) routes the base\'s linears, with a stand-in for bitsandbytes', async () => {
    // tiny-lora with its adapter declared over an NF4 base, 3 steps of align only
    const dir = tmpDir('torch2-qlora');
    const text = fs.readFileSync(repo(rel), 'utf8').replace('targets: ["q_proj", "v_proj"])', 'targets: ["q_proj", "v_proj"], quantize: nf4)').replace(/stage finetune \{[\s\S]*$/, '').replace('steps: 20', 'steps: 3');
    fs.writeFileSync(path.join(dir, 'qlora.pipe'), text);
    const r = compile({ file: path.join(dir, 'qlora.pipe'), configFiles: [], sets: [], lower: true });
    assert.ok(r.graph, r.diagnostics.map((d) => d.message).join('; '));
    const gq = { ...r.graph, source: 'qlora.pipe' };
    assert.equal(gq.models[0]!.adapters![0]!.quantize, 'nf4');
    for (const [name, t] of exportTorch(gq, { baseDir: dir })) (fs.mkdirSync(path.dirname(path.join(dir, 'torch', name)), { recursive: true }), fs.writeFileSync(path.join(dir, 'torch', name), t));
    prepareStages({ graph: gq, baseDir: dir, outDir: path.join(dir, 'data') });
    const log = runPython(PY, [path.join(dir, 'torch', 'train.py'), '--data', path.join(dir, 'data'), '--out', path.join(dir, 'run'), '--device', 'cpu']);
    const notes = log.split('\n').filter((l) => l.includes('QLoRA'));
    assert.deepEqual(notes, ['note: adapter lm.lora declares quantize: nf4 (QLoRA), but this run is on cpu (bitsandbytes quantizes on CUDA): the base `lm` is held and computed in full precision (fp32)']);
    await runProgram({ graph: gq, baseDir: dir, runDir: path.join(dir, 'pipec'), backend: 'wasm', out: quiet, evaluate: false });
    sameLosses('QLoRA program in fp32 (pipec vs torch)', readMetrics(path.join(dir, 'pipec')), readMetrics(path.join(dir, 'run')), 1e-4);
    const py = JSON.parse(runPython(PY, [repo('test/lora/check_qlora_export.py'), path.join(dir, 'torch')]).trim().split('\n').pop()!) as Record<string, unknown>;
    assert.match(String(py['cuda_without_bnb']), /^note: adapter lm\.lora declares quantize: nf4 \(QLoRA\), but bitsandbytes is not installed .*: the base `lm` is held and computed in full precision \(fp32\)$/);
    assert.match(String(py['cuda_sharded']), /--fsdp \/ --deepspeed shard the base.*full precision/);
    assert.equal(py['trained_base'], null, 'a stage that trains the base itself quantizes nothing');
    const linears = ['mlp.down_proj', 'mlp.gate_proj', 'mlp.up_proj', 'self_attn.k_proj', 'self_attn.o_proj', 'self_attn.q_proj', 'self_attn.v_proj'].map((m) => `model.layers.0.${m}`);
    assert.deepEqual(py['quantized'], linears, 'every linear of the llm but lm_head');
    assert.deepEqual(py['freed'], linears.map((m) => `${m}.weight`), 'their fp32 copies leave the device');
    assert.equal(py['logits_diff'], 0, 'the (exact) stand-in layers give the same logits');
    assert.ok((py['adapter_effect'] as number) > 1e-3, 'the LoRA update still runs over the quantized base');
    assert.equal(py['checkpoint_same'], true, 'checkpoints hold the base unchanged');
  });
});
