// LoRA adapters (issue #16, the runtime half): the ops on every backend (an untrained adapter changes
// nothing; base + adapter equals the folded weight; dropout only in training, from the seeded stream),
// training the tiny program with `lm.lora` (only the adapter changes, the base stays bit-identical; the
// next stage starts from it; resume equals an uninterrupted run bit for bit), the checkpoint's PEFT
// folder read by PEFT itself (logits equal to 1e-4), and `pipec merge`.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Graph, ModelDef } from '../compiler/ir/graph.js';
import { main } from '../cli/main.js';
import { initBackend } from '../runtime/backend/backends.js';
import { PipeRuntimeError } from '../runtime/errors.js';
import { ModelRunner } from '../runtime/model.js';
import type { BatchInfo, OpContext } from '../runtime/ops/types.js';
import { modelParamSpecs, ownersOf, ParamStore } from '../runtime/params.js';
import { foldAdapter } from '../runtime/train/adapters.js';
import { linear } from '../runtime/backend/kernels.js';
import { adaptedLinear, linearOfWeight, loraModules } from '../runtime/ops/lora.js';
import { checkpointName, loadComponents } from '../runtime/train/checkpoint.js';
import { encodeSafetensors, readWeights } from '../runtime/weights/safetensors.js';
import { testBackends, useBackend } from './helpers/numeric.js';
import { runPython, peftPython } from './helpers/python.js';
import { PYTHON_ENV } from './helpers/reference.js';
import { unavailable } from './helpers/required.js';
import { compile } from '../compiler/service/service.js';
import { exportHf } from '../runtime/export/hf.js';
import { everyKindModel, TINY_LORA, tinyLoraGraph } from './lora-fixtures.js';
import { repo } from './paths.js';
import { lossRows, runIn, tensorFiles, tinyGraph, tmpDir } from './run-fixtures.js';

const backends = await testBackends();
const ALIGN_END = checkpointName(0, 'align', 20), FINAL = checkpointName(1, 'finetune', 2);

/** Text-only batch [B, T] of ids in [1, V - 1), no padding. */
function tokens(B: number, T: number, V: number, seed: number): { ids: Int32Array; info: BatchInfo; rows: number[][] } {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / (1 << 24);
  const ids = new Int32Array(B * T).map(() => 1 + Math.floor(rand() * (V - 2)));
  const rows = Array.from({ length: B }, (_, b) => [...ids.subarray(b * T, (b + 1) * T)]);
  return { ids, rows, info: { attentionMask: new Int32Array(B * T).fill(1), batch: B, length: T, imageStart: new Array<number>(B).fill(-1) } };
}

function logitsOf(model: ModelDef, params: ParamStore, t: ReturnType<typeof tokens>, dropout?: { seed: number; key: string }): Float32Array {
  const runner = new ModelRunner(model, params);
  return tf.tidy(() => runner.forward({ pixels: null, inputIds: t.ids, info: t.info, dropout }).logits.dataSync() as Float32Array);
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const withoutAdapters = (m: ModelDef): ModelDef => ({ ...m, adapters: undefined });

for (const backend of backends) {
  describe(`LoRA ops [${backend}]`, function () {
    this.timeout(120_000);
    let restore: () => void;
    before(async () => void (restore = await useBackend(backend)));
    after(() => restore());

    const adapted = everyKindModel;

    it('an untrained adapter (B = 0) leaves the logits bit-identical; A is U(-1/sqrt(in), 1/sqrt(in)) as PEFT draws it', () => {
      const m = adapted();
      const params = new ParamStore(modelParamSpecs(m), 3);
      try {
        const t = tokens(2, 10, 128, 1);
        assert.deepEqual(logitsOf(m, params, t), logitsOf(withoutAdapters(m), params, t));
        const A = params.get('model.layers.0.self_attn.q_proj.lora_A.weight').dataSync();
        const bound = 1 / Math.sqrt(32);
        assert.ok(A.every((x) => Math.abs(x) <= bound) && Math.max(...A.map(Math.abs)) > 0.8 * bound, 'A spans U(-1/sqrt(in), 1/sqrt(in))');
        assert.ok(params.get('model.layers.0.self_attn.q_proj.lora_B.weight').dataSync().every((x) => x === 0));
        assert.equal(params.ofComponent('lm.lora').length, 14); // 7 modules x (A, B)
      } finally {
        params.dispose();
      }
    });

    it('a custom class\'s blocks.linear(x, ctx.param(W)) is adapted where an adapter targets W (found by the weight), plain elsewhere', () => {
      const m = adapted();
      const params = new ParamStore(modelParamSpecs(m), 3);
      try {
        const B = 'model.layers.0.self_attn.q_proj.lora_B.weight';
        params.assign(B, Float32Array.from({ length: params.get(B).size }, (_, i) => Math.sin(i)));
        const ctx = { param: (n: string) => params.get(n), hasParam: (n: string) => params.has(n), lora: loraModules(m) } as unknown as OpContext;
        const x = tf.randomNormal([3, 32], 0, 1, 'float32', 5);
        const q = 'model.layers.0.self_attn.q_proj';
        const viaWeight = linearOfWeight(ctx, x, params.get(`${q}.weight`));
        assert.deepEqual(viaWeight.dataSync(), adaptedLinear(ctx, x, q).dataSync());
        assert.ok(maxDiff(viaWeight.dataSync() as Float32Array, linear(x, params.get(`${q}.weight`)).dataSync() as Float32Array) > 1e-3, 'the adapter changes q_proj');
        const k = params.get('model.layers.0.self_attn.k_proj.weight'); // not a target
        assert.deepEqual(linearOfWeight(ctx, x, k).dataSync(), linear(x, k).dataSync());
      } finally {
        params.dispose();
      }
    });

    it('base + adapter equals the folded weight W + alpha/r B A (1e-5), on the llm, projector and vision linears', () => {
      const m = adapted();
      const params = new ParamStore(modelParamSpecs(m), 3);
      try {
        // random B so that every adapter acts
        for (const n of params.vars.keys()) if (n.endsWith('.lora_B.weight')) params.assign(n, Float32Array.from(params.get(n).dataSync(), (_x, i) => Math.sin(i * 1.7 + n.length) * 0.2));
        const t = tokens(2, 10, 128, 2);
        const pixels = tf.tensor4d(Float32Array.from({ length: 2 * 3 * 16 * 16 }, (_x, i) => Math.cos(i * 0.37)), [2, 3, 16, 16]);
        const info: BatchInfo = { ...t.info, length: 10, imageStart: [1, 3] };
        const run = (model: ModelDef, p: ParamStore) => tf.tidy(() => new ModelRunner(model, p).forward({ pixels, inputIds: t.ids, info }).logits.dataSync() as Float32Array);
        const withLora = run(m, params);
        // fold every adapter into a copy of the base weights
        const folded = new ParamStore(modelParamSpecs(withoutAdapters(m)), 3);
        const weights = new Map([...folded.vars].map(([n, v]) => [n, { shape: v.shape, data: params.get(n).dataSync().slice() as Float32Array }]));
        const lora = new Map([...params.vars].filter(([n]) => n.includes('.lora_')).map(([n, v]) => [n, v.dataSync() as Float32Array]));
        for (const a of m.adapters!) foldAdapter(a, weights, lora);
        for (const [n, w] of weights) folded.assign(n, w.data);
        const merged = run(withoutAdapters(m), folded);
        const base = run(withoutAdapters(m), params);
        folded.dispose();
        pixels.dispose();
        const scale = Math.max(...withLora.map(Math.abs));
        const d = maxDiff(withLora, merged);
        console.log(`      [${backend}] max |base+adapter - folded| = ${d.toExponential(2)} (logits up to ${scale.toFixed(3)}; the adapters move them by ${maxDiff(withLora, base).toExponential(2)})`);
        assert.ok(d <= 1e-5 * Math.max(1, scale), `differs by ${d}`);
        assert.ok(maxDiff(withLora, base) > 1e-3, 'the adapters change the logits');
      } finally {
        params.dispose();
      }
    });

    it('dropout acts only in a training forward, with the same mask for the same micro-batch key', () => {
      const m = tinyLoraGraph().models[0]!;
      m.adapters = [{ ...m.adapters![0]!, dropout: 0.5 }];
      const params = new ParamStore(modelParamSpecs(m), 3);
      try {
        for (const n of params.vars.keys()) if (n.endsWith('.lora_B.weight')) params.assign(n, new Float32Array(params.get(n).size).fill(0.1));
        const t = tokens(2, 8, 128, 4);
        const evalLogits = logitsOf(m, params, t);
        const a1 = logitsOf(m, params, t, { seed: 0, key: 'align/0' }), a2 = logitsOf(m, params, t, { seed: 0, key: 'align/0' });
        const b = logitsOf(m, params, t, { seed: 0, key: 'align/1' });
        assert.deepEqual(a1, a2);
        assert.ok(maxDiff(a1, evalLogits) > 1e-4 && maxDiff(a1, b) > 1e-4, 'masks act and differ between micro-batches');
      } finally {
        params.dispose();
      }
    });

    it('an adapter that does not fit its component is PIPE9110, naming the tensor and the shapes', () => {
      // a graph.json edited by hand: the compiler never writes these
      const m = tinyLoraGraph().models[0]!;
      const a = m.adapters![0]!;
      a.tensors[0] = { ...a.tensors[0]!, shape: [4, 31] };
      const params = new ParamStore(modelParamSpecs(withoutAdapters(m)), 0);
      try {
        assert.throws(() => new ModelRunner(m, params), (e: unknown) => e instanceof PipeRuntimeError && e.code === 'PIPE9110' &&
          /adapter `lm.lora` does not fit its component: "model.layers.0.self_attn.q_proj.lora_A.weight" is \[4, 31\], expected \[4, 32\]/.test(e.message));
        m.adapters = [{ ...a, tensors: [{ name: 'model.norm.lora_A.weight', shape: [4, 32] }] }];
        assert.throws(() => new ModelRunner(m, params), /"model.norm" is not a linear layer of component `lm`/);
      } finally {
        params.dispose();
      }
    });
  });
}

describe('LoRA training (tiny program, wasm, in-process)', function () {
  this.timeout(600_000);
  let ref: string;
  const graph = () => tinyLoraGraph();
  const ck = (dir: string, name: string) => path.join(dir, 'checkpoints', name);

  before(async () => {
    await initBackend('wasm');
    ref = tmpDir('lora-ref');
    const r = await runIn(ref, { graph: graph() });
    assert.equal(r.error, undefined, `${r.error?.render()}\n${r.log}`);
  });

  it('a stage training lm.lora changes only the adapter: every base tensor stays bit-identical, the optimizer holds only the adapter', () => {
    const g = graph();
    const model = g.models[0]!;
    const fresh = new ParamStore(modelParamSpecs(model), g.stages[0]!.seed);
    try {
      for (const c of model.components) {
        const saved = readWeights(path.join(ck(ref, ALIGN_END), c.name));
        for (const n of fresh.ofComponent(c.name)) assert.deepEqual(saved.get(n)!.data, fresh.get(n).dataSync(), `${n} changed`);
      }
      const adapter = readWeights(path.join(ck(ref, ALIGN_END), 'lm.lora'));
      const B = adapter.get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')!.data;
      assert.ok(B.some((x) => x !== 0), 'lora_B was trained');
      const A = adapter.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')!.data;
      assert.notDeepEqual(A, fresh.get('model.layers.0.self_attn.q_proj.lora_A.weight').dataSync(), 'lora_A was trained');
      const opt = [...readWeights(ck(ref, checkpointName(0, 'align', 18))).keys()].sort();
      assert.deepEqual(opt, fresh.ofComponent('lm.lora').flatMap((n) => [`exp_avg.${n}`, `exp_avg_sq.${n}`]).sort());
    } finally {
      fresh.dispose();
    }
  });

  it('per-component settings: `train: [proj(lr: 0.05, weight_decay: 0.0), lm.lora]` moves the projector by its own lr and the adapter by the stage\'s', async () => {
    // AdamW's first step moves an entry by lr * |g| / (|g| + eps): the largest move of a tensor is its lr
    const text = fs.readFileSync(TINY_LORA, 'utf8')
      .replace('train: [lm.lora]\n  freeze: [vision, proj, lm]', 'train: [proj(lr: 0.05, weight_decay: 0.0), lm.lora]\n  freeze: [vision, lm]')
      .replace('schedule: cosine(warmup_ratio: 0.1)', 'schedule: constant')
      .replace('steps: 20', 'steps: 1');
    const dir = tmpDir('lora-groups');
    const file = path.join(dir, 'groups.pipe');
    fs.writeFileSync(file, text);
    const r = compile({ file, configFiles: [], sets: [], lower: true });
    assert.ok(r.graph, r.diagnostics.map((d) => d.message).join('; '));
    assert.deepEqual(r.graph.stages[0]!.param_groups, [{ name: 'proj', lr: 0.05, weight_decay: 0 }]);
    const ran = await runIn(path.join(dir, 'run'), { graph: r.graph, baseDir: dir });
    assert.equal(ran.error, undefined, `${ran.error?.render()}\n${ran.log}`);
    const fresh = new ParamStore(modelParamSpecs(r.graph.models[0]!), r.graph.stages[0]!.seed);
    try {
      const after = (c: string) => readWeights(path.join(dir, 'run', 'checkpoints', checkpointName(0, 'align', 1), c));
      const largestMove = (saved: Map<string, { data: Float32Array }>, names: string[], peft = '') =>
        Math.max(...names.map((n) => maxDiff(saved.get(peft + n)!.data, fresh.get(n).dataSync() as Float32Array)));
      const proj = largestMove(after('proj'), fresh.ofComponent('proj'));
      const lora = largestMove(after('lm.lora'), fresh.ofComponent('lm.lora'), 'base_model.model.');
      assert.ok(proj > 0.05 * 0.99 && proj <= 0.05 * (1 + 1e-6), `the projector moved by up to ${proj}, its lr is 0.05`);
      assert.ok(lora > 0.01 * 0.99 && lora <= 0.01 * (1 + 1e-6), `the adapter moved by up to ${lora}, the stage's lr is 0.01`);
    } finally {
      fresh.dispose();
    }
  });

  it('the next stage (after: align) starts from align\'s adapter and, freezing it, keeps it bit for bit', () => {
    assert.deepEqual(readWeights(path.join(ck(ref, FINAL), 'lm.lora')), readWeights(path.join(ck(ref, ALIGN_END), 'lm.lora')));
    assert.notDeepEqual(readWeights(path.join(ck(ref, FINAL), 'proj')), readWeights(path.join(ck(ref, ALIGN_END), 'proj')));
  });

  it('each checkpoint holds the adapter in PEFT\'s format: adapter_model.safetensors with base_model.model.* names and adapter_config.json', () => {
    const dir = path.join(ck(ref, FINAL), 'lm.lora');
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(cfg['peft_type'], 'LORA');
    assert.equal(cfg['task_type'], 'CAUSAL_LM');
    assert.equal(cfg['r'], 4);
    assert.equal(cfg['lora_alpha'], 8);
    assert.equal(cfg['lora_dropout'], 0.1);
    assert.equal(cfg['bias'], 'none');
    assert.deepEqual(cfg['target_modules'], ['q_proj', 'v_proj']);
    assert.equal(cfg['base_model_name_or_path'], path.join(ck(ref, FINAL), 'lm'));
    assert.deepEqual([...readWeights(dir).keys()].sort(), [
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
      'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight', 'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight',
    ]);
    const manifest = JSON.parse(fs.readFileSync(path.join(ck(ref, FINAL), 'manifest.json'), 'utf8')) as { files: Record<string, unknown> };
    assert.ok(manifest.files['lm.lora/adapter_model.safetensors'] && manifest.files['lm.lora/adapter_config.json'], 'the manifest covers the adapter');
  });

  it('export --target hf folds the adapters in: the LLaVA folder\'s q_proj is pipec merge\'s W + alpha/r B A, its v_proj too, and an unadapted weight is the base', async () => {
    const work = tmpDir('lora-hf');
    const res = exportHf(ref, path.join(work, 'hf'));
    assert.ok(res.notes.some((n) => n.includes('lm.lora folded into the weights')), res.notes.join('\n'));
    let err = '';
    assert.equal(await main(['merge', ref, '--out', path.join(work, 'merged')], { out: () => undefined, err: (s) => (err += s) }), 0, err);
    const hf = readWeights(path.join(work, 'hf'));
    const merged = readWeights(path.join(work, 'merged', 'lm'));
    const base = readWeights(path.join(ck(ref, FINAL), 'lm'));
    const exported = (n: string) => [...hf].find(([k]) => k.includes('language_model') && k.endsWith(n))![1].data;
    for (const n of ['layers.0.self_attn.q_proj.weight', 'layers.0.self_attn.v_proj.weight']) {
      assert.deepEqual(exported(n), merged.get(`model.${n}`)!.data, n);
      assert.notDeepEqual(exported(n), base.get(`model.${n}`)!.data, `${n}: the adapter changes it`);
    }
    assert.deepEqual(exported('layers.0.self_attn.k_proj.weight'), base.get('model.layers.0.self_attn.k_proj.weight')!.data);
  });

  it('with gradient_checkpointing (layers recomputed in backward, LoRA dropout 0.1 drawn again the same) every loss equals the plain run\'s (1e-6)', async () => {
    const dir = tmpDir('lora-checkpointed');
    const g = tinyLoraGraph(['stage.align.gradient_checkpointing=true', 'stage.finetune.gradient_checkpointing=true']);
    assert.deepEqual(g.stages.map((s) => s.gradient_checkpointing), [true, true]);
    const r = await runIn(dir, { graph: g });
    assert.equal(r.error, undefined, `${r.error?.render()}\n${r.log}`);
    const mine = lossRows(dir), plain = lossRows(ref);
    assert.equal(mine.length, plain.length);
    mine.forEach(([stage, step, loss], i) => {
      assert.deepEqual([stage, step], plain[i]!.slice(0, 2));
      assert.ok(Math.abs(loss - plain[i]![2]) <= 1e-6 * Math.abs(plain[i]![2]), `${stage} step ${step}: ${loss} vs ${plain[i]![2]}`);
    });
  });

  for (const stop of [5, 20]) {
    it(`killed after ${stop} steps${stop === 20 ? ' (align done: the hand-off is read from its checkpoint)' : ' (mid-stage, with dropout)'}, --resume equals the uninterrupted run bit for bit`, async () => {
      const dir = tmpDir(`lora-resume-${stop}`);
      const r1 = await runIn(dir, { graph: graph(), stopAfterSteps: stop });
      assert.equal(r1.error, undefined, r1.error?.render());
      const r2 = await runIn(dir, { graph: graph(), resume: true });
      assert.equal(r2.error, undefined, `${r2.error?.render()}\n${r2.log}`);
      assert.deepEqual(lossRows(dir), lossRows(ref), 'per-step losses differ');
      assert.deepEqual(tensorFiles(ck(dir, FINAL)), tensorFiles(ck(ref, FINAL)), 'final weights, adapter or optimizer state differ');
    });
  }

  it('PEFT loads the checkpoint (LlamaForCausalLM + PeftModel.from_pretrained) and its logits equal pipec\'s (1e-4); pipec merge\'s folder loads in transformers with the same logits', async function () {
    const found = peftPython();
    if ('why' in found) unavailable(this, 'a Python with torch, transformers and peft to load the adapter', found.why);
    const g = graph();
    const model = g.models[0]!;
    const params = new ParamStore(modelParamSpecs(model), 0);
    const t = tokens(2, 12, 128, 9);
    const work = tmpDir('lora-peft');
    let pipecLogits: Float32Array;
    try {
      loadComponents(ck(ref, FINAL), ownersOf(model), params);
      pipecLogits = logitsOf(model, params, t);
    } finally {
      params.dispose();
    }
    fs.writeFileSync(path.join(work, 'logits.safetensors'), encodeSafetensors(new Map([['logits', { shape: [2, 12, 128], data: pipecLogits }]])));
    // pipec merge, then the merged llm through pipec's own runtime: equal to base + adapter (1e-5)
    const merged = path.join(work, 'merged');
    let out = '', err = '';
    const code = await main(['merge', ref, '--checkpoint', FINAL, '--out', merged], { out: (s) => (out += s), err: (s) => (err += s) });
    assert.equal(code, 0, err);
    assert.match(out, /wrote .*merged: vision\/, proj\/, lm\/ from checkpoint 01-finetune-step000002 with lm.lora folded in/);
    assert.match(err, /lm.lora: folded into 2 weights of `lm` \(scale alpha\/r = 8\/4\)/);
    const plain = withoutAdapters(model);
    const mp = new ParamStore(modelParamSpecs(plain), 0);
    let mergedDiff: number;
    try {
      loadComponents(merged, ownersOf(plain), mp);
      mergedDiff = maxDiff(logitsOf(plain, mp, t), pipecLogits);
    } finally {
      mp.dispose();
    }
    const py = JSON.parse(runPython(found.python, [repo('test/lora/check_peft.py'), JSON.stringify({
      ids: t.rows, logits: path.join(work, 'logits.safetensors'), base: path.join(ck(ref, FINAL), 'lm'), adapter: path.join(ck(ref, FINAL), 'lm.lora'), merged: path.join(merged, 'lm'),
    })], { env: PYTHON_ENV }).trim().split('\n').pop()!) as Record<string, number | string[]>;
    console.log(`      pipec merged vs base + adapter ${mergedDiff.toExponential(2)}; PEFT vs pipec ${(py['peft_vs_pipec'] as number).toExponential(2)}, transformers on the merged folder vs PEFT ${(py['merged_vs_peft'] as number).toExponential(2)}, vs pipec ${(py['merged_vs_pipec'] as number).toExponential(2)} (the adapter moves the logits by ${(py['adapter_effect'] as number).toExponential(2)})`);
    assert.deepEqual(py['lora_modules'], ['base_model.model.model.layers.0.self_attn.q_proj', 'base_model.model.model.layers.0.self_attn.v_proj']);
    assert.ok(mergedDiff <= 1e-5, `merged differs from base + adapter by ${mergedDiff}`);
    assert.ok((py['peft_vs_pipec'] as number) <= 1e-4, `PEFT differs from pipec by ${py['peft_vs_pipec']}`);
    assert.ok((py['merged_vs_peft'] as number) <= 1e-5, `the merged folder differs from PEFT by ${py['merged_vs_peft']}`);
    assert.ok((py['adapter_effect'] as number) > 1e-3, 'the trained adapter changes the logits');
  });
});

describe('pipec merge: usage and refusals', function () {
  this.timeout(300_000);
  async function cli(...args: string[]) {
    let out = '', err = '';
    const code = await main(args, { out: (s) => (out += s), err: (s) => (err += s) });
    return { code, out, err };
  }

  it('--help describes it; a wrong command line is exit 2 with one line', async () => {
    const h = await cli('merge', '--help');
    assert.equal(h.code, 0);
    assert.match(h.out, /merge RUN_DIR \[--checkpoint NAME\] --out DIR/);
    assert.match(h.out, /W \+ \(alpha\/r\) B A/);
    const dir = tmpDir('merge-usage');
    for (const [args, msg] of [
      [['merge', dir], /^pipec: merge needs --out DIR$/m],
      [['merge', path.join(dir, 'nope'), '--out', path.join(dir, 'o')], /is not one$/m],
      [['merge', '--out', path.join(dir, 'o')], /^pipec: merge takes exactly one run directory$/m],
    ] as [string[], RegExp][]) {
      const r = await cli(...args);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, msg);
      assert.match(r.err, /see `pipec merge --help`/);
    }
  });

  it('a run without adapters, a missing checkpoint and a non-empty --out are PIPE9111 (exit 1), nothing written', async () => {
    await initBackend('wasm');
    const plain = tmpDir('merge-plain');
    const r = await runIn(plain, { graph: tinyGraph(['stage.align.steps=1', 'stage.finetune.steps=1']) });
    assert.equal(r.error, undefined, r.error?.render());
    const out = path.join(tmpDir('merge-out'), 'm');
    const a = await cli('merge', plain, '--out', out);
    assert.equal(a.code, 1);
    assert.match(a.err, /error PIPE9111: pipec merge: model `tiny` has no adapter to fold in/);
    assert.ok(!fs.existsSync(out));
    const lora = tmpDir('merge-lora');
    const g: Graph = tinyLoraGraph(['stage.align.steps=1', 'stage.finetune.steps=1']);
    assert.equal((await runIn(lora, { graph: g })).error, undefined);
    const b = await cli('merge', lora, '--checkpoint', '00-align-step000099', '--out', out);
    assert.equal(b.code, 1);
    assert.match(b.err, /PIPE9111: pipec merge: the run has no checkpoint "00-align-step000099"\n   hint: its checkpoints: 00-align-step000001, 01-finetune-step000001/);
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'x'), '');
    const c = await cli('merge', lora, '--out', out);
    assert.equal(c.code, 1);
    assert.match(c.err, /PIPE9111: pipec merge: ".*" exists and is not an empty folder; nothing was written/);
    assert.deepEqual(fs.readdirSync(out), ['x']);
  });
});
