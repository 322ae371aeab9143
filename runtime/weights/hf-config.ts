// config.json for each saved component, in the shape transformers' config classes read (4.x and 5.x),
// so a run's component folder loads with CLIPVisionModel / SiglipVisionModel / LlamaForCausalLM /
// MistralForCausalLM / MixtralForCausalLM and computes what pipec computed (test/e2e/export-hf.test.ts).
// Two components have no transformers class of their own, and their config says so instead of letting
// transformers load a different model: the projector (LLaVA's projector is a module of
// LlavaForConditionalGeneration, with no from_pretrained; `pipec export RUN --target hf` writes the whole
// LLaVA) and a `vit` without a class token (neither CLIP, which has one and a pre-norm, nor SigLIP,
// which has a patch-embedding bias and gelu-tanh).
import type { ComponentDef } from '../../compiler/ir/graph.js';

/** The op a component computes with: its own, or a custom component's base. */
export function baseOp(c: ComponentDef): string {
  return c.custom ? c.custom.base : c.op;
}

/** What transformers' LLaVA projector needs to know: the activation between its two linears, and whether they have biases. */
export function projectorFields(c: ComponentDef): { mm_projector_type: string; projector_hidden_act: string; multimodal_projector_bias: boolean } {
  const a = c.attrs as Record<string, number | string | boolean>;
  const op = baseOp(c);
  if (op === 'mlp_gelu') {
    const depth = Number(a['depth'] ?? 2);
    return { mm_projector_type: `mlp${depth}x_gelu`, projector_hidden_act: depth >= 2 ? 'gelu' : 'linear', multimodal_projector_bias: true };
  }
  return { mm_projector_type: op, projector_hidden_act: 'linear', multimodal_projector_bias: op === 'linear' ? a['bias'] !== false : false };
}

export function hfConfig(c: ComponentDef): Record<string, unknown> {
  const a = c.attrs as Record<string, number | string | boolean>;
  const op = baseOp(c);
  switch (op) {
    case 'vit':
    case 'clip_vit':
    case 'siglip_vit': {
      const siglip = op === 'siglip_vit';
      const noClass = op === 'vit' && a['cls'] === false;
      const pipec = { op, select_layer: a['select_layer'], select: a['select'], image_mean: c.attrs['image_mean'], image_std: c.attrs['image_std'] };
      return {
        architectures: noClass ? [] : [siglip ? 'SiglipVisionModel' : 'CLIPVisionModel'],
        model_type: noClass ? 'pipec_vit' : siglip ? 'siglip_vision_model' : 'clip_vision_model',
        hidden_size: a['hidden'], intermediate_size: a['mlp'], num_hidden_layers: a['layers'], num_attention_heads: a['heads'],
        image_size: a['image'], patch_size: a['patch'], num_channels: a['channels'] ?? 3, layer_norm_eps: a['norm_eps'],
        hidden_act: siglip ? 'gelu_pytorch_tanh' : 'quick_gelu',
        // SiglipVisionModel builds the attention-pooling head unless told not to; pipec has it only with `head: true`
        ...(siglip ? { vision_use_head: a['head'] === true } : {}),
        torch_dtype: 'float32', dtype: 'float32',
        pipec: noClass ? { ...pipec, note: 'a ViT without a class token and without a patch-embedding bias has no transformers class; use clip_vit or siglip_vit to get a folder transformers loads' } : pipec,
      };
    }
    case 'llama':
    case 'mistral':
    case 'mixtral': {
      const moe = op === 'mixtral';
      const cfg: Record<string, unknown> = {
        architectures: [c.custom?.class ?? (moe ? 'MixtralForCausalLM' : op === 'mistral' ? 'MistralForCausalLM' : 'LlamaForCausalLM')],
        model_type: moe ? 'mixtral' : op,
        vocab_size: a['vocab'], hidden_size: a['hidden'], intermediate_size: a['mlp'], num_hidden_layers: a['layers'],
        num_attention_heads: a['heads'], num_key_value_heads: a['kv_heads'] ?? a['heads'], head_dim: Number(a['hidden']) / Number(a['heads']),
        max_position_embeddings: a['context'],
        // transformers 4.x reads rope_theta, 5.x rope_parameters (and converts a lone rope_theta)
        rope_theta: a['rope_theta'], rope_parameters: { rope_type: 'default', rope_theta: a['rope_theta'] },
        rms_norm_eps: a['norm_eps'], tie_word_embeddings: a['tie_embeddings'] ?? false,
        hidden_act: 'silu', attention_bias: false, torch_dtype: 'float32', dtype: 'float32',
      };
      if (op === 'llama') cfg['mlp_bias'] = false;
      // pipec's decoder attends to the whole prefix; transformers' Mistral windows it (default 4096)
      if (op === 'mistral') cfg['sliding_window'] = a['sliding_window'] ?? null;
      if (moe) Object.assign(cfg, { num_local_experts: a['experts'], num_experts_per_tok: a['top_k'], router_aux_loss_coef: a['aux_loss_coef'], output_router_logits: true, sliding_window: null });
      return c.custom ? customConfig(c, cfg) : cfg;
    }
    case 'cnn':
      // No transformers class: the folder holds pipec's own small encoder (std/vision), read back by pipec
      // and by the exported PyTorch program, which build it from these settings.
      return {
        architectures: [], model_type: 'pipec_cnn', image_size: a['image'], num_channels: a['channels'], width: a['width'],
        hidden_size: a['hidden'], num_hidden_layers: a['layers'], torch_dtype: 'float32', dtype: 'float32',
        pipec: { op, select: a['select'], image_mean: c.attrs['image_mean'], image_std: c.attrs['image_std'], note: 'pipec\'s convolutional encoder (std/vision cnn); not a transformers model' },
      };
    default:
      // No transformers class loads a projector alone (LlavaMultiModalProjector is a module of LLaVA, without
      // from_pretrained): this folder is part of the LLaVA folder that `pipec export RUN --target hf` writes.
      return {
        model_type: 'pipec_projector', ...projectorFields(c), mm_hidden_size: a['in'], hidden_size: a['out'] ?? a['in'],
        pipec: { op, note: 'part of a LLaVA: `pipec export RUN --target hf` writes the LlavaForConditionalGeneration folder; docs/export.md shows how to load this one into LlavaMultiModalProjector' },
      };
  }
}

/**
 * A custom class's config.json: its own settings from its checkpoint (graph `custom.config`) under what
 * pipec computes; with a PyTorch half, the class's model_type and the `auto_map` that lets transformers
 * load it with trust_remote_code (the folder that holds the weights also needs the package's files: the
 * export writes them, docs/export.md).
 */
function customConfig(c: ComponentDef, computed: Record<string, unknown>): Record<string, unknown> {
  const spec = c.custom!;
  const out: Record<string, unknown> = { ...(spec.config ?? {}), ...computed };
  const py = spec.python;
  if (py) {
    if (py.model_type) out['model_type'] = py.model_type;
    out['auto_map'] = {
      ...(py.config_class ? { AutoConfig: `${py.config_class.module}.${py.config_class.name}` } : {}),
      ...(c.role === 'llm' ? { AutoModelForCausalLM: `${py.module}.${spec.class}` } : { AutoModel: `${py.module}.${spec.class}` }),
    };
  }
  return out;
}
