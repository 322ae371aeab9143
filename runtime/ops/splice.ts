// `llava_splice`: image features replace the image-token positions of the text embeddings. The batcher
// expanded each image's marker into `image_tokens` consecutive positions; the labels there are already
// -100. Image m of the pixel batch goes to row b = m at batch.imageStart[b] (-1 for a text-only row),
// or, for a batch with multi-image records, to batch.imageSlots[m] (its row and first position), so
// several images of one record each land at their own marker.
import * as tf from '@tensorflow/tfjs-core';
import { batchTensor } from './batch-feeds.js';
import type { BatchInfo } from './types.js';
import { num, type OpImpl } from './types.js';

/** Where each image's features go: image m -> { row, start }, text-only rows skipped. */
export function imagePlaces(info: Pick<BatchInfo, 'imageStart' | 'imageSlots'>): { image: number; row: number; start: number }[] {
  if (info.imageSlots) return info.imageSlots.map((s, m) => ({ image: m, ...s }));
  return info.imageStart.flatMap((start, b) => (start >= 0 ? [{ image: b, row: b, start }] : []));
}

/**
 * Row indices into concat([embeds as [B*T, D], features as [M*N, D]]) that build the spliced sequence:
 * position t of row b takes image m's feature t - start when the image's run covers it, else itself.
 */
export function spliceIndices(imageStart: readonly number[], batch: number, length: number, imageTokens: number, imageSlots?: BatchInfo['imageSlots']): Int32Array {
  const idx = new Int32Array(batch * length);
  for (let i = 0; i < idx.length; i++) idx[i] = i;
  for (const { image, row, start } of imagePlaces({ imageStart: [...imageStart], imageSlots }))
    for (let t = 0; t < imageTokens && start + t < length; t++) idx[row * length + start + t] = batch * length + image * imageTokens + t;
  return idx;
}

/** inputs: embeds [B, T, D], features [M, N, D] (N = image_tokens; M = B, or one per image slot), input_ids (unused: positions come from the batch). */
export const llavaSplice: OpImpl = (ctx, [embeds, features]) => {
  const [B, T, D] = embeds!.shape as [number, number, number];
  const N = num(ctx.attrs, 'image_tokens');
  const M = ctx.batch.imageSlots ? ctx.batch.imageSlots.length : B;
  if (features!.shape[0] !== M || features!.shape[1] !== N || features!.shape[2] !== D)
    throw new Error(`llava_splice: image features are [${features!.shape.join(', ')}], expected [${M}, ${N}, ${D}]`);
  const rows = tf.concat([tf.reshape(embeds!, [B * T, D]), tf.reshape(features!, [M * N, D])], 0);
  const idx = batchTensor('splice_indices', ctx.batch, (s) => tf.tensor1d(spliceIndices(s.imageStart, B, T, N, s.imageSlots), 'int32'));
  return tf.reshape(tf.gather(rows, idx), [B, T, D]);
};
