// What every trace of a training step keeps besides its ops: where the batch enters (feeds made again
// from each later batch), the batch's decisive values, and why a step cannot be replayed. The
// tensorflow graph (trace.ts) and the wasm kernel replay (kernel-trace.ts) record their ops
// differently; this part, and how a later step rebuilds its inputs from it, they share.
import type * as tf from '@tensorflow/tfjs-core';
import type { FeedRecorder, FeedSource } from '../ops/batch-feeds.js';

/** Which object of a step a feed reads: each step has its own, made by the step runner. */
export type SourceKind = 'batch' | 'info' | 'inputs' | 'update';

export type InputRecipe =
  | { kind: 'state'; key: string }
  | { kind: 'feed'; micro: number; source: SourceKind; key: string; make: (s: never) => tf.Tensor };

export interface ValueRecipe {
  micro: number;
  source: SourceKind;
  key: string;
  f: (s: never) => string | number | boolean;
  value: string | number | boolean;
}

/** One input of a traced step: `dtype` and `shape` are what the trace saw (a later feed must match). */
export interface TraceInput<D = number> {
  name: string;
  dtype: D;
  shape: number[];
  recipe: InputRecipe;
}

export abstract class FeedTrace<D = number> implements FeedRecorder {
  readonly inputs: TraceInput<D>[] = [];
  readonly values: ValueRecipe[] = [];
  refusal?: string;
  private readonly readsFrom = new Map<object, { micro: number; source: SourceKind }>();

  /** Micro-batch `a` begins: feeds that read these objects are made again from each step's own. */
  setMicro(a: number, sources: Partial<Record<SourceKind, object>>): void {
    for (const [source, obj] of Object.entries(sources)) this.readsFrom.set(obj, { micro: a, source: source as SourceKind });
  }

  /**
   * Makes `t` an input of the trace fed by `recipe`; false when `t` is not a tensor made from
   * JavaScript values alone (ops computed it).
   */
  protected abstract placeFeed(t: tf.Tensor, recipe: InputRecipe & { kind: 'feed' }): boolean;

  tensor<S extends FeedSource>(key: string, src: S, make: (s: S) => tf.Tensor): tf.Tensor {
    const where = this.readsFrom.get(src);
    const t = make(src);
    if (!where) this.refuse(`the batch feed "${key}" reads an object the step runner does not make again`);
    else if (!this.placeFeed(t, { kind: 'feed', micro: where.micro, source: where.source, key, make: make as (s: never) => tf.Tensor }))
      this.refuse(`the batch feed "${key}" was computed by ops, not made from the batch`);
    return t;
  }

  value<S extends FeedSource, V extends string | number | boolean>(key: string, src: S, f: (s: S) => V): V {
    const v = f(src);
    const where = this.readsFrom.get(src);
    if (!where) this.refuse(`the batch value "${key}" reads an object the step runner does not make again`);
    else this.values.push({ micro: where.micro, source: where.source, key, f: f as (s: never) => V, value: v });
    return v;
  }

  refuse(reason: string): void {
    this.refusal ??= reason;
  }
}

/** The objects a later step's feeds read: its own micro-batches, their model inputs and its update. */
export interface StepSources {
  micro: readonly object[];
  info: readonly object[];
  inputs: readonly object[];
  update: object;
}

export function sourceOf(s: StepSources, micro: number, kind: SourceKind): object {
  if (kind === 'update') return s.update;
  if (kind === 'batch') return s.micro[micro]!;
  if (kind === 'info') return s.info[micro]!;
  return s.inputs[micro]!;
}

/** True when every batch value of the trace is the same for this step (else its ops may differ). */
export function sameValues(values: readonly ValueRecipe[], s: StepSources): boolean {
  return values.every((v) => v.f(sourceOf(s, v.micro, v.source) as never) === v.value);
}

/**
 * The step's inputs made from `s` (state from `state`); the tensors it made are in `made` for the caller
 * to free. Undefined (all freed) when a feed's shape is not the trace's.
 */
export function feedInputs(inputs: readonly TraceInput<unknown>[], s: StepSources, state: ReadonlyMap<string, tf.Tensor>, made: tf.Tensor[]): tf.Tensor[] | undefined {
  const fed = inputs.map((i) => {
    if (i.recipe.kind === 'state') return state.get(i.recipe.key)!;
    const t = i.recipe.make(sourceOf(s, i.recipe.micro, i.recipe.source) as never);
    made.push(t);
    return t;
  });
  const fits = inputs.every((i, k) => fed[k]!.shape.length === i.shape.length && fed[k]!.shape.every((d, j) => d === i.shape[j]));
  return fits ? fed : undefined;
}
