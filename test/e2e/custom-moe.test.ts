// A custom class end to end, both halves: test/custom-moe/tiny-tanuki.pipe uses pipelines/models/tanuki's
// TanukiForCausalLM (a Mixtral whose router is tempered) through its TypeScript half in `pipec run` and
// through its PyTorch half in the exported program, trained under `torchrun --nproc_per_node 2` with FSDP
// (gloo, CPU). The two give the same losses over 20 steps; plain Mixtral gives others, so the class's own
// code is what ran on both sides. The exported program carries the class's package and imports it
// relatively (the seed story's failure). The same 20 steps under DeepSpeed ZeRO-3 (train.py --deepspeed with
// the exported JSON, 2 processes on CPU) where a Python with DeepSpeed is found; elsewhere the file prints
// why that comparison is not there (pip's configured index has no DeepSpeed).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { collate } from '../../runtime/data/batch.js';
import { imageShapeOf } from '../../runtime/data/datasets.js';
import { verifyManifest } from '../../runtime/train/manifest.js';
import { readMetrics, type StepMetrics } from '../../runtime/train/metrics.js';
import { evaluateBatch, loadRunModel, openRun } from '../../runtime/train/open-run.js';
import { compareLosses, rel, torchrun } from '../export/helpers.js';
import { pipec } from '../helpers/cli.js';
import { deepspeedPython, runPython, TORCH2_FIX, torch2Python, TRANSFORMERS_FIX, transformersPython } from '../helpers/python.js';
import { unavailable } from '../helpers/required.js';
import { tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

/** The tiny program beside a copy of the shipped class (custom code lives in the program's folder). */
export function tinyTanukiFolder(name: string): string {
  const dir = tmpDir(name);
  fs.copyFileSync(repo('test/custom-moe/tiny-tanuki.pipe'), path.join(dir, 'tiny-tanuki.pipe'));
  fs.cpSync(repo('pipelines/models/tanuki'), path.join(dir, 'models', 'tanuki'), { recursive: true });
  return dir;
}

/** `pipec ARGS` that must succeed; returns stderr. */
function ok(args: string[]): string {
  const r = pipec(args);
  assert.equal(r.status, 0, `pipec ${args.join(' ')}:\n${r.stderr}`);
  return r.stderr;
}

describe('a custom MoE class in both halves: pipec run and the exported program under torchrun FSDP and DeepSpeed ZeRO-3', function () {
  this.timeout(300_000);
  let PY: string, dir: string, pipe: string, tanuki: StepMetrics[];

  before(function () {
    const found = torch2Python();
    if (!found) unavailable(this, 'no Python with torch >= 2', TORCH2_FIX);
    PY = found.python;
    dir = tinyTanukiFolder('tiny-tanuki');
    pipe = path.join(dir, 'tiny-tanuki.pipe');
    ok(['trust', pipe]);
    ok(['run', pipe, '--out', path.join(dir, 'pipec'), '--backend', 'wasm']);
    tanuki = readMetrics(path.join(dir, 'pipec'));
    assert.equal(tanuki.length, 20);
  });

  it('the export carries the class\'s package and imports it relatively; Python byte-compiles it', () => {
    const out = path.join(dir, 'compiled');
    ok(['export', pipe, '--target', 'torch', '-o', out]);
    assert.deepEqual(fs.readdirSync(path.join(out, 'custom_lm')).sort(), ['__init__.py', 'configuration_tanuki.py', 'modeling_tanuki.py']);
    assert.equal(fs.readFileSync(path.join(out, 'custom_lm', 'modeling_tanuki.py'), 'utf8'), fs.readFileSync(repo('pipelines/models/tanuki/modeling_tanuki.py'), 'utf8'));
    assert.match(fs.readFileSync(path.join(out, 'custom_lm', 'modeling_tanuki.py'), 'utf8'), /^from \.configuration_tanuki import TanukiConfig$/m);
    runPython(PY, ['-W', 'error', '-m', 'py_compile', ...['model.py', 'train.py', 'custom_lm/__init__.py', 'custom_lm/modeling_tanuki.py', 'custom_lm/configuration_tanuki.py'].map((f) => path.join(out, f))]);
  });

  it('20 steps: pipec\'s TypeScript class and the exported PyTorch class under FSDP (2 processes) give the same losses; plain Mixtral does not', async () => {
    // 2 processes x accumulate 1 take the micro-batches pipec's accumulate 2 takes, in the same order
    const sets = ['--set', 'stage.joint.accumulate=1'];
    const out = path.join(dir, 'torch');
    ok(['export', pipe, '--target', 'torch', '-o', out, ...sets]);
    ok(['prepare', pipe, '--world-size', '2', '-o', path.join(out, 'data'), ...sets]);
    const log = await torchrun(PY, 2, path.join(out, 'train.py'), ['--data', path.join(out, 'data'), '--out', path.join(out, 'run'), '--fsdp', 'full'], out);
    assert.match(log, /stage joint: .*sharded by FSDP \(FULL_SHARD\)/);
    assert.match(log, /component lm: TanukiForCausalLM from custom_lm\.modeling_tanuki/, 'model.py builds the user\'s class from the carried package');
    const worst = compareLosses('TanukiForCausalLM: pipec vs exported under FSDP', tanuki, readMetrics(path.join(out, 'run')), 20, 1e-4);

    // the same program with plain Mixtral (no tempered router), from the same weights and data
    const text = fs.readFileSync(pipe, 'utf8').replace(/custom\("TanukiForCausalLM"[^]*?base: mixtral,\s*/, 'mixtral(');
    assert.notEqual(text, fs.readFileSync(pipe, 'utf8'));
    fs.writeFileSync(path.join(dir, 'tiny-mixtral.pipe'), text);
    ok(['run', path.join(dir, 'tiny-mixtral.pipe'), '--out', path.join(dir, 'mixtral'), '--backend', 'wasm']);
    const mixtral = readMetrics(path.join(dir, 'mixtral'));
    // at initialisation the router's logits are small and both routers nearly uniform; training moves them apart
    const apart = Math.max(...mixtral.map((m, i) => rel(tanuki[i]!.loss, m.loss)));
    const auxApart = rel(tanuki[0]!.aux_loss!, mixtral[0]!.aux_loss!);
    console.log(`      plain Mixtral vs TanukiForCausalLM over 20 steps: losses apart by up to ${apart.toExponential(2)} (aux loss at step 1: ${auxApart.toExponential(2)}); the class's two halves agree to ${worst.toExponential(2)}`);
    assert.ok(apart > 1e-3 && apart > 1000 * worst, `the tempered router must change the loss: Mixtral and Tanuki differ by only ${apart}`);
    assert.ok(auxApart > 1e-4, `the tempered router must change the load-balancing loss: ${auxApart}`);
  });

  it('the exported trainer\'s checkpoint of the class loads in transformers with trust_remote_code (its package and auto_map beside the weights)', function () {
    const tf = transformersPython();
    if ('why' in tf) unavailable(this, tf.why, TRANSFORMERS_FIX);
    const run = path.join(dir, 'torch', 'run', 'checkpoints');
    assert.ok(fs.existsSync(run), 'the FSDP run above wrote checkpoints');
    const lm = path.join(run, JSON.parse(fs.readFileSync(path.join(run, 'latest.json'), 'utf8')).checkpoint, 'lm');
    assert.deepEqual(fs.readdirSync(lm).filter((f) => f.endsWith('.py')).sort(), ['configuration_tanuki.py', 'modeling_tanuki.py']);
    const probe = [
      'import json, sys, torch',
      'from safetensors.torch import load_file',
      'from transformers import AutoModelForCausalLM',
      'm = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)',
      'saved = load_file(sys.argv[1] + "/model.safetensors")',
      'sd = m.state_dict()',
      'worst = max(float((sd[n].float() - t.float()).abs().max()) for n, t in saved.items())',
      'print(json.dumps({"class": type(m).__name__, "module": type(m).__module__, "config": type(m.config).__name__, "temperature": m.config.router_temperature, "same_names": sorted(sd) == sorted(saved), "worst": worst}))',
    ].join('\n');
    const got = JSON.parse(runPython(tf.python, ['-c', probe, lm], { env: { HF_HUB_OFFLINE: '1', HF_MODULES_CACHE: path.join(dir, 'hf-modules') } }).trim().split('\n').pop()!);
    assert.equal(got.class, 'TanukiForCausalLM');
    assert.match(got.module, /modeling_tanuki$/, 'the class came from the files beside the weights (remote code)');
    assert.equal(got.config, 'TanukiConfig');
    assert.ok(got.temperature > 0);
    assert.ok(got.same_names, 'the model holds exactly the saved tensors');
    assert.equal(got.worst, 0, 'the trained weights are the ones loaded');
  });

  it('pipec\'s own run checkpoint of the class loads in transformers with trust_remote_code and computes pipec\'s logits', async function () {
    const tf = transformersPython();
    if ('why' in tf) unavailable(this, tf.why, TRANSFORMERS_FIX);
    const run = openRun(path.join(dir, 'pipec'));
    const lm = path.join(run.checkpoint, 'lm');
    // exactly the package files the graph records, beside the weights, and in the checkpoint's manifest
    for (const f of ['configuration_tanuki.py', 'modeling_tanuki.py'])
      assert.equal(fs.readFileSync(path.join(lm, f), 'utf8'), fs.readFileSync(repo('pipelines/models/tanuki', f), 'utf8'), f);
    assert.deepEqual(fs.readdirSync(lm).sort(), ['config.json', 'configuration_tanuki.py', 'model.safetensors', 'modeling_tanuki.py']);
    const manifest = JSON.parse(fs.readFileSync(path.join(run.checkpoint, 'manifest.json'), 'utf8')) as { files: Record<string, unknown> };
    assert.ok(manifest.files['lm/modeling_tanuki.py'] && manifest.files['lm/configuration_tanuki.py'], 'the package files are in the manifest');
    assert.equal(verifyManifest(run.checkpoint), null);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(lm, 'config.json'), 'utf8')).auto_map,
      { AutoConfig: 'configuration_tanuki.TanukiConfig', AutoModelForCausalLM: 'modeling_tanuki.TanukiForCausalLM' });

    // pipec's logits for text-only rows (no image: the splice passes the text through), right-padded
    const rows = [[7, 20, 33, 41, 9, 100, 56, 12, 88, 5, 64, 27], [3, 90, 15, 15, 70, 2, 121]];
    const loaded = await loadRunModel(run, { backend: 'cpu' });
    let ev: ReturnType<typeof evaluateBatch>, T: number;
    try {
      const batch = collate(rows.map((ids, index) => ({ ids, labels: ids, imageStart: -1, source: { dataset: 'probe', index } })), 0, imageShapeOf(run.model));
      T = batch.info.length;
      ev = evaluateBatch(loaded.runner, batch);
    } finally {
      loaded.dispose();
    }
    const file = path.join(dir, 'pipec-logits.json');
    fs.writeFileSync(file, JSON.stringify({ rows, T, V: ev.shape[2], logits: [...ev.logits] }));
    const probe = [
      'import json, sys, torch',
      'from transformers import AutoModelForCausalLM',
      'm, info = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True, output_loading_info=True)',
      'ref = json.load(open(sys.argv[2])); T, V = ref["T"], ref["V"]',
      'ours = torch.tensor(ref["logits"]).reshape(len(ref["rows"]), T, V)',
      'ids = torch.zeros(len(ref["rows"]), T, dtype=torch.long); mask = torch.zeros_like(ids)',
      'for b, r in enumerate(ref["rows"]): ids[b, : len(r)] = torch.tensor(r); mask[b, : len(r)] = 1',
      'with torch.no_grad(): theirs = m.eval()(input_ids=ids, attention_mask=mask).logits',
      'worst = max(float((theirs[b, : len(r)] - ours[b, : len(r)]).abs().max()) for b, r in enumerate(ref["rows"]))',
      'print(json.dumps({"class": type(m).__name__, "module": type(m).__module__, "problems": {k: [str(x) for x in v] for k, v in info.items() if v}, "worst": worst, "scale": float(theirs.abs().max())}))',
    ].join('\n');
    const got = JSON.parse(runPython(tf.python, ['-c', probe, lm, file], { env: { HF_HUB_OFFLINE: '1', HF_MODULES_CACHE: path.join(dir, 'hf-modules-run') } }).trim().split('\n').pop()!);
    assert.equal(got.class, 'TanukiForCausalLM');
    assert.match(got.module, /modeling_tanuki$/, 'the class came from the files beside the weights (remote code)');
    assert.deepEqual(got.problems, {}, 'no missing, unexpected or mismatched tensors');
    console.log(`      pipec's run checkpoint in transformers (trust_remote_code): logits differ by ${got.worst.toExponential(2)} (largest ${got.scale.toFixed(2)})`);
    assert.ok(got.worst <= 1e-4, `logits differ by ${got.worst}`);

    // transformers' LLaVA cannot hold the class (docs/export.md): --target hf refuses, pointing at this folder
    const hf = pipec(['export', path.join(dir, 'pipec'), '--target', 'hf', '-o', path.join(dir, 'hf')]);
    assert.equal(hf.status, 1, hf.stderr);
    assert.match(hf.stderr, /PIPE9081/);
    assert.ok(hf.stderr.includes(`AutoModelForCausalLM.from_pretrained("${lm}", trust_remote_code=True)`), hf.stderr);
    assert.ok(!fs.existsSync(path.join(dir, 'hf')), 'nothing was written');
  });

  it('a graph.json run whose Python half changed since it was compiled is refused before the run folder is written (PIPE9106)', () => {
    const d = tinyTanukiFolder('tanuki-py-changed');
    const graph = path.join(d, 'graph.json');
    ok(['compile', path.join(d, 'tiny-tanuki.pipe'), '-o', graph]);
    ok(['trust', path.join(d, 'tiny-tanuki.pipe')]);
    fs.appendFileSync(path.join(d, 'models', 'tanuki', 'configuration_tanuki.py'), '\n# edited after compiling\n');
    const r = pipec(['run', graph, '--out', path.join(d, 'run'), '--backend', 'cpu']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /PIPE9106.*python half "models\/tanuki\/modeling_tanuki\.py" changed since the graph was compiled/);
    assert.ok(!fs.existsSync(path.join(d, 'run')), 'nothing was written');
  });

  // the program as a ZeRO-3 stage on 2 processes: each takes one of the micro-batches pipec's accumulate 2 takes
  const ZERO3 = ['--set', 'stage.joint.accumulate=1', '--set', 'stage.joint.devices.count=2', '--set', 'stage.joint.sharding=zero3'];

  it('launch.sh runs a ZeRO-3 stage under DeepSpeed where its Python imports it, FSDP otherwise, PIPEC_SHARDING forcing either', () => {
    const out = path.join(dir, 'launch');
    ok(['export', pipe, '--target', 'torch', '-o', out, ...ZERO3]);
    // a torchrun that only says what it was asked to run, and Pythons that can or cannot import anything
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, 'torchrun'), '#!/bin/sh\necho "torchrun $*"\n', { mode: 0o755 });
    const launch = (env: Record<string, string>) => {
      const r = spawnSync('bash', [path.join(out, 'launch', 'launch.sh')], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, ...env } });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.trim().split(' train.py ')[1];
    };
    assert.equal(launch({ PYTHON: '/bin/true' }), '--data data --out run --until joint --deepspeed launch/joint.deepspeed.json');
    assert.equal(launch({ PYTHON: '/bin/false' }), '--data data --out run --until joint --fsdp full');
    assert.equal(launch({ PYTHON: '/bin/true', PIPEC_SHARDING: 'fsdp' }), '--data data --out run --until joint --fsdp full');
    assert.equal(launch({ PYTHON: '/bin/false', PIPEC_SHARDING: 'deepspeed' }), '--data data --out run --until joint --deepspeed launch/joint.deepspeed.json');
  });

  // DeepSpeed has no wheel on pip's configured index, so CI cannot install it: the test exists only where a
  // Python with DeepSpeed is found (PIPEC_DEEPSPEED_PYTHON), and the file says so otherwise. Not a skip, which
  // CI's --forbid-pending would rightly refuse, nor a pass that proves nothing.
  const ds = deepspeedPython();
  if ('why' in ds) console.log(`      not run here: the DeepSpeed ZeRO-3 comparison (${ds.why})`);
  else it('20 steps under DeepSpeed ZeRO-3 (train.py --deepspeed, 2 processes, CPU): pipec\'s losses, the MoE block kept whole', async function () {
    const out = path.join(dir, 'deepspeed');
    ok(['export', pipe, '--target', 'torch', '-o', out, ...ZERO3]);
    ok(['prepare', pipe, '--world-size', '2', '-o', path.join(out, 'data'), ...ZERO3]);
    const config = JSON.parse(fs.readFileSync(path.join(out, 'launch', 'joint.deepspeed.json'), 'utf8'));
    assert.deepEqual([config.train_batch_size, config.train_micro_batch_size_per_gpu, config.gradient_accumulation_steps, config.zero_optimization.stage], [8, 4, 1, 3]);
    // the exported threshold (1e6 elements) would keep every parameter of this tiny model whole on each
    // process; 0 partitions them all, so the gathering (and the leaf MoE block) is really exercised
    config.zero_optimization.stage3_param_persistence_threshold = 0;
    fs.writeFileSync(path.join(out, 'zero3.json'), JSON.stringify(config));
    const log = await torchrun(ds.python, 2, path.join(out, 'train.py'), ['--data', path.join(out, 'data'), '--out', path.join(out, 'run'), '--deepspeed', path.join(out, 'zero3.json')], out);
    assert.match(log, /stage joint: .*DeepSpeed ZeRO-3, leaf modules TanukiSparseMoeBlock, VisionLayer/);
    assert.match(log, /component lm: TanukiForCausalLM from custom_lm\.modeling_tanuki/);
    compareLosses(`TanukiForCausalLM: pipec vs exported under DeepSpeed ${ds.version} ZeRO-3 (2 processes)`, tanuki, readMetrics(path.join(out, 'run')), 20, 1e-4);
  });
});
