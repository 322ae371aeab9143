// Records one eager training step as the list of kernels it ran, for backends without a graph runtime
// (wasm). An eager step pays tfjs's engine for every one of its ~2,600 kernels: the gradient tape, scope
// bookkeeping, a Tensor object per output, gradient functions building ops in JavaScript. The kernels
// are most of a step but not all of it: tiny-llava's eager wasm step took 101 ms in-process, its replay
// 63 ms. A replay (kernel-replay.ts) calls the same kernels with the same attributes straight on the
// backend.
//
// While the step runs, every kernel the engine invokes is recorded with its inputs, as values of the
// trace:
//   - a kernel's output is a value; kernels a kernel calls inside itself are part of it, not recorded;
//   - a tensor made from JavaScript values is a constant, unless a batch feed made it (then an input
//     made again from each batch, feed-trace.ts);
//   - a parameter or optimizer slot that existed before the step is an input fed its value;
//   - any other tensor made before the step (a cached table) is captured as a constant;
//   - reading a tensor back to JavaScript outside a kernel refuses the trace.
import * as tf from '@tensorflow/tfjs-core';
import { FeedTrace, type InputRecipe } from './feed-trace.js';

/** The parts of a tfjs backend (wasm's; cpu's has them too) a kernel trace and its replay use. */
export interface KernelBackend {
  write(values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType): object;
  readSync(dataId: object): tf.backend_util.BackendValues;
  read(dataId: object): Promise<tf.backend_util.BackendValues>;
  disposeData(dataId: object, force?: boolean): boolean;
  incRef(dataId: object): void;
}

export type ValueSource = { kind: 'input'; input: number } | { kind: 'const'; data: Float32Array | Int32Array | Uint8Array; shape: number[]; dtype: tf.DataType } | { kind: 'out' };

export interface KernelCall {
  kernel: string;
  run: tf.KernelFunc;
  /** Input names of the kernel and the values fed to them. */
  inputs: [string, number][];
  attrs: tf.NamedAttrMap;
  /** The kernel takes its inputs as a list (Concat, AddN, Pack), not by name. */
  list: boolean;
  /** The values it makes, with the shapes and dtypes the trace saw. */
  outs: { value: number; shape: number[]; dtype: tf.DataType }[];
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

export class KernelTrace extends FeedTrace<tf.DataType> {
  readonly calls: KernelCall[] = [];
  readonly sources: ValueSource[] = [];
  /** Per value: its dtype and shape. */
  readonly dtypes: tf.DataType[] = [];
  readonly shapes: number[][] = [];
  /** The values the step ends with (finish). */
  outputs: number[] = [];
  /** Backend data id -> the values that hold it (a reshape shares its input's data). */
  private readonly live = new Map<object, number[]>();
  private readonly state = new Map<object, { key: string; shape: number[]; dtype: tf.DataType }>();
  private readonly used = new Set<number>();
  private readonly madeHere = new Set<number>();
  private depth = 0;
  /** The backend's own readSync while `record` wraps it (the trace itself reads what it captures). */
  private readRaw: KernelBackend['readSync'];

  /** `state`: the step's parameters and optimizer slots by key, fed their value at every step. */
  constructor(readonly backendName: string, private readonly backend: KernelBackend, state: ReadonlyMap<string, tf.Tensor>) {
    super();
    this.readRaw = backend.readSync;
    for (const [key, t] of state) if (!this.state.has(t.dataId)) this.state.set(t.dataId, { key, shape: t.shape, dtype: t.dtype });
  }

  /** Runs `step` eagerly with the backend's kernels wrapped; the kernels it ran are in `calls` afterwards. */
  record<T>(step: () => T): T {
    const kernels = tf.getKernelsForBackend(this.backendName);
    const originals = kernels.map((k) => k.kernelFunc);
    kernels.forEach((k, i) => {
      const run = originals[i]!;
      k.kernelFunc = (args) => this.kernel(k.kernelName, run, args);
    });
    const b = this.backend;
    const raw = { write: b.write, readSync: b.readSync, read: b.read };
    this.readRaw = raw.readSync;
    const own = (['write', 'readSync', 'read'] as const).map((m) => [m, Object.getOwnPropertyDescriptor(b, m)] as const);
    b.write = (values, shape, dtype) => {
      const id = raw.write.call(b, values, shape, dtype);
      if (this.depth === 0) this.capture(id, shape, dtype);
      return id;
    };
    b.readSync = (id) => {
      if (this.depth === 0) this.refuse('the step reads a tensor back to JavaScript');
      return raw.readSync.call(b, id);
    };
    b.read = (id) => {
      if (this.depth === 0) this.refuse('the step reads a tensor back to JavaScript');
      return raw.read.call(b, id);
    };
    try {
      return step();
    } finally {
      kernels.forEach((k, i) => (k.kernelFunc = originals[i]!));
      // put back what the backend had: its own properties, or none (its prototype's methods show again)
      for (const [m, d] of own) {
        if (d) Object.defineProperty(b, m, d);
        else delete (b as Partial<KernelBackend>)[m];
      }
    }
  }

  /** The values the step ends with: parameters and slots after the update, losses, the norm. */
  finish(finals: readonly tf.Tensor[]): void {
    this.outputs = finals.map((t) => this.valueIn(t));
  }

  /**
   * What two traces of the same program share byte for byte: kernels, attributes, wiring, shapes, inputs
   * and constants. A step whose signature differs from its shape's first depends on batch data.
   */
  signature(): Uint8Array {
    const text = JSON.stringify({
      calls: this.calls.map((c) => [c.kernel, c.inputs, c.attrs, c.list, c.outs]),
      sources: this.sources.map((s) => (s.kind === 'const' ? [s.kind, s.shape, s.dtype] : s)),
      inputs: this.inputs.map((i) => [i.name, i.dtype, i.shape, i.recipe.kind, i.recipe.key, i.recipe.kind === 'feed' ? [i.recipe.micro, i.recipe.source] : 0]),
      outputs: this.outputs,
    });
    const consts = this.sources.flatMap((s) => (s.kind === 'const' ? [Buffer.from(s.data.buffer, s.data.byteOffset, s.data.byteLength)] : []));
    return Buffer.concat([Buffer.from(text), ...consts]);
  }

  protected placeFeed(t: tf.Tensor, recipe: InputRecipe & { kind: 'feed' }): boolean {
    const v = this.find(t);
    if (v === undefined || !this.madeHere.has(v) || this.used.has(v) || this.sources[v]!.kind !== 'const') return false;
    this.sources[v] = { kind: 'input', input: this.inputs.length };
    this.inputs.push({ name: `in${this.inputs.length}`, dtype: t.dtype, shape: [...t.shape], recipe });
    return true;
  }

  private kernel(name: string, run: tf.KernelFunc, args: Parameters<tf.KernelFunc>[0]): ReturnType<tf.KernelFunc> {
    if (this.depth > 0) return run(args);
    const inputs = Object.entries(args.inputs).map(([n, info]): [string, number] => [n, this.valueIn(info as tf.TensorInfo)]);
    this.depth++;
    let out;
    try {
      out = run(args);
    } finally {
      this.depth--;
    }
    const outs = (Array.isArray(out) ? out : [out]).map((info) => {
      const value = this.add({ kind: 'out' }, info.dataId, info.shape, info.dtype);
      return { value, shape: [...info.shape], dtype: info.dtype };
    });
    for (const [, v] of inputs) this.used.add(v);
    this.calls.push({ kernel: name, run, inputs, attrs: args.attrs ?? {}, list: Array.isArray(args.inputs), outs });
    return out;
  }

  private add(source: ValueSource, dataId: object, shape: readonly number[], dtype: tf.DataType): number {
    const value = this.sources.push(source) - 1;
    this.dtypes.push(dtype);
    this.shapes.push([...shape]);
    const at = this.live.get(dataId);
    if (at) at.push(value);
    else this.live.set(dataId, [value]);
    return value;
  }

  /** A tensor made from JavaScript values during the step: a constant, or a feed once placeFeed says so. */
  private capture(dataId: object, shape: number[], dtype: tf.DataType): void {
    if (dtype !== 'float32' && dtype !== 'int32' && dtype !== 'bool') {
      this.refuse(`a ${dtype} tensor made from JavaScript values cannot be replayed`);
      return;
    }
    this.madeHere.add(this.constant(dataId, shape, dtype));
  }

  /** A value holding a copy of the data as it is now. */
  private constant(dataId: object, shape: readonly number[], dtype: tf.DataType): number {
    const data = this.readRaw.call(this.backend, dataId) as Float32Array | Int32Array | Uint8Array;
    return this.add({ kind: 'const', data: data.slice(), shape: [...shape], dtype }, dataId, shape, dtype);
  }

  private find(t: tf.TensorInfo): number | undefined {
    return this.live.get(t.dataId)?.find((v) => this.dtypes[v] === t.dtype && sameShape(this.shapes[v]!, t.shape));
  }

  /** The value a kernel input or final tensor holds: made in the step, a parameter, or a captured constant. */
  private valueIn(t: tf.TensorInfo): number {
    const seen = this.find(t);
    if (seen !== undefined) return seen;
    if (this.live.has(t.dataId)) this.refuse(`a tensor of shape [${t.shape.join(', ')}] reads another's data in a shape no kernel gave it`);
    const state = this.state.get(t.dataId);
    if (state && state.dtype === t.dtype && sameShape(state.shape, t.shape)) {
      const input = this.inputs.push({ name: `in${this.inputs.length}`, dtype: t.dtype, shape: [...t.shape], recipe: { kind: 'state', key: state.key } }) - 1;
      return this.add({ kind: 'input', input }, t.dataId, t.shape, t.dtype);
    }
    // made before the step and not a parameter (a cached table): its value now is part of the program
    return this.constant(t.dataId, t.shape, t.dtype);
  }
}
