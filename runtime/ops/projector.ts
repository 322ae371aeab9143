// LLaVA's projectors under its names (multi_modal_projector.linear_1, _2, ...): `linear`, `mlp_gelu`
// of depth N (linear, then GELU + linear N-1 times: LLaVA-1.5's mlp2x_gelu for depth 2), `identity`.
import * as tf from '@tensorflow/tfjs-core';
import { linear } from '../backend/kernels.js';
import { gelu } from './nn.js';
import { num, type OpImpl } from './types.js';

const P = 'multi_modal_projector';

export const linearProjector: OpImpl = (ctx, [x]) =>
  linear(x!, ctx.param(`${P}.linear_1.weight`), ctx.hasParam(`${P}.linear_1.bias`) ? ctx.param(`${P}.linear_1.bias`) : undefined);

export const mlpGelu: OpImpl = (ctx, [x]) => {
  const depth = num(ctx.attrs, 'depth', 2);
  let h = linear(x!, ctx.param(`${P}.linear_1.weight`), ctx.param(`${P}.linear_1.bias`)); // [B, N, out]
  for (let k = 2; k <= depth; k++) h = linear(gelu(h), ctx.param(`${P}.linear_${k}.weight`), ctx.param(`${P}.linear_${k}.bias`));
  return h;
};

export const identity: OpImpl = (_ctx, [x]) => tf.clone(x!);
