// `cnn` (std/vision): blocks of a 3x3 convolution (padding 1), ReLU and a 2x2 max-pool, over pixels
// [B, C, H, W]; the last feature map's cells become tokens (row-major), after the grid's global max for
// `select: "pooled_grid"`. Kernels are stored as PyTorch's Conv2d keeps them, [out, in, 3, 3]
// (convs.{i}.weight), and transposed to tfjs's [3, 3, in, out] here.
import * as tf from '@tensorflow/tfjs-core';
import { num, type OpImpl } from './types.js';

/**
 * A 3x3 convolution, stride 1, padding 1, NHWC, whose gradients are themselves forward convolutions:
 * tfjs-backend-wasm has no Conv2DBackpropFilter kernel, so tf.conv2d's own gradient fails there. With the
 * batch as the contracted channel, dW[ky, kx, i, o] = sum_{b,y,x} xpad[b, y+ky, x+kx, i] * dy[b, y, x, o]
 * is conv2d(xpad as [i, H+2, W+2, b], dy as a [H, W, b, o] kernel), "valid": a [i, 3, 3, o] result.
 * `inputGrad: false` (the first block, whose input is pixels) skips dx, a third of that block's work.
 */
const makeConv3x3 = (inputGrad: boolean) => tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x4, w4, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc]; // [B, H, W, I], [3, 3, I, O]
  save([x4, w4]);
  return {
    value: tf.conv2d(x4, w4, 1, 'same'), // [B, H, W, O]
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const [xs, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
      const dy4 = dy as tf.Tensor4D;
      // dx is the "same" convolution of dy with the kernel flipped in space and in/out swapped: a forward
      // Conv2D (XNNPACK on wasm) rather than wasm's Conv2DBackpropInput, a plain loop 3x slower.
      const dx = !inputGrad ? tf.zerosLike(xs) : tf.conv2d(dy4, tf.transpose(tf.reverse(ws, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D, 1, 'same'); // [B, H, W, I]
      const xt = tf.transpose(tf.pad(xs, [[0, 0], [1, 1], [1, 1], [0, 0]]), [3, 1, 2, 0]) as tf.Tensor4D; // [I, H+2, W+2, B]
      const k = tf.transpose(dy4, [1, 2, 0, 3]) as tf.Tensor4D; // [H, W, B, O]
      const dw = tf.transpose(tf.conv2d(xt, k, 1, 'valid'), [1, 2, 0, 3]); // [I, 3, 3, O] -> [3, 3, I, O]
      return [dx, dw];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor4D, w: tf.Tensor4D) => tf.Tensor4D;
const conv3x3 = makeConv3x3(true);
const conv3x3OnPixels = makeConv3x3(false);

export const cnn: OpImpl = (ctx, [pixels]) => {
  const layers = num(ctx.attrs, 'layers');
  let x = tf.transpose(pixels!, [0, 2, 3, 1]) as tf.Tensor4D; // [B, H, W, C]
  for (let i = 0; i < layers; i++) {
    const w = tf.transpose(ctx.param(`convs.${i}.weight`), [2, 3, 1, 0]); // [O, I, 3, 3] -> [3, 3, I, O]
    const y = tf.add((i === 0 ? conv3x3OnPixels : conv3x3)(x, w as tf.Tensor4D), ctx.param(`convs.${i}.bias`)); // [B, H, W, O]
    x = tf.maxPool(tf.relu(y) as tf.Tensor4D, 2, 2, 'valid'); // [B, H/2, W/2, O]
  }
  const [B, g, , D] = x.shape;
  const grid = tf.reshape(x, [B, g * g, D]); // [B, g*g, D], row-major over the grid
  if (ctx.attrs['select'] === 'grid') return grid;
  return tf.concat([tf.reshape(tf.max(x, [1, 2]), [B, 1, D]), grid], 1); // [B, 1 + g*g, D]
};
