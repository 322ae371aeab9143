// The seam between components and backends for the hot ops. Components call `linear` and `bmm` here,
// never tf.matMul directly, so a backend can route them to its fast kernels without touching a
// component. On wasm only 2-D matmuls with neither operand transposed reach XNNPACK (~20 GFLOP/s here);
// every other form falls to a ~2 GFLOP/s loop. So on wasm the forward and both backward matmuls of a
// linear layer are written as explicit transposes followed by plain 2-D matmuls, with a custom gradient
// (2-7x faster there); batched matmuls of large slices are split into such 2-D matmuls (see bmm).
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

/** Per-batch size (M x K x N multiply-adds) from which a batched matmul is split into 2-D matmuls on wasm. */
const SPLIT_MACS = 1 << 17;

/**
 * Batched matmul a[G,M,K] @ b[G,K,N] (transposes as flags). On wasm tfjs's BatchMatMul is a plain loop
 * (~0.5-1 GFLOP/s); split into G 2-D matmuls (XNNPACK, through matmul2d) it pays per-slice overhead instead,
 * which large slices earn back. Measured here (wasm, one op, median of 20), stock vs split: G 64 x 23x32x23
 * (tiny-llava's attention) 1.2 vs 9.6 ms; G 32 x 64x64x64 7.7 vs 3.3 ms; G 32 x 128x64x128 (the reference
 * LM's) 32.5 vs 11.5 ms for q k^T, 27.5 vs 6.6 ms for p v. So from SPLIT_MACS per slice it splits (the
 * slices are copies taken in place, wasm-slice.ts; stock tfjs-wasm's, which copied the whole input per
 * slice, made splitting a loss at every size). Every other backend: tfjs's own BatchMatMul.
 */
export function bmm(a: tf.Tensor3D, b: tf.Tensor3D, transposeA = false, transposeB = false): tf.Tensor3D {
  if (routesMatMuls() && a.shape[0] === b.shape[0]) {
    const [, a1, a2] = a.shape;
    const n = transposeB ? b.shape[1] : b.shape[2];
    if (a1 * a2 * n >= SPLIT_MACS) {
      const bs = tf.unstack(b) as tf.Tensor2D[];
      return tf.stack((tf.unstack(a) as tf.Tensor2D[]).map((x, i) => matmul2d(x, bs[i]!, transposeA, transposeB))) as tf.Tensor3D;
    }
  }
  return tf.matMul(a, b, transposeA, transposeB);
}
