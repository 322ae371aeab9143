// Checkpoint fixtures for the golden cases, written before the cases run (safetensors are binary, so
// they are generated rather than committed; .gitignore keeps them out of the tree).
import * as path from 'node:path';
import { repo } from '../paths.js';
import { writeFileWhole, writeRawSafetensors, writeSafetensors } from '../helpers/safetensors-writer.js';

/** Tensors of the tiny `vit(image: 32, patch: 8, hidden: 64, layers: 2, heads: 4, mlp: 128)`. */
export function tinyVitTensors(hidden = 64, mlp = 128, layers = 2): Record<string, { shape: number[] }> {
  const t: Record<string, { shape: number[] }> = {
    'vision_model.embeddings.class_embedding': { shape: [hidden] },
    'vision_model.embeddings.patch_embedding.weight': { shape: [hidden, 3, 8, 8] },
    'vision_model.embeddings.position_embedding.weight': { shape: [17, hidden] },
    'vision_model.pre_layrnorm.weight': { shape: [hidden] },
    'vision_model.pre_layrnorm.bias': { shape: [hidden] },
    'vision_model.post_layernorm.weight': { shape: [hidden] },
    'vision_model.post_layernorm.bias': { shape: [hidden] },
  };
  for (let i = 0; i < layers; i++) {
    const p = `vision_model.encoder.layers.${i}`;
    for (const n of ['layer_norm1', 'layer_norm2']) {
      t[`${p}.${n}.weight`] = { shape: [hidden] };
      t[`${p}.${n}.bias`] = { shape: [hidden] };
    }
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      t[`${p}.self_attn.${n}.weight`] = { shape: [hidden, hidden] };
      t[`${p}.self_attn.${n}.bias`] = { shape: [hidden] };
    }
    t[`${p}.mlp.fc1.weight`] = { shape: [mlp, hidden] };
    t[`${p}.mlp.fc1.bias`] = { shape: [mlp] };
    t[`${p}.mlp.fc2.weight`] = { shape: [hidden, mlp] };
    t[`${p}.mlp.fc2.bias`] = { shape: [hidden] };
  }
  return t;
}

/** Tensors of a tiny `llama(vocab: 512, hidden, layers: 2, heads: 4, mlp: 256)` (kv_heads = heads), under `prefix` (`model.` by default). */
export function tinyLlamaTensors(hidden = 64, prefix = 'model.', head = 'lm_head.weight', layers = 2, mlp = 256, vocab = 512): Record<string, { shape: number[] }> {
  const t: Record<string, { shape: number[] }> = { [`${prefix}embed_tokens.weight`]: { shape: [vocab, hidden] }, [`${prefix}norm.weight`]: { shape: [hidden] }, [head]: { shape: [vocab, hidden] } };
  for (let i = 0; i < layers; i++) {
    const p = `${prefix}layers.${i}`;
    for (const n of ['input_layernorm', 'post_attention_layernorm']) t[`${p}.${n}.weight`] = { shape: [hidden] };
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) t[`${p}.self_attn.${n}.weight`] = { shape: [hidden, hidden] };
    t[`${p}.mlp.gate_proj.weight`] = { shape: [mlp, hidden] };
    t[`${p}.mlp.up_proj.weight`] = { shape: [mlp, hidden] };
    t[`${p}.mlp.down_proj.weight`] = { shape: [hidden, mlp] };
  }
  return t;
}

/** The tiny vit's tensors with `vision_model.` replaced by `prefix`. */
const vitUnder = (prefix: string) => Object.fromEntries(Object.entries(tinyVitTensors()).map(([k, v]) => [prefix + k.slice('vision_model.'.length), v]));

export function makeGoldenFixtures(): void {
  const cases = repo('test/golden/cases');
  // checkpoint-mismatch: config.json disagrees on hidden size; one tensor has the wrong shape; two are missing.
  {
    const dir = path.join(cases, 'checkpoint-mismatch/ckpt');
    const t = tinyVitTensors();
    t['vision_model.encoder.layers.1.mlp.fc1.weight'] = { shape: [100, 64] };
    delete t['vision_model.post_layernorm.weight'];
    delete t['vision_model.post_layernorm.bias'];
    writeSafetensors(path.join(dir, 'model.safetensors'), t);
  }
  // ok-checkpoint-sharded: a matching checkpoint split over two shards with an index.
  {
    const dir = path.join(cases, 'ok-checkpoint-sharded/ckpt');
    const all = Object.entries(tinyVitTensors());
    const half = Math.ceil(all.length / 2);
    const shards = [Object.fromEntries(all.slice(0, half)), Object.fromEntries(all.slice(half))];
    const weightMap: Record<string, string> = {};
    shards.forEach((s, i) => {
      const name = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(path.join(dir, name), s);
      for (const k of Object.keys(s)) weightMap[k] = name;
    });
    writeFileWhole(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
  }
  // checkpoint-shard-missing: the index names a shard that is not there.
  {
    const dir = path.join(cases, 'checkpoint-shard-missing/ckpt');
    writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), tinyVitTensors());
    const weightMap = Object.fromEntries(Object.keys(tinyVitTensors()).map((k, i) => [k, i % 2 ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors']));
    writeFileWhole(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
  }
  // checkpoint-bad-header: a file whose header length (1000) is larger than the file (64 bytes).
  writeRawSafetensors(path.join(cases, 'checkpoint-bad-header/ckpt/model.safetensors'), '', 56, 1000n);
  // checkpoint-wrong-prefix (and ok-checkpoint-root): a vision tower saved inside another model, under `visual.`
  writeSafetensors(path.join(cases, 'checkpoint-wrong-prefix/ckpt/model.safetensors'), vitUnder('visual.'));
  // checkpoint-ambiguous: the tower twice, as a CLIPVisionModel (vision_model.*) and as LLaVA's (vision_tower.vision_model.*)
  writeSafetensors(path.join(cases, 'checkpoint-ambiguous/ckpt/model.safetensors'), { ...tinyVitTensors(), ...vitUnder('vision_tower.vision_model.') });
  // checkpoint-llava-config: a LlavaForConditionalGeneration folder, transformers 4.x names
  writeSafetensors(path.join(cases, 'checkpoint-llava-config/llava/model.safetensors'), {
    ...vitUnder('vision_tower.vision_model.'),
    ...tinyLlamaTensors(64, 'language_model.model.', 'language_model.lm_head.weight'),
    'multi_modal_projector.linear_1.weight': { shape: [64, 64] }, 'multi_modal_projector.linear_1.bias': { shape: [64] },
    'multi_modal_projector.linear_2.weight': { shape: [64, 64] }, 'multi_modal_projector.linear_2.bias': { shape: [64] },
  });
  // custom-config-mismatch: a Llama checkpoint of hidden 64 under a custom llm that says 96
  writeSafetensors(path.join(cases, 'custom-config-mismatch/ckpt/model.safetensors'), tinyLlamaTensors(64));
}
