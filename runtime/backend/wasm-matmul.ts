// Batched matmul on wasm with SIMD. tfjs-backend-wasm 4.22 sends a BatchMatMul to XNNPACK only when it
// is one 2-D product with neither operand transposed; every other form (attention's 64 heads x 23x32,
// its gradients with transposed operands) runs a scalar C++ loop at ~1 GFLOP/s, ~15 ms of tiny-llava's
// wasm step. These two kernels read and write tfjs's heap in place (the module imports its memory),
// four lanes at a time:
//   mm_nn: C[g] = op(A[g]) @ B[g], A in either layout (its strides are arguments), B [K, N] row-major:
//          each row of C is sum_k A[i,k] * B[k,:], accumulated 16 columns at a time in four registers;
//   mm_nt: C[g] = A[g] @ B[g]^T, A [M, K] and B [N, K] row-major: each C[i,j] a 4-lane dot product.
// The sums run in another order than tfjs's loop, so results agree to float rounding (~1e-7 relative),
// not bit for bit (test/wasm-kernels.test.ts, test/runtime-ops.test.ts). Forms left to tfjs: 2-D products without transposes
// (XNNPACK), both operands transposed, broadcast batches, other dtypes.
import * as tf from '@tensorflow/tfjs-core';
import { replaceKernel } from './replace-kernel.js';
import { FunctionBuilder, moduleBytes } from './wasm-asm.js';

interface WasmHeapBackend {
  wasm: { wasmMemory?: WebAssembly.Memory; asm?: { memory?: WebAssembly.Memory }; HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

interface Kernels {
  mm_nn(a: number, b: number, c: number, G: number, M: number, N: number, K: number, sag: number, sai: number, sak: number, sbg: number): void;
  mm_nt(a: number, b: number, c: number, G: number, M: number, N: number, K: number): void;
}

/** mm_nn(a, b, c, G, M, N, K, sag, sai, sak, sbg): addresses and strides in bytes. */
function mmNN(): FunctionBuilder {
  const f = new FunctionBuilder(11);
  const [a, b, c, G, M, N, K, sag, sai, sak, sbg] = Array.from({ length: 11 }, (_, i) => f.param(i));
  const [g, i, j, k, pa, pbg, ak, bk, pc, row] = [f.i32(), f.i32(), f.i32(), f.i32(), f.i32(), f.i32(), f.i32(), f.i32(), f.i32(), f.i32()];
  const acc = [f.v128(), f.v128(), f.v128(), f.v128()];
  const s = f.v128(), sum = f.f32();
  /** C[i, j .. j + 4 * lanes) += A[i, k] * B[k, j ..] over k, then stored; j advances. */
  const columns = (vectors: number) =>
    f.while(
      () => f.get(j).const(4 * vectors).add().get(N).le(),
      () => {
        for (let v = 0; v < vectors; v++) f.v128Zero().set(acc[v]!);
        f.get(pa).set(ak);
        f.get(j).const(4).mul().get(pbg).add().set(bk);
        f.for(k, K, () => {
          f.get(ak).f32Load().f32x4Splat().set(s);
          for (let v = 0; v < vectors; v++) f.get(acc[v]!).get(s).get(bk).v128Load(16 * v).f32x4Mul().f32x4Add().set(acc[v]!);
          f.addTo(ak, sak).addTo(bk, row);
        });
        for (let v = 0; v < vectors; v++) f.get(j).const(4).mul().get(pc).add().get(acc[v]!).v128Store(16 * v);
        f.inc(j, 4 * vectors);
      },
    );
  f.get(N).const(4).mul().set(row);
  f.get(c).set(pc);
  f.for(g, G, () => {
    f.get(g).get(sbg).mul().get(b).add().set(pbg);
    f.for(i, M, () => {
      f.get(g).get(sag).mul().get(a).add().get(i).get(sai).mul().add().set(pa);
      f.const(0).set(j);
      columns(4);
      columns(1);
      f.while(
        () => f.get(j).get(N).lt(),
        () => {
          f.f32Zero().set(sum);
          f.get(pa).set(ak);
          f.get(j).const(4).mul().get(pbg).add().set(bk);
          f.for(k, K, () => {
            f.get(sum).get(ak).f32Load().get(bk).f32Load().f32Mul().f32Add().set(sum);
            f.addTo(ak, sak).addTo(bk, row);
          });
          f.get(j).const(4).mul().get(pc).add().get(sum).f32Store();
          f.inc(j, 1);
        },
      );
      f.addTo(pc, row);
    });
  });
  return f;
}

/** mm_nt(a, b, c, G, M, N, K): A [G, M, K], B [G, N, K], C [G, M, N], all contiguous. */
function mmNT(): FunctionBuilder {
  const f = new FunctionBuilder(7);
  const [a, b, c, G, M, N, K] = Array.from({ length: 7 }, (_, i) => f.param(i));
  const [g, i, j, k, pa, pb, ak, bk, pc, row] = [f.i32(), f.i32(), f.i32(), f.i32(), f.i32(), f.i32(), f.i32(), f.i32(), f.i32(), f.i32()];
  const acc = f.v128(), sum = f.f32();
  f.get(K).const(4).mul().set(row);
  f.get(a).set(pa);
  f.get(c).set(pc);
  f.for(g, G, () => {
    f.for(i, M, () => {
      f.get(g).get(N).mul().get(row).mul().get(b).add().set(pb);
      f.for(j, N, () => {
        f.v128Zero().set(acc);
        f.get(pa).set(ak).get(pb).set(bk).const(0).set(k);
        f.while(
          () => f.get(k).const(4).add().get(K).le(),
          () => {
            f.get(acc).get(ak).v128Load().get(bk).v128Load().f32x4Mul().f32x4Add().set(acc);
            f.inc(ak, 16).inc(bk, 16).inc(k, 4);
          },
        );
        f.get(acc).f32x4Lane(0).get(acc).f32x4Lane(1).f32Add().get(acc).f32x4Lane(2).f32Add().get(acc).f32x4Lane(3).f32Add().set(sum);
        f.while(
          () => f.get(k).get(K).lt(),
          () => {
            f.get(sum).get(ak).f32Load().get(bk).f32Load().f32Mul().f32Add().set(sum);
            f.inc(ak, 4).inc(bk, 4).inc(k, 1);
          },
        );
        f.get(pc).get(sum).f32Store();
        f.inc(pc, 4).addTo(pb, row);
      });
      f.addTo(pa, row);
    });
  });
  return f;
}

/** The kernels instantiated on `memory` (tfjs's heap); undefined where this Node has no wasm SIMD. */
export function instantiateMatmul(memory: WebAssembly.Memory): Kernels | undefined {
  const bytes = moduleBytes({ mm_nn: mmNN(), mm_nt: mmNT() }, memory.buffer instanceof SharedArrayBuffer);
  if (!WebAssembly.validate(bytes)) return undefined;
  return new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports as unknown as Kernels;
}

const kernelsOf = new WeakMap<object, Kernels | null>();

/** Replaces wasm's BatchMatMul with one that runs the forms above through the SIMD kernels. */
export function registerWasmMatmul(): void {
  replaceKernel('BatchMatMul', 'wasm', (stock) => (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const backend = args.backend as unknown as WasmHeapBackend;
    let kernels = kernelsOf.get(backend);
    if (kernels === undefined) {
      // the threaded build keeps its (shared) heap in wasmMemory, the single-threaded one exports it
      const memory = backend.wasm.wasmMemory ?? backend.wasm.asm?.memory;
      kernels = (memory?.buffer === backend.wasm.HEAPU8.buffer && instantiateMatmul(memory)) || null;
      kernelsOf.set(backend, kernels);
    }
    const ra = a.shape.length, rb = b.shape.length;
    const outer = a.shape.slice(0, -2);
    const G = outer.reduce((x, y) => x * y, 1);
    const sameBatch = ra === rb && outer.every((d, i) => d === b.shape[i]);
    if (!kernels || a.dtype !== 'float32' || b.dtype !== 'float32' || !sameBatch || (transposeA && transposeB) || (G === 1 && !transposeA && !transposeB))
      return stock.kernelFunc(args);
    const M = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
    const K = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
    const N = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
    if ((transposeB ? b.shape[rb - 1] : b.shape[rb - 2]) !== K) return stock.kernelFunc(args); // it throws tfjs's own error
    const out = backend.makeOutput([...outer, M, N], 'float32');
    const at = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId).memoryOffset;
    if (transposeB) kernels.mm_nt(at(a), at(b), at(out), G, M, N, K);
    else kernels.mm_nn(at(a), at(b), at(out), G, M, N, K, M * K * 4, transposeA ? 4 : K * 4, transposeA ? M * 4 : 4, K * N * 4);
    return out;
  });
}
