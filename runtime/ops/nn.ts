// Building blocks shared by components. Shapes in comments: B batch, T sequence, D hidden, H heads,
// Hk key/value heads, d head size.
import * as tf from '@tensorflow/tfjs-core';
import { bmm } from '../backend/kernels.js';

export function layerNorm(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, eps: number): tf.Tensor {
  const axis = x.rank - 1;
  const mean = tf.mean(x, axis, true);
  const xc = tf.sub(x, mean);
  const variance = tf.mean(tf.square(xc), axis, true);
  return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), w), b);
}

/** Llama's RMSNorm: x / sqrt(mean(x^2) + eps) * w. */
export function rmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  const ms = tf.mean(tf.square(x), x.rank - 1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), w);
}

/** GELU, exact (erf) form: torch.nn.GELU() as in LLaVA's projector. */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
}

/** GELU, tanh approximation: SigLIP's gelu_pytorch_tanh. */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
}

/** CLIP's quick_gelu: x * sigmoid(1.702 x). */
export function quickGelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
}

export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

export type Activation = 'gelu' | 'gelu_tanh' | 'quick_gelu' | 'silu';
export const ACTIVATIONS: Record<Activation, (x: tf.Tensor) => tf.Tensor> = { gelu, gelu_tanh: geluTanh, quick_gelu: quickGelu, silu };

/** [B, T, H*d] -> [B*H, T, d] */
export function splitHeads(x: tf.Tensor, heads: number): tf.Tensor3D {
  const [B, T, HD] = x.shape as [number, number, number];
  const d = HD / heads;
  return tf.reshape(tf.transpose(tf.reshape(x, [B, T, heads, d]), [0, 2, 1, 3]), [B * heads, T, d]);
}

/** [B*H, T, d] -> [B, T, H*d] */
export function mergeHeads(x: tf.Tensor, batch: number): tf.Tensor3D {
  const [BH, T, d] = x.shape as [number, number, number];
  const H = BH / batch;
  return tf.reshape(tf.transpose(tf.reshape(x, [batch, H, T, d]), [0, 2, 1, 3]), [batch, T, H * d]);
}

/**
 * Scaled dot-product attention. q: [B*H, Tq, d], k/v: [B*H, Tk, d]; `bias` (added to the scores) is
 * [B, 1, Tq, Tk] with 0 where attention is allowed and a large negative number where it is not.
 * Returns [B*H, Tq, d].
 */
export function attention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, bias?: tf.Tensor4D): tf.Tensor3D {
  const [BH, Tq, d] = q.shape;
  const Tk = k.shape[1];
  let scores: tf.Tensor = tf.mul(bmm(q, k, false, true), 1 / Math.sqrt(d)); // [B*H, Tq, Tk]
  if (bias) {
    const B = bias.shape[0];
    scores = tf.reshape(tf.add(tf.reshape(scores, [B, BH / B, Tq, Tk]), bias), [BH, Tq, Tk]);
  }
  return bmm(tf.softmax(scores) as tf.Tensor3D, v); // [B*H, Tq, d]
}

export const NEG_INF = -1e9;

/**
 * The additive mask for causal attention over right-padded sequences: key j is visible to query i when
 * j <= i + offset and the key is not padding. mask: [B, Tk] of 1/0. Returns [B, 1, Tq, Tk] -> callers
 * broadcast over heads.
 */
export function causalBias(mask: Int32Array | number[], batch: number, tq: number, tk: number, offset = 0): tf.Tensor4D {
  const data = new Float32Array(batch * tq * tk);
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < tq; i++)
      for (let j = 0; j < tk; j++) data[(b * tq + i) * tk + j] = j <= i + offset && mask[b * tk + j] ? 0 : NEG_INF;
  return tf.tensor4d(data, [batch, 1, tq, tk]);
}

/** Rotary position embedding (transformers' rotate_half form). x: [B*H, T, d], positions offset by `start`. */
export function rope(x: tf.Tensor3D, theta: number, start = 0): tf.Tensor3D {
  const [BH, T, d] = x.shape;
  const half = d / 2;
  // The tables are written out for every head ([B*H, T, d], not [1, T, d] broadcast): tfjs-wasm multiplies
  // same-shape tensors in XNNPACK but broadcasts in a slow loop (3 ms a multiply here for [32, 23, 32]).
  const cos = new Float32Array(BH * T * d), sin = new Float32Array(BH * T * d);
  for (let t = 0; t < T; t++)
    for (let i = 0; i < half; i++) {
      const angle = (start + t) / Math.pow(theta, (2 * i) / d);
      cos[t * d + i] = cos[t * d + i + half] = Math.cos(angle);
      sin[t * d + i] = sin[t * d + i + half] = Math.sin(angle);
    }
  for (let h = 1; h < BH; h++) {
    cos.copyWithin(h * T * d, 0, T * d);
    sin.copyWithin(h * T * d, 0, T * d);
  }
  const c = tf.tensor3d(cos, [BH, T, d]), s = tf.tensor3d(sin, [BH, T, d]);
  const x1 = tf.slice(x, [0, 0, 0], [-1, -1, half]), x2 = tf.slice(x, [0, 0, half], [-1, -1, half]);
  const rotated = tf.concat([tf.neg(x2), x1], 2);
  return tf.add(tf.mul(x, c), tf.mul(rotated, s)) as tf.Tensor3D;
}

/** Repeats each key/value head `n` times for grouped-query attention: [B*Hk, T, d] -> [B*Hk*n, T, d]. */
export function repeatKv(x: tf.Tensor3D, batch: number, n: number): tf.Tensor3D {
  if (n === 1) return x;
  const [BHk, T, d] = x.shape;
  const Hk = BHk / batch;
  // head h reads kv head floor(h / n) as in HF. n copies concatenated, not tf.tile: tfjs-wasm's Tile took
  // 6.8 ms for [16, 2, 1, 736] -> [16, 2, 2, 736] where Concat took 0.11 ms (measured here, alternating).
  const x4 = tf.reshape(x, [batch, Hk, 1, T * d]);
  return tf.reshape(tf.concat(new Array<tf.Tensor>(n).fill(x4), 2), [batch * Hk * n, T, d]) as tf.Tensor3D;
}
