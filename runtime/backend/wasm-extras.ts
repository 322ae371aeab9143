// Kernels that stock tfjs-backend-wasm 4.22 lacks, registered from JavaScript. UnsortedSegmentSum is the
// gradient of gather, so without it no embedding (or LLaVA splice) can be trained on wasm.
import * as tf from '@tensorflow/tfjs-core';

interface WasmBackendLike {
  readSync(dataId: unknown): tf.backend_util.BackendValues;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array;
}

let registered = false;

export function registerWasmExtras(): void {
  if (registered || tf.getKernel('UnsortedSegmentSum', 'wasm')) return;
  registered = true;
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
