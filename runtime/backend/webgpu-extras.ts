// Kernels that stock tfjs-backend-webgpu 4.22 gets wrong here, replaced from JavaScript.
//
// AddN: its shader binds every input as a storage buffer, so more inputs than the device's
// maxStorageBuffersPerShaderStage - 1 (15 on lavapipe, 7 by default in core WebGPU) fail validation
// and, WebGPU errors being asynchronous, the sum silently reads as zeros. The global gradient norm
// (train/optimizer.ts) adds one term per trainable tensor. The replacement sums in chunks that fit.
import * as tf from '@tensorflow/tfjs-core';

interface WebgpuBackendLike {
  device: { limits: { maxStorageBuffersPerShaderStage: number } };
  disposeData(dataId: object, force?: boolean): boolean;
}

let registered = false;

export function registerWebgpuExtras(): void {
  if (registered) return;
  const stock = tf.getKernel('AddN', 'webgpu');
  if (!stock) return; // tfjs-backend-webgpu not imported
  registered = true;
  tf.unregisterKernel('AddN', 'webgpu');
  tf.registerKernel({
    kernelName: 'AddN',
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
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
    },
  });
}
