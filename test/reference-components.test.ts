// The standard components against transformers' own modules (test/reference/components.py, live):
// tiny random weights written by the script in pipec's checkpoint layout and loaded with pipec's own
// loading code, references computed in float64 on those float32 weights. Compared on every backend:
// - CLIP (select_layer -2, "patch" and "cls_patch") and SigLIP encoders: hidden_states[select_layer]
//   and the gradient of every parameter, through the op;
// - the LLaVA projector (mlp_gelu, depth 2);
// - Llama (GQA, tied and untied head) and Mixtral (loss including router_aux_loss_coef times the
//   load-balancing loss) on a padded text batch, through the model runner;
// - the whole LLaVA (LlavaForConditionalGeneration: encoder, select_layer, projector, splice, LM and
//   causal-LM loss) through the model runner on a batch mixing images at different positions, a
//   text-only row and padding.
// Every forward and gradient tensor must agree to 1e-5 of the reference tensor's own scale; the whole
// LLaVA's gradients to 2e-5: there the encoder's gradients come back through the language model, the
// splice and the projector in float32 (measured: up to 1.0e-5 on tensorflow, 9.8e-6 on wasm, 6.8e-6
// on cpu, against the float64 reference).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { ComponentDef, ModelDef } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { ModelRunner } from '../runtime/model.js';
import { OPS } from '../runtime/ops/registry.js';
import type { BatchInfo, OpContext } from '../runtime/ops/types.js';
import { ParamStore, paramSpecs } from '../runtime/params.js';
import { loadComponents } from '../runtime/train/checkpoint.js';
import { hfConfig } from '../runtime/weights/hf-config.js';
import { testBackends, useBackend } from './helpers/numeric.js';
import { unavailable } from './helpers/required.js';
import { tmpDir } from './helpers/tmp.js';
import { closeToReference, readTensors, type RefTensor, referenceUnavailable, runReference, tensor } from './helpers/reference.js';

const backends = await testBackends();
const TOL = 1e-5, WHOLE_MODEL_GRAD_TOL = 2e-5;

interface Case {
  name: string;
  what: string;
  vision: string;
  llm: string;
  /** Compare the whole LlavaForConditionalGeneration too (Mixtral's LLaVA loss has no router term). */
  llava: boolean;
}

const CASES: Case[] = [
  {
    name: 'clip-llama', what: 'CLIP, select_layer -2, "patch"; Llama with GQA (4 heads, 2 kv heads), untied head, rope_theta 500',
    vision: 'clip_vit(image: 12, patch: 4, hidden: 16, layers: 3, heads: 4, mlp: 24, select_layer: -2, select: "patch")',
    llm: 'llama(vocab: 40, hidden: 16, layers: 2, heads: 4, kv_heads: 2, mlp: 24, context: 64, rope_theta: 500.0)', llava: true,
  },
  {
    name: 'clip-cls-llama-tied', what: 'CLIP, select_layer -2, "cls_patch"; Llama with a tied head',
    vision: 'clip_vit(image: 8, patch: 4, hidden: 16, layers: 2, heads: 2, mlp: 24, select_layer: -2, select: "cls_patch")',
    llm: 'llama(vocab: 40, hidden: 16, layers: 2, heads: 2, mlp: 24, context: 64, tie_embeddings: true)', llava: true,
  },
  {
    name: 'siglip-mixtral', what: 'SigLIP (10 px at patch 4: the remainder dropped); Mixtral, top-2 of 4 experts, aux coefficient 0.05',
    vision: 'siglip_vit(image: 10, patch: 4, hidden: 16, layers: 2, heads: 4, mlp: 24, select_layer: -1)',
    llm: 'mixtral(vocab: 40, hidden: 16, layers: 2, heads: 4, kv_heads: 2, mlp: 24, experts: 4, top_k: 2, aux_loss_coef: 0.05, context: 64)', llava: false,
  },
];

const program = (c: Case) => `import "std/vision"
import "std/projectors"
import "std/llm"

model m {
  encoder vision = ${c.vision}
  projector proj = mlp_gelu(depth: 2, in: vision.hidden, out: lm.hidden)
  llm lm = ${c.llm}
  flow vision -> proj -> lm at "<image>"
}
`;

interface Batch {
  batch: number;
  length: number;
  input_ids: number[];
  attention_mask: number[];
  labels: number[];
  image_start: number[];
}

/**
 * Rows of `lengths` tokens right-padded to the longest, ids in [1, V - 2] (V - 1 is the image token),
 * images of `n` tokens at `starts` (-1: none). Labels: -100 on the first token, the image and padding.
 */
function makeBatch(lengths: number[], starts: number[], n: number, V: number, seed: number): Batch {
  const T = Math.max(...lengths), B = lengths.length;
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / (1 << 24);
  const b: Batch = { batch: B, length: T, input_ids: [], attention_mask: [], labels: [], image_start: starts };
  for (let r = 0; r < B; r++)
    for (let t = 0; t < T; t++) {
      const real = t < lengths[r]!, image = starts[r]! >= 0 && t >= starts[r]! && t < starts[r]! + n;
      const id = !real ? 0 : image ? V - 1 : 1 + Math.floor(rand() * (V - 2));
      b.input_ids.push(id);
      b.attention_mask.push(real ? 1 : 0);
      b.labels.push(real && !image && t > 0 ? id : -100);
    }
  return b;
}

const info = (b: Batch): BatchInfo => ({ attentionMask: Int32Array.from(b.attention_mask), batch: b.batch, length: b.length, imageStart: b.image_start });

interface Prepared {
  c: Case;
  dir: string;
  model: ModelDef;
  refs: Map<string, RefTensor>;
  text: Batch;
  llava?: Batch;
}

/** Gradients (by parameter name) of `f` with respect to every parameter of the store it reaches. */
function gradientsOf(params: ParamStore, f: () => tf.Scalar): { value: number; grads: Map<string, Float32Array> } {
  const byVar = new Map([...params.vars].map(([n, v]) => [v.name, n]));
  const { value, grads } = tf.variableGrads(f, [...params.vars.values()]);
  const out = new Map<string, Float32Array>();
  for (const [vn, g] of Object.entries(grads)) (out.set(byVar.get(vn)!, g.dataSync().slice() as Float32Array), g.dispose());
  const v = value.dataSync()[0]!;
  value.dispose();
  return { value: v, grads: out };
}

/**
 * Every reference gradient `<part>.grad.NAME` against pipec's, each to `tol` of its own scale, the scale
 * being at least 1% of the part's largest gradient entry: a gradient that is zero by the maths (the key
 * bias: softmax ignores a shift) has nothing else to be measured against. A parameter pipec's gradient
 * reaches must have a reference gradient too.
 */
function compareGradients(part: string, refs: Map<string, RefTensor>, grads: Map<string, Float32Array>, errors: number[], tol = TOL): void {
  const prefix = `${part}.grad.`;
  const names = [...refs.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  assert.ok(names.length > 0, `the reference has no ${part} gradients`);
  let largest = 0;
  for (const n of names) for (const x of tensor(refs, prefix + n).data) largest = Math.max(largest, Math.abs(x));
  for (const n of names) {
    const mine = grads.get(n);
    assert.ok(mine, `${part}: pipec computed no gradient for ${n}, transformers did`);
    const ref = tensor(refs, prefix + n).data;
    errors.push(closeToReference(mine, ref, tol, `${part} gradient of ${n}`, 1e-2 * largest));
  }
  for (const [n, g] of grads)
    if (!names.includes(n)) assert.ok(g.every((x) => x === 0), `${part}: pipec's gradient reaches ${n}, transformers' does not`);
}

const f32 = (t: RefTensor) => Float32Array.from(t.data);

describe('standard components against transformers (forward and gradients to 1e-5 of each tensor\'s scale)', function () {
  this.timeout(900_000);
  let root = '';
  const prepared: Prepared[] = [];

  before(function () {
    const why = referenceUnavailable();
    if (why) unavailable(this, 'the torch / transformers references', why);
    root = tmpDir('ref-components');
    const spec = { cases: [] as unknown[] };
    for (const c of CASES) {
      const dir = path.join(root, c.name);
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'm.pipe'), program(c));
      const r = compile({ file: path.join(dir, 'm.pipe'), configFiles: [], sets: [], lower: true });
      assert.ok(r.graph, `${c.name} compiles: ${r.diagnostics.map((d) => d.message).join('; ')}`);
      const model = r.graph.models[0]!;
      const comp = (kind: string) => model.components.find((k) => k.name === kind)!;
      for (const k of model.components) {
        fs.mkdirSync(path.join(dir, k.name));
        fs.writeFileSync(path.join(dir, k.name, 'config.json'), JSON.stringify(hfConfig(k), null, 2)); // pipec's own config
      }
      const V = Number(comp('lm').attrs['vocab']), N = model.image_tokens!;
      const text = makeBatch([7, 5], [-1, -1], 0, V, 11);
      const llava = c.llava ? makeBatch([N + 5, N + 2, N + 4], [1, -1, 2], N, V, 12) : undefined;
      prepared.push({ c, dir, model, refs: new Map(), text, llava });
      spec.cases.push({ dir: c.name, seed: 5, vision: 'vision', projector: 'proj', llm: 'lm', image_tokens: N, image_token_id: V - 1, text_batch: text, llava_batch: llava ?? null });
    }
    runReference('components.py', spec, root);
    for (const p of prepared) p.refs = readTensors(path.join(p.dir, 'reference.safetensors'));
  });
  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  for (const backend of backends)
    describe(`on ${backend}`, () => {
      before(async () => useBackend(backend));

      for (const [k, c] of CASES.entries()) {
        const load = () => {
          const p = prepared[k]!;
          const params = new ParamStore(paramSpecs(p.model.components), 0);
          loadComponents(p.dir, p.model.components.map((x) => x.name), params); // pipec's own loading code
          return { p, params, comp: (name: string) => p.model.components.find((x) => x.name === name)! };
        };
        const opCtx = (params: ParamStore, comp: ComponentDef, b: BatchInfo): OpContext =>
          ({ param: (n) => params.get(n), hasParam: (n) => params.has(n), attrs: comp.attrs, batch: b, auxLosses: [] });

        it(`${c.name}: the encoder (${c.vision.split('(')[0]}) and the projector equal transformers' [${c.what}]`, () => {
          const { p, params, comp } = load();
          try {
            const errors: number[] = [];
            for (const [part, input, weight] of [['vision', 'vision.pixels', 'vision.weight'], ['proj', 'proj.input', 'proj.weight']] as const) {
              const x = tensor(p.refs, input), w = tensor(p.refs, weight);
              const component = comp(part);
              const b: BatchInfo = { attentionMask: new Int32Array(0), batch: x.shape[0]!, length: 0, imageStart: [] };
              let out: Float32Array = new Float32Array(0);
              const { grads } = gradientsOf(params, () => {
                const y = OPS.get(component.op)!(opCtx(params, component, b), [tf.tensor(f32(x), x.shape)]);
                out = y.dataSync().slice() as Float32Array;
                return tf.sum(tf.mul(y, tf.tensor(f32(w), w.shape))) as tf.Scalar;
              });
              errors.push(closeToReference(out, tensor(p.refs, `${part}.out`).data, TOL, `${part} output`));
              compareGradients(part, p.refs, grads, errors);
            }
            if (process.env.PIPEC_TEST_ERRORS) console.log(`      largest error (of the reference's scale): ${Math.max(...errors).toExponential(2)}`);
          } finally {
            params.dispose();
          }
        });

        it(`${c.name}: the language model (${c.llm.split('(')[0]}) through the model runner, padded text batch: logits, loss and gradients equal transformers'`, () => {
          const { p, params } = load();
          try {
            const runner = new ModelRunner(p.model, params);
            let logits: Float32Array = new Float32Array(0);
            const { value, grads } = gradientsOf(params, () => {
              const r = runner.forward({ pixels: null, inputIds: Int32Array.from(p.text.input_ids), labels: Int32Array.from(p.text.labels), info: info(p.text) });
              logits = r.logits.dataSync().slice() as Float32Array;
              return r.loss!;
            });
            const errors = [closeToReference(logits, tensor(p.refs, 'lm.logits').data, TOL, 'logits'), closeToReference([value], tensor(p.refs, 'lm.loss').data, TOL, 'loss')];
            compareGradients('lm', p.refs, grads, errors);
            if (process.env.PIPEC_TEST_ERRORS) console.log(`      largest error (of the reference's scale): ${Math.max(...errors).toExponential(2)}`);
          } finally {
            params.dispose();
          }
        });

        if (c.llava)
          it(`${c.name}: the whole LLaVA through the model runner (images at positions 1 and 2, a text-only row, padding) equals LlavaForConditionalGeneration (gradients to 2e-5)`, () => {
            const { p, params } = load();
            try {
              const b = p.llava!;
              const px = tensor(p.refs, 'llava.pixels');
              const runner = new ModelRunner(p.model, params);
              let logits: Float32Array = new Float32Array(0);
              const { value, grads } = gradientsOf(params, () => {
                const r = runner.forward({ pixels: tf.tensor4d(f32(px), px.shape as [number, number, number, number]), inputIds: Int32Array.from(b.input_ids), labels: Int32Array.from(b.labels), info: info(b) });
                logits = r.logits.dataSync().slice() as Float32Array;
                return r.loss!;
              });
              const errors = [closeToReference(logits, tensor(p.refs, 'llava.logits').data, TOL, 'logits'), closeToReference([value], tensor(p.refs, 'llava.loss').data, TOL, 'loss')];
              compareGradients('llava', p.refs, grads, errors, WHOLE_MODEL_GRAD_TOL);
              if (process.env.PIPEC_TEST_ERRORS) console.log(`      largest error (of the reference's scale): ${Math.max(...errors).toExponential(2)}`);
            } finally {
              params.dispose();
            }
          });
      }
    });
});
