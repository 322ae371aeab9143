// LoRA adapters in PEFT's own format, one folder per adapter inside a checkpoint:
//   <adapter>/adapter_model.safetensors   `base_model.model.<HF name>` tensors, as PeftModel.save_pretrained
//                                          names them (lora_A [r, in], lora_B [out, r], no adapter name)
//   <adapter>/adapter_config.json         LoraConfig: peft_type LORA, r, lora_alpha, lora_dropout,
//                                          target_modules, bias "none", task_type (CAUSAL_LM for an llm),
//                                          base_model_name_or_path = the component's folder beside it
// so `PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(CKPT/lm), CKPT/lm.lora)` computes what
// pipec computed. Loading reads the same names back (resume, hand-off); `foldAdapter` is `pipec merge`'s
// W + (alpha / r) B A.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AdapterDef, ComponentDef } from '../../compiler/ir/graph.js';
import { M, runtimeError } from '../errors.js';
import { LORA_A } from '../ops/lora.js';
import type { ParamStore } from '../params.js';
import { expandTensorNames } from '../params.js';
import { encodeSafetensors, readWeights } from '../weights/safetensors.js';

export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
export const ADAPTER_CONFIG = 'adapter_config.json';
/** The prefix PEFT's save_pretrained gives every tensor (PeftModel.base_model.model.<name>). */
export const PEFT_PREFIX = 'base_model.model.';

/** adapter_config.json as PEFT 0.x writes it for a LoraConfig (fields it needs; the others default). */
export function adapterConfig(a: AdapterDef, component: ComponentDef, baseModel: string | null): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: component.role === 'llm' ? 'CAUSAL_LM' : null,
    base_model_name_or_path: baseModel,
    r: a.rank,
    lora_alpha: a.alpha,
    lora_dropout: a.dropout,
    target_modules: [...a.targets].sort(),
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: false,
    use_dora: false,
    init_lora_weights: true,
    modules_to_save: null,
    inference_mode: true,
    pipec: { adapter: a.name, component: a.component, ...(a.quantize !== 'none' ? { quantize: a.quantize } : {}) },
  };
}

/** The adapter's tensors under PEFT's names, ready for encodeSafetensors. */
export function adapterTensors(a: AdapterDef, params: ParamStore): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const t of a.tensors)
    for (const n of expandTensorNames(t)) {
      const v = params.get(n);
      out.set(PEFT_PREFIX + n, { shape: v.shape, data: v.dataSync() as Float32Array });
    }
  return out;
}

/** The files of one adapter's folder: [relative name, contents]. `baseModel` is the component's folder. */
export function adapterFiles(a: AdapterDef, component: ComponentDef, params: ParamStore, baseModel: string): [string, string | Buffer][] {
  return [
    [ADAPTER_WEIGHTS, encodeSafetensors(adapterTensors(a, params), { pipec_adapter: a.name })],
    [ADAPTER_CONFIG, JSON.stringify(adapterConfig(a, component, baseModel), null, 2) + '\n'],
  ];
}

/** Reads an adapter folder (PEFT's names) into the store's tensors `names`; each must be there with its shape (never silent zeros). */
export function loadAdapterInto(dir: string, names: readonly string[], params: ParamStore): void {
  const file = path.join(dir, ADAPTER_WEIGHTS);
  if (!fs.existsSync(file)) throw runtimeError(M.TensorMissing, [PEFT_PREFIX + (names[0] ?? ''), file], { file }, `the checkpoint has no folder for adapter \`${path.basename(dir)}\``);
  const got = readWeights(dir, names.map((n) => PEFT_PREFIX + n));
  for (const n of names) {
    const t = got.get(PEFT_PREFIX + n);
    if (!t) throw runtimeError(M.TensorMissing, [PEFT_PREFIX + n, file], { file });
    const want = params.get(n).shape;
    if (t.info.shape.join(',') !== want.join(',')) throw runtimeError(M.WeightShapeMismatch, [PEFT_PREFIX + n, file, `[${t.info.shape.join(', ')}]`, `[${want.join(', ')}]`], { file });
    params.assign(n, t.data);
  }
}

/** Whether a ParamStore owner is an adapter ("lm.lora": component.adapter) rather than a component. */
export function isAdapterName(name: string): boolean {
  return name.includes('.');
}

/**
 * W + (alpha / r) B A for every module the adapter targets, computed in float64 and rounded once:
 * `weights` maps HF weight names to [out, in] data (modified in place), `lora` the adapter's tensors by
 * pipec's names.
 */
/** w [out, in] += scale * B [out, r] @ A [r, in], in place (each sum in float64, rounded once). */
export function foldInto(w: { shape: number[]; data: Float32Array }, A: Float32Array, B: Float32Array, r: number, scale: number): void {
  const [out, inn] = w.shape as [number, number];
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += B[o * r + k]! * A[k * inn + i]!;
      w.data[o * inn + i] = w.data[o * inn + i]! + scale * s;
    }
}

export function foldAdapter(a: AdapterDef, weights: Map<string, { shape: number[]; data: Float32Array }>, lora: ReadonlyMap<string, Float32Array>): string[] {
  const scale = a.alpha / a.rank;
  const folded: string[] = [];
  for (const t of a.tensors)
    for (const n of expandTensorNames(t)) {
      if (!n.endsWith(LORA_A)) continue;
      const module = n.slice(0, -LORA_A.length);
      const w = weights.get(`${module}.weight`);
      const A = lora.get(n), B = lora.get(`${module}.lora_B.weight`);
      if (!w || !A || !B) throw new Error(`foldAdapter: ${module} is missing its weight, lora_A or lora_B`);
      foldInto(w, A, B, a.rank, scale);
      folded.push(`${module}.weight`);
    }
  return folded;
}
