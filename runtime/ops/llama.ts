// `llama` (and `mistral`, the same computation): the decoder with a SwiGLU MLP,
// down(silu(gate(x)) * up(x)).
import * as tf from '@tensorflow/tfjs-core';
import { decoderStack } from './decoder.js';
import { adaptedLinear } from './lora.js';
import { silu } from './nn.js';
import type { OpImpl } from './types.js';

export const llama: OpImpl = (ctx, [x]) =>
  decoderStack(ctx, x!, (c, h, i) => {
    const p = (n: string) => `model.layers.${i}.mlp.${n}`;
    return { y: adaptedLinear(c, tf.mul(silu(adaptedLinear(c, h, p('gate_proj'))), adaptedLinear(c, h, p('up_proj'))), p('down_proj')) };
  }).logits;
