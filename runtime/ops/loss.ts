// `causal_lm_loss`: next-token cross-entropy, mean over the positions whose label is not ignore_index
// (-100: image tokens, prompts, padding), as transformers' ForCausalLMLoss: logits[:, :-1] predict
// labels[:, 1:]. Softmax and cross-entropy are fused with their own gradient, (softmax - onehot) / n,
// so the [tokens, vocab] exponential is computed once per step instead of three times.
import * as tf from '@tensorflow/tfjs-core';

/** Mean cross-entropy of logits [n, V] against targets (weight 0 = ignored), with a fused gradient. */
function fusedCrossEntropy(logits: tf.Tensor2D, target: Int32Array, weight: Float32Array, count: number): tf.Scalar {
  const [n, V] = logits.shape;
  const flat = Int32Array.from(target, (t, i) => i * V + t);
  const f = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    const m = tf.max(x, 1, true);
    const shifted = tf.sub(x, m); // [n, V]
    const probsUnnorm = tf.exp(shifted);
    const z = tf.sum(probsUnnorm, 1, true); // [n, 1]
    const probs = tf.div(probsUnnorm, z);
    save([probs]);
    const picked = tf.sub(tf.gather(tf.reshape(shifted, [-1]), tf.tensor1d(flat, 'int32')), tf.reshape(tf.log(z), [-1])); // log p[i, t_i]
    const value = tf.div(tf.neg(tf.sum(tf.mul(picked, tf.tensor1d(weight)))), count) as tf.Scalar;
    return {
      value,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const scale = tf.mul(tf.reshape(tf.tensor1d(weight), [n, 1]), tf.div(dy as tf.Tensor, count));
        return [tf.mul(tf.sub(saved[0]!, tf.oneHot(tf.tensor1d(target, 'int32'), V)), scale)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor2D) => tf.Scalar;
  return f(logits);
}

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
  const shifted = tf.reshape(tf.slice(logits, [0, 0, 0], [B, T - 1, V]), [n, V]) as tf.Tensor2D;
  return fusedCrossEntropy(shifted, target, weight, count);
}
