// `causal_lm_loss`: next-token cross-entropy, mean over the positions whose label is not ignore_index
// (-100: image tokens, prompts, padding), as transformers' ForCausalLMLoss: logits[:, :-1] predict
// labels[:, 1:]. Softmax and cross-entropy are fused with their own gradient, (softmax - onehot) / n,
// so the [tokens, vocab] exponential is computed once per step instead of three times.
import * as tf from '@tensorflow/tfjs-core';
import { batchTensor, batchValue } from './batch-feeds.js';

interface Targets {
  /** Per position i of the [n, V] logits: i * V + its target (0 where ignored), for the gather. */
  flat: Int32Array;
  target: Int32Array;
  /** 1 where the position has a label, 0 where it is ignored. */
  weight: Float32Array;
  count: number;
}

/** The loss's targets from labels [B, T]: position t of row b predicts labels[b, t + 1]. */
function lossTargets(labels: Int32Array, B: number, T: number, V: number, ignoreIndex: number): Targets {
  const n = B * (T - 1);
  const target = new Int32Array(n), weight = new Float32Array(n);
  let count = 0;
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T - 1; t++) {
      const y = labels[b * T + t + 1]!;
      if (y === ignoreIndex) continue;
      if (y < 0 || y >= V) throw new Error(`label ${y} is outside the vocabulary [0, ${V})`);
      target[b * (T - 1) + t] = y;
      weight[b * (T - 1) + t] = 1;
      count++;
    }
  return { flat: Int32Array.from(target, (y, i) => i * V + y), target, weight, count };
}

interface TargetTensors {
  flat: tf.Tensor1D;
  target: tf.Tensor1D;
  weight: tf.Tensor1D;
  count: tf.Scalar;
}

/** Mean cross-entropy of logits [n, V] against the targets (weight 0 = ignored), with a fused gradient. */
function fusedCrossEntropy(logits: tf.Tensor2D, y: TargetTensors): tf.Scalar {
  const [n, V] = logits.shape;
  const f = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    const m = tf.max(x, 1, true);
    const shifted = tf.sub(x, m); // [n, V]
    const probsUnnorm = tf.exp(shifted);
    const z = tf.sum(probsUnnorm, 1, true); // [n, 1]
    const probs = tf.div(probsUnnorm, z);
    save([probs, y.weight, y.target, y.count]); // kept for backward: the forward's tidy frees the rest
    const picked = tf.sub(tf.gather(tf.reshape(shifted, [-1]), y.flat), tf.reshape(tf.log(z), [-1])); // log p[i, t_i]
    const value = tf.div(tf.neg(tf.sum(tf.mul(picked, y.weight))), y.count) as tf.Scalar;
    return {
      value,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [probs, weight, target, count] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.Scalar];
        const scale = tf.mul(tf.reshape(weight, [n, 1]), tf.div(dy as tf.Tensor, count));
        return [tf.mul(tf.sub(probs, tf.oneHot(target, V)), scale)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor2D) => tf.Scalar;
  return f(logits);
}

/**
 * logits [B, T, V], labels [B, T] int32 -> scalar. `src` (the model's inputs, whose `labels` these are)
 * makes the targets batch feeds (ops/batch-feeds.ts), so a compiled step takes them from each batch.
 */
export function causalLmLoss(logits: tf.Tensor, labels: Int32Array, ignoreIndex = -100, src: { labels?: Int32Array } = { labels }): tf.Scalar {
  const [B, T, V] = logits.shape as [number, number, number];
  const n = B * (T - 1);
  // The four feeds below read one labels array: its targets are worked out once (a compiled step calls
  // these makers again with each batch's labels, so the memo follows the array).
  let memo: { labels: Int32Array; t: Targets } | undefined;
  const targets = (s: { labels?: Int32Array }): Targets => {
    if (!memo || memo.labels !== s.labels) memo = { labels: s.labels!, t: lossTargets(s.labels!, B, T, V, ignoreIndex) };
    return memo.t;
  };
  if (!batchValue('loss_has_labels', src, (s) => targets(s).count > 0)) return tf.scalar(0);
  const shifted = tf.reshape(tf.slice(logits, [0, 0, 0], [B, T - 1, V]), [n, V]) as tf.Tensor2D;
  return fusedCrossEntropy(shifted, {
    flat: batchTensor('loss_flat', src, (s) => tf.tensor1d(targets(s).flat, 'int32')) as tf.Tensor1D,
    target: batchTensor('loss_target', src, (s) => tf.tensor1d(targets(s).target, 'int32')) as tf.Tensor1D,
    weight: batchTensor('loss_weight', src, (s) => tf.tensor1d(targets(s).weight)) as tf.Tensor1D,
    count: batchTensor('loss_count', src, (s) => tf.scalar(targets(s).count)) as tf.Scalar,
  });
}
