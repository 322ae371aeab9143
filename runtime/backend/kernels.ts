// The seam between components and backends for the hot ops. Components call `linear` and `bmm` here,
// never tf.matMul directly, so a backend can route them to its fast kernels without touching a
// component. On wasm only 2-D matmuls with neither operand transposed reach XNNPACK (~20-50 GFLOP/s here);
// other forms run pipec's SIMD kernel (wasm-matmul.ts, ~20 GFLOP/s on a 2-D product). So on wasm the
// forward and both backward matmuls of a linear layer are written as explicit transposes followed by
// plain 2-D matmuls, with a custom gradient (2-7x faster there with tfjs's own kernels).
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core alone registers no gradients, and its gradient modules cannot be imported from Node's ESM
// (extensionless specifiers); the union package's Node bundle registers them in the shared registry.
import '@tensorflow/tfjs';

/** a[M,K] @ b[K,N] through the fast path: a non-transposed 2-D matmul, also in the backward pass. */
const plainMatMul2D = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a, b),
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const [sa, sb] = saved as [tf.Tensor2D, tf.Tensor2D];
      const g = dy as tf.Tensor2D;
      // da = dy @ b^T, db = a^T @ dy, each as transpose + plain matmul.
      return [tf.matMul(g, tf.transpose(sb)), tf.matMul(tf.transpose(sa), g)];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

let routing = true;

/** Turns the wasm matmul routing off (stock tfjs behaviour); the runtime benchmark compares both. */
export function setMatmulRouting(on: boolean): void {
  routing = on;
}

function routesMatMuls(): boolean {
  return routing && tf.getBackend() === 'wasm';
}

/** a[M,K] @ b[K,N] (optionally with a or b transposed). */
export function matmul2d(a: tf.Tensor2D, b: tf.Tensor2D, transposeA = false, transposeB = false): tf.Tensor2D {
  if (!routesMatMuls()) return tf.matMul(a, b, transposeA, transposeB);
  return plainMatMul2D(transposeA ? tf.transpose(a) : a, transposeB ? tf.transpose(b) : b);
}

/**
 * y = x @ w^T + b with the Hugging Face / PyTorch weight layout w: [out, in].
 * x: [..., in] -> [..., out]
 */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  const inDim = x.shape[x.shape.length - 1]!;
  const outDim = w.shape[0]!;
  if (w.shape[1] !== inDim) throw new Error(`linear: input [..., ${inDim}] does not match weight [${w.shape.join(', ')}]`);
  const x2 = tf.reshape(x, [-1, inDim]); // [N, in]
  let y = matmul2d(x2 as tf.Tensor2D, w as tf.Tensor2D, false, true); // [N, out]
  if (b) y = tf.add(y, b);
  return tf.reshape(y, [...x.shape.slice(0, -1), outDim]);
}

/**
 * Batched matmul a[G,M,K] @ b[G,K,N] (transposes as flags). On wasm every such form is pipec's SIMD kernel
 * (wasm-matmul.ts), which beat splitting into G 2-D XNNPACK matmuls at every size measured here (reference
 * LM's G 32 x 128x64x128: 4.0 against 7.7 ms for q k^T, 2.0 against 4.0 for p v); the other backends run
 * tfjs's own BatchMatMul.
 */
export function bmm(a: tf.Tensor3D, b: tf.Tensor3D, transposeA = false, transposeB = false): tf.Tensor3D {
  return tf.matMul(a, b, transposeA, transposeB);
}
