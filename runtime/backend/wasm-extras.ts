// Kernels that stock tfjs-backend-wasm 4.22 lacks, registered from JavaScript. UnsortedSegmentSum is the
// gradient of gather, so without it no embedding (or LLaVA splice) can be trained on wasm.
// And two it has, replaced: its Square and Neg run an element-at-a-time unary loop, while Multiply is an
// XNNPACK SIMD kernel; x*x and x*(-1) give the same bits. Measured here on a [256, 128] float32 tensor:
// Square 270-540 us, Multiply(x, x) 11-50 us (a loaded 2-core machine; the ratio held in every round).
// Slice, SplitV and Unpack are replaced too (wasm-slice.ts), MaxPoolGrad (max-pool-grad.ts), GatherV2 along
// axis 0 (wasm-gather.ts) and BatchMatMul's forms that XNNPACK does not take (wasm-matmul.ts).
import * as tf from '@tensorflow/tfjs-core';
import { replaceKernel } from './replace-kernel.js';
import { registerWasmGather } from './wasm-gather.js';
import { registerWasmMatmul } from './wasm-matmul.js';
import { registerWasmMaxPoolGrad } from './max-pool-grad.js';
import { registerWasmSlices } from './wasm-slice.js';

interface WasmBackendLike {
  readSync(dataId: unknown): tf.backend_util.BackendValues;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array;
}

let registered = false;

/** Square and Neg of float32 tensors as the wasm backend's Multiply (other dtypes: its own kernels). */
function registerThroughMultiply(): void {
  const multiply = tf.getKernel('Multiply', 'wasm');
  if (!multiply) return;
  // -1 as a scalar of the backend itself (not an engine tensor: nothing to track or dispose), one per backend
  const minusOnes = new WeakMap<object, tf.TensorInfo>();
  const minusOne = (backend: WasmBackendLike): tf.TensorInfo => {
    let t = minusOnes.get(backend);
    if (!t) {
      t = backend.makeOutput([], 'float32');
      backend.typedArrayFromHeap(t)[0] = -1;
      minusOnes.set(backend, t);
    }
    return t;
  };
  // the original's setupFunc stays: it binds the wasm function that other dtypes still run
  const redirect = (name: string, other: (x: tf.TensorInfo, backend: WasmBackendLike) => tf.TensorInfo) =>
    replaceKernel(name, 'wasm', (original) => (args) => {
      const x = (args.inputs as { x: tf.TensorInfo }).x;
      if (x.dtype !== 'float32') return original.kernelFunc(args);
      const b = other(x, args.backend as unknown as WasmBackendLike);
      return multiply.kernelFunc({ inputs: { a: x, b }, backend: args.backend, attrs: {} }) as tf.TensorInfo;
    });
  redirect('Square', (x) => x);
  redirect('Neg', (_x, backend) => minusOne(backend));
}

export function registerWasmExtras(): void {
  if (registered || tf.getKernel('UnsortedSegmentSum', 'wasm')) return;
  registered = true;
  registerThroughMultiply();
  registerWasmSlices();
  registerWasmMaxPoolGrad();
  registerWasmMatmul();
  registerWasmGather();
  tf.registerKernel({
    kernelName: 'UnsortedSegmentSum',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
      const numSegments = (attrs as { numSegments: number }).numSegments;
      const b = backend as unknown as WasmBackendLike;
      const xs = b.readSync(x.dataId) as Float32Array | Int32Array;
      const ids = b.readSync(segmentIds.dataId) as Int32Array;
      // x: [N, ...inner]; segmentIds: [N] (tfjs flattens leading dims for gather's gradient)
      const inner = ids.length === 0 ? 0 : xs.length / ids.length;
      const out = b.makeOutput([numSegments, ...x.shape.slice(segmentIds.shape.length)], x.dtype);
      const o = b.typedArrayFromHeap(out);
      o.fill(0);
      for (let n = 0; n < ids.length; n++) {
        const s = ids[n]!;
        if (s < 0 || s >= numSegments) continue;
        const src = n * inner, dst = s * inner;
        for (let k = 0; k < inner; k++) o[dst + k] += xs[src + k]!;
      }
      return out;
    },
  });
}
