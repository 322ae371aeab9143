// Numerical test helpers: finite-difference gradient checks and the list of backends to run on.
import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, probeBackends, type ConcreteBackend } from '../../runtime/backend/backends.js';
import { Rng } from '../../runtime/random.js';

/**
 * Backends every numerical test runs on: wasm and cpu always, tensorflow when its native addon loads,
 * webgpu when Dawn finds an adapter (a software one too: lavapipe / llvmpipe in CI).
 */
export async function testBackends(): Promise<ConcreteBackend[]> {
  const avail = (await probeBackends()).filter((p) => p.available).map((p) => p.name);
  const only = process.env.PIPEC_TEST_BACKENDS?.split(',') as ConcreteBackend[] | undefined;
  return avail.filter((b) => b !== 'tensorflow-gpu' && (!only || only.includes(b)));
}

export async function useBackend(b: ConcreteBackend): Promise<void> {
  await initBackend(b);
  // tfjs-backend-webgpu runs an op on its CPU kernels when every input is a small CPU-resident tensor
  // (WEBGPU_CPU_FORWARD), which is every input of these tests: off, so the GPU kernels are what is tested.
  if (b === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
}

export function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => rng.normal() * scale), shape);
}

export function close(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = 'value'): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (!(Math.abs(a - e) <= tol * Math.max(1, Math.abs(e)))) assert.fail(`${what}[${i}] = ${a}, expected ${e} (tolerance ${tol})`);
  }
}

/**
 * Checks tf's gradient of `f` (a scalar function of the inputs) against central finite differences at
 * `samples` coordinates of each input. float32 with eps 1e-2 on O(1) values: differences agree to ~1e-3,
 * while a wrong gradient (transposed, missing a term) is off by O(1).
 */
export function checkGradients(f: (...xs: tf.Tensor[]) => tf.Scalar, inputs: tf.Tensor[], opts: { samples?: number; eps?: number; tol?: number; seed?: number } = {}): void {
  const eps = opts.eps ?? 1e-2, tol = opts.tol ?? 2e-2, samples = opts.samples ?? 6;
  const grads = tf.grads(f)(inputs);
  const rng = new Rng(opts.seed ?? 1);
  inputs.forEach((x, k) => {
    const base = x.dataSync().slice() as Float32Array;
    const g = grads[k]!.dataSync();
    for (let s = 0; s < Math.min(samples, base.length); s++) {
      const i = rng.int(base.length);
      const at = (d: number) => {
        const v = base.slice();
        v[i]! += d;
        const xs = inputs.map((t, j) => (j === k ? tf.tensor(v, x.shape) : t));
        return tf.tidy(() => f(...xs).dataSync()[0]!);
      };
      const numeric = (at(eps) - at(-eps)) / (2 * eps);
      const diff = Math.abs(g[i]! - numeric);
      if (!(diff <= tol * Math.max(1, Math.abs(numeric)))) assert.fail(`gradient of input ${k} at ${i}: analytic ${g[i]}, finite difference ${numeric}`);
    }
  });
}
