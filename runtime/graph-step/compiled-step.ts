// The compiled training step of the tensorflow backend: each step is one TF_SessionRun of a graph
// holding the whole step (forward, loss, gradients, clipping, optimizer update) instead of ~2,000 eager
// ops from JavaScript. TensorFlow's graph optimizer (Grappler) then prunes, folds constants and fuses
// what it can, and the per-op cost of eager dispatch goes away.
//
// How a graph is made and kept honest (trace.ts records; graph-def.ts writes; tfjs-node loads it as a
// SavedModel):
//   1. The first step of each batch shape runs eagerly while it is traced.
//   2. The second step of that shape is traced again; if its graph is byte-for-byte the first's, the
//      step's structure depends on nothing but shapes and the graph is loaded. Otherwise (the program
//      reads data in JavaScript, or bakes a batch's data into a constant) that shape stays eager.
//   3. Later steps of the shape run the graph, fed the parameters, optimizer slots and the batch
//      feeds made again from each batch. A batch whose decisive values (batchValue) differ runs eagerly.
// A step that cannot be traced at all (data-dependent routing, random masks) says why once and runs
// eagerly. Eager execution stays the reference the tests compare against (test/compiled-step.test.ts).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Batch } from '../data/batch.js';
import type { ModelRunner } from '../model.js';
import { withFeedRecorder } from '../ops/batch-feeds.js';
import type { DropoutStream } from '../ops/lora.js';
import type { Optimizer, UpdateSource } from '../train/optimizer.js';
import { savedModelBytes } from './graph-def.js';
import { tensorStep, type TensorStepResult, textInputs } from './tensor-step.js';
import { type InputRecipe, type NodeBackend, type SourceKind, StepTrace, type ValueRecipe } from './trace.js';

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
  session: number;
  inputs: StepTrace['inputs'];
  values: ValueRecipe[];
  outputs: string[];
  roles: OutputRole[];
}

interface ShapeEntry {
  first?: Uint8Array;
  graph?: LoadedGraph;
  eager?: boolean;
}

const DT_NAMES: Record<number, string> = { 1: 'DT_FLOAT', 3: 'DT_INT32', 10: 'DT_BOOL' };

export class CompiledStepper {
  private readonly shapes = new Map<string, ShapeEntry>();
  private refused?: string;
  private dropout?: (a: number) => DropoutStream;

  constructor(
    private readonly backend: NodeBackend,
    private readonly runner: ModelRunner,
    private readonly params: ReadonlyMap<string, tf.Variable>,
    private readonly trainable: ReadonlyMap<string, tf.Variable>,
    private readonly optimizer: Optimizer,
    /** maxLength: the stage's max_length, which padding to a bucket never passes. */
    private readonly o: { clip: number; maxLength?: number; gradientCheckpointing?: boolean; note?: (line: string) => void },
  ) {}

  /** The tfjs-node backend when it is the active one, else undefined (other backends stay eager). */
  static nodeBackend(): NodeBackend | undefined {
    const b = tf.backend() as unknown as Partial<NodeBackend>;
    return tf.getBackend() === 'tensorflow' && typeof b.runSavedModel === 'function' && b.binding ? (b as NodeBackend) : undefined;
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
    if (entry?.graph) {
      const done = this.runGraph(entry.graph, micro, lr);
      if (done) return done;
      return this.eager(micro, lr);
    }
    if (!entry || entry.eager || this.refused) return this.eager(micro, lr);
    return this.traced(entry, key, micro, lr);
  }

  /** Frees the sessions (call at the end of the stage). */
  dispose(): void {
    for (const e of this.shapes.values()) if (e.graph) this.backend.deleteSavedModel(e.graph.session);
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
    const trace = new StepTrace(this.backend, this.stateTensors());
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
    const outputs = trace.refusal ? [] : trace.outputs(finals);
    const out = this.settle(r, 'traced');
    if (trace.refusal) {
      this.refused = trace.refusal;
      this.o.note?.(`note: the compiled step is off for this stage: ${trace.refusal}; it trains eagerly`);
      return out;
    }
    const bytes = savedModelBytes(trace.nodes, 'serve');
    if (!entry.first) entry.first = bytes;
    else if (Buffer.compare(Buffer.from(entry.first), Buffer.from(bytes)) === 0) {
      try {
        entry.graph = this.load(bytes, trace, outputs, roles);
        const ops = trace.nodes.filter((n) => n.kind === 'op').length;
        this.o.note?.(`compiled step: micro-batches of ${key} run as one TensorFlow graph (${ops} ops, ${trace.inputs.length} inputs) from step ${this.optimizer.state.step + 1}`);
      } catch (e) {
        entry.eager = true;
        this.o.note?.(`note: TensorFlow could not load this step's graph, so it trains eagerly: ${String((e as Error).message ?? e).split('\n')[0]}`);
      }
    } else {
      entry.eager = true;
      this.o.note?.(`note: two steps of the same batch shape traced to different graphs (the program bakes batch data into constants); that shape trains eagerly`);
    }
    return out;
  }

  private load(bytes: Uint8Array, trace: StepTrace, outputs: string[], roles: OutputRole[]): LoadedGraph {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pipec-step-'));
    try {
      fs.writeFileSync(path.join(dir, 'saved_model.pb'), bytes);
      const session = this.backend.loadSavedModelMetaGraph(dir, 'serve');
      return { session, inputs: trace.inputs, values: trace.values, outputs, roles };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /** One step through the graph; undefined when this batch needs a different graph (it then runs eagerly). */
  private runGraph(g: LoadedGraph, micro: readonly Batch[], lr: number): StepOutcome | undefined {
    const update: UpdateSource = { t: this.optimizer.state.step + 1, lr };
    const inputsOf = micro.map(textInputs);
    const sourceOf = (micro_: number, kind: SourceKind): object => {
      if (kind === 'update') return update;
      if (kind === 'batch') return micro[micro_]!;
      if (kind === 'info') return micro[micro_]!.info;
      return inputsOf[micro_]!;
    };
    for (const v of g.values) if (v.f(sourceOf(v.micro, v.source) as never) !== v.value) return undefined;
    const state = this.stateTensors();
    const made: tf.Tensor[] = [];
    const feed = (recipe: InputRecipe): tf.Tensor => {
      if (recipe.kind === 'state') return state.get(recipe.key)!;
      const t = recipe.make(sourceOf(recipe.micro, recipe.source) as never);
      made.push(t);
      return t;
    };
    const fed = g.inputs.map((i) => feed(i.recipe));
    const fits = g.inputs.every((i, k) => fed[k]!.shape.length === i.shape.length && fed[k]!.shape.every((d, j) => d === i.shape[j]));
    if (!fits) {
      tf.dispose(made);
      return undefined;
    }
    const results = this.backend.runSavedModel(g.session, fed, g.inputs.map((i) => ({ name: `${i.name}:0`, tfDtype: DT_NAMES[i.dtype] ?? 'DT_FLOAT' })), g.outputs.map((o) => `${o}:0`));
    tf.dispose(made);
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
