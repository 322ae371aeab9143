// Weights in Hugging Face layouts: single and sharded safetensors (model.safetensors.index.json), F32 /
// F16 / BF16 data, shape checks; our writer's files pass the compiler's strict header validation; and
// generation with the key/value cache gives the same logits as recomputing the whole sequence.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { readSafetensorsHeader } from '../compiler/check/checkpoint-io.js';
import type { ComponentDef } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { initBackend } from '../runtime/backend/backends.js';
import { PipeRuntimeError } from '../runtime/errors.js';
import { ModelRunner } from '../runtime/model.js';
import type { KvCache } from '../runtime/ops/types.js';
import { ParamStore, paramSpecs } from '../runtime/params.js';
import { loadWeightsInto } from '../runtime/train/checkpoint.js';
import { encodeSafetensors, readWeights } from '../runtime/weights/safetensors.js';
import { close } from './helpers/numeric.js';
import { writeSafetensors } from './helpers/safetensors-writer.js';
import { tmpDir } from './helpers/tmp.js';
import { repo } from './paths.js';

const bf16 = (xs: number[]) => {
  const b = Buffer.alloc(xs.length * 2);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  xs.forEach((x, i) => ((f[0] = x), b.writeUInt16LE(u[0]! >>> 16, i * 2)));
  return b;
};
const f16 = (xs: number[]) => {
  // exact for the small values used here: sign, 5-bit exponent, 10-bit mantissa
  const b = Buffer.alloc(xs.length * 2);
  xs.forEach((x, i) => {
    const s = x < 0 ? 0x8000 : 0, a = Math.abs(x);
    const e = Math.floor(Math.log2(a));
    b.writeUInt16LE(a === 0 ? 0 : s | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024), i * 2);
  });
  return b;
};
const f32 = (xs: number[]) => Buffer.from(Float32Array.from(xs).buffer);

const PROJ: ComponentDef = {
  name: 'proj', role: 'projector', op: 'linear', constructor: 'linear', attrs: { in: 2, out: 2 }, params: 6,
  tensors: [{ name: 'multi_modal_projector.linear_1.weight', shape: [2, 2] }, { name: 'multi_modal_projector.linear_1.bias', shape: [2] }],
};

describe('runtime: weights', () => {
  before(async () => initBackend('wasm'));

  it('loads a sharded checkpoint through its index, converting BF16 and F16 to float32', () => {
    const dir = tmpDir('w');
    writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), { 'multi_modal_projector.linear_1.weight': { dtype: 'BF16', shape: [2, 2], bytes: bf16([1.5, -2.25, 0.125, 3]) } });
    writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), {
      'multi_modal_projector.linear_1.bias': { dtype: 'F16', shape: [2], bytes: f16([0.5, -1.75]) },
      'unrelated.tensor': { dtype: 'F32', shape: [1], bytes: f32([9]) },
    });
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: {
      'multi_modal_projector.linear_1.weight': 'model-00001-of-00002.safetensors',
      'multi_modal_projector.linear_1.bias': 'model-00002-of-00002.safetensors',
      'unrelated.tensor': 'model-00002-of-00002.safetensors',
    } }));
    const p = new ParamStore(paramSpecs([PROJ]), 0);
    loadWeightsInto(dir, p.ofComponent('proj'), p);
    assert.deepEqual([...p.get('multi_modal_projector.linear_1.weight').dataSync()], [1.5, -2.25, 0.125, 3]);
    assert.deepEqual([...p.get('multi_modal_projector.linear_1.bias').dataSync()], [0.5, -1.75]);
    p.dispose();
  });

  it('a tensor of the wrong shape, or a missing one, is a located error', () => {
    const dir = tmpDir('w');
    writeSafetensors(path.join(dir, 'model.safetensors'), { 'multi_modal_projector.linear_1.weight': { dtype: 'F32', shape: [1, 4], bytes: f32([1, 2, 3, 4]) } });
    const p = new ParamStore(paramSpecs([PROJ]), 0);
    assert.throws(() => loadWeightsInto(dir, ['multi_modal_projector.linear_1.weight'], p, 'ckpt'), (e: unknown) => e instanceof PipeRuntimeError && e.code === 'PIPE9025' && /\[1, 4\], expected \[2, 2\]/.test(e.message));
    assert.throws(() => loadWeightsInto(dir, ['multi_modal_projector.linear_1.bias'], p, 'ckpt'), (e: unknown) => e instanceof PipeRuntimeError && e.code === 'PIPE6009');
    p.dispose();
  });

  it('files we write pass the strict header validation and read back bit-exactly', () => {
    const dir = tmpDir('w');
    const data = new Map([['b.x', { shape: [3], data: Float32Array.from([1e-30, -0, 3.5]) }], ['a.y', { shape: [1, 2], data: Float32Array.from([NaN, 7]) }]]);
    fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(data, { pipec_component: 'x' }));
    const h = readSafetensorsHeader(path.join(dir, 'model.safetensors'));
    assert.deepEqual([...h.tensors.keys()], ['a.y', 'b.x']);
    assert.equal(h.metadata['format'], 'pt');
    const back = readWeights(dir);
    assert.deepEqual([...back.get('b.x')!.data], [1e-30 as number, -0, 3.5].map((x) => Math.fround(x)));
    assert.ok(Number.isNaN(back.get('a.y')!.data[0]!));
  });

  it('generation with the key/value cache gives the logits of a full recomputation (1e-5)', () => {
    const g = compile({ file: repo('test/runtime/tiny.pipe'), configFiles: [], sets: [], lower: true }).graph!;
    const model = g.models[0]!;
    const params = new ParamStore(paramSpecs(model.components), 5);
    const runner = new ModelRunner(model, params);
    const ids = [1, 7, 9, 11, 13, 17];
    const info = (T: number) => ({ attentionMask: new Int32Array(T).fill(1), batch: 1, length: T, imageStart: [-1] });
    const full = tf.tidy(() => runner.forward({ pixels: null, inputIds: Int32Array.from(ids), info: info(6) }).logits.dataSync());
    const cache: KvCache = { layers: [], length: 0 };
    const V = 128;
    const stepLogits: number[][] = [];
    stepLogits.push([...tf.tidy(() => runner.forward({ pixels: null, inputIds: Int32Array.from(ids.slice(0, 3)), info: info(3) }, cache).logits.dataSync())].slice(2 * V));
    for (let t = 3; t < 6; t++) stepLogits.push([...tf.tidy(() => runner.forward({ pixels: null, inputIds: Int32Array.from([ids[t]!]), info: info(1) }, cache).logits.dataSync())]);
    stepLogits.forEach((l, k) => close(l, [...full.slice((2 + k) * V, (3 + k) * V)], 1e-5, `position ${2 + k}`));
    for (const l of cache.layers) (l.k.dispose(), l.v.dispose());
    params.dispose();
  });
});
