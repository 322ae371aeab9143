// Parameters by their Hugging Face names. The graph declares each component's tensors with loop
// templates ("model.layers.{i}.mlp.up_proj.weight" repeat {i: 32}); this expands them, initialises them
// deterministically, and keeps them as tf.Variables owned by their component.
import * as tf from '@tensorflow/tfjs-core';
import type { AdapterDef, ComponentDef, ModelDef, TensorDef } from '../compiler/ir/graph.js';
import { Rng } from './random.js';

/** Expands `{i}`, `{k+2}`, `{e}` templates over the cartesian product of the repeat counts. */
export function expandTensorNames(t: TensorDef): string[] {
  const vars = Object.entries(t.repeat ?? {});
  let names = [t.name];
  for (const [v, count] of vars) {
    const re = new RegExp(`\\{${v}\\s*([+-]\\s*\\d+)?\\}`, 'g');
    const next: string[] = [];
    for (const n of names) for (let i = 0; i < count; i++) next.push(n.replace(re, (_m, off?: string) => String(i + (off ? Number(off.replace(/\s/g, '')) : 0))));
    names = next;
  }
  return names;
}

export interface ParamSpec {
  name: string;
  /** Its component, or its adapter ("lm.lora"): what a stage trains or freezes. */
  component: string;
  shape: number[];
  /** The std of its normal initialisation (initStd), where it has one. */
  std?: number;
}

export function paramSpecs(components: readonly ComponentDef[]): ParamSpec[] {
  const out: ParamSpec[] = [];
  for (const c of components)
    for (const t of c.tensors) for (const name of expandTensorNames(t)) out.push({ name, component: c.name, shape: t.shape, std: initStd(c, t.shape) });
  return out;
}

/** The tensors of LoRA adapters, each owned by its adapter's name (a stage trains "lm.lora"). */
export function adapterSpecs(adapters: readonly AdapterDef[] = []): ParamSpec[] {
  return adapters.flatMap((a) => a.tensors.flatMap((t) => expandTensorNames(t).map((name) => ({ name, component: a.name, shape: t.shape }))));
}

/** Every parameter of a model: its components' tensors, then its adapters'. */
export function modelParamSpecs(model: Pick<ModelDef, 'components' | 'adapters'>): ParamSpec[] {
  return [...paramSpecs(model.components), ...adapterSpecs(model.adapters)];
}

/** The components and adapters whose tensors a model's parameter store holds (a checkpoint holds each in its folder). */
export function ownersOf(model: Pick<ModelDef, 'components' | 'adapters'>): string[] {
  return [...model.components.map((c) => c.name), ...(model.adapters ?? []).map((a) => a.name)];
}

/**
 * The std of a fresh weight of component `c`: He-normal (sqrt(2 / fan_in)) for a convolution kernel of a
 * component declared with `init: "he"` (std/vision's cnn), else the component's `init_std`, else 0.02
 * (transformers' initializer_range). model_lib.py's init_std is the same rule.
 */
export function initStd(c: Pick<ComponentDef, 'attrs'>, shape: readonly number[]): number {
  if (c.attrs['init'] === 'he' && shape.length === 4) return Math.sqrt(2 / (shape[1]! * shape[2]! * shape[3]!));
  const s = c.attrs['init_std'];
  return typeof s === 'number' ? s : 0.02;
}

/**
 * How a fresh tensor starts, following transformers' `_init_weights`: norms 1, biases 0, the rest N(0, std)
 * (initStd); a LoRA A as PEFT's kaiming_uniform_(a = sqrt(5)), U(-1/sqrt(in), 1/sqrt(in)), its B zeros.
 */
export const isBias = (name: string): boolean => /\.bias$|_bias$/.test(name);
export const isNormWeight = (name: string): boolean => /(norm|layernorm|layrnorm|layer_norm)[^.]*\.weight$/.test(name);

export function initKind(name: string): 'ones' | 'zeros' | 'normal' | 'lora_a' {
  if (name.endsWith('.lora_A.weight')) return 'lora_a';
  if (name.endsWith('.lora_B.weight')) return 'zeros';
  if (isBias(name)) return 'zeros';
  if (isNormWeight(name)) return 'ones';
  return 'normal';
}

export function initialValue(spec: ParamSpec, seed: number, std = spec.std ?? 0.02): Float32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  const kind = initKind(spec.name);
  if (kind === 'ones') data.fill(1);
  else if (kind === 'lora_a') {
    const bound = 1 / Math.sqrt(spec.shape[1]!); // gain sqrt(2 / (1 + 5)) * sqrt(3 / fan_in)
    const rng = Rng.derive(seed, spec.name);
    for (let i = 0; i < n; i++) data[i] = (2 * rng.next() - 1) * bound;
  }
  else if (kind === 'normal') {
    const rng = Rng.derive(seed, spec.name); // per-tensor stream: adding a tensor does not shift the others
    for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
  }
  return data;
}

export class ParamStore {
  readonly vars = new Map<string, tf.Variable>();
  readonly specs = new Map<string, ParamSpec>();

  constructor(specs: readonly ParamSpec[], seed: number) {
    for (const s of specs) {
      this.specs.set(s.name, s);
      const init = tf.tensor(initialValue(s, seed), s.shape, 'float32');
      this.vars.set(s.name, tf.variable(init, true)); // tfjs names must be unique per process; ours are keys here
      init.dispose(); // the variable holds its own reference to the data
    }
  }

  get(name: string): tf.Variable {
    const v = this.vars.get(name);
    if (!v) throw new Error(`no parameter "${name}"`);
    return v;
  }

  has(name: string): boolean {
    return this.vars.has(name);
  }

  ofComponent(component: string): string[] {
    return [...this.specs.values()].filter((s) => s.component === component).map((s) => s.name);
  }

  /** Replaces values (shapes must match; callers check and report). */
  assign(name: string, values: Float32Array): void {
    const v = this.get(name);
    const t = tf.tensor(values, v.shape, 'float32');
    v.assign(t);
    t.dispose();
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }
}
