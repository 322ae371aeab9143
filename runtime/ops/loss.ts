// `causal_lm_loss`: next-token cross-entropy, mean over the positions whose label is not ignore_index
// (-100: image tokens, prompts, padding), as transformers' ForCausalLMLoss: logits[:, :-1] predict
// labels[:, 1:].
import * as tf from '@tensorflow/tfjs-core';

/** logits [B, T, V], labels [B, T] int32 -> scalar. */
export function causalLmLoss(logits: tf.Tensor, labels: Int32Array, ignoreIndex = -100): tf.Scalar {
  const [B, T, V] = logits.shape as [number, number, number];
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
  if (count === 0) return tf.scalar(0);
  const shifted = tf.reshape(tf.slice(logits, [0, 0, 0], [B, T - 1, V]), [n, V]);
  const logp = tf.logSoftmax(shifted); // [n, V]
  const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(target, 'int32'), V)), 1); // [n]
  return tf.div(tf.neg(tf.sum(tf.mul(picked, tf.tensor1d(weight)))), count) as tf.Scalar;
}

