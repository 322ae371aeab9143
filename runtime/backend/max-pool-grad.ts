// The max-pool gradient in JavaScript: on wasm over views of the wasm heap (registered here), on webgpu over
// read-back data (webgpu-extras.ts, whose stock shader picks the last of tied maxima). Stock tfjs-wasm 4.22's kernel
// visits every input cell and, for each, every window that covers it, finding each window's maximum again;
// here each window is scanned once, in row-major order, and its dy goes to its first maximum (the cell
// tfjs's CPU kernel and PyTorch's MaxPool2d pick on ties; ties are common after ReLU over flat image
// regions). NHWC, channels innermost, so the scan reads contiguous channels.
import * as tf from '@tensorflow/tfjs-core';
import { replaceKernel } from './replace-kernel.js';

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/** dx [B, H, W, C] of a max-pool of x [B, H, W, C] given dy [B, outH, outW, C] (dilation 1). */
export function maxPoolBackprop(x: Float32Array, dy: Float32Array, dx: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { strideHeight: sh, strideWidth: sw, effectiveFilterHeight: fh, effectiveFilterWidth: fw } = info;
  const top = info.padInfo.top, left = info.padInfo.left;
  dx.fill(0);
  const best = new Float32Array(C);
  const at = new Int32Array(C);
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < OH; oy++) {
      const y0 = oy * sh - top;
      for (let ox = 0; ox < OW; ox++) {
        const x0 = ox * sw - left;
        best.fill(-Infinity);
        at.fill(-1);
        for (let wy = 0; wy < fh; wy++) {
          const y = y0 + wy;
          if (y < 0 || y >= H) continue;
          for (let wx = 0; wx < fw; wx++) {
            const xx = x0 + wx;
            if (xx < 0 || xx >= W) continue;
            const base = ((b * H + y) * W + xx) * C;
            for (let c = 0; c < C; c++) {
              const v = x[base + c]!;
              if (v > best[c]! || at[c] === -1) {
                best[c] = v;
                at[c] = base + c;
              }
            }
          }
        }
        const d = ((b * OH + oy) * OW + ox) * C;
        for (let c = 0; c < C; c++) if (at[c]! >= 0) dx[at[c]!] += dy[d + c]!;
      }
    }
  }
}

/**
 * Replaces `backend`'s MaxPoolGrad by `compute` for float32 (other dtypes: the stock kernel), which gets the
 * input x, dy and the pooling's geometry.
 */
export function replaceMaxPoolGrad(backendName: string, compute: (input: tf.TensorInfo, dy: tf.TensorInfo, info: tf.backend_util.Conv2DInfo, backend: unknown) => tf.TensorInfo): void {
  replaceKernel('MaxPoolGrad', backendName, (stock) => (args) => {
    const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
    if (input.dtype !== 'float32') return stock.kernelFunc(args);
    const a = args.attrs as unknown as { filterSize: number | [number, number]; strides: number | [number, number]; pad: 'valid' | 'same' | number; dimRoundingMode?: 'floor' | 'round' | 'ceil' };
    const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
    return compute(input, dy, info, args.backend);
  });
}

export function registerWasmMaxPoolGrad(): void {
  replaceMaxPoolGrad('wasm', (input, dy, info, b) => {
    const backend = b as WasmBackendLike;
    const dx = backend.makeOutput(input.shape, 'float32');
    // views after makeOutput, which may grow (and so detach) the heap
    maxPoolBackprop(backend.typedArrayFromHeap(input) as Float32Array, backend.typedArrayFromHeap(dy) as Float32Array, backend.typedArrayFromHeap(dx) as Float32Array, info);
    return dx;
  });
}
