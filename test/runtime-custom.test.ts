// A custom LLM class split across two files (test/runtime/custom-llm: a relative import) loads, runs
// and trains when trusted (--trust here; test/e2e/custom-trust.test.ts has the trust model); without
// `trust: true` in the program the run stops at compile time, before any of its code runs.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { ModelDef } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { initBackend } from '../runtime/backend/backends.js';
import { loadCustomOps } from '../runtime/custom.js';
import { collate } from '../runtime/data/batch.js';
import { imageShapeOf, prepareDataset, syntheticTokenizer } from '../runtime/data/datasets.js';
import { ModelRunner } from '../runtime/model.js';
import { ParamStore, paramSpecs } from '../runtime/params.js';
import { readMetrics } from '../runtime/train/metrics.js';
import { pipec } from './helpers/cli.js';
import { tmpDir } from './helpers/tmp.js';
import { repo } from './paths.js';

const PIPE = repo('test/runtime/custom.pipe');


describe('runtime: custom components', function () {
  this.timeout(120_000);
  before(async () => initBackend('wasm'));

  it('runs the user class (two files, relative import) on top of its base: logits are the base logits / 2', async () => {
    const g = compile({ file: PIPE, configFiles: [], sets: [], lower: true }).graph!;
    const model = g.models[0]!;
    const params = new ParamStore(paramSpecs(model.components), 3);
    const custom = await loadCustomOps(model, path.dirname(PIPE), { trust: true });
    assert.deepEqual([...custom.keys()], ['lm']);
    const plain: ModelDef = { ...model, nodes: model.nodes.map((n) => (n.op === 'custom' ? { ...n, op: 'llama' } : n)) };
    const tok = syntheticTokenizer(g, 128);
    const data = prepareDataset('shapes', { graph: g, model, tokenizer: tok, maxLength: 40 });
    const b = collate(data.train.slice(0, 2), 0, imageShapeOf(model));
    const logits = (r: ModelRunner) => tf.tidy(() => r.forward({ pixels: tf.tensor4d(b.pixels!.data, b.pixels!.shape), inputIds: b.inputIds, info: b.info }).logits.dataSync());
    const mine = logits(new ModelRunner(model, params, custom)), base = logits(new ModelRunner(plain, params));
    assert.equal(mine.length, base.length);
    for (let i = 0; i < mine.length; i++) assert.equal(mine[i], base[i]! / 2);
    params.dispose();
  });

  it('trains through `pipec run --trust`', () => {
    const out = tmpDir('custom');
    const r = pipec(['run', PIPE, '--out', out, '--backend', 'wasm', '--trust']);
    assert.equal(r.status, 0, r.stderr);
    const m = readMetrics(out);
    assert.equal(m.length, 12);
    assert.ok(m[11]!.loss < m[0]!.loss, `${m[0]!.loss} -> ${m[11]!.loss}`);
  });

  it('under gradient_checkpointing its base op is recomputed, the losses are those without it, and the run says what is not checkpointed', () => {
    const run = (gc: boolean) => {
      const out = tmpDir('custom-gc');
      const r = pipec(['run', PIPE, '--out', out, '--backend', 'wasm', '--trust', '--set', 'stage.train_all.steps=3', '--set', `stage.train_all.gradient_checkpointing=${gc}`]);
      assert.equal(r.status, 0, r.stderr);
      return { losses: readMetrics(out).map((m) => m.loss), notes: r.stderr.split('\n').filter((l) => l.startsWith('note: stage train_all')) };
    };
    const plain = run(false), gc = run(true);
    assert.deepEqual(plain.notes, []);
    assert.deepEqual(gc.notes, ["note: stage train_all sets gradient_checkpointing; custom component lm is recomputed in backward only where it calls its base op (its own layers keep their activations in pipec's runtime)"]);
    assert.equal(gc.losses.length, 3);
    gc.losses.forEach((l, i) => assert.ok(Math.abs(l - plain.losses[i]!) <= 1e-6, `step ${i + 1}: ${l} with checkpointing, ${plain.losses[i]} without`));
  });

  it('without `trust: true` in the program the run stops at the component with PIPE6003 (even with --trust), before importing the module', () => {
    const dir = tmpDir('untrusted');
    fs.cpSync(repo('test/runtime/custom-llm'), path.join(dir, 'custom-llm'), { recursive: true });
    const marker = path.join(dir, 'custom-llm', 'scaling.ts');
    fs.appendFileSync(marker, `\nimport * as fs from 'node:fs';\nfs.writeFileSync(${JSON.stringify(path.join(dir, 'RAN'))}, 'x');\n`);
    fs.writeFileSync(path.join(dir, 'custom.pipe'), fs.readFileSync(PIPE, 'utf8').replace('trust: true', 'trust: false'));
    const r = pipec(['run', path.join(dir, 'custom.pipe'), '--out', path.join(dir, 'run'), '--backend', 'wasm', '--trust']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /custom\.pipe:\d+:\d+ - error PIPE6003: custom component `ScaledLlamaForCausalLM` runs code from its module and needs `trust: true`/);
    assert.ok(!fs.existsSync(path.join(dir, 'RAN')), 'the untrusted module ran');
  });
});
