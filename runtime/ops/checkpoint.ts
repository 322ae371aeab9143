// Gradient checkpointing (a stage's `gradient_checkpointing: true`): a layer runs in the forward pass
// without leaving its intermediate activations on the gradient tape, and the backward pass runs it again
// to get them. Between forward and backward only the layer's inputs are held.
//
// tfjs records every op on one tape while tf.variableGrads runs its function. A tf.customGrad's forward
// function is the one place where ops run off that tape (the engine raises its kernel depth there) and
// whose intermediates are freed when it returns; its gradient function may run a fresh, nested gradient
// computation. So a checkpointed layer is two customGrad calls:
//   1. off the tape: run the layer, noting which trainable weights it reads (an MoE layer reads only the
//      experts that got tokens, and a weight it does not read must get no gradient, as without
//      checkpointing, or AdamW would decay it);
//   2. on the tape: one node whose inputs are the layer's inputs and those weights and whose output is a
//      copy of step 1's; its gradient re-runs the layer under the engine's gradients() and returns the
//      gradients for the inputs and the weights, so tf.variableGrads sees the weights' gradients too.
// A layer must compute the same thing when it runs again: LoRA's dropout draws its masks from the seeded
// stream of (micro-batch, module), the same both times (lora.ts), and the MoE layer replays its routing
// (mixtral.ts).
// One difference remains: a customGrad returns a gradient for every input, so when the node is on the
// loss's path only through some of its outputs (a mixtral layer whose router probabilities reach the aux
// loss while its main output reaches no labelled token), the weights that feed only the others get a zero
// gradient where tfjs would give none.
import * as tf from '@tensorflow/tfjs-core';
import type { OpContext } from './types.js';

/** What a checkpointed pass needs to know: which tensors are weights being trained. */
export interface Checkpointing {
  trainable(t: tf.Tensor): boolean;
}

/**
 * A layer: inputs -> outputs, reading its weights through ctx.param. `consts` are tensors it reads but
 * is not differentiated for (the decoder's attention bias): they come as an argument, since a tensor the
 * layer closed over has been freed by the time backward runs it again.
 */
export type Layer = (ctx: OpContext, inputs: tf.Tensor[], consts: tf.Tensor[]) => tf.Tensor[];

type Engine = ReturnType<typeof tf.engine> & { state: { activeTape: unknown } };

/** Runs f off the gradient tape: its ops are not recorded and its intermediates are freed on return. */
function offTape(anchor: tf.Tensor, f: () => tf.Tensor): tf.Tensor {
  const run = tf.customGrad(((x: tf.Tensor) => ({
    value: f(),
    // Never called: the result is only copied inside another node's forward, so no taped op reads it.
    gradFunc: () => [tf.zerosLike(x)],
  })) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Tensor;
  return run(anchor);
}

/** Several tensors as one flat [n] tensor (a customGrad has one output), and back. */
function pack(ts: tf.Tensor[]): tf.Tensor {
  return ts.length === 1 ? ts[0]! : tf.concat(ts.map((t) => tf.reshape(t, [-1])));
}
function unpack(flat: tf.Tensor, shapes: number[][]): tf.Tensor[] {
  if (shapes.length === 1) return [flat];
  const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
  return tf.split(flat, sizes).map((t, i) => tf.reshape(t, shapes[i]!));
}

/**
 * layer(ctx, inputs), recomputed in backward when ctx.checkpoint is set (and no generation cache is in
 * use); otherwise simply called. The inputs must be float tensors.
 */
export function recomputed(ctx: OpContext, inputs: tf.Tensor[], layer: Layer, consts: tf.Tensor[] = []): tf.Tensor[] {
  const cp = ctx.checkpoint;
  if (!cp || ctx.cache) return layer(ctx, inputs, consts);
  const weights = new Map<string, tf.Tensor>(); // trainable weights the layer reads, by name
  const noting: OpContext = {
    ...ctx,
    param: (n) => {
      const t = ctx.param(n);
      if (cp.trainable(t)) weights.set(n, t);
      return t;
    },
  };
  let shapes: number[][] = [];
  const first = offTape(inputs[0]!, () => {
    const outs = layer(noting, inputs, consts);
    shapes = outs.map((t) => t.shape);
    return pack(outs);
  });
  const ws = [...weights.values()];
  const n = inputs.length;
  const node = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    save([...(args.slice(0, n) as tf.Tensor[]), ...consts]); // the layer's inputs: all that is kept for backward
    return {
      value: tf.clone(first),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const engine = tf.engine() as Engine;
        // A nested gradients() starts its own tape and clears the engine's when done; the outer
        // backward pass (which is running this) still needs its tape afterwards.
        const outer = engine.state.activeTape;
        try {
          const ins = saved.slice(0, n), xs = [...ins, ...ws];
          const { value, grads } = engine.gradients(() => pack(layer(ctx, ins, saved.slice(n))), xs, dy as tf.Tensor, true);
          value.dispose();
          return grads.map((g, i) => g ?? tf.zerosLike(xs[i]!));
        } finally {
          engine.state.activeTape = outer;
        }
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (...ts: tf.Tensor[]) => tf.Tensor;
  const out = node(...inputs, ...ws);
  first.dispose();
  return unpack(out, shapes);
}
