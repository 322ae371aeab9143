// The model half of `pipec export --target hf`: a run's model as transformers' LlavaForConditionalGeneration
// -- its config.json and which tensor of which component folder becomes which LLaVA tensor. Tensors take
// the names of the LLaVA checkpoints published on the hub (vision_tower.vision_model.*,
// multi_modal_projector.*, language_model.model.*, language_model.lm_head.weight), which transformers
// 4.x and 5.x and vLLM all read. What LLaVA cannot compute the way pipec does is refused, located at the
// component, never approximated; what it can compute only through a rewrite (a one-layer projector as
// LLaVA's two layers with an identity second layer) is written so and reported as a note.
import type { ComponentDef, Graph, ModelDef, NodeDef } from '../../compiler/ir/graph.js';
import { M, runtimeError } from '../errors.js';
import { paramSpecs } from '../params.js';
import { baseOp, hfConfig, projectorFields } from '../weights/hf-config.js';
import { locateComponent } from './locate.js';

export interface LlavaTensor {
  /** The name in the exported folder. */
  name: string;
  shape: number[];
  /** Read from this component's folder of the checkpoint under `source`, or written as an identity matrix / zeros. */
  from: { component: string; source: string } | { identity: number } | { zeros: number };
}

export interface VisionInput {
  op: 'clip' | 'siglip';
  image: number;
  patch: number;
  mean: number[];
  std: number[];
  /** Tokens the vision tower adds before the patches (CLIP's class token: 1). */
  additionalTokens: number;
  strategy: 'default' | 'full';
}

export interface LlavaPlan {
  config: Record<string, unknown>;
  tensors: LlavaTensor[];
  vision: VisionInput;
  imageTokens: number;
  /** The llm's context, the tokenizer's model_max_length. */
  context: number;
  notes: string[];
}

export interface LlavaOptions {
  imageTokenId: number;
  tokenIds: { bos?: number; eos?: number; pad?: number };
  /** Write custom components as their base (their own TypeScript forward is not carried). */
  customAsBase?: boolean;
  /** Where errors point when the program's source is gone: the run's graph.json. */
  graphFile: string;
  /** Run checkpoint folders that hold a custom class with its Python package and auto_map, by component: what the refusal points at. */
  classFolders?: Record<string, string>;
}

const without = (o: Record<string, unknown>, ...keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));

export function planLlava(graph: Graph, model: ModelDef, o: LlavaOptions): LlavaPlan {
  const where = (component?: string, arg?: string) => (component ? locateComponent(graph, o.graphFile, component, arg) : { file: graph.source });
  const notLlava = (why: string, component?: string, hint?: string) => runtimeError(M.HfNotLlava, [model.name, why], where(component), hint);
  const one = (role: ComponentDef['role']): ComponentDef => {
    const cs = model.components.filter((c) => c.role === role);
    if (cs.length === 1) return cs[0]!;
    if (role === 'encoder' && cs.length === 0)
      throw notLlava('it has no vision encoder', undefined, "the run's checkpoint folder for the llm is already a transformers causal LM (docs/export.md)");
    throw notLlava(`it has ${cs.length} ${role}s; a LLaVA has one vision tower, one projector and one language model`, cs[1]?.name);
  };
  const enc = one('encoder'), proj = one('projector'), llm = one('llm');
  const node = (c: ComponentDef): NodeDef | undefined => model.nodes.find((n) => n.component === c.name && n.op !== 'token_embedding');
  const splices = model.nodes.filter((n) => n.op === 'llava_splice');
  const encNode = node(enc), projNode = node(proj), splice = splices[0];
  if (splices.length !== 1 || !encNode || !projNode || projNode.inputs[0] !== encNode.id || splice!.inputs[1] !== projNode.id || encNode.inputs[0] !== 'pixel_values')
    throw notLlava(`its flow is not pixels -> ${enc.name} -> ${proj.name} -> ${llm.name} at one image marker`, proj.name, 'transformers\' LLaVA runs exactly that flow');

  const notes: string[] = [];
  for (const c of [enc, proj, llm]) {
    if (!c.custom && c.op !== 'custom') continue;
    if (!o.customAsBase || !c.custom) {
      // transformers' LLaVA builds its parts from registered model types, not from a checkpoint's remote code
      const py = c.custom?.python;
      const what = py
        ? `it is the custom class ${c.custom!.class} (${py.file}); transformers' LLaVA builds its parts from registered model types and would not run the class's remote code`
        : `it is the custom class ${c.custom?.class ?? '?'} (${c.custom?.module ?? '?'}), whose forward is TypeScript; transformers would run its base, \`${c.custom?.base ?? '?'}\`, instead`;
      // a class with a PyTorch half loads on its own: a run's checkpoint folder holds its package and auto_map
      const folder = o.classFolders?.[c.name];
      const alone = !py ? '' : folder
        ? `; the trained class loads on its own from the run's checkpoint: AutoModel${c.role === 'llm' ? 'ForCausalLM' : ''}.from_pretrained("${folder}", trust_remote_code=True) (its package and auto_map are there)`
        : `; the trained class loads on its own with trust_remote_code=True from its component folder in the checkpoints of runs by this pipec version (which copy its package beside config.json's auto_map) or of the exported PyTorch trainer (pipec export --target torch)`;
      throw runtimeError(M.HfNotExpressible, [c.name, what], where(c.name),
        `export with --custom-as-base to write it as ${c.custom?.base ?? 'its base'} (a different model wherever the class computes differently), or declare it with the base constructor${alone}`);
    }
    notes.push(`custom component \`${c.name}\` (${c.custom.class}) is written as its base, ${c.custom.base}: its own forward is not carried over`);
  }

  // ---- vision tower ----
  const ea = enc.attrs as Record<string, number | string | boolean>;
  const encOp = baseOp(enc);
  if (!['vit', 'clip_vit', 'siglip_vit'].includes(encOp))
    throw runtimeError(M.HfNotExpressible, [enc.name, `op ${encOp} is not a CLIP or SigLIP vision tower`], where(enc.name),
      '`pipec export RUN --target torch` writes it as a PyTorch program; for a transformers LLaVA, train a model whose encoder is vit, clip_vit or siglip_vit (pipelines/tiny-llava.pipe)');
  const siglip = encOp === 'siglip_vit';
  const cls = !siglip && ea['cls'] !== false;
  if (!siglip && !cls)
    throw runtimeError(M.HfNotExpressible, [enc.name, 'a vit without a class token (and without a pre-norm) is neither transformers\' CLIP vision tower nor its SigLIP one (which has a patch-embedding bias and gelu-tanh)'], where(enc.name, 'cls'),
      'use clip_vit (class token) or siglip_vit for a model you mean to export');
  const select = String(ea['select'] ?? 'patch');
  // LLaVA's "default" drops the first token (CLIP's class token); "full" keeps every token
  const strategy: 'default' | 'full' = cls && select === 'patch' ? 'default' : 'full';
  const vision: VisionInput = {
    op: siglip ? 'siglip' : 'clip', image: Number(ea['image']), patch: Number(ea['patch']),
    mean: enc.attrs['image_mean'] as number[], std: enc.attrs['image_std'] as number[], additionalTokens: cls ? 1 : 0, strategy,
  };

  // ---- projector ----
  const pa = proj.attrs as Record<string, number | string | boolean>;
  const projOp = baseOp(proj);
  const fields = projectorFields(proj);
  const tensors: LlavaTensor[] = [];
  const from = (c: ComponentDef, rename: (n: string) => string) => {
    for (const s of paramSpecs([c])) tensors.push({ name: rename(s.name), shape: s.shape, from: { component: c.name, source: s.name } });
  };
  const textHidden = Number(llm.attrs['hidden']);
  const visionHidden = Number(ea['hidden']);
  from(enc, (n) => `vision_tower.${n}`); // vision_model.* -> vision_tower.vision_model.*
  if (projOp === 'mlp_gelu' && Number(pa['depth'] ?? 2) === 2) from(proj, (n) => n);
  else if (projOp === 'linear' || (projOp === 'mlp_gelu' && Number(pa['depth']) === 1)) {
    // LLaVA always has two linears: the second is the identity, with projector_hidden_act "linear" (none),
    // so linear_2(linear_1(x)) is exactly linear_1(x) (x * 1 plus zeros, in float32 too)
    from(proj, (n) => n);
    tensors.push({ name: 'multi_modal_projector.linear_2.weight', shape: [textHidden, textHidden], from: { identity: textHidden } });
    if (fields.multimodal_projector_bias) tensors.push({ name: 'multi_modal_projector.linear_2.bias', shape: [textHidden], from: { zeros: textHidden } });
    notes.push(`projector \`${proj.name}\` (${projOp === 'linear' ? 'linear' : 'mlp_gelu of depth 1'}) is written as LLaVA's two-layer projector with an identity second layer and no activation between (the same function; ${textHidden}x${textHidden} more parameters)`);
  } else if (projOp === 'identity') {
    tensors.push({ name: 'multi_modal_projector.linear_1.weight', shape: [textHidden, visionHidden], from: { identity: textHidden } });
    tensors.push({ name: 'multi_modal_projector.linear_2.weight', shape: [textHidden, textHidden], from: { identity: textHidden } });
    notes.push(`projector \`${proj.name}\` (identity) is written as LLaVA's two-layer projector with two identity layers`);
  } else if (projOp === 'mlp_gelu')
    throw runtimeError(M.HfNotExpressible, [proj.name, `mlp_gelu of depth ${pa['depth']}: transformers' LLaVA projector has exactly two linear layers (mlp2x_gelu)`], where(proj.name, 'depth'),
      'use depth: 2 (or 1, or a linear projector) for a model you mean to export as a transformers LLaVA');
  else throw runtimeError(M.HfNotExpressible, [proj.name, `op ${projOp} is not a LLaVA projector`], where(proj.name));

  // ---- language model ----
  const llmOp = baseOp(llm);
  if (!['llama', 'mistral', 'mixtral'].includes(llmOp)) throw runtimeError(M.HfNotExpressible, [llm.name, `op ${llmOp} is not a Llama, Mistral or Mixtral language model`], where(llm.name));
  from(llm, (n) => `language_model.${n}`); // model.* -> language_model.model.*, lm_head.weight -> language_model.lm_head.weight
  if (llmOp === 'mistral') {
    const window = Number(llm.attrs['sliding_window'] ?? Infinity);
    const longest = Math.max(...graph.stages.map((s) => s.max_length));
    if (longest > window) notes.push(`llm \`${llm.name}\` declares sliding_window ${window}, which transformers' Mistral applies; pipec trained on sequences up to ${longest} tokens attending to the whole prefix, so beyond ${window} tokens the two differ`);
  }

  const imageTokens = Number(splice!.attrs['image_tokens'] ?? model.image_tokens ?? 0);
  const grid = Math.floor(vision.image / vision.patch) ** 2;
  const processorTokens = grid + vision.additionalTokens - (strategy === 'default' ? 1 : 0);
  if (processorTokens !== imageTokens) throw runtimeError(M.HfImageTokenCount, [processorTokens, imageTokens], where(enc.name));

  const visionConfig = without(hfConfig(enc), 'pipec', 'architectures', 'torch_dtype', 'dtype');
  if (enc.custom) Object.assign(visionConfig, { model_type: siglip ? 'siglip_vision_model' : 'clip_vision_model' });
  const textConfig = without(hfConfig(llm), 'architectures', 'torch_dtype', 'dtype');
  if (llmOp === 'mixtral') textConfig['output_router_logits'] = false; // LLaVA's loss is the LM loss alone (docs/export.md)
  const ids = Object.fromEntries(Object.entries({ bos_token_id: o.tokenIds.bos, eos_token_id: o.tokenIds.eos, pad_token_id: o.tokenIds.pad }).filter(([, v]) => v !== undefined));
  Object.assign(textConfig, ids);
  const config: Record<string, unknown> = {
    architectures: ['LlavaForConditionalGeneration'],
    model_type: 'llava',
    vision_config: visionConfig,
    text_config: textConfig,
    image_token_index: o.imageTokenId,
    image_seq_length: imageTokens,
    projector_hidden_act: fields.projector_hidden_act,
    multimodal_projector_bias: fields.multimodal_projector_bias,
    vision_feature_layer: Number(ea['select_layer'] ?? -1),
    vision_feature_select_strategy: strategy,
    tie_word_embeddings: llm.attrs['tie_embeddings'] === true,
    ...ids,
    torch_dtype: 'float32',
    dtype: 'float32',
  };
  return { config, tensors, vision, imageTokens, context: Number(llm.attrs['context'] ?? 0), notes };
}
