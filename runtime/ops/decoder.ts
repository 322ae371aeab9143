// The Llama-family decoder stack shared by `llama` (SwiGLU MLP) and `mixtral` (sparse MoE MLP):
// pre-RMSNorm blocks, rotary positions, grouped-query causal attention over right-padded batches, a
// final norm and the LM head (tied to the embedding when `tie_embeddings`). Names are transformers'.
import * as tf from '@tensorflow/tfjs-core';
import { linear } from '../backend/kernels.js';
import { adaptedLinear } from './lora.js';
import { batchTensor } from './batch-feeds.js';
import { recomputed } from './checkpoint.js';
import { attention, causalBias, mergeHeads, repeatKv, rmsNorm, rope, splitHeads } from './nn.js';
import { num, type OpContext } from './types.js';

/** The block's feed-forward part: x [B, T, D] (already normed) -> [B, T, D]. */
export type FeedForward = (ctx: OpContext, x: tf.Tensor, layer: number) => tf.Tensor;

/**
 * A feed-forward part that may also hand tensors out of its layer (the MoE router's probabilities, which
 * the aux loss reads after the stack). It may run twice per layer (gradient checkpointing recomputes the
 * layer in backward), so it must not keep tensors itself; what it returns in `extra` comes back per layer.
 */
export type LayerFeedForward = (ctx: OpContext, x: tf.Tensor, layer: number) => { y: tf.Tensor; extra?: tf.Tensor[] };

function selfAttention(ctx: OpContext, x: tf.Tensor, i: number, bias: tf.Tensor4D, start: number): tf.Tensor {
  const a = ctx.attrs;
  const heads = num(a, 'heads'), kvHeads = num(a, 'kv_heads', heads), theta = num(a, 'rope_theta', 10000);
  const p = (n: string) => `model.layers.${i}.self_attn.${n}`;
  const B = x.shape[0]!;
  const q = rope(splitHeads(adaptedLinear(ctx, x, p('q_proj')), heads), theta, start); // [B*H, T, d]
  let k = rope(splitHeads(adaptedLinear(ctx, x, p('k_proj')), kvHeads), theta, start); // [B*Hk, T, d]
  let v = splitHeads(adaptedLinear(ctx, x, p('v_proj')), kvHeads); // [B*Hk, T, d]
  if (ctx.cache) {
    const c = ctx.cache.layers[i];
    if (c) {
      k = tf.concat([c.k, k], 1);
      v = tf.concat([c.v, v], 1);
      c.k.dispose(); // kept outside any tidy by the previous step; replaced by the longer ones
      c.v.dispose();
    }
    ctx.cache.layers[i] = { k: tf.keep(k), v: tf.keep(v) }; // [B*Hk, start+T, d]
  }
  const rep = heads / kvHeads;
  const out = attention(q, repeatKv(k, B, rep), repeatKv(v, B, rep), bias); // [B*H, T, d]
  return adaptedLinear(ctx, mergeHeads(out, B), p('o_proj'));
}

/**
 * x: [B, T, D] input embeddings -> logits [B, T, V]. For custom components (runtime/custom.ts' BLOCKS):
 * their feed-forward may keep tensors from inside the layer, so their stack is never checkpointed.
 */
export function decoder(ctx: OpContext, x: tf.Tensor, ff: FeedForward): tf.Tensor {
  return decoderStack({ ...ctx, checkpoint: undefined }, x, (c, h, i) => ({ y: ff(c, h, i) })).logits;
}

/**
 * x: [B, T, D] input embeddings -> logits [B, T, V], and each layer's `extra` tensors. Each layer is
 * recomputed in backward when the context asks for gradient checkpointing (checkpoint.ts).
 */
export function decoderStack(ctx: OpContext, x: tf.Tensor, ff: LayerFeedForward): { logits: tf.Tensor; extras: tf.Tensor[][] } {
  const a = ctx.attrs;
  const layers = num(a, 'layers'), eps = num(a, 'norm_eps', 1e-5);
  const [B, T] = x.shape as [number, number];
  const start = ctx.cache?.length ?? 0;
  // With a cache the mask covers cached keys too; generation runs one unpadded sequence per row.
  const bias = ctx.cache
    ? causalBias(new Int32Array(B * (start + T)).fill(1), B, T, start + T, start)
    : (batchTensor('causal_bias', ctx.batch, (s) => causalBias(s.attentionMask, B, T, T, 0)) as tf.Tensor4D);
  const extras: tf.Tensor[][] = [];
  for (let i = 0; i < layers; i++) {
    const block = (c: OpContext, [h]: tf.Tensor[], [bias]: tf.Tensor[]): tf.Tensor[] => {
      const p = (n: string) => c.param(`model.layers.${i}.${n}`);
      h = tf.add(h!, selfAttention(c, rmsNorm(h!, p('input_layernorm.weight'), eps), i, bias as tf.Tensor4D, start));
      const f = ff(c, rmsNorm(h, p('post_attention_layernorm.weight'), eps), i);
      return [tf.add(h, f.y), ...(f.extra ?? [])];
    };
    const [y, ...extra] = recomputed(ctx, [x], block, [bias]);
    x = y!;
    extras.push(extra);
  }
  if (ctx.cache) ctx.cache.length = start + T;
  x = rmsNorm(x, ctx.param('model.norm.weight'), eps);
  const logits = a['tie_embeddings'] === true ? linear(x, ctx.param('model.embed_tokens.weight')) : adaptedLinear(ctx, x, 'lm_head');
  return { logits, extras }; // [B, T, V]
}
