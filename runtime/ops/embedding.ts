// `token_embedding`: the LLM's input embedding lookup, model.embed_tokens.weight [V, D].
import * as tf from '@tensorflow/tfjs-core';
import type { OpImpl } from './types.js';

/** ids: [B, T] int32 -> [B, T, D] */
export const tokenEmbedding: OpImpl = (ctx, [ids]) => tf.gather(ctx.param('model.embed_tokens.weight'), ids!);
