// The op table: graph node `op` -> implementation. Custom components register here at load time
// under their own op name; nothing else dispatches on op names.
import { cnn } from './cnn.js';
import { tokenEmbedding } from './embedding.js';
import { llama } from './llama.js';
import { mixtral } from './mixtral.js';
import { identity, linearProjector, mlpGelu } from './projector.js';
import { llavaSplice } from './splice.js';
import type { OpImpl } from './types.js';
import { clipVit, siglipVit, vit } from './vit.js';

export const OPS = new Map<string, OpImpl>([
  ['vit', vit],
  ['clip_vit', clipVit],
  ['siglip_vit', siglipVit],
  ['cnn', cnn],
  ['linear', linearProjector],
  ['mlp_gelu', mlpGelu],
  ['identity', identity],
  ['token_embedding', tokenEmbedding],
  ['llava_splice', llavaSplice],
  ['llama', llama],
  ['mistral', llama],
  ['mixtral', mixtral],
]);
