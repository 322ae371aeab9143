// LoRA test graphs until the language has `adapter lm.lora = lora(...)`: the tiny program's graph with an
// AdapterDef built as the compiler will (PEFT's target_modules matched against the component's linear
// weights, A [r, in] and B [out, r] under the weight's HF name with its `{i}` loop) and stages that
// train or freeze it by name.
import type { AdapterDef, Graph, ModelDef } from '../compiler/ir/graph.js';
import { SHORT, tinyGraph } from './run-fixtures.js';

export interface LoraOptions {
  component?: string;
  rank?: number;
  alpha?: number;
  dropout?: number;
  targets?: string[];
}

/** The adapter the compiler would lower for `adapter <component>.lora = lora(...)` in `model`. */
export function loraAdapter(model: ModelDef, o: LoraOptions = {}): AdapterDef {
  const component = o.component ?? 'lm', rank = o.rank ?? 4, targets = o.targets ?? ['q_proj', 'v_proj'];
  const comp = model.components.find((c) => c.name === component)!;
  const tensors: AdapterDef['tensors'] = [];
  for (const t of comp.tensors) {
    const m = /^(.*\.)?([A-Za-z0-9_]+)\.weight$/.exec(t.name);
    if (!m || t.shape.length !== 2 || !targets.includes(m[2]!)) continue;
    const module = t.name.slice(0, -'.weight'.length);
    const rep = t.repeat ? { repeat: t.repeat } : {};
    tensors.push({ name: `${module}.lora_A.weight`, shape: [rank, t.shape[1]!], ...rep }, { name: `${module}.lora_B.weight`, shape: [t.shape[0]!, rank], ...rep });
  }
  const count = (t: AdapterDef['tensors'][number]) => t.shape.reduce((a, b) => a * b, 1) * Object.values(t.repeat ?? {}).reduce((a, b) => a * b, 1);
  return {
    name: `${component}.lora`, component, kind: 'lora', rank, alpha: o.alpha ?? 8, dropout: o.dropout ?? 0, targets, quantize: 'none', tensors,
    params: tensors.reduce((a, t) => a + count(t), 0),
  };
}

/**
 * The tiny program with `lm.lora`: stage align trains only the adapter (everything else frozen), stage
 * finetune (after align) trains the projector with the adapter frozen, so it must start from align's.
 */
export function tinyLoraGraph(o: LoraOptions = {}, sets: string[] = SHORT): Graph {
  const g = tinyGraph(sets);
  const model = g.models[0]!;
  const a = loraAdapter(model, o);
  model.adapters = [a];
  const [align, finetune] = g.stages as [Graph['stages'][number], Graph['stages'][number]];
  align.train = [a.name];
  align.freeze = ['vision', 'proj', 'lm'];
  finetune.train = ['proj'];
  finetune.freeze = ['vision', 'lm', a.name];
  finetune.handoff = [{ component: a.name, from: 'align' }];
  return g;
}
