// AdamW (decoupled weight decay, PyTorch's torch.optim.AdamW) and SGD with momentum, over the
// trainable variables only: frozen parameters get no gradient and no optimizer state. As in
// transformers' Trainer, biases and normalisation weights are not decayed. A stage's `train: [proj(lr:
// 2e-4, weight_decay: 0.0)]` gives a component (or adapter) its own learning rate and weight decay: the
// schedule scales its lr by the same multiplier as the optimizer's (torch's LambdaLR over param groups).
import * as tf from '@tensorflow/tfjs-core';
import type { AttrValue } from '../../compiler/ir/graph.js';
import { batchTensor } from '../ops/batch-feeds.js';
import { isBias, isNormWeight } from '../params.js';

export function decays(name: string): boolean {
  return !(isBias(name) || isNormWeight(name));
}

export interface OptimizerState {
  step: number;
  /** Per parameter: Adam's first and second moments, or SGD's momentum buffer (in m). */
  slots: Map<string, { m: tf.Variable; v?: tf.Variable }>;
}

/** A parameter's own settings (from its component's or adapter's `train` entry). */
export interface ParamSettings {
  lr?: number;
  weight_decay?: number;
}

/** What a compiled step's optimizer scalars are made from: the step the update makes and the stage's lr. */
export interface UpdateSource {
  t: number;
  lr: number;
}

interface StepScalars<N> {
  lr: N;
  /** AdamW's lr / (1 - beta1^t). */
  stepSize: N;
  /** 1 - lr * weight decay (decoupled decay). */
  decayFactor: N;
  /** sqrt(1 - beta2^t). */
  sqrtBc2: N;
}

export class Optimizer {
  readonly state: OptimizerState = { step: 0, slots: new Map() };

  constructor(
    readonly name: string,
    readonly attrs: Record<string, AttrValue>,
    private readonly vars: ReadonlyMap<string, tf.Variable>,
    /** By parameter name: settings that replace the optimizer's `lr` / `weight_decay` for it. */
    private readonly own: ReadonlyMap<string, ParamSettings> = new Map(),
  ) {
    if (name !== 'adamw' && name !== 'sgd') throw new Error(`unknown optimizer "${name}"`);
    // tidy: the zeros the variables are made from are released (the variables keep their own reference)
    const zeros = (v: tf.Variable) => tf.tidy(() => tf.variable(tf.zerosLike(v), false));
    for (const [n, v] of vars) this.state.slots.set(n, { m: zeros(v), v: name === 'adamw' ? zeros(v) : undefined });
  }

  private num(key: string, fallback: number): number {
    const v = this.attrs[key];
    return typeof v === 'number' ? v : fallback;
  }

  /** One update at learning rate `lr` (the optimizer's `lr` times the schedule's multiplier; a parameter
   * with its own `lr` gets that times the same multiplier); `grads` are already averaged and clipped. */
  apply(grads: ReadonlyMap<string, tf.Tensor>, stageLr: number): void {
    const t = ++this.state.step;
    tf.tidy(() => {
      for (const [name, p] of this.vars) {
        const g = grads.get(name);
        if (g) this.update(name, p, g, t, this.scalars(name, stageLr, t));
      }
    });
  }

  /**
   * The same update with its step-dependent scalars as tensors made by batchTensor from `src` (the
   * step it makes, src.t, and the stage's learning rate): a compiled step (runtime/graph-step) feeds
   * them each step instead of baking in the first step's values. Call inside tf.tidy.
   */
  applyTensors(grads: ReadonlyMap<string, tf.Tensor>, src: UpdateSource): void {
    this.state.step = src.t;
    const made = new Map<string, StepScalars<tf.Scalar>>();
    for (const [name, p] of this.vars) {
      const g = grads.get(name);
      if (!g) continue;
      const group = this.groupOf(name);
      let k = made.get(group);
      if (!k) {
        const feed = (what: keyof StepScalars<number>) => batchTensor(`optimizer/${group}/${what}`, src, (s) => tf.scalar(this.scalars(name, s.lr, s.t)[what])) as tf.Scalar;
        made.set(group, (k = { lr: feed('lr'), stepSize: feed('stepSize'), decayFactor: feed('decayFactor'), sqrtBc2: feed('sqrtBc2') }));
      }
      this.update(name, p, g, 0, k);
    }
  }

  /** Parameters whose scalars are equal at every step: the same own lr and weight decay. */
  private groupOf(name: string): string {
    const own = this.own.get(name);
    return `${own?.lr ?? 'stage'}:${this.decayOf(name)}`;
  }

  private decayOf(name: string): number {
    const wd = this.own.get(name)?.weight_decay ?? this.num('weight_decay', 0);
    return decays(name) ? wd : 0;
  }

  /** Step t's scalars for a parameter, in float64 as torch computes them before they meet a tensor. */
  private scalars(name: string, stageLr: number, t: number): StepScalars<number> {
    const baseLr = this.num('lr', stageLr);
    const multiplier = baseLr > 0 ? stageLr / baseLr : 0;
    const own = this.own.get(name);
    const lr = own?.lr !== undefined ? own.lr * multiplier : stageLr;
    const b1 = this.num('beta1', 0.9), b2 = this.num('beta2', 0.999);
    const bc1 = 1 - Math.pow(b1, t), bc2 = 1 - Math.pow(b2, t);
    return { lr, stepSize: lr / bc1, decayFactor: 1 - lr * this.decayOf(name), sqrtBc2: Math.sqrt(bc2) };
  }

  /** `t` is the step for SGD's first-step rule (0: a compiled step, where m = 0 at step 1 gives the same). */
  private update(name: string, p: tf.Variable, g: tf.Tensor, t: number, k: StepScalars<number | tf.Scalar>): void {
    const slot = this.state.slots.get(name)!;
    const decay = this.decayOf(name);
    if (this.name === 'adamw') {
      const b1 = this.num('beta1', 0.9), b2 = this.num('beta2', 0.999), eps = this.num('eps', 1e-8);
      const m = tf.add(tf.mul(slot.m, b1), tf.mul(g, 1 - b1));
      const v = tf.add(tf.mul(slot.v!, b2), tf.mul(tf.square(g), 1 - b2));
      slot.m.assign(m);
      slot.v!.assign(v);
      // torch: p *= 1 - lr*wd; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
      const denom = tf.add(tf.div(tf.sqrt(v), k.sqrtBc2), eps);
      const decayed = decay ? tf.mul(p, k.decayFactor) : p;
      p.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), k.stepSize)));
    } else {
      const mom = this.num('momentum', 0.9);
      const gd = decay ? tf.add(g, tf.mul(p, decay)) : g; // SGD's weight decay is L2, as in torch
      const buf = t === 1 ? gd : tf.add(tf.mul(slot.m, mom), gd);
      slot.m.assign(buf);
      p.assign(tf.sub(p, tf.mul(buf, k.lr)));
    }
  }

  dispose(): void {
    for (const s of this.state.slots.values()) (s.m.dispose(), s.v?.dispose());
  }
}

/** Scales gradients so their global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_). Returns the norm before clipping. */
export function clipByGlobalNorm(grads: Map<string, tf.Tensor>, maxNorm: number): number {
  const norm = tf.tidy(() => Math.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g)))).dataSync()[0]!));
  if (maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const [k, g] of grads) {
      grads.set(k, tf.mul(g, scale));
      g.dispose();
    }
  }
  return norm;
}
