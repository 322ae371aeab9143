// Collation: examples of different lengths become one right-padded batch (pad id, label -100, mask 0),
// with the images stacked as [B, C, H, W]. A batch must have at least one trained token.
import * as tf from '@tensorflow/tfjs-core';
import { M, runtimeError } from '../errors.js';
import type { BatchInfo } from '../ops/types.js';
import { IGNORE, type Example } from './examples.js';

export interface Sample extends Example {
  /** [C, H, W] normalised pixels, or undefined for a text-only sample. */
  pixels?: Float32Array;
  /** Where it came from, for error messages and evaluation. */
  source: { dataset: string; index: number };
}

export interface Batch {
  inputIds: Int32Array;
  labels: Int32Array;
  info: BatchInfo;
  /** Flat [B, C, H, W], or null when no sample has an image. */
  pixels: { data: Float32Array; shape: [number, number, number, number] } | null;
  /** Tokens that carry a label (the loss's denominator). */
  labelledTokens: number;
}

export function collate(samples: readonly Sample[], padId: number, imageShape: [number, number, number]): Batch {
  const B = samples.length;
  const T = Math.max(...samples.map((s) => s.ids.length));
  const inputIds = new Int32Array(B * T).fill(padId);
  const labels = new Int32Array(B * T).fill(IGNORE);
  const mask = new Int32Array(B * T);
  let labelled = 0;
  samples.forEach((s, b) => {
    inputIds.set(s.ids, b * T);
    labels.set(s.labels, b * T);
    mask.fill(1, b * T, b * T + s.ids.length);
    labelled += s.labels.filter((l) => l !== IGNORE).length;
  });
  // The data pipeline admits no record without a trained token (example-checks.ts), so this cannot
  // happen through it; a batch built another way is refused here rather than handed to the loss, whose
  // gradient would be TensorFlow.js's unlocated "Cannot find a connection between any variable and the
  // result of the loss function".
  if (labelled === 0) {
    const first = samples[0]?.source;
    throw runtimeError(M.BatchNoLabels, [first?.dataset ?? '?', samples.map((s) => s.source.index).join(', ')], undefined, 'every record needs an assistant reply to train on; `pipec check --data` lists the records that have none');
  }
  const anyImage = samples.some((s) => s.pixels);
  let pixels: Batch['pixels'] = null;
  if (anyImage) {
    const per = imageShape[0] * imageShape[1] * imageShape[2];
    const data = new Float32Array(B * per); // text-only rows get zeros; their features are not spliced in
    samples.forEach((s, b) => s.pixels && data.set(s.pixels, b * per));
    pixels = { data, shape: [B, ...imageShape] };
  }
  return {
    inputIds,
    labels,
    info: { attentionMask: mask, batch: B, length: T, imageStart: samples.map((s) => (s.pixels ? s.imageStart : -1)) },
    pixels,
    labelledTokens: labelled,
  };
}

export function pixelTensor(b: Batch): tf.Tensor4D | null {
  return b.pixels ? tf.tensor4d(b.pixels.data, b.pixels.shape) : null;
}
