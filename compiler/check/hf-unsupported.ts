// Config fields that change what a checkpoint computes and that pipec's ops do not implement: such a
// checkpoint would load (the tensors fit) and then silently compute something else. Each is an error at
// the weights, naming the key as config.json spells it.
import { M } from '../diagnostics/catalogue.js';
import { configSection, sectionKey, sectionLookup } from './hf-config-section.js';
import type { Family } from './hf-layout.js';
import type { ComponentInfo, Reporter } from './program.js';

/** The activation each vision op computes (runtime/ops/vit.ts), as transformers names it. */
const VISION_ACT: Record<string, string[]> = { vit: ['quick_gelu'], clip_vit: ['quick_gelu'], siglip_vit: ['gelu_pytorch_tanh', 'gelu_new'] };

export function checkUnsupportedConfig(c: ComponentInfo, config: Record<string, unknown>, family: Family, reporter: Reporter): void {
  const section = configSection(config, family);
  if (section.path === null || family === 'projector') return;
  const op = c.custom ? c.custom.base : c.op;
  const get = (key: string) => sectionLookup(config, section, key);
  const fail = (key: string, value: unknown, what: string, hint?: string) => {
    const d = reporter.report(M.UnsupportedConfig, c.weights!.range, sectionKey(section, key), JSON.stringify(value), what);
    if (hint) d.hint = hint;
  };
  const act = get('hidden_act');
  if (family === 'vision') {
    const ok = VISION_ACT[op];
    if (typeof act === 'string' && ok && !ok.includes(act)) fail('hidden_act', act, `\`${op}\` computes ${ok[0]}`, op === 'clip_vit' ? 'OpenAI CLIP uses quick_gelu; a tower trained with another activation needs a custom component' : undefined);
    return;
  }
  if (typeof act === 'string' && act !== 'silu') fail('hidden_act', act, `\`${op}\`'s MLP is SwiGLU (silu)`);
  for (const key of ['attention_bias', 'mlp_bias']) if (get(key) === true) fail(key, true, `\`${op}\`'s projections have no bias`);
  const heads = c.params.get('heads'), hidden = c.params.get('hidden');
  const headDim = get('head_dim');
  if (typeof headDim === 'number' && heads?.t === 'num' && hidden?.t === 'num' && headDim * heads.v !== hidden.v)
    fail('head_dim', headDim, `\`${op}\` splits hidden ${hidden.v} into ${heads.v} heads of ${hidden.v / heads.v}`);
  // RoPE scaling: 4.x `rope_scaling` (null = none), 5.x `rope_parameters.rope_type` ("default" = none).
  const scaling = get('rope_scaling');
  const scaledType = scaling && typeof scaling === 'object' ? (scaling as Record<string, unknown>)['rope_type'] ?? (scaling as Record<string, unknown>)['type'] : undefined;
  if (scaling && scaledType !== 'default') fail('rope_scaling', scaling, `\`${op}\` uses unscaled RoPE`);
  const ropeType = get('rope_parameters.rope_type');
  if (typeof ropeType === 'string' && ropeType !== 'default') fail('rope_parameters.rope_type', ropeType, `\`${op}\` uses unscaled RoPE`);
}
