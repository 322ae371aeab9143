// The compiled training step: the whole step (forward, loss, gradients, clipping, optimizer update) run
// as one executable instead of ~2,000 eager ops from JavaScript. On tensorflow it is one TF_SessionRun
// of a graph, which TensorFlow's graph optimizer (Grappler) prunes, folds and fuses; on wasm it is a
// replay of the step's kernels without tfjs's engine (step-compilers.ts says how each is made).
//
// How an executable is made and kept honest:
//   1. The first step of each batch shape runs eagerly while it is traced.
//   2. The second step of that shape is traced again; if its trace is byte-for-byte the first's, the
//      step's structure depends on nothing but shapes and the executable is built. Otherwise (the
//      program reads data in JavaScript, or bakes a batch's data into a constant) that shape stays eager.
//   3. Later steps of the shape run it, fed the parameters, optimizer slots and the batch feeds made
//      again from each batch. A batch whose decisive values (batchValue) differ runs eagerly.
// A step that cannot be traced at all (data-dependent routing, random masks) says why once and runs
// eagerly. Eager execution stays the reference the tests compare against (test/compiled-step.test.ts).
import * as tf from '@tensorflow/tfjs-core';
import type { Batch } from '../data/batch.js';
import type { ModelRunner } from '../model.js';
import { withFeedRecorder } from '../ops/batch-feeds.js';
import type { DropoutStream } from '../ops/lora.js';
import type { Optimizer, UpdateSource } from '../train/optimizer.js';
import { feedInputs, sameValues, type StepSources } from './feed-trace.js';
import { type StepCompiler, type StepExecutable, type StepRecording, TfGraphCompiler, KernelReplayCompiler } from './step-compilers.js';
import { ReplayMismatch } from './kernel-replay.js';
import { tensorStep, type TensorStepResult, textInputs } from './tensor-step.js';
import type { NodeBackend } from './trace.js';

export interface StepOutcome {
  loss: number;
  lmLoss: number;
  auxLoss: number;
  gradNorm: number;
  /** How this step ran: 'graph' (compiled), 'traced' (eager, recorded) or 'eager'. */
  mode: 'graph' | 'traced' | 'eager';
}

/** Batch shapes a stage compiles at most; beyond them new shapes run eagerly. */
const MAX_SHAPES = 12;

/**
 * The length a compiled step pads a micro-batch of T tokens to: T rounded up to a quarter of the power
 * of two below it (23 -> 24, 100 -> 112, 1000 -> 1024; at most a quarter more tokens, and never past
 * `cap`), so that a dataset of many lengths needs a few graphs, not one per length. Padding is
 * what collate already does to a batch's shorter rows: attention mask 0, label -100.
 */
export function bucketLength(T: number, cap: number): number {
  if (T <= 8) return T;
  const q = 2 ** (Math.floor(Math.log2(T)) - 2);
  return Math.max(T, Math.min(cap, Math.ceil(T / q) * q));
}

/** `b` with every row padded on the right to `length` tokens (padding id 0: it is masked and unlabelled). */
export function padBatch(b: Batch, length: number): Batch {
  const { batch: B, length: T } = b.info;
  if (length === T) return b;
  const grow = <A extends Int32Array>(src: A, fill: number): A => {
    const out = new Int32Array(B * length).fill(fill);
    for (let r = 0; r < B; r++) out.set(src.subarray(r * T, (r + 1) * T), r * length);
    return out as A;
  };
  return { ...b, inputIds: grow(b.inputIds, 0), labels: grow(b.labels, -100), info: { ...b.info, length, attentionMask: grow(b.info.attentionMask, 0) } };
}

type OutputRole = { kind: 'param'; name: string } | { kind: 'slot'; which: 'm' | 'v'; name: string } | { kind: 'loss' | 'lm' | 'aux'; micro: number } | { kind: 'norm' };

interface LoadedGraph {
  exec: StepExecutable;
  inputs: StepRecording['inputs'];
  values: StepRecording['values'];
  roles: OutputRole[];
}

interface ShapeEntry {
  first?: Uint8Array;
  graph?: LoadedGraph;
  eager?: boolean;
}

export class CompiledStepper {
  private readonly shapes = new Map<string, ShapeEntry>();
  private refused?: string;
  private dropout?: (a: number) => DropoutStream;

  constructor(
    private readonly compiler: StepCompiler,
    private readonly runner: ModelRunner,
    private readonly params: ReadonlyMap<string, tf.Variable>,
    private readonly trainable: ReadonlyMap<string, tf.Variable>,
    private readonly optimizer: Optimizer,
    /** maxLength: the stage's max_length, which padding to a bucket never passes. */
    private readonly o: { clip: number; maxLength?: number; gradientCheckpointing?: boolean; note?: (line: string) => void },
  ) {}

  /** The tfjs-node backend when it is the active one, else undefined. */
  static nodeBackend(): NodeBackend | undefined {
    const b = tf.backend() as unknown as Partial<NodeBackend>;
    return tf.getBackend() === 'tensorflow' && typeof b.runSavedModel === 'function' && b.binding ? (b as NodeBackend) : undefined;
  }

  /**
   * How the active backend compiles a step: tensorflow into one TensorFlow graph, wasm into a replay of
   * its kernels; undefined for the others (they stay eager).
   */
  static compilerFor(): StepCompiler | undefined {
    const node = CompiledStepper.nodeBackend();
    if (node) return new TfGraphCompiler(node);
    if (tf.getBackend() === 'wasm') return new KernelReplayCompiler('wasm', tf.backend() as never);
    return undefined;
  }

  /** `dropout`: where micro-batch a of this step draws LoRA dropout masks (a step with them stays eager). */
  step(unpadded: readonly Batch[], lr: number, dropout?: (a: number) => DropoutStream): StepOutcome {
    this.dropout = dropout;
    const micro = unpadded.map((b) => padBatch(b, bucketLength(b.info.length, Math.max(b.info.length, this.o.maxLength ?? Infinity))));
    const key: string = micro
      .map((b) => `${b.info.batch}x${b.info.length} tokens${b.pixels ? `, images ${b.pixels.shape.join('x')}` : ''}${b.info.imageSlots ? `, ${b.info.imageSlots.length} image slots` : ''}`)
      .join('; ');
    let entry = this.shapes.get(key);
    if (!entry && !this.refused && this.shapes.size < MAX_SHAPES) this.shapes.set(key, (entry = {}));
    // Eager steps take the batch as it came: padding is for compiled shapes only, and is not free.
    if (entry?.graph) return this.runGraph(entry, entry.graph, micro, lr) ?? this.eager(unpadded, lr);
    if (!entry || entry.eager || this.refused) return this.eager(unpadded, lr);
    return this.traced(entry, key, micro, lr);
  }

  /** Frees the compiled steps (call at the end of the stage). */
  dispose(): void {
    for (const e of this.shapes.values()) e.graph?.exec.dispose();
    this.shapes.clear();
  }

  private stateTensors(): Map<string, tf.Tensor> {
    const state = new Map<string, tf.Tensor>();
    for (const [n, v] of this.params) state.set(`param:${n}`, v);
    for (const [n, s] of this.optimizer.state.slots) {
      state.set(`m:${n}`, s.m);
      if (s.v) state.set(`v:${n}`, s.v);
    }
    return state;
  }

  private outcome(losses: { loss: tf.Scalar; lm: tf.Scalar; aux: tf.Scalar }[], norm: tf.Scalar, mode: StepOutcome['mode']): StepOutcome {
    const k = losses.length;
    let loss = 0, lm = 0, aux = 0;
    for (const l of losses) (loss += l.loss.dataSync()[0]!, lm += l.lm.dataSync()[0]!, aux += l.aux.dataSync()[0]!);
    return { loss: loss / k, lmLoss: lm / k, auxLoss: aux / k, gradNorm: norm.dataSync()[0]!, mode };
  }

  /** An eager step's figures, its tensors freed. */
  private settle(r: TensorStepResult, mode: StepOutcome['mode']): StepOutcome {
    const out = this.outcome(r.losses, r.gradNorm, mode);
    tf.dispose([...r.losses.flatMap((l) => [l.loss, l.lm, l.aux]), r.gradNorm]);
    return out;
  }

  private eager(micro: readonly Batch[], lr: number): StepOutcome {
    return this.settle(tensorStep(this.runner, this.trainable, this.optimizer, micro, { clip: this.o.clip, lr, gradientCheckpointing: this.o.gradientCheckpointing, dropout: this.dropout }), 'eager');
  }

  private traced(entry: ShapeEntry, key: string, micro: readonly Batch[], lr: number): StepOutcome {
    const trace = this.compiler.recording(this.stateTensors());
    const r = trace.record(() =>
      withFeedRecorder(trace, () =>
        tensorStep(this.runner, this.trainable, this.optimizer, micro, {
          clip: this.o.clip, lr, gradientCheckpointing: this.o.gradientCheckpointing, dropout: this.dropout,
          hooks: { micro: (a, batch, inputs) => trace.setMicro(a, { batch, info: batch.info, inputs }), update: (src) => trace.setMicro(0, { update: src }) },
        }),
      ),
    );
    const roles: OutputRole[] = [], finals: tf.Tensor[] = [];
    for (const [n, v] of this.trainable) (roles.push({ kind: 'param', name: n }), finals.push(v));
    for (const [n, s] of this.optimizer.state.slots) {
      (roles.push({ kind: 'slot', which: 'm', name: n }), finals.push(s.m));
      if (s.v) (roles.push({ kind: 'slot', which: 'v', name: n }), finals.push(s.v));
    }
    r.losses.forEach((l, a) => {
      roles.push({ kind: 'loss', micro: a }, { kind: 'lm', micro: a }, { kind: 'aux', micro: a });
      finals.push(l.loss, l.lm, l.aux);
    });
    roles.push({ kind: 'norm' });
    finals.push(r.gradNorm);
    if (!trace.refusal) trace.finish(finals);
    const out = this.settle(r, 'traced');
    if (trace.refusal) {
      this.refused = trace.refusal;
      this.o.note?.(`note: the compiled step is off for this stage: ${trace.refusal}; it trains eagerly`);
      return out;
    }
    const bytes = trace.signature();
    if (!entry.first) entry.first = bytes;
    else if (Buffer.compare(Buffer.from(entry.first), Buffer.from(bytes)) === 0) {
      try {
        const exec = this.compiler.build(trace);
        entry.graph = { exec, inputs: trace.inputs, values: trace.values, roles };
        this.o.note?.(`compiled step: micro-batches of ${key} run as ${exec.describe} from step ${this.optimizer.state.step + 1}`);
      } catch (e) {
        entry.eager = true;
        this.o.note?.(`note: ${this.compiler.name} could not build this step's ${this.compiler.unit}, so it trains eagerly: ${String((e as Error).message ?? e).split('\n')[0]}`);
      }
    } else {
      entry.eager = true;
      this.o.note?.(`note: two steps of the same batch shape traced to different ${this.compiler.unit}s (the program bakes batch data into constants); that shape trains eagerly`);
    }
    return out;
  }

  /** One step through the graph; undefined when this batch needs a different graph (it then runs eagerly). */
  private runGraph(entry: ShapeEntry, g: LoadedGraph, micro: readonly Batch[], lr: number): StepOutcome | undefined {
    const update: UpdateSource = { t: this.optimizer.state.step + 1, lr };
    const sources: StepSources = { micro, info: micro.map((b) => b.info), inputs: micro.map(textInputs), update };
    if (!sameValues(g.values, sources)) return undefined;
    const made: tf.Tensor[] = [];
    const fed = feedInputs(g.inputs, sources, this.stateTensors(), made);
    let results: tf.Tensor[];
    try {
      if (!fed) return undefined;
      results = g.exec.run(fed);
    } catch (e) {
      if (!(e instanceof ReplayMismatch)) throw e;
      g.exec.dispose();
      entry.graph = undefined;
      entry.eager = true;
      this.o.note?.(`note: a replayed step did not match its trace (${e.message}); that batch shape trains eagerly`);
      return undefined;
    } finally {
      tf.dispose(made);
    }
    const losses = micro.map(() => ({}) as { loss: tf.Scalar; lm: tf.Scalar; aux: tf.Scalar });
    let norm: tf.Scalar | undefined;
    const assigns: [tf.Variable, tf.Tensor][] = [];
    g.roles.forEach((role, i) => {
      const t = results[i]!;
      if (role.kind === 'param') assigns.push([this.trainable.get(role.name)!, t]);
      else if (role.kind === 'slot') assigns.push([this.optimizer.state.slots.get(role.name)![role.which]!, t]);
      else if (role.kind === 'norm') norm = t as tf.Scalar;
      else losses[role.micro]![role.kind] = t as tf.Scalar;
    });
    const out = this.outcome(losses, norm!, 'graph');
    // A non-finite loss leaves parameters and slots as they were (the caller stops the run).
    if (Number.isFinite(out.loss)) {
      for (const [v, t] of assigns) v.assign(t);
      this.optimizer.state.step = update.t;
    }
    tf.dispose(results);
    return out;
  }
}
