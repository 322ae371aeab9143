// ViT-style vision encoders under Hugging Face names (vision_model.*): `vit` and `clip_vit` (CLIP:
// class token, pre-LayerNorm, quick_gelu) and `siglip_vit` (no class token, patch bias, gelu tanh).
// The output is the hidden state of layer `select_layer` (HF's hidden_states[select_layer]: index 0 is
// the embeddings, -1 the last layer, before post_layernorm, as LLaVA reads it), without the class token
// for `select: "patch"`.
import * as tf from '@tensorflow/tfjs-core';
import { linear } from '../backend/kernels.js';
import { tracing } from './batch-feeds.js';
import { adaptedLinear } from './lora.js';
import { recomputed } from './checkpoint.js';
import { ACTIVATIONS, type Activation, attention, layerNorm, mergeHeads, splitHeads } from './nn.js';
import { num, type OpContext, type OpImpl } from './types.js';

/** [B, C, H, W] pixels -> [B*N, C*p*p] patches in conv-weight order (c, ky, kx), row-major over the grid. */
export function patchify(pixels: tf.Tensor4D, patch: number): tf.Tensor2D {
  const [B, C, H, W] = pixels.shape;
  const gh = Math.floor(H / patch), gw = Math.floor(W / patch); // a remainder is dropped, like a stride-p conv
  // A compiled step cannot read pixels in JavaScript: there the same order comes from a 6-D transpose.
  if (tracing()) {
    const cropped = gh * patch === H && gw * patch === W ? pixels : tf.slice(pixels, [0, 0, 0, 0], [B, C, gh * patch, gw * patch]);
    const grid = tf.reshape(cropped, [B, C, gh, patch, gw, patch]);
    return tf.reshape(tf.transpose(grid, [0, 2, 4, 1, 3, 5]), [B * gh * gw, C * patch * patch]);
  }
  const src = pixels.dataSync();
  const out = new Float32Array(B * gh * gw * C * patch * patch);
  let o = 0;
  for (let b = 0; b < B; b++)
    for (let gy = 0; gy < gh; gy++)
      for (let gx = 0; gx < gw; gx++)
        for (let c = 0; c < C; c++)
          for (let ky = 0; ky < patch; ky++) {
            const row = ((b * C + c) * H + gy * patch + ky) * W + gx * patch;
            for (let kx = 0; kx < patch; kx++) out[o++] = src[row + kx]!;
          }
  return tf.tensor2d(out, [B * gh * gw, C * patch * patch]);
}

function encoderLayer(ctx: OpContext, x: tf.Tensor, i: number, heads: number, eps: number, act: Activation): tf.Tensor {
  const p = (n: string) => ctx.param(`vision_model.encoder.layers.${i}.${n}`);
  const B = x.shape[0]!;
  const h = layerNorm(x, p('layer_norm1.weight'), p('layer_norm1.bias'), eps);
  const l = (t: tf.Tensor, n: string) => adaptedLinear(ctx, t, `vision_model.encoder.layers.${i}.${n}`);
  const q = splitHeads(l(h, 'self_attn.q_proj'), heads);
  const k = splitHeads(l(h, 'self_attn.k_proj'), heads);
  const v = splitHeads(l(h, 'self_attn.v_proj'), heads);
  const a = mergeHeads(attention(q, k, v), B); // [B, N, D]
  x = tf.add(x, l(a, 'self_attn.out_proj'));
  const h2 = layerNorm(x, p('layer_norm2.weight'), p('layer_norm2.bias'), eps);
  const m = l(ACTIVATIONS[act](l(h2, 'mlp.fc1')), 'mlp.fc2');
  return tf.add(x, m);
}

function vitEncoder(act: Activation, defaultCls: boolean): OpImpl {
  return (ctx, [pixels]) => {
    const a = ctx.attrs;
    const patch = num(a, 'patch'), hidden = num(a, 'hidden'), layers = num(a, 'layers'), heads = num(a, 'heads');
    const eps = num(a, 'norm_eps', 1e-5);
    const cls = typeof a['cls'] === 'boolean' ? a['cls'] : defaultCls;
    const B = pixels!.shape[0]!;
    const w = ctx.param('vision_model.embeddings.patch_embedding.weight'); // [D, C, p, p]
    const bias = ctx.hasParam('vision_model.embeddings.patch_embedding.bias') ? ctx.param('vision_model.embeddings.patch_embedding.bias') : undefined;
    const patches = linear(patchify(pixels as tf.Tensor4D, patch), tf.reshape(w, [hidden, -1]), bias); // [B*N, D]
    const N = patches.shape[0]! / B;
    let x: tf.Tensor = tf.reshape(patches, [B, N, hidden]);
    if (cls) {
      const c = tf.tile(tf.reshape(ctx.param('vision_model.embeddings.class_embedding'), [1, 1, hidden]), [B, 1, 1]);
      x = tf.concat([c, x], 1); // [B, 1+N, D]
    }
    x = tf.add(x, tf.expandDims(ctx.param('vision_model.embeddings.position_embedding.weight'), 0));
    if (ctx.hasParam('vision_model.pre_layrnorm.weight')) x = layerNorm(x, ctx.param('vision_model.pre_layrnorm.weight'), ctx.param('vision_model.pre_layrnorm.bias'), eps);
    // hidden_states[0] is the embeddings; run only as many layers as the selected state needs.
    const sel = num(a, 'select_layer', -1);
    const upTo = sel < 0 ? layers + 1 + sel : sel;
    // Each layer recomputed in backward under gradient checkpointing (checkpoint.ts), else simply run.
    for (let i = 0; i < upTo; i++) x = recomputed(ctx, [x], (c, [h]) => [encoderLayer(c, h!, i, heads, eps, act)])[0]!;
    if (cls && a['select'] !== 'cls_patch') x = tf.slice(x, [0, 1, 0], [-1, -1, -1]);
    return x; // [B, N (+1), D]
  };
}

export const vit = vitEncoder('quick_gelu', true);
export const clipVit = vitEncoder('quick_gelu', true);
export const siglipVit = vitEncoder('gelu_tanh', false);
