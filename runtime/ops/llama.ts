// `llama` (and `mistral`, the same computation): the decoder with a SwiGLU MLP,
// down(silu(gate(x)) * up(x)).
import * as tf from '@tensorflow/tfjs-core';
import { linear } from '../backend/kernels.js';
import { decoderStack } from './decoder.js';
import { silu } from './nn.js';
import type { OpImpl } from './types.js';

export const llama: OpImpl = (ctx, [x]) =>
  decoderStack(ctx, x!, (c, h, i) => {
    const p = (n: string) => c.param(`model.layers.${i}.mlp.${n}`);
    return { y: linear(tf.mul(silu(linear(h, p('gate_proj.weight'))), linear(h, p('up_proj.weight'))), p('down_proj.weight')) };
  }).logits;
