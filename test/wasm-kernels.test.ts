// pipec's own WebAssembly kernels (runtime/backend/wasm-asm.ts writes them, wasm-matmul.ts holds the
// matmuls), run on a memory of the test's own: the module validates against both kinds of heap tfjs-wasm
// has (the threaded build's shared memory, the single-threaded build's plain one), and the kernels
// compute what an index loop computes in float64, at addresses that are only 4-byte aligned.
import { strict as assert } from 'node:assert';
import { FunctionBuilder, moduleBytes } from '../runtime/backend/wasm-asm.js';
import { instantiateMatmul } from '../runtime/backend/wasm-matmul.js';
import { Rng } from '../runtime/random.js';

describe('wasm kernels of pipec\'s own (SIMD batched matmul)', () => {
  it('the assembler writes modules that validate, with i32 constants encoded as signed LEB128', () => {
    // a function that stores each constant at address + 4 i
    const values = [0, 1, 63, 64, -1, -64, -65, 300, 1 << 20, -(2 ** 31), 2 ** 31 - 1];
    const f = new FunctionBuilder(1);
    const at = f.param(0);
    values.forEach((n, i) => f.get(at).const(n).i32Store(4 * i));
    for (const shared of [false, true]) assert.ok(WebAssembly.validate(moduleBytes({ f }, shared)), `shared memory ${shared}`);
    const memory = new WebAssembly.Memory({ initial: 1 });
    const m = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes({ f }, false)), { env: { memory } }).exports as { f(at: number): void };
    m.f(8);
    assert.deepEqual([...new Int32Array(memory.buffer, 8, values.length)], values);
  });

  for (const shared of [false, true]) {
    it(`mm_nn and mm_nt equal an index loop (every tail of their loops; ${shared ? 'shared' : 'plain'} memory)`, () => {
      const memory = new WebAssembly.Memory({ initial: 64, maximum: 65536, shared } as WebAssembly.MemoryDescriptor);
      const k = instantiateMatmul(memory);
      assert.ok(k, 'this Node runs wasm SIMD');
      const heap = new Float32Array(memory.buffer);
      const rng = new Rng(3);
      for (const [G, M, K, N] of [[2, 5, 7, 9], [3, 23, 32, 23], [1, 4, 16, 33], [2, 17, 3, 16], [1, 1, 1, 1], [2, 3, 0, 4]]) {
        for (const [ta, tb] of [[false, false], [true, false], [false, true]] as const) {
          // addresses 4 bytes past a 16-byte boundary: v128 loads must not need alignment
          const a = 4, b = a + 4 * (G * M * K + 1), c = b + 4 * (G * K * N + 1);
          for (let i = 0; i < G * M * K; i++) heap[a / 4 + i] = rng.normal();
          for (let i = 0; i < G * K * N; i++) heap[b / 4 + i] = rng.normal();
          if (tb) k.mm_nt(a, b, c, G, M, N, K);
          else k.mm_nn(a, b, c, G, M, N, K, M * K * 4, ta ? 4 : K * 4, ta ? M * 4 : 4, K * N * 4);
          for (let g = 0; g < G; g++)
            for (let i = 0; i < M; i++)
              for (let j = 0; j < N; j++) {
                let want = 0;
                for (let q = 0; q < K; q++) want += heap[a / 4 + g * M * K + (ta ? q * M + i : i * K + q)]! * heap[b / 4 + g * K * N + (tb ? j * K + q : q * N + j)]!;
                const got = heap[c / 4 + (g * M + i) * N + j]!;
                assert.ok(Math.abs(got - want) <= 1e-5 * Math.max(1, Math.abs(want)), `[${G}, ${M}, ${K}, ${N}] ${ta} ${tb} at ${g},${i},${j}: ${got} vs ${want}`);
              }
        }
      }
    });
  }
});
