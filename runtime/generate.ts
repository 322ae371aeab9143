// Text generation with a key/value cache: one forward pass over the prompt (image included), then one
// token at a time. Greedy, or nucleus (top-p) sampling with a temperature, from a seeded generator.
// Stops at EOS or after maxNewTokens.
import * as tf from '@tensorflow/tfjs-core';
import type { ModelRunner } from './model.js';
import type { KvCache } from './ops/types.js';
import { Rng } from './random.js';

export interface Prompt {
  ids: number[];
  imageStart: number;
  pixels?: Float32Array;
}

export interface GenerateOptions {
  maxNewTokens: number;
  eosId?: number;
  /** 0 = greedy. */
  temperature?: number;
  topP?: number;
  seed?: number;
  imageShape: [number, number, number];
}

/** Picks a token from logits [V]: argmax, or top-p sampling. */
export function pickToken(logits: Float32Array, temperature: number, topP: number, rng: Rng): number {
  if (temperature <= 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  const max = Math.max(...logits);
  const probs = Array.from(logits, (l, i) => ({ i, p: Math.exp((l - max) / temperature) }));
  const z = probs.reduce((a, b) => a + b.p, 0);
  probs.sort((a, b) => b.p - a.p || a.i - b.i);
  const kept: typeof probs = [];
  let mass = 0;
  for (const x of probs) {
    kept.push(x);
    mass += x.p / z;
    if (mass >= topP) break;
  }
  let r = rng.next() * kept.reduce((a, b) => a + b.p, 0);
  for (const x of kept) if ((r -= x.p) <= 0) return x.i;
  return kept[kept.length - 1]!.i;
}

/** Generates for prompts of equal length (callers group by length). Returns the new tokens of each. */
export function generate(runner: ModelRunner, prompts: readonly Prompt[], o: GenerateOptions): number[][] {
  const B = prompts.length, T = prompts[0]!.ids.length;
  if (prompts.some((p) => p.ids.length !== T)) throw new Error('generate: prompts of one call must have equal length');
  const rng = new Rng(o.seed ?? 0);
  const cache: KvCache = { layers: [], length: 0 };
  const out: number[][] = prompts.map(() => []);
  const done = new Array<boolean>(B).fill(false);
  const per = o.imageShape[0] * o.imageShape[1] * o.imageShape[2];
  let ids = Int32Array.from(prompts.flatMap((p) => p.ids));
  let len = T;
  let first = true;
  try {
    for (let step = 0; step < o.maxNewTokens && !done.every(Boolean); step++) {
      const last = tf.tidy(() => {
        let pixels: tf.Tensor4D | null = null;
        if (first && prompts.some((p) => p.pixels)) {
          const data = new Float32Array(B * per);
          prompts.forEach((p, b) => p.pixels && data.set(p.pixels, b * per));
          pixels = tf.tensor4d(data, [B, ...o.imageShape]);
        }
        const info = { attentionMask: new Int32Array(B * len).fill(1), batch: B, length: len, imageStart: first ? prompts.map((p) => (p.pixels ? p.imageStart : -1)) : new Array<number>(B).fill(-1) };
        const { logits } = runner.forward({ pixels, inputIds: ids, info }, cache);
        const V = logits.shape[2]!;
        return tf.reshape(tf.slice(logits, [0, len - 1, 0], [B, 1, V]), [B, V]);
      });
      const data = last.dataSync() as Float32Array;
      const V = last.shape[1]!;
      last.dispose();
      const next = new Int32Array(B);
      for (let b = 0; b < B; b++) {
        const tok = pickToken(data.subarray(b * V, (b + 1) * V), o.temperature ?? 0, o.topP ?? 1, rng);
        next[b] = tok;
        if (done[b]) continue;
        if (tok === o.eosId) done[b] = true;
        else out[b]!.push(tok);
      }
      ids = next;
      len = 1;
      first = false;
    }
  } finally {
    for (const l of cache.layers) (l.k.dispose(), l.v.dispose());
  }
  return out;
}
