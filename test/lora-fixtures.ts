// LoRA test programs: test/runtime/tiny-lora.pipe (the tiny program with `adapter lm.lora`, a stage
// training only the adapter and one after it freezing it) and a model with adapters on every kind of
// linear layer the language lets one adapt (the llm's attention and MLP, the projector, the vision tower).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph, ModelDef } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { repo } from './paths.js';
import { tmpDir } from './helpers/tmp.js';

export const TINY_LORA = repo('test/runtime/tiny-lora.pipe');

/** tiny-lora.pipe lowered: align (20 steps, checkpoint every 2) trains lm.lora; finetune (2 steps) trains proj. */
export function tinyLoraGraph(sets: string[] = []): Graph {
  const r = compile({ file: TINY_LORA, configFiles: [], sets, lower: true });
  assert.ok(r.graph, `tiny-lora.pipe compiles: ${r.diagnostics.map((d) => d.message).join('; ')}`);
  return r.graph;
}

const EVERY_KIND = `import "std/vision"
import "std/projectors"
import "std/llm"
import "std/train"

model tiny {
  encoder vision = vit(image: 16, patch: 8, hidden: 16, layers: 1, heads: 2, mlp: 32, select: "patch")
  projector proj = mlp_gelu(depth: 2, in: vision.hidden, out: lm.hidden)
  llm lm = llama(vocab: 128, hidden: 32, layers: 1, heads: 2, kv_heads: 1, mlp: 64, context: 64)
  adapter lm.lora = lora(rank: 4, alpha: 8, targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
  adapter proj.lora = lora(rank: 2, alpha: 3, targets: ["linear_1"])
  adapter vision.lora = lora(rank: 2, alpha: 2, targets: ["q_proj", "fc1"])
  flow vision -> proj -> lm at "<image>"
}
`;

/** The tiny model with adapters on the llm's seven linear layers, the projector's first and the vision tower's q_proj and fc1. */
export function everyKindModel(): ModelDef {
  const file = path.join(tmpDir('lora-every-kind'), 'every-kind.pipe');
  fs.writeFileSync(file, EVERY_KIND);
  const r = compile({ file, configFiles: [], sets: [], lower: true });
  assert.ok(r.graph, `the program compiles: ${r.diagnostics.map((d) => d.message).join('; ')}`);
  return r.graph.models[0]!;
}
