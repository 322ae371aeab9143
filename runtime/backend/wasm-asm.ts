// A WebAssembly assembler just large enough for pipec's own wasm kernels (wasm-matmul.ts): functions of
// i32 parameters with i32/f32/v128 locals, structured loops, i32 arithmetic, f32 and SIMD loads, stores
// and arithmetic, and one imported memory (tfjs-backend-wasm's heap, so a kernel reads tensors in
// place). Writing the module's bytes here keeps the kernels reviewable as code and needs no toolchain.
// Opcodes and encodings: the WebAssembly core specification 2.0, binary format (SIMD: 0xfd prefix).

const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) return (out.push(byte), out);
    out.push(byte | 0x80);
  }
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const bytesOf = (s: string): number[] => vec([...Buffer.from(s, 'utf8')].map((b) => [b]));
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

/** A local variable (parameters first, then declared locals). */
export type Local = number & { readonly local: unique symbol };

/** One function's body, written as a stack machine with structured control flow. */
export class FunctionBuilder {
  readonly code: number[] = [];
  private readonly locals: number[] = [];

  constructor(readonly params: number) {}

  param(i: number): Local {
    return i as Local;
  }

  i32(): Local {
    return this.local(I32);
  }

  f32(): Local {
    return this.local(F32);
  }

  v128(): Local {
    return this.local(V128);
  }

  get(l: Local): this {
    return this.op(0x20, ...uleb(l));
  }

  set(l: Local): this {
    return this.op(0x21, ...uleb(l));
  }

  const(n: number): this {
    return this.op(0x41, ...sleb(n | 0));
  }

  add(): this {
    return this.op(0x6a);
  }

  mul(): this {
    return this.op(0x6c);
  }

  /** a < b, signed. */
  lt(): this {
    return this.op(0x48);
  }

  /** a <= b, signed. */
  le(): this {
    return this.op(0x4c);
  }

  /** l += n. */
  inc(l: Local, n: number): this {
    return this.get(l).const(n).add().set(l);
  }

  /** l += other. */
  addTo(l: Local, other: Local): this {
    return this.get(l).get(other).add().set(l);
  }

  /** i32.store: [address, value] -> []. */
  i32Store(offset = 0): this {
    return this.op(0x36, 2, ...uleb(offset));
  }

  f32Load(): this {
    return this.op(0x2a, 2, 0);
  }

  f32Store(): this {
    return this.op(0x38, 2, 0);
  }

  f32Add(): this {
    return this.op(0x92);
  }

  f32Mul(): this {
    return this.op(0x94);
  }

  f32Zero(): this {
    return this.op(0x43, 0, 0, 0, 0);
  }

  /** v128.load at address + offset bytes (the address need only be 4-byte aligned). */
  v128Load(offset = 0): this {
    return this.simd(0x00, 2, ...uleb(offset));
  }

  v128Store(offset = 0): this {
    return this.simd(0x0b, 2, ...uleb(offset));
  }

  v128Zero(): this {
    return this.simd(0x0c, ...new Array<number>(16).fill(0));
  }

  f32x4Splat(): this {
    return this.simd(0x13);
  }

  f32x4Lane(lane: number): this {
    return this.simd(0x1f, lane);
  }

  f32x4Add(): this {
    return this.simd(0xe4);
  }

  f32x4Mul(): this {
    return this.simd(0xe6);
  }

  /** while (cond()) body(): `cond` leaves an i32 on the stack. */
  while(cond: () => void, body: () => void): this {
    this.op(0x02, 0x40).op(0x03, 0x40); // block, loop
    cond();
    this.op(0x45).op(0x0d, 1); // i32.eqz; br_if 1 (leave the block)
    body();
    return this.op(0x0c, 0).op(0x0b).op(0x0b); // br 0 (loop again); end loop; end block
  }

  /** for (l = 0; l < limit; l++) body(). */
  for(l: Local, limit: Local, body: () => void): this {
    this.const(0).set(l);
    return this.while(() => this.get(l).get(limit).lt(), () => (body(), this.inc(l, 1)));
  }

  body(): number[] {
    const groups: number[][] = this.locals.map((t) => [1, t]);
    return [...vec(groups), ...this.code, 0x0b];
  }

  private local(type: number): Local {
    this.locals.push(type);
    return (this.params + this.locals.length - 1) as Local;
  }

  private op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }

  private simd(op: number, ...rest: number[]): this {
    return this.op(0xfd, ...uleb(op), ...rest);
  }
}

/**
 * A module importing `env.memory` (shared or not, as the heap it will read) and exporting `functions`,
 * each taking i32 parameters and returning nothing.
 */
export function moduleBytes(functions: Record<string, FunctionBuilder>, sharedMemory: boolean): Uint8Array<ArrayBuffer> {
  const entries = Object.entries(functions);
  const types = entries.map(([, f]) => [0x60, ...vec(new Array<number[]>(f.params).fill([I32])), 0]);
  const limits = sharedMemory ? [0x03, ...uleb(1), ...uleb(65536)] : [0x00, ...uleb(1)];
  const imports = vec([[...bytesOf('env'), ...bytesOf('memory'), 0x02, ...limits]]);
  const funcs = vec(entries.map((_, i) => uleb(i)));
  const exports = vec(entries.map(([name], i) => [...bytesOf(name), 0x00, ...uleb(i)]));
  const code = vec(entries.map(([, f]) => {
    const body = f.body();
    return [...uleb(body.length), ...body];
  }));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...section(1, vec(types)), ...section(2, imports), ...section(3, funcs), ...section(7, exports), ...section(10, code)]);
}
