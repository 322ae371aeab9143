// Collation: examples of different lengths become one right-padded batch (pad id, label -100, mask 0),
// with the images stacked as [B, C, H, W] (one per row, zeros for a text-only row). A batch with a
// multi-image record stacks every image of every row instead, [M, C, H, W] in row order, and says in
// `info.imageSlots` which row and position each image's features go to. A batch must have at least one
// trained token.
import * as tf from '@tensorflow/tfjs-core';
import { M, runtimeError } from '../errors.js';
import type { BatchInfo } from '../ops/types.js';
import { IGNORE, type Example } from './examples.js';

export interface Sample extends Example {
  /** [C, H, W] normalised pixels (the first image), or undefined for a text-only sample. */
  pixels?: Float32Array;
  /** The second and later images of a multi-image record, [C, H, W] each, in the order of `imageStarts`. */
  extraPixels?: Float32Array[];
  /** Where it came from, for error messages and evaluation. */
  source: { dataset: string; index: number };
}

export interface Batch {
  inputIds: Int32Array;
  labels: Int32Array;
  info: BatchInfo;
  /** Flat [B, C, H, W] (or [M, C, H, W] with info.imageSlots), or null when no sample has an image. */
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
  const multi = samples.some((s) => s.extraPixels?.length);
  const per = imageShape[0] * imageShape[1] * imageShape[2];
  let pixels: Batch['pixels'] = null;
  let imageSlots: BatchInfo['imageSlots'];
  if (multi) {
    // every image of every row, in row order, each with the row and position its features replace
    imageSlots = [];
    const all: Float32Array[] = [];
    samples.forEach((s, b) => {
      if (!s.pixels) return;
      const images = [s.pixels, ...(s.extraPixels ?? [])];
      const starts = s.imageStarts ?? [s.imageStart];
      if (starts.length !== images.length) throw new Error(`collate: record ${s.source.index} has ${images.length} images for ${starts.length} image positions`);
      images.forEach((p, k) => (all.push(p), imageSlots!.push({ row: b, start: starts[k]! })));
    });
    const data = new Float32Array(all.length * per);
    all.forEach((p, m) => data.set(p, m * per));
    pixels = { data, shape: [all.length, ...imageShape] };
  } else if (anyImage) {
    const data = new Float32Array(B * per); // text-only rows get zeros; their features are not spliced in
    samples.forEach((s, b) => s.pixels && data.set(s.pixels, b * per));
    pixels = { data, shape: [B, ...imageShape] };
  }
  return {
    inputIds,
    labels,
    info: { attentionMask: mask, batch: B, length: T, imageStart: samples.map((s) => (s.pixels ? s.imageStart : -1)), ...(imageSlots ? { imageSlots } : {}) },
    pixels,
    labelledTokens: labelled,
  };
}

export function pixelTensor(b: Batch): tf.Tensor4D | null {
  return b.pixels ? tf.tensor4d(b.pixels.data, b.pixels.shape) : null;
}
