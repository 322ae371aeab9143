// Which part of a config.json describes a component. A per-component checkpoint's config is the
// component's own; a LLaVA (LlavaForConditionalGeneration) or two-tower CLIP / SigLIP config nests the
// towers under `vision_config` and `text_config`; the original LLaVA repos write the LLM's config flat,
// with the vision tower only named (`mm_vision_tower`) and the projector as `mm_*` keys. A signature's
// `hf_config` keys are looked up inside the component's section, so one map serves every layout.
import { configLookup } from './checkpoint-io.js';
import type { Family } from './hf-layout.js';

export type ConfigKind = 'component' | 'two-tower' | 'llava' | 'llava-repo';

export interface ConfigSection {
  kind: ConfigKind;
  /** Dotted path of the component's section ('' = the whole file); null = the file does not describe it. */
  path: string | null;
  /** The section's transformers config class (by model_type), whose defaults stand for absent keys. */
  modelType?: string;
}

/**
 * transformers' config defaults (the same in 4.x and 5.18) for the keys pipec reads. A nested config is
 * saved as its difference from these (PretrainedConfig.to_diff_dict): llava-1.5-7b-hf's text_config has
 * no hidden_size because 4096 is LlamaConfig's, so an absent key means the class default.
 */
const DEFAULTS: Record<string, { name: string; values: Record<string, unknown> }> = {
  clip_vision_model: { name: 'CLIPVisionConfig', values: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 32, layer_norm_eps: 1e-5, hidden_act: 'quick_gelu' } },
  siglip_vision_model: { name: 'SiglipVisionConfig', values: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 16, layer_norm_eps: 1e-6, hidden_act: 'gelu_pytorch_tanh' } },
  llama: { name: 'LlamaConfig', values: { vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, max_position_embeddings: 2048, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: false, hidden_act: 'silu' } },
  mistral: { name: 'MistralConfig', values: { vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, max_position_embeddings: 131072, rms_norm_eps: 1e-6, rope_theta: 10000, sliding_window: 4096, tie_word_embeddings: false, hidden_act: 'silu' } },
  mixtral: { name: 'MixtralConfig', values: { vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, max_position_embeddings: 131072, rms_norm_eps: 1e-5, rope_theta: 1e6, num_local_experts: 8, num_experts_per_tok: 2, router_aux_loss_coef: 0.001, tie_word_embeddings: false, hidden_act: 'silu' } },
};

/** A nested config without model_type is its parent's default sub-config (LlavaConfig: CLIP + Llama). */
function sectionModelType(config: Record<string, unknown>, path: string): string | undefined {
  const own = configLookup(config, path ? `${path}.model_type` : 'model_type');
  if (typeof own === 'string') return own;
  if (!path) return undefined;
  const parent = String(config['model_type'] ?? '');
  if (path === 'text_config') return /llava/.test(parent) ? 'llama' : undefined;
  return /siglip/.test(parent) ? 'siglip_vision_model' : /clip|llava/.test(parent) ? 'clip_vision_model' : undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

export function configKind(config: Record<string, unknown>): ConfigKind {
  const type = String(config['model_type'] ?? '');
  if (isObject(config['vision_config']) && isObject(config['text_config'])) return /^(clip|siglip)/.test(type) ? 'two-tower' : 'llava';
  if (isObject(config['vision_config']) || isObject(config['text_config'])) return 'llava';
  if ('mm_hidden_size' in config || 'mm_vision_tower' in config || 'mm_projector_type' in config) return 'llava-repo';
  return 'component';
}

export function configSection(config: Record<string, unknown>, family: Family): ConfigSection {
  const kind = configKind(config);
  if (family === 'projector') return { kind, path: '' };
  const nested = family === 'vision' ? 'vision_config' : 'text_config';
  if (isObject(config[nested])) return { kind, path: nested, modelType: sectionModelType(config, nested) };
  // A flat LLaVA-repo config is the LLM's; it does not describe the vision tower.
  if (family === 'vision' && kind === 'llava-repo') return { kind, path: null };
  const own = sectionModelType(config, '');
  return { kind, path: '', modelType: own && /^llava_/.test(own) ? own.slice('llava_'.length) : own };
}

/**
 * The first of `keys` the section has; failing that, the transformers default of the first key that has
 * one (transformers reads an absent key so). `key` is spelled as config.json does, `absent` says it was not written.
 */
export function sectionValue(config: Record<string, unknown>, section: ConfigSection, keys: readonly string[]): { key: string; value: unknown; absent?: string } | undefined {
  if (section.path === null) return undefined;
  for (const key of keys) {
    const value = sectionLookup(config, section, key);
    if (value !== undefined) return { key: sectionKey(section, key), value };
  }
  const d = section.modelType ? DEFAULTS[section.modelType] : undefined;
  for (const key of keys) {
    let value = d?.values[key];
    // Llama's key/value heads default to the attention heads (no grouping)
    if (value === undefined && key === 'num_key_value_heads' && section.modelType === 'llama') value = sectionValue(config, section, ['num_attention_heads'])?.value;
    if (value !== undefined) return { key: sectionKey(section, key), value, absent: d!.name };
  }
  return undefined;
}

/** The value of `key` inside the section (undefined when absent or null). */
export function sectionLookup(config: Record<string, unknown>, section: ConfigSection, key: string): unknown {
  if (section.path === null) return undefined;
  const v = configLookup(config, section.path ? `${section.path}.${key}` : key);
  return v === null ? undefined : v;
}

/** The key as config.json spells it, for messages: `text_config.hidden_size`. */
export function sectionKey(section: ConfigSection, key: string): string {
  return section.path ? `${section.path}.${key}` : key;
}

/** Whether the file is LLaVA's (composite or repo): its top-level fields describe the whole model. */
export function isLlavaConfig(config: Record<string, unknown>): boolean {
  const kind = configKind(config);
  return kind === 'llava-repo' || (kind === 'llava' && ('vision_feature_layer' in config || 'image_token_index' in config || 'image_token_id' in config || /llava/i.test(String(config['model_type'] ?? ''))));
}
