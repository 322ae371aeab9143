// Numerical test helpers: finite-difference gradient checks, tolerance comparisons and the list of
// backends to run on.
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
    // PIPEC_TEST_BACKENDS narrows on purpose (the mutation harness runs on cpu alone): then what is
    // required is that each backend named there loads.
    const required = only ? CI_BACKENDS.filter((b) => only.includes(b)) : CI_BACKENDS;
    const missing = required.filter((b) => !out.includes(b));
    if (missing.length) throw new Error(`the numerical suite must run on ${required.join(', ')}; missing here: ${left.filter((l) => missing.some((m) => l.startsWith(`${m} `))).join('; ')}`);
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

export interface GradientCheckOptions {
  /** Base finite-difference step; entry j moves by eps * max(1, |x_j|). */
  eps?: number;
  /** Relative tolerance per entry. */
  rtol?: number;
  /** Absolute floor per entry, as a fraction of the input's largest gradient entry. */
  atol?: number;
  /** Inputs of at most this many entries are checked at every entry; larger ones at this many (seeded). */
  maxEntries?: number;
  seed?: number;
  /** Names of the inputs, for messages. */
  names?: string[];
  /** Inputs (by name, or index as a string) whose gradient is zero by construction: checked to be zero. */
  zero?: string[];
}

export interface GradientCheckReport {
  /** Entries compared. */
  entries: number;
  /** The largest |analytic - numeric| / allowed over the entries: below 1 when the check passes. */
  worst: number;
  /** The largest |analytic - numeric| / scale (scale: the input's largest gradient entry). */
  maxScaledError: number;
}

/** float32's unit roundoff, and how many of them each differenced output is allowed as rounding noise. */
const U32 = 2 ** -24, NOISE_ULPS = 4;

/**
 * Checks tf's gradient of sum(f(inputs)) against central finite differences at every entry of each
 * small input (larger inputs at `maxEntries` seeded entries).
 *
 * TensorFlow.js computes in float32 only, so the differences are made accurate instead of loosely
 * toleranced:
 * - f's outputs are differenced element by element and summed in float64, so no float32 sum cancels;
 * - the step is chosen per entry (eps * max(1, |x|)), and the step actually taken after rounding the
 *   moved entry to float32 is the one divided by;
 * - where D(h) uses more than half the tolerance, Richardson extrapolation (4 D(h) - D(2h)) / 3 removes
 *   the O(h^2) truncation error, and the better of the two estimates is judged (where rounding noise
 *   dominates, extrapolating only amplifies it).
 * An entry passes when |analytic - numeric| <= rtol |numeric| + atol * scale + noise: relative, with a
 * floor small next to the input's largest gradient entry (`scale`), plus the rounding noise of the
 * differenced float32 outputs (NOISE_ULPS units of roundoff of sum |y|, over the step). So a gradient
 * scaled by 0.6, a dropped term or a flipped sign fails wherever it is measurable, small gradients
 * included. An input whose gradient is below the noise at every checked entry fails unless it is listed
 * in `zero` (then it must be zero).
 */
export function checkGradients(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], opts: GradientCheckOptions = {}): GradientCheckReport {
  const eps = opts.eps ?? 1e-2, rtol = opts.rtol ?? 1e-3, atol = opts.atol ?? 1e-4, maxEntries = opts.maxEntries ?? 64;
  const name = (k: number) => opts.names?.[k] ?? `input ${k}`;
  // 0 * sum(x) for every input: an input f does not read gets a zero gradient instead of tf's error
  const objective = (...xs: tf.Tensor[]) => tf.addN([tf.sum(f(...xs)), ...xs.map((x) => tf.mul(0, tf.sum(x)))]) as tf.Scalar;
  const grads = tf.tidy(() => tf.grads(objective)(inputs).map((g) => g.dataSync().slice() as Float32Array));
  const rng = new Rng(opts.seed ?? 1);
  const report: GradientCheckReport = { entries: 0, worst: 0, maxScaledError: 0 };
  inputs.forEach((x, k) => {
    const base = x.dataSync().slice() as Float32Array;
    const g = grads[k]!;
    const n = base.length;
    const expectZero = opts.zero?.includes(name(k)) ?? false;
    const budget = expectZero ? Math.min(4, maxEntries) : maxEntries; // a zero gradient needs few witnesses
    const at = n <= budget ? Array.from({ length: n }, (_, i) => i) : rng.shuffle(Array.from({ length: n }, (_, i) => i)).slice(0, budget);
    const step = (i: number) => eps * Math.max(1, Math.abs(base[i]!));
    /** Central difference at step h: the estimate and its rounding-noise bound. */
    const derivative = (i: number, h: number): { d: number; noise: number } => {
      const up = Math.fround(base[i]! + h), down = Math.fround(base[i]! - h);
      const y = (v: number) => {
        const data = base.slice();
        data[i] = v;
        const t = tf.tensor(data, x.shape);
        const out = tf.tidy(() => f(...inputs.map((u, j) => (j === k ? t : u))).dataSync().slice() as Float32Array);
        t.dispose();
        return out;
      };
      const yu = y(up), yd = y(down);
      let diff = 0, mag = 0;
      for (let j = 0; j < yu.length; j++) (diff += yu[j]! - yd[j]!, mag += Math.abs(yu[j]!) + Math.abs(yd[j]!));
      return { d: diff / (up - down), noise: (NOISE_ULPS * U32 * mag) / (up - down) };
    };
    const first = new Map(at.map((i) => [i, derivative(i, step(i))]));
    let scale = 0, noise = 0;
    for (const i of at) (scale = Math.max(scale, Math.abs(first.get(i)!.d), Math.abs(g[i]!)), noise = Math.max(noise, first.get(i)!.noise));
    if (scale <= noise) {
      if (expectZero) return;
      assert.fail(`${name(k)}: the gradient is below the finite differences' noise (${noise.toPrecision(2)}) at every checked entry; the check would prove nothing`);
    }
    if (expectZero) assert.fail(`${name(k)}: expected a zero gradient, but it reaches ${scale.toPrecision(3)} (noise ${noise.toPrecision(2)})`);
    for (const i of at) {
      const d1 = first.get(i)!;
      const allowed = (est: number, nz: number) => rtol * Math.abs(est) + atol * scale + nz;
      let ratio = Math.abs(g[i]! - d1.d) / allowed(d1.d, d1.noise);
      let rich: { d: number; noise: number; coarse: number } | undefined;
      if (ratio > 0.5) {
        // close to the limit at step h: extrapolate the O(h^2) truncation error away, and keep the better
        // estimate (where rounding noise dominates, extrapolation only amplifies it)
        const c = derivative(i, 2 * step(i));
        rich = { d: (4 * d1.d - c.d) / 3, noise: (4 * d1.noise + c.noise) / 3, coarse: c.d };
        ratio = Math.min(ratio, Math.abs(g[i]! - rich.d) / allowed(rich.d, rich.noise));
      }
      report.entries++;
      report.worst = Math.max(report.worst, ratio);
      report.maxScaledError = Math.max(report.maxScaledError, Math.min(Math.abs(g[i]! - d1.d), rich ? Math.abs(g[i]! - rich.d) : Infinity) / scale);
      if (!(ratio <= 1))
        assert.fail(`gradient of ${name(k)} at entry ${i}: analytic ${g[i]}, finite difference ${d1.d} at h = ${step(i)}` +
          `${rich ? `, ${rich.d} extrapolated (D(2h) ${rich.coarse})` : ''}; allowed ${rtol} x |numeric| + ${atol} x ${scale.toPrecision(3)} + rounding noise ${d1.noise.toPrecision(2)}`);
    }
  });
  // PIPEC_TEST_ERRORS=1 prints each check's margin (how the tolerances were chosen: worst stays below ~0.5)
  if (process.env.PIPEC_TEST_ERRORS) console.log(`      gradient check: ${report.entries} entries, worst ${report.worst.toFixed(3)}, max scaled error ${report.maxScaledError.toExponential(2)}`);
  return report;
}
