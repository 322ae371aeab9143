// Kernels that stock tfjs-backend-webgpu 4.22 gets wrong here, replaced from JavaScript.
//
// AddN: its shader binds every input as a storage buffer, so more inputs than the device's
// maxStorageBuffersPerShaderStage - 1 (15 on lavapipe, 7 by default in core WebGPU) fail validation
// and, WebGPU errors being asynchronous, the sum silently reads as zeros. The global gradient norm
// (train/optimizer.ts) adds one term per trainable tensor. The replacement sums in chunks that fit.
//
// MaxPoolGrad: its shader gives a window's gradient to the LAST of tied maxima, where tfjs's CPU kernel and
// PyTorch's MaxPool2d give it to the first; ties are common in the quickstart's CNN (ReLU over flat image
// regions), so its training on webgpu drifted from every other backend's. The replacement reads x and dy
// back and computes on the CPU (max-pool-grad.ts): correct first, and the CNN is small.
import * as tf from '@tensorflow/tfjs-core';
import { replaceKernel } from './replace-kernel.js';
import { maxPoolBackprop, replaceMaxPoolGrad } from './max-pool-grad.js';

interface WebgpuBackendLike {
  device: { limits: { maxStorageBuffersPerShaderStage: number } };
  disposeData(dataId: object, force?: boolean): boolean;
  readSync(dataId: object): tf.backend_util.BackendValues;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues): tf.TensorInfo;
}

let registered = false;

export function registerWebgpuExtras(): void {
  if (registered) return;
  // false: tfjs-backend-webgpu not imported
  registered = replaceKernel('AddN', 'webgpu', (stock) => ({ inputs, backend, attrs }) => {
    const b = backend as unknown as WebgpuBackendLike;
    // one storage buffer is the output
    const fit = Math.max(2, (b.device.limits.maxStorageBuffersPerShaderStage || 8) - 1);
    let parts = inputs as unknown as tf.TensorInfo[];
    const ours = new Set<tf.TensorInfo>();
    while (parts.length > fit) {
      const next: tf.TensorInfo[] = [];
      for (let i = 0; i < parts.length; i += fit) {
        const chunk = parts.slice(i, i + fit);
        if (chunk.length === 1) {
          next.push(chunk[0]!);
          continue;
        }
        const sum = stock.kernelFunc({ inputs: chunk as unknown as tf.NamedTensorInfoMap, backend, attrs }) as tf.TensorInfo;
        ours.add(sum);
        next.push(sum);
      }
      for (const t of parts) if (ours.has(t) && !next.includes(t)) b.disposeData(t.dataId);
      parts = next;
    }
    const out = stock.kernelFunc({ inputs: parts as unknown as tf.NamedTensorInfoMap, backend, attrs }) as tf.TensorInfo;
    for (const t of parts) if (ours.has(t)) b.disposeData(t.dataId);
    return out;
  });
  if (!registered) return;
  registerMaxPoolGrad();
}

function registerMaxPoolGrad(): void {
  replaceMaxPoolGrad('webgpu', (input, dy, info, backend) => {
    const b = backend as WebgpuBackendLike;
    const dx = new Float32Array(tf.util.sizeFromShape(input.shape));
    maxPoolBackprop(b.readSync(input.dataId) as Float32Array, b.readSync(dy.dataId) as Float32Array, dx, info);
    return b.makeTensorInfo(input.shape, 'float32', dx);
  });
}
