// Every op and component, on every backend available here: forward values on hand-computed cases and
// gradients against finite differences. Tolerances are float32 ones, stated per check.
import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs-core';
import { bmm, linear, matmul2d } from '../runtime/backend/kernels.js';
import { causalLmLoss } from '../runtime/ops/loss.js';
import { loadBalancingLoss, moeBlock, topKIndices, type RouterStats } from '../runtime/ops/mixtral.js';
import { attention, causalBias, gelu, geluTanh, layerNorm, mergeHeads, NEG_INF, quickGelu, repeatKv, rmsNorm, rope, silu, splitHeads } from '../runtime/ops/nn.js';
import { spliceIndices } from '../runtime/ops/splice.js';
import type { OpContext } from '../runtime/ops/types.js';
import { OPS } from '../runtime/ops/registry.js';
import { Rng } from '../runtime/random.js';
import { checkGradients, close, type GradientCheckOptions, randn, testBackends, useBackend } from './helpers/numeric.js';

const backends = await testBackends();

function ctxWith(params: Map<string, tf.Tensor>, attrs: OpContext['attrs'], mask?: Int32Array, B = 1, T = 1): OpContext {
  return {
    param: (n) => {
      const p = params.get(n);
      if (!p) throw new Error(`test has no param ${n}`);
      return p;
    },
    hasParam: (n) => params.has(n),
    attrs,
    batch: { attentionMask: mask ?? new Int32Array(B * T).fill(1), batch: B, length: T, imageStart: new Array(B).fill(-1) },
    auxLosses: [],
  };
}

for (const backend of backends) {
  describe(`runtime ops on ${backend}`, () => {
    before(async () => useBackend(backend));
    // Finite differences cost two forward passes per entry: every entry on the fast backends, a seeded
    // sample of 6 per tensor on wasm and webgpu, whose per-op overhead makes tiny passes ~10x slower.
    const fd: GradientCheckOptions = { maxEntries: backend === 'cpu' || backend === 'tensorflow' ? 64 : 6 };

    // On wasm these are pipec's own kernels (runtime/backend/wasm-slice.ts), which read the input in place.
    it('slice, split and unstack take exactly the elements an index loop takes (ranks 1-4, every axis, float32, int32, bool)', () => {
      const rng = new Rng(11);
      /** x[begin : begin + size] of a row-major array, one element at a time. */
      const reference = (x: ArrayLike<number>, shape: number[], begin: number[], size: number[]): number[] => {
        const out: number[] = [];
        const idx = new Array<number>(shape.length).fill(0);
        const total = size.reduce((a, b) => a * b, 1);
        for (let n = 0; n < total; n++) {
          let flat = 0;
          for (let k = 0; k < shape.length; k++) flat = flat * shape[k]! + begin[k]! + idx[k]!;
          out.push(x[flat]!);
          for (let k = shape.length - 1; k >= 0; k--) if (++idx[k]! < size[k]!) break; else idx[k] = 0;
        }
        return out;
      };
      let cases = 0;
      for (let round = 0; round < 40; round++) {
        const rank = 1 + (round % 4);
        const shape = Array.from({ length: rank }, () => 1 + rng.int(rank > 2 ? 5 : 40));
        const dtype = (['float32', 'int32', 'bool'] as const)[round % 3]!;
        const count = shape.reduce((a, b) => a * b, 1);
        const values = Array.from({ length: count }, (_, i) => (dtype === 'bool' ? rng.int(2) : dtype === 'int32' ? i - 7 : i + 0.25));
        const x = tf.tensor(values, shape, dtype);
        const begin = shape.map((n) => rng.int(n));
        const size = shape.map((n, k) => (rng.int(3) === 0 ? n - begin[k]! : 1 + rng.int(n - begin[k]!)));
        assert.deepEqual(Array.from(tf.slice(x, begin, size).dataSync()), reference(values, shape, begin, size), `slice ${dtype} [${shape}] at [${begin}] size [${size}]`);
        for (let axis = 0; axis < rank; axis++) {
          const cut = rng.int(shape[axis]! + 1);
          const parts = tf.split(x, [cut, shape[axis]! - cut], axis);
          parts.forEach((part, i) => {
            const b = shape.map((_, k) => (k === axis && i === 1 ? cut : 0));
            const sz = shape.map((n, k) => (k === axis ? (i === 0 ? cut : n - cut) : n));
            assert.deepEqual(part.shape, sz);
            assert.deepEqual(Array.from(part.dataSync()), reference(values, shape, b, sz), `split ${dtype} [${shape}] axis ${axis} at ${cut}, part ${i}`);
          });
          tf.unstack(x, axis).forEach((part, i) => {
            const b = shape.map((_, k) => (k === axis ? i : 0));
            const sz = shape.map((n, k) => (k === axis ? 1 : n));
            assert.deepEqual(part.shape, shape.filter((_, k) => k !== axis));
            assert.deepEqual(Array.from(part.dataSync()), reference(values, shape, b, sz), `unstack ${dtype} [${shape}] axis ${axis}, part ${i}`);
          });
          cases++;
        }
        tf.dispose(x);
      }
      assert.ok(cases > 50, `only ${cases} split/unstack cases`);
    });

    // On wasm and webgpu MaxPoolGrad is pipec's own (runtime/backend/max-pool-grad.ts; webgpu's stock one picks the last tie).
    it('max-pool gradient: each window\'s dy goes to its first maximum in row-major order (ties included), for valid and same padding', () => {
      const rng = new Rng(5);
      for (const [f, stride, pad] of [[2, 2, 'valid'], [3, 1, 'same'], [3, 2, 'same'], [2, 1, 'valid']] as const) {
        const [B, H, W, C] = [2, 6, 5, 3];
        const xs = Array.from({ length: B * H * W * C }, () => rng.int(3)); // few values: many ties
        const x = tf.tensor4d(xs, [B, H, W, C]);
        const pooled = tf.maxPool(x, f, stride, pad);
        const [, OH, OW] = pooled.shape;
        const r = Array.from({ length: B * OH * OW * C }, (_, i) => 1 + (i % 7));
        const dx = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(t as tf.Tensor4D, f, stride, pad), tf.tensor4d(r, pooled.shape))))(x);
        // the reference: scan each window (as tfjs's CPU kernel and PyTorch do), first strict maximum wins
        const padTop = pad === 'same' ? Math.floor(Math.max((OH - 1) * stride + f - H, 0) / 2) : 0;
        const padLeft = pad === 'same' ? Math.floor(Math.max((OW - 1) * stride + f - W, 0) / 2) : 0;
        const want = new Array<number>(xs.length).fill(0);
        for (let b = 0; b < B; b++) for (let oy = 0; oy < OH; oy++) for (let ox = 0; ox < OW; ox++) for (let c = 0; c < C; c++) {
          let best = -Infinity, at = -1;
          for (let wy = 0; wy < f; wy++) for (let wx = 0; wx < f; wx++) {
            const y = oy * stride - padTop + wy, xx = ox * stride - padLeft + wx;
            if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
            const i = ((b * H + y) * W + xx) * C + c;
            if (xs[i]! > best) (best = xs[i]!), (at = i);
          }
          want[at] += r[((b * OH + oy) * OW + ox) * C + c]!;
        }
        assert.deepEqual(Array.from(dx.dataSync()), want, `maxPool ${f}x${f} stride ${stride} ${pad}`);
      }
    });

    // On wasm a gather along axis 0 is pipec's own row copy (runtime/backend/wasm-gather.ts); others are stock's.
    it('gather takes the rows an index loop takes (float32, int32, 2-D indices, another axis); an index out of range throws', () => {
      const x = tf.tensor2d(Array.from({ length: 50 * 7 }, (_, i) => i * 0.5 - 3), [50, 7]);
      const xi = tf.tensor2d(Array.from({ length: 50 * 7 }, (_, i) => i - 100), [50, 7], 'int32');
      const idx = [[3, 0, 49], [49, 2, 2]];
      for (const t of [x, xi]) {
        const rows = t.arraySync() as number[][];
        assert.deepEqual(tf.gather(t, tf.tensor2d(idx, [2, 3], 'int32')).arraySync(), idx.map((r) => r.map((i) => rows[i]!)));
        assert.deepEqual(tf.gather(t, tf.tensor1d([6, 1], 'int32'), 1).arraySync(), rows.map((r) => [r[6], r[1]]));
      }
      if (backend === 'wasm' || backend === 'cpu') assert.throws(() => tf.gather(x, tf.tensor1d([50], 'int32')).dataSync(), /50/);
      tf.dispose([x, xi]);
    });

    // On wasm every batched or transposed form is pipec's SIMD kernel (runtime/backend/wasm-matmul.ts),
    // whose loops have tails for N % 16, N % 4 and K % 4: these sizes reach each of them.
    it('tf.matMul equals an index loop in float64 in every transpose form, batched and 2-D, at sizes that reach every loop tail', () => {
      const rng = new Rng(5);
      for (const [G, M, K, N] of [[3, 5, 7, 9], [2, 23, 32, 23], [4, 17, 16, 17], [1, 3, 4, 37], [2, 1, 1, 1], [1, 33, 19, 35]]) {
        for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
          const av = Array.from({ length: G * M * K }, () => rng.normal()), bv = Array.from({ length: G * K * N }, () => rng.normal());
          const aShape = ta ? [K, M] : [M, K], bShape = tb ? [N, K] : [K, N];
          const got = tf.tidy(() => tf.matMul(tf.tensor(av, G === 1 ? aShape : [G, ...aShape]), tf.tensor(bv, G === 1 ? bShape : [G, ...bShape]), ta, tb).dataSync());
          const want: number[] = [];
          for (let g = 0; g < G; g++)
            for (let i = 0; i < M; i++)
              for (let j = 0; j < N; j++) {
                let sum = 0;
                for (let k = 0; k < K; k++) sum += av[g * M * K + (ta ? k * M + i : i * K + k)]! * bv[g * K * N + (tb ? j * K + k : k * N + j)]!;
                want.push(sum);
              }
          close(got, want, 1e-4, `[${G}, ${M}, ${K}] x [${K}, ${N}], transposes ${ta} ${tb}`);
        }
      }
    });

    it('bmm of large slices equals tfjs\'s BatchMatMul in every transpose form, and its gradients', () => {
      const [G, M, K, N] = [2, 64, 64, 40];
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
        const a = randn(ta ? [G, K, M] : [G, M, K], 21), b = randn(tb ? [G, N, K] : [G, K, N], 22);
        close(bmm(a as tf.Tensor3D, b as tf.Tensor3D, ta, tb).dataSync(), tf.matMul(a, b, ta, tb).dataSync(), 1e-4);
      }
      const r = randn([G, M, N], 23);
      checkGradients((a, b) => tf.mul(bmm(a as tf.Tensor3D, b as tf.Tensor3D, false, true), r), [randn([G, M, K], 24), randn([G, N, K], 25)], fd);
    });

    it('linear: y = x W^T + b, hand-computed, and its gradients', () => {
      const y = linear(tf.tensor2d([[1, 2]]), tf.tensor2d([[1, 0], [0, 1], [1, 1]]), tf.tensor1d([0.5, 0, -1]));
      close(y.dataSync(), [1.5, 2, 2], 1e-6);
      const r = randn([3, 5], 9);
      checkGradients((x, w, b) => tf.mul(linear(x!, w!, b), r), [randn([3, 4], 1), randn([5, 4], 2), randn([5], 3)]);
    });

    it('matmul2d and bmm agree with hand values in every transpose form', () => {
      const a = tf.tensor2d([[1, 2], [3, 4]]), b = tf.tensor2d([[5, 6], [7, 8]]);
      close(matmul2d(a, b).dataSync(), [19, 22, 43, 50], 1e-6);
      close(matmul2d(a, b, true).dataSync(), [26, 30, 38, 44], 1e-6);
      close(matmul2d(a, b, false, true).dataSync(), [17, 23, 39, 53], 1e-6);
      const a3 = tf.stack([a, b]) as tf.Tensor3D, b3 = tf.stack([b, a]) as tf.Tensor3D;
      close(bmm(a3, b3).dataSync(), [19, 22, 43, 50, 23, 34, 31, 46], 1e-6);
      const r = randn([2, 3, 3], 4);
      checkGradients((x, y) => tf.mul(bmm(x as tf.Tensor3D, y as tf.Tensor3D, false, true), r), [randn([2, 3, 4], 5), randn([2, 3, 4], 6)]);
    });

    it('layerNorm and rmsNorm: hand values and gradients', () => {
      close(layerNorm(tf.tensor1d([1, 2, 3]), tf.ones([3]), tf.zeros([3]), 0).dataSync(), [-1.2247449, 0, 1.2247449], 1e-5);
      close(rmsNorm(tf.tensor1d([3, 4]), tf.tensor1d([1, 2]), 0).dataSync(), [3 / Math.sqrt(12.5), (2 * 4) / Math.sqrt(12.5)], 1e-5);
      const r = randn([2, 4], 7);
      checkGradients((x, w, b) => tf.mul(layerNorm(x!, w!, b!, 1e-5), r), [randn([2, 4], 1), randn([4], 2), randn([4], 3)]);
      checkGradients((x, w) => tf.mul(rmsNorm(x!, w!, 1e-5), r), [randn([2, 4], 4), randn([4], 5)]);
    });

    it('activations: gelu (erf), gelu tanh, quick_gelu, silu at hand-checked points, and gradients', () => {
      const x = tf.tensor1d([-1, 0, 1, 2]);
      close(gelu(x).dataSync(), [-0.1586553, 0, 0.8413447, 1.9544997], 1e-5);
      close(geluTanh(x).dataSync(), [-0.158808, 0, 0.841192, 1.9545977], 1e-5);
      close(quickGelu(x).dataSync(), [-1 / (1 + Math.exp(1.702)), 0, 1 / (1 + Math.exp(-1.702)), 2 / (1 + Math.exp(-3.404))], 1e-5);
      close(silu(x).dataSync(), [-0.2689414, 0, 0.7310586, 1.7615942], 1e-5);
      for (const f of [gelu, geluTanh, quickGelu, silu]) checkGradients((t) => tf.mul(f(t!), tf.tensor1d([1, -2, 3, 0.5])), [randn([4], 11)]);
    });

    it('rope rotates pairs (rotate_half layout) by position / theta^(2i/d)', () => {
      // d = 4: pairs (0, 2) at frequency 1 and (1, 3) at 1/theta^(1/2); position 1 (start = 1), theta 100.
      const out = rope(tf.tensor3d([[[1, 1, 0, 0]]]), 100, 1).dataSync();
      close(out, [Math.cos(1), Math.cos(0.1), Math.sin(1), Math.sin(0.1)], 1e-5);
      checkGradients((x) => tf.mul(rope(x as tf.Tensor3D, 10000), randn([2, 3, 4], 3)), [randn([2, 3, 4], 2)]);
    });

    it('attention: hand-computed outputs with and without the causal mask, padding masked', () => {
      const q = tf.tensor3d([[[1], [0]]]), k = tf.tensor3d([[[1], [0]]]), v = tf.tensor3d([[[1], [3]]]);
      const e = Math.E;
      close(attention(q, k, v).dataSync(), [(e + 3) / (e + 1), 2], 1e-5);
      close(attention(q, k, v, causalBias([1, 1], 1, 2, 2)).dataSync(), [1, 2], 1e-5);
      // the second key is padding: both queries see only the first
      close(attention(q, k, v, causalBias([1, 0], 1, 2, 2)).dataSync(), [1, 1], 1e-5);
    });

    it('attention scales scores by 1/sqrt(d): head size 4, hand-computed', () => {
      // q.k0 = 2, q.k1 = 0, over sqrt(4): scores (1, 0), so weights (e, 1) / (e + 1) on v0 = e1, v1 = e2.
      // Without the scale the scores would be (2, 0) and the weights (e^2, 1) / (e^2 + 1).
      const q = tf.tensor3d([[[2, 0, 0, 0]]]), k = tf.tensor3d([[[1, 0, 0, 0], [0, 0, 0, 0]]]), v = tf.tensor3d([[[1, 0, 0, 0], [0, 1, 0, 0]]]);
      const e = Math.E;
      close(attention(q, k, v).dataSync(), [e / (e + 1), 1 / (e + 1), 0, 0], 1e-6);
    });

    it('splitHeads puts head h of sample b at row b*H + h and mergeHeads inverts it (B=2, H=2, d=2)', () => {
      const x = tf.tensor3d([[[0, 1, 2, 3], [10, 11, 12, 13]], [[20, 21, 22, 23], [30, 31, 32, 33]]]); // [B=2, T=2, H*d=4]
      const heads = splitHeads(x, 2); // [B*H=4, T=2, d=2]
      assert.deepEqual(heads.shape, [4, 2, 2]);
      close(heads.dataSync(), [0, 1, 10, 11, 2, 3, 12, 13, 20, 21, 30, 31, 22, 23, 32, 33], 0);
      close(mergeHeads(heads, 2).dataSync(), x.dataSync(), 0);
    });

    it('attention over B=2, H=2 with per-row padding: each (sample, head) sees its own keys and its own mask', () => {
      // q = 0: every visible key weighs the same, so each output is the mean of the visible values.
      // Sample 0 is unpadded; sample 1's second position is padding. v differs per (sample, head).
      const B = 2, H = 2, T = 2, d = 2;
      const q = tf.zeros([B * H, T, d]) as tf.Tensor3D, k = randn([B * H, T, d], 4) as tf.Tensor3D;
      const vData = Array.from({ length: B * H * T * d }, (_, i) => i);
      const v = tf.tensor3d(vData, [B * H, T, d]);
      const out = attention(q, k, v, causalBias([1, 1, 1, 0], B, T, T)).dataSync();
      const val = (bh: number, t: number) => vData.slice((bh * T + t) * d, (bh * T + t + 1) * d);
      const expected: number[] = [];
      for (let bh = 0; bh < B * H; bh++) {
        const b = Math.floor(bh / H);
        expected.push(...val(bh, 0)); // query 0 sees key 0 only (causal)
        expected.push(...(b === 0 ? val(bh, 0).map((x, j) => (x + val(bh, 1)[j]!) / 2) : val(bh, 0))); // query 1: key 1 unless padding
      }
      close(out, expected, 1e-6);
      // gradients with head size 4 and a different padding per row
      checkGradients((a, b, c) => tf.mul(attention(a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D, causalBias([1, 1, 1, 1, 1, 0], 2, 3, 3)), randn([4, 3, 4], 9)),
        [randn([4, 3, 4], 1), randn([4, 3, 4], 2), randn([4, 3, 4], 3)], { names: ['q', 'k', 'v'], ...fd });
    });

    it('causalBias: key j is visible to query i when j <= i + offset and j is not padding, per batch row', () => {
      // B=2, Tq=2, Tk=3, offset 1 (one cached position): row 0 unpadded, row 1's last key is padding
      const N = NEG_INF;
      const bias = causalBias([1, 1, 1, 1, 1, 0], 2, 2, 3, 1);
      assert.deepEqual(bias.shape, [2, 1, 2, 3]);
      close(bias.dataSync(), [0, 0, N, 0, 0, 0, 0, 0, N, 0, 0, N], 0);
    });

    it('repeatKv gives query head h the kv head floor(h / n), as transformers repeat_kv, per sample (B=2)', () => {
      const kv = tf.tensor3d([[[1, 1.5]], [[2, 2.5]], [[3, 3.5]], [[4, 4.5]]]); // B=2, Hk=2, T=1, d=2
      close(repeatKv(kv, 2, 2).dataSync(), [1, 1.5, 1, 1.5, 2, 2.5, 2, 2.5, 3, 3.5, 3, 3.5, 4, 4.5, 4, 4.5], 0);
      close(repeatKv(kv, 2, 1).dataSync(), kv.dataSync(), 0);
    });

    it('causal_lm_loss: hand-computed, ignoring -100 and shifting by one', () => {
      // B=1, T=3, V=2. Position 0 predicts label[1] = 1 with logits (0, ln 3): p = 3/4. Label[2] is -100.
      const logits = tf.tensor3d([[[0, Math.log(3)], [5, 5], [1, 2]]]);
      close([causalLmLoss(logits, Int32Array.from([-100, 1, -100])).dataSync()[0]!], [-Math.log(0.75)], 1e-6);
      close([causalLmLoss(logits, Int32Array.from([-100, 1, 0])).dataSync()[0]!], [(-Math.log(0.75) + Math.log(2)) / 2], 1e-6);
      const labels = Int32Array.from([0, 2, 1, -100, 3, 1]);
      checkGradients((l) => causalLmLoss(l!, labels), [randn([2, 3, 4], 5)]);
    });

    it('llava splice: image rows replace the image positions, the rest stay in place', () => {
      // B=2, T=4, N=2: sample 0 has its image at 1..2, sample 1 is text only.
      assert.deepEqual([...spliceIndices([1, -1], 2, 4, 2)], [0, 8, 9, 3, 4, 5, 6, 7]);
      const embeds = tf.tensor3d([[[0], [1], [2], [3]], [[4], [5], [6], [7]]]);
      const feats = tf.tensor3d([[[10], [11]], [[12], [13]]]);
      const ctx = ctxWith(new Map(), { image_tokens: 2 }, undefined, 2, 4);
      ctx.batch.imageStart = [1, -1];
      close(OPS.get('llava_splice')!(ctx, [embeds, feats]).dataSync(), [0, 10, 11, 3, 4, 5, 6, 7], 0);
      checkGradients((e, f) => tf.mul(OPS.get('llava_splice')!(ctx, [e!, f!]), randn([2, 4, 3], 1)), [randn([2, 4, 3], 2), randn([2, 2, 3], 3)]);
    });

    it('MoE router: top-k, renormalised weights and the load-balancing loss by hand', () => {
      assert.deepEqual([...topKIndices(Float32Array.from([0.7, 0.2, 0.1, 0.1, 0.6, 0.3]), 2, 3, 2)], [0, 1, 1, 2]);
      const stats: RouterStats[] = [{ probs: tf.tensor2d([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]), chosen: Float32Array.from([1, 1, 0, 0, 1, 1]), tokenMask: Float32Array.from([1, 1]) }];
      // counts / N = [0.5, 1, 0.5]; mean probs = [0.4, 0.4, 0.2]; E * sum = 3 * 0.7
      close([loadBalancingLoss(stats, 3).dataSync()[0]!], [2.1], 1e-5);
      // a padding token does not count
      const masked: RouterStats[] = [{ ...stats[0]!, tokenMask: Float32Array.from([1, 0]) }];
      close([loadBalancingLoss(masked, 3).dataSync()[0]!], [3 * (1 * 0.7 + 1 * 0.2)], 1e-5);

      // One block, D=2, 2 experts, top-1: the router sends token 0 to expert 0 and token 1 to expert 1;
      // each expert's SwiGLU output (hand-computed below) comes back with weight 1.
      const p = new Map<string, tf.Tensor>([
        ['model.layers.0.block_sparse_moe.gate.weight', tf.tensor2d([[1, 0], [0, 1]])],
        ['model.layers.0.block_sparse_moe.experts.0.w1.weight', tf.tensor2d([[1, 0]])],
        ['model.layers.0.block_sparse_moe.experts.0.w3.weight', tf.tensor2d([[0, 1]])],
        ['model.layers.0.block_sparse_moe.experts.0.w2.weight', tf.tensor2d([[1], [0]])],
        ['model.layers.0.block_sparse_moe.experts.1.w1.weight', tf.tensor2d([[0, 1]])],
        ['model.layers.0.block_sparse_moe.experts.1.w3.weight', tf.tensor2d([[1, 1]])],
        ['model.layers.0.block_sparse_moe.experts.1.w2.weight', tf.tensor2d([[0], [2]])],
      ]);
      const ctx = ctxWith(p, { experts: 2, top_k: 1 }, Int32Array.from([1, 1]), 1, 2);
      const st: RouterStats[] = [];
      const y = moeBlock(ctx, tf.tensor3d([[[2, 1], [0.5, 3]]]), 0, st).dataSync();
      const siluF = (v: number) => v / (1 + Math.exp(-v));
      close(y, [siluF(2) * 1, 0, 0, 2 * siluF(3) * 3.5], 1e-5);
      // top-2 of 2: weights are the softmax itself
      const ctx2 = ctxWith(p, { experts: 2, top_k: 2 }, Int32Array.from([1]), 1, 1);
      const x = [2, 1], sm0 = Math.exp(2) / (Math.exp(2) + Math.exp(1));
      const y2 = moeBlock(ctx2, tf.tensor3d([[x]]), 0, []).dataSync();
      close(y2, [sm0 * siluF(2) * 1, (1 - sm0) * 2 * siluF(1) * 3], 1e-5);
    });

    it('mlp_gelu projector: linear, GELU, linear on a hand-computed case', () => {
      const p = new Map<string, tf.Tensor>([
        ['multi_modal_projector.linear_1.weight', tf.tensor2d([[2]])], ['multi_modal_projector.linear_1.bias', tf.tensor1d([0])],
        ['multi_modal_projector.linear_2.weight', tf.tensor2d([[3]])], ['multi_modal_projector.linear_2.bias', tf.tensor1d([1])],
      ]);
      close(OPS.get('mlp_gelu')!(ctxWith(p, { depth: 2 }), [tf.tensor3d([[[1]]])]).dataSync(), [3 * 1.9544997 + 1], 1e-5);
    });

    it('cnn: a 3x3 cross-correlation as PyTorch\'s Conv2d (padding 1), bias, ReLU, 2x2 max-pool, pooled token then the grid row-major', () => {
      // Pixels 1..16 (one channel, 4x4, row-major); the kernel's only 1 is at (ky, kx) = (0, 0), so
      // y[r][c] = x[r-1][c-1] (0 in the padding); bias -2; ReLU; the 2x2 windows' maxima: 0, 1, 7, 9.
      const w = new Float32Array(9);
      w[0] = 1;
      const p = new Map<string, tf.Tensor>([['convs.0.weight', tf.tensor4d(w, [1, 1, 3, 3])], ['convs.0.bias', tf.tensor1d([-2])]]);
      const pixels = tf.tensor4d(Array.from({ length: 16 }, (_, i) => i + 1), [1, 1, 4, 4]);
      const y = OPS.get('cnn')!(ctxWith(p, { layers: 1, select: 'pooled_grid' }), [pixels]);
      assert.deepEqual(y.shape, [1, 5, 1]);
      close(y.dataSync(), [9, 0, 1, 7, 9], 1e-6);
      close(OPS.get('cnn')!(ctxWith(p, { layers: 1, select: 'grid' }), [pixels]).dataSync(), [0, 1, 7, 9], 1e-6);
    });

    // Whole components: finite-difference gradients with respect to the input and to every parameter
    // (attention, MLP, norms, embeddings, router), on tiny random configurations, at every entry.
    const L = (n: string) => `model.layers.0.${n}`;
    const V = (n: string) => `vision_model.encoder.layers.0.${n}`;
    const vitLayer: [string, number[]][] = [
      ...(['layer_norm1', 'layer_norm2'].flatMap((n) => [[V(`${n}.weight`), [4]], [V(`${n}.bias`), [4]]]) as [string, number[]][]),
      ...(['q_proj', 'k_proj', 'v_proj', 'out_proj'].flatMap((n) => [[V(`self_attn.${n}.weight`), [4, 4]], [V(`self_attn.${n}.bias`), [4]]]) as [string, number[]][]),
      [V('mlp.fc1.weight'), [6, 4]], [V('mlp.fc1.bias'), [6]], [V('mlp.fc2.weight'), [4, 6]], [V('mlp.fc2.bias'), [4]],
    ];
    const attn = (kv: number): [string, number[]][] => [[L('self_attn.q_proj.weight'), [4, 4]], [L('self_attn.k_proj.weight'), [kv, 4]], [L('self_attn.v_proj.weight'), [kv, 4]], [L('self_attn.o_proj.weight'), [4, 4]]];
    const experts: [string, number[]][] = [0, 1, 2].flatMap((e) => [[L(`block_sparse_moe.experts.${e}.w1.weight`), [5, 4]], [L(`block_sparse_moe.experts.${e}.w3.weight`), [5, 4]], [L(`block_sparse_moe.experts.${e}.w2.weight`), [4, 5]]] as [string, number[]][]);
    interface ComponentCase { op: string; what: string; attrs: OpContext['attrs']; tensors: [string, number[]][]; input: number[]; T: number; zero?: string[] }
    const components: ComponentCase[] = [
      { op: 'mlp_gelu', what: 'depth 3', attrs: { depth: 3 }, input: [2, 3, 4], T: 3, tensors: [['multi_modal_projector.linear_1.weight', [5, 4]], ['multi_modal_projector.linear_1.bias', [5]], ['multi_modal_projector.linear_2.weight', [5, 5]], ['multi_modal_projector.linear_2.bias', [5]], ['multi_modal_projector.linear_3.weight', [5, 5]], ['multi_modal_projector.linear_3.bias', [5]]] },
      { op: 'vit', what: 'CLIP-style, class token kept (cls_patch)', attrs: { patch: 2, hidden: 4, layers: 1, heads: 2, select_layer: -1, select: 'cls_patch', cls: true, norm_eps: 1e-5 }, input: [2, 3, 4, 4], T: 1,
        // adding a constant to every key leaves the softmax unchanged: the key bias has no gradient
        zero: [V('self_attn.k_proj.bias')],
        tensors: [['vision_model.embeddings.class_embedding', [4]], ['vision_model.embeddings.patch_embedding.weight', [4, 3, 2, 2]], ['vision_model.embeddings.position_embedding.weight', [5, 4]],
          ['vision_model.pre_layrnorm.weight', [4]], ['vision_model.pre_layrnorm.bias', [4]], ...vitLayer] },
      { op: 'siglip_vit', what: 'no class token, patch bias, gelu tanh', attrs: { patch: 2, hidden: 4, layers: 1, heads: 2, select_layer: -1, select: 'patch', norm_eps: 1e-6 }, input: [2, 3, 4, 4], T: 1,
        zero: [V('self_attn.k_proj.bias')],
        tensors: [['vision_model.embeddings.patch_embedding.weight', [4, 3, 2, 2]], ['vision_model.embeddings.patch_embedding.bias', [4]], ['vision_model.embeddings.position_embedding.weight', [4, 4]], ...vitLayer] },
      // 8x8 pixels, three blocks (3 -> 4 -> 4 channels): a 1x1 grid and the pooled token
      { op: 'cnn', what: 'three conv-ReLU-maxpool blocks, pooled token and grid', attrs: { layers: 3, select: 'pooled_grid' }, input: [2, 3, 8, 8], T: 1,
        tensors: [['convs.0.weight', [3, 3, 3, 3]], ['convs.0.bias', [3]], ['convs.1.weight', [4, 3, 3, 3]], ['convs.1.bias', [4]], ['convs.2.weight', [4, 4, 3, 3]], ['convs.2.bias', [4]]] },
      { op: 'llama', what: 'GQA (2 heads, 1 kv head), padding', attrs: { hidden: 4, layers: 1, heads: 2, kv_heads: 1, rope_theta: 10000, norm_eps: 1e-5, tie_embeddings: false }, input: [2, 3, 4], T: 3, tensors: [
        [L('input_layernorm.weight'), [4]], [L('post_attention_layernorm.weight'), [4]], ...attn(2), [L('mlp.gate_proj.weight'), [6, 4]], [L('mlp.up_proj.weight'), [6, 4]], [L('mlp.down_proj.weight'), [4, 6]],
        ['model.norm.weight', [4]], ['lm_head.weight', [5, 4]]] },
      { op: 'mixtral', what: 'top-2 of 3 experts, padding, with its auxiliary loss', attrs: { hidden: 4, layers: 1, heads: 2, kv_heads: 2, experts: 3, top_k: 2, aux_loss_coef: 0.1, rope_theta: 10000, norm_eps: 1e-5 }, input: [2, 3, 4], T: 3, tensors: [
        [L('input_layernorm.weight'), [4]], [L('post_attention_layernorm.weight'), [4]], ...attn(4), [L('block_sparse_moe.gate.weight'), [3, 4]], ...experts, ['model.norm.weight', [4]], ['lm_head.weight', [5, 4]]] },
    ];
    /** The component's output times fixed random weights (flattened), then its auxiliary losses. */
    const componentOutput = (c: ComponentCase, names: string[], part: 'all' | 'aux') => (...xs: tf.Tensor[]): tf.Tensor => {
      const B = c.input[0]!;
      // the batch's last token is padding: masked in attention, excluded from the auxiliary loss
      const ctx = ctxWith(new Map(names.map((n, i) => [n, xs[i + 1]!])), c.attrs, Int32Array.from({ length: B * c.T }, (_, i) => (i === B * c.T - 1 ? 0 : 1)), B, c.T);
      const y = OPS.get(c.op)!(ctx, [xs[0]!]);
      const aux = ctx.auxLosses.map((a) => tf.reshape(a, [1]));
      if (part === 'aux') return tf.concat(aux);
      return tf.concat([tf.reshape(tf.mul(y, randn(y.shape, 99)), [-1]), ...aux]);
    };
    const componentInputs = (c: ComponentCase) => {
      const names = c.tensors.map(([n]) => n);
      const values = c.tensors.map(([n, shape], i) => (/norm.*weight$/.test(n) ? tf.add(1, tf.mul(0.1, randn(shape, 50 + i))) : randn(shape, 50 + i, 0.5)));
      return { names, values, x: randn(c.input, 7) };
    };
    for (const c of components)
      it(`${c.op} (${c.what}): gradients of the output match finite differences`, () => {
        const { names, values, x } = componentInputs(c);
        const f = componentOutput(c, names, 'all');
        // the vision encoders read pixels outside the gradient (patchify in JS; cnn skips the pixels'
        // gradient): parameters only there.
        // cnn is piecewise linear: a smaller step crosses fewer ReLU / max-pool kinks (exact between them)
        if (c.op === 'cnn') checkGradients((...ps) => f(x, ...ps), values, { names, ...fd, eps: 1e-3 });
        else if (c.op.endsWith('vit')) checkGradients((...ps) => f(x, ...ps), values, { names, zero: c.zero, ...fd });
        else checkGradients(f, [x, ...values], { names: ['x', ...names], zero: c.zero, ...fd });
      });

    it('mixtral: the auxiliary (load-balancing) loss alone matches finite differences; the experts and the head do not reach it', () => {
      // Checked as its own scalar: next to the output its gradient is small (~1e-2), where any error
      // in it would hide under the output's.
      const c = components.find((k) => k.op === 'mixtral')!;
      const { names, values, x } = componentInputs(c);
      const zero = [...experts.map(([n]) => n), 'model.norm.weight', 'lm_head.weight'];
      const r = checkGradients(componentOutput(c, names, 'aux'), [x, ...values], { names: ['x', ...names], zero, ...fd });
      assert.ok(r.entries > 40, `only ${r.entries} entries were compared`);
    });
  });
}
