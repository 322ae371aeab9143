// `mixtral`: the decoder with a sparse mixture-of-experts MLP (transformers' MixtralSparseMoeBlock).
// Router: softmax over experts, top-k, the k weights renormalised to sum to 1. Each expert is a SwiGLU
// MLP (w1 gate, w3 up, w2 down) applied only to the tokens routed to it (gather, then a segment-sum
// scatter back). The load-balancing loss (transformers' load_balancing_loss_func over all layers'
// router outputs, padding excluded) times `aux_loss_coef` is added to the training loss.
import * as tf from '@tensorflow/tfjs-core';
import { notCompilable } from './batch-feeds.js';
import { decoderStack } from './decoder.js';
import { adaptedLinear } from './lora.js';
import { silu } from './nn.js';
import { num, type OpContext, type OpImpl } from './types.js';

/** Top-k expert indices per row of probs [N, E], ties to the lower index (as torch.topk on CPU). */
export function topKIndices(probs: Float32Array, n: number, e: number, k: number): Int32Array {
  const out = new Int32Array(n * k);
  const order = Array.from({ length: e }, (_, i) => i);
  for (let r = 0; r < n; r++) {
    const row = probs.subarray(r * e, (r + 1) * e);
    const sorted = order.slice().sort((a, b) => row[b]! - row[a]! || a - b);
    for (let j = 0; j < k; j++) out[r * k + j] = sorted[j]!;
  }
  return out;
}

export interface RouterStats {
  /** Softmax router probabilities [N, E] (a tensor: the aux loss differentiates through it). */
  probs: tf.Tensor2D;
  /** Top-k choice mask [N, E] of 0/1. */
  chosen: Float32Array;
  /** Token weights [N] (1 real, 0 padding). */
  tokenMask: Float32Array;
}

/** One MoE block. x: [B, T, D] -> [B, T, D]; pushes its router statistics to `stats`. */
export function moeBlock(ctx: OpContext, x: tf.Tensor, layer: number, stats: RouterStats[]): tf.Tensor {
  const r = routedExperts(ctx, x, layer);
  stats.push({ probs: r.probs, chosen: r.chosen, tokenMask: tokenMaskOf(ctx, r.probs.shape[0]) });
  return r.y;
}

/** Token weights [N] for the aux loss: the attention mask (1 real, 0 padding), all 1 when generating. */
function tokenMaskOf(ctx: OpContext, n: number): Float32Array {
  const tokenMask = new Float32Array(n);
  const m = ctx.cache ? null : ctx.batch.attentionMask;
  for (let r = 0; r < n; r++) tokenMask[r] = m ? m[r]! : 1;
  return tokenMask;
}

/**
 * The MoE block's computation. x: [B, T, D] -> y [B, T, D], the router probabilities [N, E] and the
 * top-k choice [N, E]. With `route` given, that choice is used instead of the top-k of this call's
 * probabilities: a layer recomputed in backward (gradient checkpointing) routes as its forward did.
 */
export function routedExperts(ctx: OpContext, x: tf.Tensor, layer: number, route?: Float32Array): { y: tf.Tensor; probs: tf.Tensor2D; chosen: Float32Array } {
  const experts = num(ctx.attrs, 'experts'), k = num(ctx.attrs, 'top_k');
  const p = (n: string) => `model.layers.${layer}.block_sparse_moe.${n}`;
  const D = x.shape[x.rank - 1]!;
  const x2 = tf.reshape(x, [-1, D]); // [N, D]
  const N = x2.shape[0]!;
  const probs = tf.softmax(adaptedLinear(ctx, x2, p('gate'))) as tf.Tensor2D; // [N, E]
  let chosen = route;
  if (!chosen) {
    notCompilable('the MoE router picks its experts in JavaScript from the probabilities');
    const top = topKIndices(probs.dataSync() as Float32Array, N, experts, k);
    chosen = new Float32Array(N * experts);
    for (let r = 0; r < N; r++) for (let j = 0; j < k; j++) chosen[r * experts + top[r * k + j]!] = 1;
  }
  const chosenT = tf.tensor2d(chosen, [N, experts]);
  const picked = tf.mul(probs, chosenT);
  const weights = tf.div(picked, tf.sum(picked, 1, true)); // [N, E], zero off the top-k
  let out: tf.Tensor = tf.zerosLike(x2);
  for (let e = 0; e < experts; e++) {
    const rows: number[] = [];
    for (let r = 0; r < N; r++) if (chosen[r * experts + e]) rows.push(r);
    if (rows.length === 0) continue;
    const idx = tf.tensor1d(rows, 'int32');
    const xe = tf.gather(x2, idx); // [n_e, D]
    const q = (n: string) => p(`experts.${e}.${n}`);
    const ye = adaptedLinear(ctx, tf.mul(silu(adaptedLinear(ctx, xe, q('w1'))), adaptedLinear(ctx, xe, q('w3'))), q('w2')); // [n_e, D]
    const we = tf.gather(tf.slice(weights, [0, e], [N, 1]), idx); // [n_e, 1]
    out = tf.add(out, tf.unsortedSegmentSum(tf.mul(ye, we), idx, N));
  }
  return { y: tf.reshape(out, x.shape), probs, chosen };
}

/**
 * transformers' load_balancing_loss_func with an attention mask: over all layers' real tokens,
 * E * sum_e (fraction of top-k choices that went to e, summed over the k slots) * (mean router prob of e).
 */
export function loadBalancingLoss(stats: readonly RouterStats[], experts: number): tf.Scalar {
  let total = 0;
  const counts = new Float32Array(experts);
  for (const s of stats) {
    const n = s.tokenMask.length;
    for (let r = 0; r < n; r++) {
      if (!s.tokenMask[r]) continue;
      total += 1;
      for (let e = 0; e < experts; e++) counts[e] += s.chosen[r * experts + e]!;
    }
  }
  if (total === 0) return tf.scalar(0);
  // tokens_per_expert summed over the k slots = counts / total; HF keeps it per slot then sums.
  const meanProbs = tf.div(
    tf.addN(stats.map((s) => tf.sum(tf.mul(s.probs, tf.tensor2d(s.tokenMask, [s.tokenMask.length, 1])), 0))),
    total,
  ); // [E]
  return tf.mul(tf.sum(tf.mul(tf.tensor1d(counts.map((c) => c / total)), meanProbs)), experts) as tf.Scalar;
}

export const mixtral: OpImpl = (ctx, [x]) => {
  // Each layer's top-k choice from its forward run, replayed if backward recomputes the layer.
  const routes: Float32Array[] = [];
  const { logits, extras } = decoderStack(ctx, x!, (c, h, i) => {
    const r = routedExperts(c, h, i, routes[i]);
    routes[i] = r.chosen;
    return { y: r.y, extra: [r.probs] };
  });
  if (!ctx.cache) {
    const coef = num(ctx.attrs, 'aux_loss_coef', 0.02);
    if (coef > 0) {
      const stats = extras.map(([probs], i): RouterStats => ({ probs: probs as tf.Tensor2D, chosen: routes[i]!, tokenMask: tokenMaskOf(ctx, probs!.shape[0]!) }));
      ctx.auxLosses.push(tf.mul(loadBalancingLoss(stats, num(ctx.attrs, 'experts')), coef) as tf.Scalar);
    }
  }
  return logits;
};
