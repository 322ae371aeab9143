// A traced step (kernel-trace.ts) run again: its kernels called in order straight on the backend, each
// with the attributes it had, fed this step's parameters, slots and batch feeds. No engine, no tape,
// no Tensor objects in between: a value's data is freed right after the last kernel that reads it, and
// only the step's results become tensors again. Kernels that would only copy their input (Identity, a
// Cast to the same dtype, a Concat of one tensor, a Transpose that moves only size-1 axes) copy nothing
// here: values are never written in place, so their output shares its input's data.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelBackend, KernelCall, KernelTrace } from './kernel-trace.js';

/** A replayed kernel made a tensor of another shape than the trace's: this batch needs another trace. */
export class ReplayMismatch extends Error {}

interface Planned {
  kernel: string;
  run: tf.KernelFunc;
  /** The argument object the kernel is called with; its inputs are rebound before each call. */
  args: { inputs: Record<string, tf.TensorInfo>; backend: tf.KernelBackend; attrs: tf.NamedAttrMap };
  /** Input names and the values bound to them. */
  names: string[];
  ins: number[];
  /** The values it makes, and the shapes the trace saw them with. */
  outs: number[];
  shapes: number[][];
  /** Shares its input's data instead of running (see onlyCopies). */
  alias: boolean;
  /** Values no later kernel reads, freed after this one. */
  frees: number[];
}

/** The kernel's output is its one input's data as it lies in memory, under the traced output shape. */
function onlyCopies(call: KernelCall, trace: KernelTrace): boolean {
  if (call.inputs.length !== 1 || call.outs.length !== 1) return false;
  const v = call.inputs[0]![1];
  if (trace.dtypes[v] !== call.outs[0]!.dtype) return false;
  if (call.kernel === 'Identity' || call.kernel === 'Cast' || call.kernel === 'Concat') return true;
  if (call.kernel !== 'Transpose') return false;
  // a permutation that keeps the order of every axis longer than 1 moves no element
  const shape = trace.shapes[v]!;
  const kept = (call.attrs['perm'] as number[]).filter((p) => shape[p] !== 1);
  return kept.every((p, i) => i === 0 || kept[i - 1]! < p);
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
      const alias = onlyCopies(call, trace);
      return {
        kernel: call.kernel,
        run: call.run,
        args: { inputs: call.list ? ([] as unknown as Record<string, tf.TensorInfo>) : {}, backend: kernelBackend, attrs: call.attrs },
        names: call.inputs.map(([name]) => name),
        ins: call.inputs.map(([, v]) => v),
        outs: call.outs.map((o) => o.value),
        shapes: call.outs.map((o) => o.shape),
        alias,
        frees: frees[i]!,
      };
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
        const { args, names, ins, outs, shapes } = p;
        for (let i = 0; i < ins.length; i++) args.inputs[names[i]!] = vals[ins[i]!]!;
        let out: tf.TensorInfo | tf.TensorInfo[];
        if (p.alias) {
          const x = vals[ins[0]!]!;
          b.incRef(x.dataId);
          out = { dataId: x.dataId, shape: shapes[0]!, dtype: x.dtype };
        } else out = p.run(args as Parameters<tf.KernelFunc>[0]);
        if (Array.isArray(out)) {
          if (out.length !== outs.length) {
            for (const o of out) b.disposeData(o.dataId);
            throw new ReplayMismatch(`${p.kernel} made ${out.length} tensors where the trace saw ${outs.length}`);
          }
          for (let i = 0; i < outs.length; i++) vals[outs[i]!] = out[i]; // owned from here on: freed on error too
          for (let i = 0; i < outs.length; i++) this.expect(p, out[i]!.shape, shapes[i]!);
        } else {
          vals[outs[0]!] = out;
          if (outs.length !== 1) throw new ReplayMismatch(`${p.kernel} made 1 tensor where the trace saw ${outs.length}`);
          this.expect(p, out.shape, shapes[0]!);
        }
        const frees = p.frees;
        for (let i = 0; i < frees.length; i++) {
          const v = frees[i]!;
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

  private expect(p: Planned, got: readonly number[], want: readonly number[]): void {
    let same = got.length === want.length;
    for (let j = 0; same && j < got.length; j++) same = got[j] === want[j];
    if (!same) throw new ReplayMismatch(`${p.kernel} made [${got.join(', ')}] where the trace saw [${want.join(', ')}]`);
  }

  /** Frees the constants. */
  dispose(): void {
    for (const c of this.consts) if (c) this.backend.disposeData(c.dataId);
    this.consts.fill(undefined);
  }
}
