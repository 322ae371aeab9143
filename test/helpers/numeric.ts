// Numerical test helpers: finite-difference gradient checks and the list of backends to run on.
import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, probeBackends, type ConcreteBackend } from '../../runtime/backend/backends.js';
import { Rng } from '../../runtime/random.js';
import { REQUIRE_ALL } from './required.js';

/** What CI requires of the numerical suite: every backend it sets up (webgpu on Mesa's software adapter). */
export const CI_BACKENDS: readonly ConcreteBackend[] = ['wasm', 'cpu', 'tensorflow', 'webgpu'];

let chosen: Promise<ConcreteBackend[]> | undefined;

/**
 * Backends every numerical test runs on: every one that loads here (PIPEC_TEST_BACKENDS=a,b narrows the
 * list), printed once with the reason each other one is left out. Where everything is required (CI), a
 * missing one of CI_BACKENDS is an error instead.
 */
export function testBackends(): Promise<ConcreteBackend[]> {
  return (chosen ??= chooseBackends());
}

async function chooseBackends(): Promise<ConcreteBackend[]> {
  const probes = await probeBackends();
  const only = process.env.PIPEC_TEST_BACKENDS?.split(',').map((b) => b.trim()).filter(Boolean);
  const out = probes.filter((p) => p.available && (!only || only.includes(p.name))).map((p) => p.name);
  const left = probes.filter((p) => !out.includes(p.name)).map((p) => `${p.name} (${p.available ? 'not in PIPEC_TEST_BACKENDS' : p.detail})`);
  if (REQUIRE_ALL) {
    const missing = CI_BACKENDS.filter((b) => !out.includes(b));
    if (missing.length) throw new Error(`the numerical suite must run on ${CI_BACKENDS.join(', ')}; missing here: ${left.filter((l) => missing.some((m) => l.startsWith(`${m} `))).join('; ')}`);
  }
  console.log(`numerical suite backends: ${out.join(', ')}${left.length ? `; left out: ${left.join('; ')}` : ''}`);
  return out;
}

type FlagValue = number | boolean | string;

/** tfjs flags useBackend changed, with their values before: the next useBackend, or the restore it returns, puts them back. */
const changed = new Map<string, FlagValue>();

function restoreFlags(): void {
  for (const [flag, value] of changed) tf.env().set(flag, value);
  changed.clear();
}

function setFlag(flag: string, value: FlagValue): void {
  if (!changed.has(flag)) changed.set(flag, tf.env().get(flag));
  tf.env().set(flag, value);
}

/**
 * Activates backend `b` with the flags the numerical tests need; returns a function that puts those flags
 * back (call it in the suite's `after`). A later useBackend puts them back first too, so no suite runs
 * with flags another one set.
 */
export async function useBackend(b: ConcreteBackend): Promise<() => void> {
  restoreFlags();
  await initBackend(b);
  // tfjs-backend-webgpu runs an op on its CPU kernels when every input is a small CPU-resident tensor
  // (WEBGPU_CPU_FORWARD), which is every input of these tests: off, so the GPU kernels are what is tested.
  if (b === 'webgpu') setFlag('WEBGPU_CPU_FORWARD', false);
  return restoreFlags;
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
