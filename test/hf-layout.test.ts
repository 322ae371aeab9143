// The layout module the checker and the loader share (compiler/check/hf-layout.ts) and the config
// sections (hf-config-section.ts), on tensor names alone: these run without Python (hf-layouts.test.ts
// checks the same layouts on checkpoints transformers wrote).
import { strict as assert } from 'node:assert';
import { configSection, sectionValue } from '../compiler/check/hf-config-section.js';
import { describeLayout, detectLayout, elsewhere, sliceRange, slicedShape, sourceOf, splitWeightsRef, type Family } from '../compiler/check/hf-layout.js';
import { layoutsOf, renderGraph } from '../cli/graph-view.js';
import { hoverFor } from '../compiler/lsp/hover.js';
import { SymbolIndex } from '../compiler/lsp/navigation.js';
import { compile } from '../compiler/service/service.js';
import { makeGoldenFixtures } from './golden/fixtures.js';
import { REPO_ROOT } from './paths.js';

const VISION = ['vision_model.embeddings.patch_embedding.weight', 'vision_model.encoder.layers.0.mlp.fc1.weight', 'vision_model.post_layernorm.bias'];
const LLM = ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.block_sparse_moe.gate.weight',
  'model.layers.0.block_sparse_moe.experts.1.w1.weight', 'model.layers.0.block_sparse_moe.experts.1.w3.weight', 'model.layers.0.block_sparse_moe.experts.1.w2.weight',
  'model.norm.weight', 'lm_head.weight'];
const PROJ = ['multi_modal_projector.linear_1.weight', 'multi_modal_projector.linear_1.bias', 'multi_modal_projector.linear_2.weight', 'multi_modal_projector.linear_2.bias'];

/** The checkpoint names a layout maps pipec's names to, for a checkpoint holding exactly those. */
function detect(family: Family, names: string[], checkpoint: string[], part?: string) {
  const has = new Set(checkpoint);
  const d = detectLayout(family, names, (n) => has.has(n), part);
  return { d, mapped: names.map((n) => sourceOf(d.layout, n, (x) => has.has(x))!.name) };
}

describe('hf-layout: which names a checkpoint uses', () => {
  const cases: [string, Family, string[], (n: string) => string][] = [
    ['CLIPVisionModel, transformers 4.x', 'vision', VISION, (n) => n],
    ['CLIPVisionModel, transformers 5.x (no vision_model.)', 'vision', VISION, (n) => n.replace('vision_model.', '')],
    ['LLaVA 4.x', 'vision', VISION, (n) => `vision_tower.${n}`],
    ['LLaVA saved by 5.x', 'vision', VISION, (n) => n.replace('vision_model.', 'vision_tower.')],
    ['LLaVA 5.x', 'vision', VISION, (n) => n.replace('vision_model.', 'model.vision_tower.')],
    ['the LLaVA repos', 'vision', VISION, (n) => `model.vision_tower.vision_tower.${n}`],
    ['LLaVA 4.x', 'llm', LLM, (n) => `language_model.${n}`],
    ['LLaVA 5.x', 'llm', LLM, (n) => (n === 'lm_head.weight' ? n : n.replace(/^model\./, 'model.language_model.'))],
    ['LLaVA 4.x', 'projector', PROJ, (n) => n],
    ['LLaVA 5.x', 'projector', PROJ, (n) => `model.${n}`],
    ['the LLaVA repos', 'projector', PROJ, (n) => n.replace(/multi_modal_projector\.linear_(\d)/, (_, k: string) => `model.mm_projector.${2 * (Number(k) - 1)}`)],
    ['a bare projector file', 'projector', PROJ, (n) => n.replace('multi_modal_projector.', '')],
  ];
  for (const [what, family, names, rename] of cases) {
    it(`${family}: ${what}`, () => {
      const { d, mapped } = detect(family, names, [...names.map(rename), 'text_model.embeddings.token_embedding.weight']);
      assert.equal(d.found, names.length);
      assert.deepEqual(mapped, names.map(rename));
      assert.deepEqual(d.alsoComplete, []);
    });
  }

  it("fused Mixtral experts: gate_up_proj's first half is w1, its second w3, down_proj is w2, sliced per expert", () => {
    const fused = ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.mlp.gate.weight', 'model.layers.0.mlp.experts.gate_up_proj',
      'model.layers.0.mlp.experts.down_proj', 'model.norm.weight', 'lm_head.weight'];
    const has = new Set(fused);
    const d = detectLayout('llm', LLM, (n) => has.has(n));
    assert.equal(d.found, LLM.length);
    assert.match(describeLayout(d.layout), /experts fused/);
    const w1 = sourceOf(d.layout, 'model.layers.0.block_sparse_moe.experts.1.w1.weight', (n) => has.has(n))!;
    const w3 = sourceOf(d.layout, 'model.layers.0.block_sparse_moe.experts.1.w3.weight', (n) => has.has(n))!;
    const w2 = sourceOf(d.layout, 'model.layers.0.block_sparse_moe.experts.1.w2.weight', (n) => has.has(n))!;
    assert.deepEqual([w1, w3, w2], [
      { name: 'model.layers.0.mlp.experts.gate_up_proj', expert: 1, half: 0 }, { name: 'model.layers.0.mlp.experts.gate_up_proj', expert: 1, half: 1 },
      { name: 'model.layers.0.mlp.experts.down_proj', expert: 1, half: undefined }]);
    // [E=4, 2I=6, D=2]: expert 1 starts at element 12; its gate half is rows 0-2, its up half rows 3-5
    assert.deepEqual(slicedShape([4, 6, 2], w1), [3, 2]);
    assert.deepEqual(sliceRange([4, 6, 2], w1), [12, 18]);
    assert.deepEqual(sliceRange([4, 6, 2], w3), [18, 24]);
    assert.deepEqual(sliceRange([4, 2, 3], w2), [6, 12]);
    assert.equal(slicedShape([1, 6, 2], w1), undefined); // expert 1 of a one-expert tensor
  });

  it('a tower held twice is ambiguous; #ROOT picks one ("#" alone: the top level)', () => {
    const both = [...VISION, ...VISION.map((n) => `vision_tower.${n}`)];
    assert.equal(detect('vision', VISION, both).d.alsoComplete.length, 1);
    assert.deepEqual(detect('vision', VISION, both, 'vision_tower').mapped, VISION.map((n) => `vision_tower.${n}`));
    assert.deepEqual(detect('vision', VISION, both, '').mapped, VISION);
    assert.deepEqual(splitWeightsRef('ckpt/llava#vision_tower'), { path: 'ckpt/llava', part: 'vision_tower' });
    assert.deepEqual(splitWeightsRef('ckpt/llava#'), { path: 'ckpt/llava', part: '' });
    assert.deepEqual(splitWeightsRef('ckpt/llava'), { path: 'ckpt/llava' });
  });

  it('under an unknown prefix nothing is found, and the prefix is named', () => {
    const odd = VISION.map((n) => n.replace('vision_model.', 'visual.'));
    const { d, mapped } = detect('vision', VISION, odd);
    assert.equal(d.found, 0);
    assert.deepEqual(mapped, VISION); // reported under pipec's own names
    assert.deepEqual(elsewhere('vision', VISION[0]!, odd), { found: odd[0], root: 'visual' });
    assert.deepEqual(detect('vision', VISION, odd, 'visual').mapped, odd);
  });
});

describe('hf-config-section: the component\'s part of config.json', () => {
  // llava-1.5-7b-hf as the hub has it: nested configs written as their difference from the defaults
  const llava = {
    architectures: ['LlavaForConditionalGeneration'], model_type: 'llava', image_token_index: 32000, vocab_size: 32064,
    text_config: { model_type: 'llama', max_position_embeddings: 4096, rms_norm_eps: 1e-5, vocab_size: 32064 },
    vision_config: { model_type: 'clip_vision_model', hidden_size: 1024, image_size: 336, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24, patch_size: 14 },
  };

  it('reads a nested section, with transformers\' defaults for keys it does not write', () => {
    const text = configSection(llava, 'llm');
    assert.deepEqual(text, { kind: 'llava', path: 'text_config', modelType: 'llama' });
    assert.deepEqual(sectionValue(llava, text, ['vocab_size']), { key: 'text_config.vocab_size', value: 32064 });
    assert.deepEqual(sectionValue(llava, text, ['hidden_size']), { key: 'text_config.hidden_size', value: 4096, absent: 'LlamaConfig' });
    assert.deepEqual(sectionValue(llava, text, ['num_key_value_heads']), { key: 'text_config.num_key_value_heads', value: 32, absent: 'LlamaConfig' });
    // RoPE: 4.x rope_theta, 5.x rope_parameters.rope_theta; the default only when neither is written
    assert.equal(sectionValue(llava, text, ['rope_theta', 'rope_parameters.rope_theta'])!.value, 10000);
    const v5 = { ...llava, text_config: { ...llava.text_config, rope_parameters: { rope_theta: 500000, rope_type: 'default' } } };
    assert.deepEqual(sectionValue(v5, configSection(v5, 'llm'), ['rope_theta', 'rope_parameters.rope_theta']), { key: 'text_config.rope_parameters.rope_theta', value: 500000 });
    assert.equal(sectionValue(llava, configSection(llava, 'vision'), ['layer_norm_eps'])!.value, 1e-5);
  });

  it('a per-component config is the whole file; a LLaVA repo config does not describe the tower', () => {
    const mixtral = { model_type: 'mixtral', hidden_size: 64 };
    assert.deepEqual(configSection(mixtral, 'llm'), { kind: 'component', path: '', modelType: 'mixtral' });
    assert.equal(sectionValue(mixtral, configSection(mixtral, 'llm'), ['router_aux_loss_coef'])!.value, 0.001);
    const repo = { model_type: 'llava_llama', hidden_size: 4096, mm_hidden_size: 1024, mm_vision_tower: 'openai/clip-vit-large-patch14-336' };
    assert.equal(configSection(repo, 'vision').path, null);
    assert.deepEqual(configSection(repo, 'llm'), { kind: 'llava-repo', path: '', modelType: 'llama' });
    // a hand-written config without model_type has no defaults
    assert.equal(sectionValue({ hidden_size: 8 }, configSection({ hidden_size: 8 }, 'llm'), ['vocab_size']), undefined);
  });
});

describe('the detected layout in hover and pipec graph', () => {
  it('names the weights and how they were read', () => {
    makeGoldenFixtures();
    const r = compile({ file: 'test/golden/cases/ok-checkpoint-root/main.pipe', cwd: REPO_ROOT, lower: true });
    const sym = new SymbolIndex(r.check!).syms.find((x) => x.kind === 'component' && x.name === 'vision')!;
    assert.match(hoverFor(sym, r.check!)!, /weights "\.\.\/checkpoint-wrong-prefix\/ckpt#visual": read as the part under visual\.: visual\.\*/);
    assert.match(renderGraph(r.graph!, layoutsOf(r.check)), /vision = vit\(.*\n\s+weights "\.\.\/checkpoint-wrong-prefix\/ckpt#visual": the part under visual\.: visual\.\*/);
  });
});
