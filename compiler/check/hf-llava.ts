// What a LLaVA config says about the whole model, beyond its towers' own sections: which vision layer
// feeds the projector and which of its tokens (transformers' `vision_feature_layer` /
// `vision_feature_select_strategy`, the LLaVA repos' `mm_vision_select_layer` / `mm_vision_select_feature`),
// the projector's kind (`projector_hidden_act`, `mm_projector_type`), and the image token's id
// (`image_token_index`, `image_token_id` in transformers 5). The checker fills an encoder's
// `select_layer` / `select` from them when the program leaves them out, and checks them otherwise.
import { configKind } from './hf-config-section.js';

export interface LlavaVisionFields {
  /** The config key and the value it gives for each encoder parameter. */
  select_layer?: { key: string; value: number | unknown };
  select?: { key: string; value: 'patch' | 'cls_patch' | undefined; raw: unknown };
}

/** Whether the encoder op has a class token (CLIP-style); SigLIP has none, so its `"full"` is `"patch"`. */
const hasCls = (op: string, cls: boolean | undefined) => (op === 'siglip_vit' ? false : op === 'vit' ? cls !== false : true);

/** The encoder parameters a LLaVA config determines, as pipec spells them. */
export function llavaVisionFields(config: Record<string, unknown>, op: string, cls?: boolean): LlavaVisionFields {
  const out: LlavaVisionFields = {};
  const repo = configKind(config) === 'llava-repo';
  const layerKey = repo ? 'mm_vision_select_layer' : 'vision_feature_layer';
  if (config[layerKey] !== undefined && config[layerKey] !== null) out.select_layer = { key: layerKey, value: config[layerKey] };
  if (repo) {
    const raw = config['mm_vision_select_feature'];
    // The LLaVA repos' "patch" drops the first token whatever the tower (hidden_states[l][:, 1:]): on a
    // tower without a class token that is a patch, which pipec never drops; "cls_patch" keeps them all.
    if (raw !== undefined && raw !== null) {
      const value = raw === 'cls_patch' ? (hasCls(op, cls) ? 'cls_patch' : 'patch') : raw === 'patch' && hasCls(op, cls) ? 'patch' : undefined;
      out.select = { key: 'mm_vision_select_feature', value, raw };
    }
  } else {
    const raw = config['vision_feature_select_strategy'];
    if (raw !== undefined && raw !== null) {
      // "default" drops the class token (transformers: image_features[:, 1:]); "full" keeps every token.
      const value = raw === 'full' ? (hasCls(op, cls) ? 'cls_patch' : 'patch') : raw === 'default' && hasCls(op, cls) ? 'patch' : undefined;
      out.select = { key: 'vision_feature_select_strategy', value, raw };
    }
  }
  return out;
}

/** The strategy transformers needs for an encoder's `select`, for hints. */
export function strategyFor(op: string, select: string, cls?: boolean): string {
  return select === 'patch' && hasCls(op, cls) ? '"default"' : '"full"';
}

/** The image token's id in a LLaVA config (4.x `image_token_index`, 5.x `image_token_id`). */
export function llavaImageToken(config: Record<string, unknown>): { key: string; value: number } | undefined {
  for (const key of ['image_token_index', 'image_token_id']) if (typeof config[key] === 'number') return { key, value: config[key] as number };
  return undefined;
}

/** The projector a LLaVA config describes: transformers' LlavaMultiModalProjector is mlp_gelu(depth: 2). */
export function llavaProjector(config: Record<string, unknown>): { key: string; raw: string; op?: string; depth?: number } | undefined {
  const type = config['mm_projector_type'];
  if (typeof type === 'string') {
    if (type === 'linear') return { key: 'mm_projector_type', raw: type, op: 'linear' };
    const m = /^mlp(\d+)x_gelu$/.exec(type);
    return { key: 'mm_projector_type', raw: type, op: m ? 'mlp_gelu' : undefined, depth: m ? Number(m[1]) : undefined };
  }
  const act = config['projector_hidden_act'];
  if (typeof act === 'string') return { key: 'projector_hidden_act', raw: act, op: act === 'gelu' ? 'mlp_gelu' : undefined, depth: 2 };
  return undefined;
}
