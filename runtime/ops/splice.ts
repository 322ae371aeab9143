// `llava_splice`: image features replace the image-token positions of the text embeddings. The batcher
// expanded each sample's "<image>" marker into `image_tokens` consecutive positions starting at
// batch.imageStart[b] (-1 for a text-only sample); the labels there are already -100.
import * as tf from '@tensorflow/tfjs-core';
import { num, type OpImpl } from './types.js';

/** Row indices into concat([embeds as [B*T, D], features as [B*N, D]]) that build the spliced sequence. */
export function spliceIndices(imageStart: readonly number[], batch: number, length: number, imageTokens: number): Int32Array {
  const idx = new Int32Array(batch * length);
  for (let b = 0; b < batch; b++) {
    const s = imageStart[b] ?? -1;
    for (let t = 0; t < length; t++) {
      const inImage = s >= 0 && t >= s && t < s + imageTokens;
      idx[b * length + t] = inImage ? batch * length + b * imageTokens + (t - s) : b * length + t;
    }
  }
  return idx;
}

/** inputs: embeds [B, T, D], features [B, N, D] (N = image_tokens), input_ids (unused: positions come from the batch). */
export const llavaSplice: OpImpl = (ctx, [embeds, features]) => {
  const [B, T, D] = embeds!.shape as [number, number, number];
  const N = num(ctx.attrs, 'image_tokens');
  if (features!.shape[1] !== N || features!.shape[2] !== D)
    throw new Error(`llava_splice: image features are [${features!.shape.join(', ')}], expected [${B}, ${N}, ${D}]`);
  const rows = tf.concat([tf.reshape(embeds!, [B * T, D]), tf.reshape(features!, [B * N, D])], 0);
  const idx = tf.tensor1d(spliceIndices(ctx.batch.imageStart, B, T, N), 'int32');
  return tf.reshape(tf.gather(rows, idx), [B, T, D]);
};
