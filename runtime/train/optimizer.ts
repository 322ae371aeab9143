// AdamW (decoupled weight decay, PyTorch's torch.optim.AdamW) and SGD with momentum, over the
// trainable variables only: frozen parameters get no gradient and no optimizer state. As in
// transformers' Trainer, biases and normalisation weights are not decayed. A stage's `train: [proj(lr:
// 2e-4, weight_decay: 0.0)]` gives a component (or adapter) its own learning rate and weight decay: the
// schedule scales its lr by the same multiplier as the optimizer's (torch's LambdaLR over param groups).
import * as tf from '@tensorflow/tfjs-core';
import type { AttrValue } from '../../compiler/ir/graph.js';
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
    const baseLr = this.num('lr', stageLr);
    const multiplier = baseLr > 0 ? stageLr / baseLr : 0;
    tf.tidy(() => {
      for (const [name, p] of this.vars) {
        const g = grads.get(name);
        if (!g) continue;
        const slot = this.state.slots.get(name)!;
        const own = this.own.get(name);
        const wd = own?.weight_decay ?? this.num('weight_decay', 0);
        const decay = decays(name) ? wd : 0;
        const lr = own?.lr !== undefined ? own.lr * multiplier : stageLr;
        if (this.name === 'adamw') {
          const b1 = this.num('beta1', 0.9), b2 = this.num('beta2', 0.999), eps = this.num('eps', 1e-8);
          const m = tf.add(tf.mul(slot.m, b1), tf.mul(g, 1 - b1));
          const v = tf.add(tf.mul(slot.v!, b2), tf.mul(tf.square(g), 1 - b2));
          slot.m.assign(m);
          slot.v!.assign(v);
          // torch: p *= 1 - lr*wd; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
          const bc1 = 1 - Math.pow(b1, t), bc2 = 1 - Math.pow(b2, t);
          const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(bc2)), eps);
          const decayed = decay ? tf.mul(p, 1 - lr * decay) : p;
          p.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), lr / bc1)));
        } else {
          const mom = this.num('momentum', 0.9);
          const gd = decay ? tf.add(g, tf.mul(p, decay)) : g; // SGD's weight decay is L2, as in torch
          const buf = t === 1 ? gd : tf.add(tf.mul(slot.m, mom), gd);
          slot.m.assign(buf);
          p.assign(tf.sub(p, tf.mul(buf, lr)));
        }
      }
    });
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
