// LoRA (PEFT's lora.Linear) on the linear layers a graph's adapters target. Every linear layer of the
// standard components goes through `adaptedLinear`, named by its module (its HF weight name without
// `.weight`): y = x W^T (+ b), plus, when an adapter holds `<module>.lora_A.weight` [r, in] and
// `<module>.lora_B.weight` [out, r], (alpha / r) * dropout(x) A^T B^T. Dropout acts only in training,
// its mask drawn from the run's seeded stream (never a backend's RNG), so every backend and a resumed
// run draw the same mask. The adapters' tensors live in the ParamStore beside the base weights.
import * as tf from '@tensorflow/tfjs-core';
import { notCompilable } from './batch-feeds.js';
import type { AdapterDef, ComponentDef, ModelDef } from '../../compiler/ir/graph.js';
import { linear } from '../backend/kernels.js';
import { M, runtimeError } from '../errors.js';
import { expandTensorNames } from '../params.js';
import { Rng } from '../random.js';
import type { OpContext } from './types.js';

/** An adapted module's settings: the scale alpha / r and the dropout probability. */
export interface LoraUse {
  adapter: string;
  scale: number;
  dropout: number;
}

/** Where a training forward draws dropout masks: the stage seed and the micro-batch's key. */
export interface DropoutStream {
  seed: number;
  key: string;
}

export const LORA_A = '.lora_A.weight';
export const LORA_B = '.lora_B.weight';

/** y = x W^T (+ b) for linear layer `module`, plus its LoRA update where an adapter targets it. x: [..., in] -> [..., out] */
export function adaptedLinear(ctx: OpContext, x: tf.Tensor, module: string): tf.Tensor {
  const bias = ctx.hasParam(`${module}.bias`) ? ctx.param(`${module}.bias`) : undefined;
  const y = linear(x, ctx.param(`${module}.weight`), bias);
  const use = ctx.lora?.get(module);
  if (!use) return y;
  ctx.loraUsed?.add(module);
  const xd = use.dropout > 0 && ctx.dropout ? dropout(x, use.dropout, ctx.dropout, module) : x;
  const delta = linear(linear(xd, ctx.param(module + LORA_A)), ctx.param(module + LORA_B)); // [..., r] -> [..., out]
  return tf.add(y, tf.mul(delta, use.scale));
}

/**
 * `blocks.linear(x, w)` as a custom class calls it (with a weight from ctx.param, not a module name): the
 * module is found by the weight itself, so an adapter that targets a layer of the class's own code (a
 * Tanuki's experts' w1) applies there as it does in the exported program (a forward hook on the layer).
 */
export function linearOfWeight(ctx: OpContext, x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  const lora = ctx.lora;
  if (lora) {
    let byWeight = weightModules.get(lora);
    if (!byWeight) {
      byWeight = new Map();
      for (const m of lora.keys()) if (ctx.hasParam(`${m}.weight`)) byWeight.set(ctx.param(`${m}.weight`), m);
      weightModules.set(lora, byWeight);
    }
    const module = byWeight.get(w);
    if (module) {
      const y = adaptedLinear(ctx, x, module); // with the module's own bias, where it has one
      return b && !ctx.hasParam(`${module}.bias`) ? tf.add(y, b) : y;
    }
  }
  return linear(x, w, b);
}
/** Per model's adapted modules: each adapted weight tensor -> its module name (built on first use). */
const weightModules = new WeakMap<ReadonlyMap<string, LoraUse>, Map<tf.Tensor, string>>();

/** Inverted dropout with a mask from the seeded stream of (seed, micro-batch key, module). */
function dropout(x: tf.Tensor, p: number, s: DropoutStream, module: string): tf.Tensor {
  notCompilable('LoRA dropout draws its masks in JavaScript');
  const rng = Rng.derive(s.seed, `lora-dropout/${s.key}/${module}`);
  const mask = new Float32Array(x.size);
  const keep = 1 / (1 - p);
  for (let i = 0; i < mask.length; i++) mask[i] = rng.next() >= p ? keep : 0;
  return tf.mul(x, tf.tensor(mask, x.shape, 'float32'));
}

/** The adapted modules of a model: module name -> its adapter's settings. */
export function loraModules(model: Pick<ModelDef, 'adapters'>): Map<string, LoraUse> {
  const out = new Map<string, LoraUse>();
  for (const a of model.adapters ?? [])
    for (const t of a.tensors)
      for (const n of expandTensorNames(t)) if (n.endsWith(LORA_A)) out.set(n.slice(0, -LORA_A.length), { adapter: a.name, scale: a.alpha / a.rank, dropout: a.dropout });
  return out;
}

/**
 * Checks a graph's adapters against its components before anything runs (a graph read from JSON may
 * have been edited): each adapts a component of the model, each adapted module is a linear weight of it,
 * and A / B have the shapes [r, in] / [out, r]. A mistake is a located runtime error (PIPE9110).
 */
export function checkAdapters(model: ModelDef, file = 'graph.json'): void {
  const seen = new Set<string>();
  for (const a of model.adapters ?? []) {
    const bad = (why: string) => runtimeError(M.AdapterInvalid, [a.name, why], { file }, 'compile the program again (`pipec compile`), or fix the adapter in the graph');
    if (seen.has(a.name)) throw bad('it is declared twice');
    seen.add(a.name);
    const comp = model.components.find((c) => c.name === a.component);
    if (!comp) throw bad(`model \`${model.name}\` has no component \`${a.component}\``);
    if (a.kind !== 'lora') throw bad(`kind "${String(a.kind)}" is not one the runtime knows (lora)`);
    if (!(Number.isInteger(a.rank) && a.rank >= 1)) throw bad(`rank ${a.rank} is not a whole number >= 1`);
    if (!(a.dropout >= 0 && a.dropout < 1)) throw bad(`dropout ${a.dropout} is not in [0, 1)`);
    const weights = weightShapes(comp);
    const names = a.tensors.flatMap((t) => expandTensorNames(t).map((n) => [n, t.shape] as const));
    const have = new Map(names);
    for (const [n, shape] of names) {
      const isA = n.endsWith(LORA_A);
      if (!isA && !n.endsWith(LORA_B)) throw bad(`tensor "${n}" is neither a lora_A nor a lora_B weight`);
      const module = n.slice(0, -(isA ? LORA_A : LORA_B).length);
      const w = weights.get(`${module}.weight`);
      if (!w || w.length !== 2) throw bad(`"${module}" is not a linear layer of component \`${comp.name}\``);
      const want = isA ? [a.rank, w[1]!] : [w[0]!, a.rank];
      if (shape.join(',') !== want.join(',')) throw bad(`"${n}" is [${shape.join(', ')}], expected [${want.join(', ')}] (rank ${a.rank}, weight [${w.join(', ')}])`);
      if (!have.has(module + (isA ? LORA_B : LORA_A))) throw bad(`"${module}" has ${isA ? 'lora_A' : 'lora_B'} without ${isA ? 'lora_B' : 'lora_A'}`);
    }
  }
}

function weightShapes(c: ComponentDef): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const t of c.tensors) for (const n of expandTensorNames(t)) out.set(n, t.shape);
  return out;
}

/** The adapter of a model by name, or undefined. */
export function adapterOf(model: Pick<ModelDef, 'adapters'>, name: string): AdapterDef | undefined {
  return model.adapters?.find((a) => a.name === name);
}
