// The training step written so that a trace of it can be replayed: everything that changes from step
// to step enters through batchTensor (ops/batch-feeds.ts) or through the variables, and nothing is read
// back to JavaScript until it returns. The same arithmetic as train/step.ts + clipByGlobalNorm +
// Optimizer.apply, except that clipping compares and scales in float32 (torch does too).
import * as tf from '@tensorflow/tfjs-core';
import { type Batch, pixelTensor } from '../data/batch.js';
import type { ModelInputs, ModelRunner } from '../model.js';
import { batchTensor, batchValue } from '../ops/batch-feeds.js';
import type { Checkpointing } from '../ops/checkpoint.js';
import type { DropoutStream } from '../ops/lora.js';
import type { Optimizer, UpdateSource } from '../train/optimizer.js';
import { addGradients } from '../train/step.js';

export interface TensorStepResult {
  /** Per micro-batch: total, LM and auxiliary loss. Kept out of tidy: the caller disposes them. */
  losses: { loss: tf.Scalar; lm: tf.Scalar; aux: tf.Scalar }[];
  /** Global gradient norm before clipping. */
  gradNorm: tf.Scalar;
}

export interface TensorStepHooks {
  /** Called before micro-batch `a` makes any feed: `inputs` and `batch` are where its feeds read. */
  micro?(a: number, batch: Batch, inputs: ModelInputs): void;
  /** Called before the optimizer makes its feeds from `src`. */
  update?(src: UpdateSource): void;
}

/**
 * A micro-batch's model inputs before its pixels are made: the object its `inputs` feeds read, so the
 * compiled step makes it again for each batch exactly as the traced step did.
 */
export function textInputs(batch: Batch): ModelInputs {
  return { pixels: null, inputIds: batch.inputIds, labels: batch.labels, info: batch.info };
}

/** Forward, backward, gradient mean over micro-batches, clipping to `clip` (0: none) and the update. */
export function tensorStep(
  runner: ModelRunner,
  trainable: ReadonlyMap<string, tf.Variable>,
  optimizer: Optimizer,
  micro: readonly Batch[],
  o: { clip: number; lr: number; gradientCheckpointing?: boolean; dropout?: (a: number) => DropoutStream; hooks?: TensorStepHooks },
): TensorStepResult {
  const trained = new Set<tf.Tensor>(trainable.values());
  const checkpoint: Checkpointing | undefined = o.gradientCheckpointing ? { trainable: (t) => trained.has(t) } : undefined;
  const grads = new Map<string, tf.Tensor>();
  const losses: TensorStepResult['losses'] = [];
  for (const [a, batch] of micro.entries()) {
    const inputs: ModelInputs = { ...textInputs(batch), dropout: o.dropout?.(a) };
    o.hooks?.micro?.(a, batch, inputs);
    if (batchValue('has_pixels', batch, (b) => b.pixels !== null)) inputs.pixels = batchTensor('pixel_values', batch, (b) => pixelTensor(b)!) as tf.Tensor4D;
    let lm: tf.Scalar | undefined, aux: tf.Scalar | undefined;
    const { value, grads: g } = tf.variableGrads(() => {
      const r = runner.forward(inputs, undefined, checkpoint);
      lm = tf.keep(r.lmLoss ?? tf.scalar(0));
      aux = tf.keep(r.auxLoss ?? tf.scalar(0));
      return r.loss!;
    }, [...trainable.values()]);
    inputs.pixels?.dispose();
    losses.push({ loss: value, lm: lm!, aux: aux! });
    addGradients(grads, trainable, g);
  }
  const summed = [...grads.values()];
  const gradNorm = tf.tidy(() => {
    const k = micro.length;
    if (k > 1) for (const [n, gt] of grads) grads.set(n, tf.div(gt, k));
    const norm = grads.size ? (tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g))))) as tf.Scalar) : tf.scalar(0);
    if (o.clip > 0) {
      const scale = tf.where(tf.greater(norm, o.clip), tf.div(o.clip, tf.add(norm, 1e-6)), tf.onesLike(norm));
      for (const [n, gt] of grads) grads.set(n, tf.mul(gt, scale));
    }
    const src: UpdateSource = { t: optimizer.state.step + 1, lr: o.lr };
    o.hooks?.update?.(src);
    optimizer.applyTensors(grads, src);
    return norm;
  });
  for (const g of summed) g.dispose();
  return { losses, gradNorm };
}
