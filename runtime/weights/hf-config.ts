// config.json for each saved component, in the shape transformers' config classes read, so a saved
// component loads with CLIPVisionModel / SiglipVisionModel / LlamaForCausalLM / MixtralForCausalLM
// (the projector has no transformers class; its config follows LLaVA's mm_projector fields).
import type { ComponentDef } from '../../compiler/ir/graph.js';

export function hfConfig(c: ComponentDef): Record<string, unknown> {
  const a = c.attrs as Record<string, number | string | boolean>;
  const op = c.custom ? c.custom.base : c.op;
  switch (op) {
    case 'vit':
    case 'clip_vit':
    case 'siglip_vit': {
      const siglip = op === 'siglip_vit';
      return {
        architectures: [siglip ? 'SiglipVisionModel' : 'CLIPVisionModel'],
        model_type: siglip ? 'siglip_vision_model' : 'clip_vision_model',
        hidden_size: a['hidden'], intermediate_size: a['mlp'], num_hidden_layers: a['layers'], num_attention_heads: a['heads'],
        image_size: a['image'], patch_size: a['patch'], num_channels: a['channels'] ?? 3, layer_norm_eps: a['norm_eps'],
        hidden_act: siglip ? 'gelu_pytorch_tanh' : 'quick_gelu', torch_dtype: 'float32',
        pipec: { op, select_layer: a['select_layer'], select: a['select'], image_mean: c.attrs['image_mean'], image_std: c.attrs['image_std'] },
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
        num_attention_heads: a['heads'], num_key_value_heads: a['kv_heads'] ?? a['heads'], max_position_embeddings: a['context'],
        rope_theta: a['rope_theta'], rms_norm_eps: a['norm_eps'], tie_word_embeddings: a['tie_embeddings'] ?? false,
        hidden_act: 'silu', torch_dtype: 'float32',
      };
      if (moe) Object.assign(cfg, { num_local_experts: a['experts'], num_experts_per_tok: a['top_k'], router_aux_loss_coef: a['aux_loss_coef'], output_router_logits: true });
      return cfg;
    }
    default:
      return { model_type: 'pipec_projector', mm_projector_type: op === 'mlp_gelu' ? `mlp${a['depth'] ?? 2}x_gelu` : op, mm_hidden_size: a['in'], hidden_size: a['out'] ?? a['in'] };
  }
}
