// One optimizer step's gradient: forward and backward over each micro-batch, gradients summed and
// divided by the number of micro-batches (the mean loss of the global batch, as transformers'
// gradient accumulation). Only the trainable variables are differentiated. With gradient checkpointing
// the layers that support it keep only their inputs for backward and run again there (ops/checkpoint.ts).
import * as tf from '@tensorflow/tfjs-core';
import { type Batch, pixelTensor } from '../data/batch.js';
import type { ModelRunner } from '../model.js';
import type { DropoutStream } from '../ops/lora.js';
import type { Checkpointing } from '../ops/checkpoint.js';

export interface StepGradients {
  grads: Map<string, tf.Tensor>;
  /** Mean over micro-batches of the total loss, the LM loss and the auxiliary loss. */
  loss: number;
  lmLoss: number;
  auxLoss: number;
  /** Real (unpadded) tokens processed. */
  tokens: number;
}

/** `o.dropout(a)`: where micro-batch `a` of the step draws its LoRA dropout masks (absent: none). */
export function accumulateGradients(
  runner: ModelRunner,
  trainable: ReadonlyMap<string, tf.Variable>,
  micro: readonly Batch[],
  o: { gradientCheckpointing?: boolean; dropout?: (a: number) => DropoutStream } = {},
): StepGradients {
  const trained = new Set<tf.Tensor>(trainable.values());
  const checkpoint: Checkpointing | undefined = o.gradientCheckpointing ? { trainable: (t) => trained.has(t) } : undefined;
  const grads = new Map<string, tf.Tensor>();
  let loss = 0, lm = 0, aux = 0, tokens = 0;
  for (const [a, batch] of micro.entries()) {
    tokens += realTokens(batch);
    const parts = { lm: 0, aux: 0 };
    const { value, grads: g } = tf.variableGrads(() => {
      const r = runner.forward({ pixels: pixelTensor(batch), inputIds: batch.inputIds, labels: batch.labels, info: batch.info, dropout: o.dropout?.(a) }, undefined, checkpoint);
      parts.lm = r.lmLoss ? r.lmLoss.dataSync()[0]! : 0;
      parts.aux = r.auxLoss ? r.auxLoss.dataSync()[0]! : 0;
      return r.loss!;
    }, [...trainable.values()]);
    loss += value.dataSync()[0]!;
    lm += parts.lm;
    aux += parts.aux;
    value.dispose();
    addGradients(grads, trainable, g);
  }
  const k = micro.length;
  if (k > 1) for (const [n, gt] of grads) (grads.set(n, tf.div(gt, k)), gt.dispose());
  return { grads, loss: loss / k, lmLoss: lm / k, auxLoss: aux / k, tokens };
}

/**
 * Adds one micro-batch's gradients `g` (tfjs's, by variable name) into `grads` (by parameter name),
 * freeing what it replaces. A parameter the forward pass never reads (CLIP's post_layernorm when LLaVA
 * selects an inner hidden state) gets no gradient: it is left untouched, not decayed.
 */
export function addGradients(grads: Map<string, tf.Tensor>, trainable: ReadonlyMap<string, tf.Variable>, g: tf.NamedTensorMap): void {
  for (const [n, v] of trainable) {
    const gt = g[v.name];
    if (!gt) continue;
    const prev = grads.get(n);
    if (!prev) grads.set(n, gt);
    else (grads.set(n, tf.add(prev, gt)), prev.dispose(), gt.dispose());
  }
}

/** Real (unpadded) tokens of a micro-batch: its attention mask's ones. */
export function realTokens(b: Batch): number {
  return b.info.attentionMask.reduce((x, y) => x + y, 0);
}
