// Tensors an op makes from the batch's JavaScript data rather than from other tensors: token ids, the
// attention mask, the loss's targets, the splice's gather indices. Ops make them through batchTensor so
// that a compiled training step (runtime/graph-step) can tell them apart from constants: while a step is
// traced they become inputs of the graph, and each later step makes them again from its own batch with
// the same `make`. So `make` must read the batch only through its argument; what it closes over may
// depend on shapes (which key the compiled step) but not on data. A value of the batch that decides
// which ops run (a batch with no labelled token) goes through batchValue, and a step that cannot be
// replayed from a trace at all (data-dependent routing, random masks) says so with notCompilable.
import type * as tf from '@tensorflow/tfjs-core';

/** Where a feed reads the batch: the model's inputs or, for ops that see only it, the batch info. */
export type FeedSource = object;

export interface FeedRecorder {
  tensor<S extends FeedSource>(key: string, src: S, make: (s: S) => tf.Tensor): tf.Tensor;
  value<S extends FeedSource, V extends string | number | boolean>(key: string, src: S, f: (s: S) => V): V;
  refuse(reason: string): void;
}

let recorder: FeedRecorder | undefined;

/** Runs fn with `r` seeing every feed, value and refusal (the trace of a compiled step). */
export function withFeedRecorder<T>(r: FeedRecorder, fn: () => T): T {
  const outer = recorder;
  recorder = r;
  try {
    return fn();
  } finally {
    recorder = outer;
  }
}

/** True while a compiled step is being traced: ops may then prefer a form made only of tensor ops. */
export function tracing(): boolean {
  return recorder !== undefined;
}

export function batchTensor<S extends FeedSource>(key: string, src: S, make: (s: S) => tf.Tensor): tf.Tensor {
  return recorder ? recorder.tensor(key, src, make) : make(src);
}

export function batchValue<S extends FeedSource, V extends string | number | boolean>(key: string, src: S, f: (s: S) => V): V {
  return recorder ? recorder.value(key, src, f) : f(src);
}

/** This step reads tensor data in JavaScript or draws random numbers: it cannot be compiled. */
export function notCompilable(reason: string): void {
  recorder?.refuse(reason);
}
