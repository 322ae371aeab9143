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
  if (isObject(config[nested])) return { kind, path: nested };
  // A flat LLaVA-repo config is the LLM's; it does not describe the vision tower.
  if (family === 'vision' && kind === 'llava-repo') return { kind, path: null };
  return { kind, path: '' };
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
