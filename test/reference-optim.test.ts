// pipec's optimizers, gradient clipping and learning-rate schedules against independent references:
// torch.optim.AdamW / SGD, torch.nn.utils.clip_grad_norm_ and transformers' schedule functions, run
// live by test/reference/optim.py on the parameters of a tiny LLaVA (names decide weight decay). Both
// sides take the same 50 steps of the same gradients; pipec's loop is the trainer's (clip, then
// lr = base * lrMultiplier(step), then apply). Parameters must agree to 1e-6 after every step.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { AttrValue } from '../compiler/ir/graph.js';
import { clipByGlobalNorm, decays, Optimizer } from '../runtime/train/optimizer.js';
import { lrMultiplier, warmupSteps } from '../runtime/train/schedule.js';
import { testBackends, useBackend } from './helpers/numeric.js';
import { unavailable } from './helpers/required.js';
import { tmpDir } from './helpers/tmp.js';
import { readTensors, type RefTensor, referenceUnavailable, runReference, tensor } from './helpers/reference.js';

const backends = await testBackends();
const STEPS = 50;

interface OptimCase {
  name: string;
  optimizer: 'adamw' | 'sgd';
  attrs: Record<string, number>;
  schedule: { name: 'cosine' | 'linear' | 'constant'; attrs: Record<string, number> };
  /** clip_grad (0: no clipping). */
  clip: number;
  /** A component with its own settings (`train: [proj(lr: ..., weight_decay: ...)]`): its parameters are those whose name starts with `prefix`. */
  group?: { prefix: string; lr?: number; weight_decay?: number };
}

// Every schedule pipec has, with warmup given as steps and as a ratio (ceil(0.1 * 50) = 5, ceil(0.05 * 50) = 3),
// and a floor (min_lr_ratio); both optimizers, SGD with and without momentum; clipping on and off.
const CASES: OptimCase[] = [
  { name: 'adamw-cosine-ratio', optimizer: 'adamw', attrs: { lr: 1e-2, weight_decay: 0.1 }, schedule: { name: 'cosine', attrs: { warmup_ratio: 0.1 } }, clip: 1 },
  { name: 'adamw-cosine-floor', optimizer: 'adamw', attrs: { lr: 3e-3, weight_decay: 0.05, beta1: 0.8, beta2: 0.95, eps: 1e-6 }, schedule: { name: 'cosine', attrs: { warmup_steps: 4, min_lr_ratio: 0.1 } }, clip: 0.5 },
  { name: 'adamw-linear-steps', optimizer: 'adamw', attrs: { lr: 1e-2, weight_decay: 0.01 }, schedule: { name: 'linear', attrs: { warmup_steps: 7 } }, clip: 2 },
  { name: 'adamw-linear-floor', optimizer: 'adamw', attrs: { lr: 5e-3 }, schedule: { name: 'linear', attrs: { warmup_ratio: 0.05, min_lr_ratio: 0.2 } }, clip: 0 },
  { name: 'adamw-constant-warmup', optimizer: 'adamw', attrs: { lr: 2e-3, weight_decay: 0.1 }, schedule: { name: 'constant', attrs: { warmup_steps: 3 } }, clip: 1 },
  { name: 'adamw-constant', optimizer: 'adamw', attrs: { lr: 1e-3 }, schedule: { name: 'constant', attrs: {} }, clip: 0 },
  { name: 'sgd-momentum-cosine', optimizer: 'sgd', attrs: { lr: 5e-2, momentum: 0.9, weight_decay: 0.01 }, schedule: { name: 'cosine', attrs: { warmup_steps: 5 } }, clip: 1 },
  { name: 'sgd-plain-linear', optimizer: 'sgd', attrs: { lr: 1e-1, momentum: 0 }, schedule: { name: 'linear', attrs: {} }, clip: 0 },
  { name: 'sgd-momentum-constant', optimizer: 'sgd', attrs: { lr: 2e-2, momentum: 0.5, weight_decay: 0.1 }, schedule: { name: 'constant', attrs: { warmup_ratio: 0.1 } }, clip: 5 },
  // per-component settings: the projector at 10x the lr and undecayed (LLaVA's mm_projector_lr), the
  // llm's own lr with its own decay; torch param groups under the same LambdaLR schedule
  { name: 'adamw-projector-group', optimizer: 'adamw', attrs: { lr: 2e-3, weight_decay: 0.1 }, schedule: { name: 'cosine', attrs: { warmup_steps: 3 } }, clip: 1, group: { prefix: 'multi_modal_projector.', lr: 2e-2, weight_decay: 0 } },
  { name: 'adamw-llm-group', optimizer: 'adamw', attrs: { lr: 1e-2 }, schedule: { name: 'linear', attrs: { warmup_ratio: 0.1 } }, clip: 0, group: { prefix: 'model.', lr: 1e-3, weight_decay: 0.05 } },
  { name: 'sgd-projector-group', optimizer: 'sgd', attrs: { lr: 5e-2, momentum: 0.9, weight_decay: 0.01 }, schedule: { name: 'constant', attrs: { warmup_steps: 2 } }, clip: 1, group: { prefix: 'multi_modal_projector.', lr: 2e-1 } },
];

interface CaseRef {
  lr: number[];
  grad_norm: number[];
  warmup: number;
  decayed: string[];
}

/** max |a - r| / max(1, |r|) over the entries. */
function maxError(actual: ArrayLike<number>, expected: ArrayLike<number>): { err: number; at: number } {
  let err = 0, at = -1;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.abs(actual[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!));
    if (!(e <= err)) (err = e, at = i);
  }
  return { err, at };
}

describe('optimizers, clipping and schedules: hand-computed values (no Python needed)', () => {
  const mult = (name: string, attrs: Record<string, number>, step: number, total: number) => lrMultiplier({ name, attrs }, step, total);

  it('warmup is step / warmup from step 0 (lr 0 first), then cosine, linear or constant decay to the floor', () => {
    // 4 warmup steps of 12: steps 0..3 are 0, 1/4, 2/4, 3/4; step 4 starts the decay at 1
    assert.deepEqual([0, 1, 3, 4].map((s) => mult('cosine', { warmup_steps: 4 }, s, 12)), [0, 0.25, 0.75, 1]);
    assert.ok(Math.abs(mult('cosine', { warmup_steps: 4 }, 8, 12) - 0.5) < 1e-15); // halfway: (1 + cos(pi/2)) / 2
    assert.ok(Math.abs(mult('cosine', { warmup_steps: 4, min_lr_ratio: 0.1 }, 12, 12) - 0.1) < 1e-15);
    assert.equal(mult('linear', { warmup_steps: 2 }, 6, 10), 0.5);
    assert.ok(Math.abs(mult('linear', { warmup_steps: 2, min_lr_ratio: 0.2 }, 6, 10) - 0.6) < 1e-15);
    // warmup_ratio 0.25 of 8 steps: ceil(2) = 2 warmup steps
    assert.deepEqual([0, 1, 2, 7].map((s) => mult('constant', { warmup_ratio: 0.25 }, s, 8)), [0, 0.5, 1, 1]);
    assert.equal(warmupSteps({ name: 'cosine', attrs: { warmup_ratio: 0.1 } }, 25), 3); // ceil(2.5)
  });

  for (const backend of backends)
    it(`AdamW's first step moves each weight by lr against its gradient's sign (bias-corrected), decaying weights but not biases or norms, on ${backend}`, async () => {
      await useBackend(backend);
      const names = ['w.weight', 'w.bias', 'norm.weight'];
      const vars = new Map(names.map((n) => [n, tf.variable(tf.tensor1d([1, -1]), true)] as const));
      const opt = new Optimizer('adamw', { lr: 0.1, weight_decay: 0.5 }, vars);
      const grads = new Map<string, tf.Tensor>(names.map((n) => [n, tf.tensor1d([0.5, -2])]));
      opt.apply(grads, 0.1);
      // m / (sqrt(v) + eps) = g / |g| after bias correction: every entry moves by 0.1 (times 1 - 1e-7)
      const step = 0.1 * (1 - 1e-7);
      assert.deepEqual([...vars.get('w.weight')!.dataSync()].map((x) => +x.toFixed(6)), [+(1 * (1 - 0.05) - step).toFixed(6), +(-1 * (1 - 0.05) + step).toFixed(6)]);
      for (const n of ['w.bias', 'norm.weight']) assert.deepEqual([...vars.get(n)!.dataSync()].map((x) => +x.toFixed(6)), [+(1 - step).toFixed(6), +(-1 + step).toFixed(6)], n);
      opt.dispose();
      for (const v of vars.values()) v.dispose();
    });

  it('a parameter with its own lr and weight decay (`train: [proj(lr: ...)]`) moves by its own lr, scaled by the schedule like the optimizer\'s', async () => {
    await useBackend('cpu');
    const vars = new Map(['proj.weight', 'lm.weight'].map((n) => [n, tf.variable(tf.tensor1d([1, -1]), true)] as const));
    const opt = new Optimizer('adamw', { lr: 0.01, weight_decay: 0.5 }, vars, new Map([['proj.weight', { lr: 0.1, weight_decay: 0 }]]));
    // the schedule's multiplier is 0.5: the optimizer's lr 0.005, the projector's 0.05
    opt.apply(new Map(['proj.weight', 'lm.weight'].map((n) => [n, tf.tensor1d([0.5, -2])])), 0.005);
    const eps = 1 - 1e-7; // m / (sqrt(v) + eps) after the first step's bias correction
    const got = (n: string) => [...vars.get(n)!.dataSync()].map((x) => +x.toFixed(6));
    assert.deepEqual(got('proj.weight'), [+(1 - 0.05 * eps).toFixed(6), +(-1 + 0.05 * eps).toFixed(6)]);
    assert.deepEqual(got('lm.weight'), [+(1 * (1 - 0.005 * 0.5) - 0.005 * eps).toFixed(6), +(-1 * (1 - 0.005 * 0.5) + 0.005 * eps).toFixed(6)]);
    opt.dispose();
    for (const v of vars.values()) v.dispose();
  });

  it('SGD with momentum: the buffer starts at the first gradient, then buf = momentum * buf + g', async () => {
    await useBackend('cpu');
    const vars = new Map([['w.weight', tf.variable(tf.tensor1d([1]), true)] as const]);
    const opt = new Optimizer('sgd', { lr: 0.1, momentum: 0.9 }, vars);
    for (let s = 0; s < 2; s++) opt.apply(new Map([['w.weight', tf.tensor1d([1])]]), 0.1);
    assert.ok(Math.abs(vars.get('w.weight')!.dataSync()[0]! - (1 - 0.1 - 0.19)) < 1e-6); // buffers 1, then 1.9
    opt.dispose();
    vars.get('w.weight')!.dispose();
  });

  it('clipping scales the gradients by max_norm / (norm + 1e-6) above the limit and returns the norm before', async () => {
    await useBackend('cpu');
    const grads = new Map<string, tf.Tensor>([['a', tf.tensor1d([3])], ['b', tf.tensor1d([4])]]);
    assert.equal(clipByGlobalNorm(grads, 1), 5);
    const scale = 1 / (5 + 1e-6);
    assert.ok(Math.abs(grads.get('a')!.dataSync()[0]! - 3 * scale) < 1e-7 && Math.abs(grads.get('b')!.dataSync()[0]! - 4 * scale) < 1e-7);
    const before = grads.get('a')!;
    assert.ok(Math.abs(clipByGlobalNorm(grads, 10) - 1) < 1e-6);
    assert.equal(grads.get('a'), before, 'below the limit the gradients are left as they are');
    for (const g of grads.values()) g.dispose();
  });
});

describe('optimizers, clipping and schedules against torch.optim and transformers (50 steps)', function () {
  this.timeout(600_000);
  let dir = '';
  let inputs: Map<string, RefTensor>;
  let names: string[];
  const refs = new Map<string, { json: CaseRef; tensors: Map<string, RefTensor> }>();

  before(function () {
    const why = referenceUnavailable();
    if (why) unavailable(this, 'the torch / transformers references', why);
    dir = tmpDir('ref-optim');
    runReference('optim.py', { seed: 3, steps: STEPS, cases: CASES }, dir);
    inputs = readTensors(path.join(dir, 'inputs.safetensors'));
    names = [...inputs.keys()].filter((n) => n.startsWith('init.')).map((n) => n.slice(5));
    for (const c of CASES)
      refs.set(c.name, { json: JSON.parse(fs.readFileSync(path.join(dir, `${c.name}.json`), 'utf8')) as CaseRef, tensors: readTensors(path.join(dir, `${c.name}.safetensors`)) });
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('every schedule\'s learning rate at every step equals transformers\' get_*_schedule_with_warmup (1e-12)', () => {
    for (const c of CASES) {
      const { json } = refs.get(c.name)!;
      assert.equal(warmupSteps({ name: c.schedule.name, attrs: c.schedule.attrs }, STEPS), json.warmup, `${c.name}: warmup steps`);
      json.lr.forEach((want, s) => {
        const lr = c.attrs['lr']! * lrMultiplier({ name: c.schedule.name, attrs: c.schedule.attrs }, s, STEPS);
        assert.ok(Math.abs(lr - want) <= 1e-12 * Math.max(want, 1e-12), `${c.name}: step ${s} lr ${lr}, transformers ${want}`);
      });
    }
  });

  it('the gradients exercise clipping: with a limit, some steps are clipped and some are not', () => {
    for (const c of CASES.filter((k) => k.clip > 0)) {
      const norms = refs.get(c.name)!.json.grad_norm;
      assert.ok(norms.some((n) => n > c.clip) && norms.some((n) => n < c.clip), `${c.name}: norms ${Math.min(...norms)}..${Math.max(...norms)} vs clip ${c.clip}`);
    }
  });

  it('weight decay skips exactly the parameters transformers\' Trainer exempts (biases and norm weights)', () => {
    const decayed = new Set(refs.get(CASES[0]!.name)!.json.decayed);
    for (const n of names) assert.equal(decays(n), decayed.has(n), `${n}: pipec ${decays(n) ? 'decays' : 'does not decay'} it, transformers' Trainer ${decayed.has(n) ? 'does' : 'does not'}`);
    assert.ok(names.some((n) => !decays(n)) && names.some((n) => decays(n)));
  });

  for (const backend of backends)
    describe(`on ${backend}`, () => {
      before(async () => useBackend(backend));

      // The schedules are computed in JS, the same on every backend; what a backend changes is the update
      // kernels. Software webgpu (lavapipe) takes ~15 s a case, so it runs the cases that cover every
      // update path (AdamW with decay and clipping; SGD with and without momentum); the others run all.
      const covering = ['adamw-cosine-ratio', 'sgd-momentum-cosine', 'sgd-plain-linear'];
      for (const c of backend === 'webgpu' ? CASES.filter((k) => covering.includes(k.name)) : CASES)
        it(`${c.name}: parameters after each of ${STEPS} steps, the clipped norms and the final optimizer state equal torch's (1e-6)`, () => {
          const ref = refs.get(c.name)!;
          const vars = new Map<string, tf.Variable>(names.map((n) => {
            const t = tensor(inputs, `init.${n}`);
            return [n, tf.variable(tf.tensor(Float32Array.from(t.data), t.shape), true)];
          }));
          const own = new Map(c.group ? names.filter((n) => n.startsWith(c.group!.prefix)).map((n) => [n, c.group!] as const) : []);
          const opt = new Optimizer(c.optimizer, c.attrs as Record<string, AttrValue>, vars, own);
          const schedule = { name: c.schedule.name, attrs: c.schedule.attrs as Record<string, AttrValue> };
          let worst = 0;
          try {
            for (let s = 0; s < STEPS; s++) {
              const grads = new Map<string, tf.Tensor>(names.map((n) => {
                const g = tensor(inputs, `grad.${s}.${n}`);
                return [n, tf.tensor(Float32Array.from(g.data), g.shape)];
              }));
              const norm = clipByGlobalNorm(grads, c.clip);
              const want = ref.json.grad_norm[s]!;
              assert.ok(Math.abs(norm - want) <= 1e-6 * want, `step ${s}: gradient norm ${norm}, torch ${want}`);
              opt.apply(grads, c.attrs['lr']! * lrMultiplier(schedule, s, STEPS));
              for (const g of grads.values()) g.dispose();
              // one read per step (a read per tensor costs a GPU sync each on webgpu)
              const flat = tf.tidy(() => tf.concat(names.map((n) => tf.reshape(vars.get(n)!, [-1]))).dataSync());
              let offset = 0;
              for (const n of names) {
                const want = tensor(ref.tensors, `step.${s}.${n}`).data;
                const got = flat.subarray(offset, (offset += want.length));
                const { err, at } = maxError(got, want);
                worst = Math.max(worst, err);
                assert.ok(err <= 1e-6, `after step ${s + 1}, ${n}[${at}] = ${got[at]}, torch ${want[at]} (error ${err.toPrecision(3)})`);
              }
            }
            // the optimizer state after the last step: Adam's moments, SGD's momentum buffer
            const slotNames = c.optimizer === 'adamw' ? { m: 'exp_avg', v: 'exp_avg_sq' } : c.attrs['momentum'] ? { m: 'momentum_buffer' } : {};
            for (const n of names) {
              const slot = opt.state.slots.get(n)!;
              for (const [k, refName] of Object.entries(slotNames)) {
                const { err, at } = maxError((k === 'm' ? slot.m : slot.v!).dataSync(), tensor(ref.tensors, `${refName}.${n}`).data);
                assert.ok(err <= 1e-6, `${refName} of ${n}[${at}]: error ${err.toPrecision(3)}`);
              }
            }
            if (process.env.PIPEC_TEST_ERRORS) console.log(`      largest parameter error over ${STEPS} steps: ${worst.toExponential(2)}`);
          } finally {
            opt.dispose();
            for (const v of vars.values()) v.dispose();
          }
        });
    });
});
