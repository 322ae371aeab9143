// LLaVA's projectors under its names (multi_modal_projector.linear_1, _2, ...): `linear`, `mlp_gelu`
// of depth N (linear, then GELU + linear N-1 times: LLaVA-1.5's mlp2x_gelu for depth 2), `identity`.
import * as tf from '@tensorflow/tfjs-core';
import { adaptedLinear } from './lora.js';
import { gelu } from './nn.js';
import { num, type OpImpl } from './types.js';

const P = 'multi_modal_projector';

export const linearProjector: OpImpl = (ctx, [x]) => adaptedLinear(ctx, x!, `${P}.linear_1`);

export const mlpGelu: OpImpl = (ctx, [x]) => {
  const depth = num(ctx.attrs, 'depth', 2);
  let h = adaptedLinear(ctx, x!, `${P}.linear_1`); // [B, N, out]
  for (let k = 2; k <= depth; k++) h = adaptedLinear(ctx, gelu(h), `${P}.linear_${k}`);
  return h;
};

export const identity: OpImpl = (_ctx, [x]) => tf.clone(x!);
