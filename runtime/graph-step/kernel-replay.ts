// A traced step (kernel-trace.ts) run again: its kernels called in order straight on the backend, each
// with the attributes it had, fed this step's parameters, slots and batch feeds. No engine, no tape,
// no Tensor objects in between: a value's data is freed right after the last kernel that reads it, and
// only the step's results become tensors again. Identity copies nothing here: values are never
// written in place, so its output shares its input's data.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelBackend, KernelCall, KernelTrace } from './kernel-trace.js';

/** A replayed kernel made a tensor of another shape than the trace's: this batch needs another trace. */
export class ReplayMismatch extends Error {}

interface Planned {
  call: KernelCall;
  /** The argument object the kernel is called with; its inputs are rebound before each call. */
  args: { inputs: Record<string, tf.TensorInfo>; backend: tf.KernelBackend; attrs: tf.NamedAttrMap };
  /** Shares its input's data instead of running (Identity, a Cast to the same dtype). */
  alias: boolean;
  /** Values no later kernel reads, freed after this one. */
  frees: number[];
}

export class KernelReplay {
  private readonly plan: Planned[];
  /** Per value: its constant's data on the backend (made once, freed by dispose). */
  private readonly consts: (tf.TensorInfo | undefined)[];
  private readonly inputOf: (number | undefined)[];
  private readonly outputs: number[];
  private readonly isOut: boolean[];

  constructor(private readonly backend: KernelBackend, trace: KernelTrace) {
    const n = trace.sources.length;
    this.outputs = [...trace.outputs];
    this.isOut = trace.sources.map((s) => s.kind === 'out');
    this.inputOf = trace.sources.map((s) => (s.kind === 'input' ? s.input : undefined));
    this.consts = trace.sources.map((s) => (s.kind === 'const' ? { dataId: backend.write(s.data.slice(), s.shape, s.dtype), shape: s.shape, dtype: s.dtype } : undefined));
    const last = new Array<number>(n).fill(-1);
    trace.calls.forEach((c, i) => {
      for (const [, v] of c.inputs) last[v] = i;
      for (const o of c.outs) last[o.value] = Math.max(last[o.value]!, i); // unread: freed where made
    });
    for (const v of this.outputs) last[v] = Infinity;
    const frees: number[][] = trace.calls.map(() => []);
    last.forEach((at, v) => {
      if (this.isOut[v] && Number.isFinite(at)) frees[at]!.push(v);
    });
    const kernelBackend = backend as unknown as tf.KernelBackend;
    this.plan = trace.calls.map((call, i) => {
      const one = call.inputs.length === 1 && call.outs.length === 1;
      const alias = one && (call.kernel === 'Identity' || call.kernel === 'Cast') && trace.dtypes[call.inputs[0]![1]] === call.outs[0]!.dtype;
      return { call, args: { inputs: call.list ? ([] as unknown as Record<string, tf.TensorInfo>) : {}, backend: kernelBackend, attrs: call.attrs }, alias, frees: frees[i]! };
    });
  }

  get kernels(): number {
    return this.plan.length;
  }

  /** Runs the step on `fed` (the trace's inputs, in order); returns its outputs as tensors the caller owns. */
  run(fed: readonly tf.Tensor[]): tf.Tensor[] {
    const b = this.backend;
    const vals: (tf.TensorInfo | undefined)[] = this.consts.slice();
    this.inputOf.forEach((k, v) => {
      if (k !== undefined) vals[v] = fed[k]!;
    });
    try {
      for (const p of this.plan) {
        const { call, args } = p;
        for (const [name, v] of call.inputs) args.inputs[name] = vals[v]!;
        let out: tf.TensorInfo | tf.TensorInfo[];
        if (p.alias) {
          const x = vals[call.inputs[0]![1]]!;
          b.incRef(x.dataId);
          out = { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
        } else out = call.run(args as Parameters<tf.KernelFunc>[0]);
        const outs = Array.isArray(out) ? out : [out];
        if (outs.length !== call.outs.length) {
          for (const o of outs) b.disposeData(o.dataId);
          throw new ReplayMismatch(`${call.kernel} made ${outs.length} tensors where the trace saw ${call.outs.length}`);
        }
        for (let i = 0; i < outs.length; i++) vals[call.outs[i]!.value] = outs[i]; // owned from here on: freed on error too
        for (let i = 0; i < call.outs.length; i++) {
          const want = call.outs[i]!.shape, got = outs[i]!.shape;
          if (got.length !== want.length || got.some((d, j) => d !== want[j]))
            throw new ReplayMismatch(`${call.kernel} made [${got.join(', ')}] where the trace saw [${want.join(', ')}]`);
        }
        for (const v of p.frees) {
          b.disposeData(vals[v]!.dataId);
          vals[v] = undefined;
        }
      }
    } catch (e) {
      vals.forEach((t, v) => {
        if (t && this.isOut[v]) b.disposeData(t.dataId);
      });
      throw e;
    }
    const handed = new Set<number>();
    const engine = tf.engine();
    return this.outputs.map((v) => {
      const t = vals[v]!;
      // a value handed out twice, or one the replay does not own (an input, a constant), gets its own reference
      if (!this.isOut[v] || handed.has(v)) b.incRef(t.dataId);
      handed.add(v);
      return engine.makeTensorFromTensorInfo({ dataId: t.dataId, shape: t.shape, dtype: t.dtype }, b as unknown as tf.KernelBackend);
    });
  }

  /** Frees the constants. */
  dispose(): void {
    for (const c of this.consts) if (c) this.backend.disposeData(c.dataId);
    this.consts.fill(undefined);
  }
}
