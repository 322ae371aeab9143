// The execution-graph IR: the contract between the compiler and the runtime (and the exporters). Its
// JSON Schema is schema/graph.schema.json; `validateGraph` checks it on write and on load. Bump
// GRAPH_VERSION on any change a reader must know about.

export const GRAPH_FORMAT = 'pipec.graph';
export const GRAPH_VERSION = 1;

/** A dimension: a number, or a symbol bound at run time ("B" batch, "T" sequence length). */
export type Dim = number | string;
export type AttrValue = number | string | boolean | AttrValue[] | { [k: string]: AttrValue };

export interface TensorDef {
  /** Hugging Face parameter name, `{i}` / `{k+2}` standing for loop indices. */
  name: string;
  shape: number[];
  repeat?: Record<string, number>;
}

export interface ComponentDef {
  name: string;
  role: 'encoder' | 'projector' | 'llm';
  op: string;
  constructor: string;
  attrs: Record<string, AttrValue>;
  params: number;
  tensors: TensorDef[];
  weights?: string;
  custom?: CustomDef;
}

/**
 * A custom component: its class, the base whose shapes and tensors it follows, and its two halves, each
 * optional: `module` (the TypeScript/JavaScript pipec's runtime runs) with the files it consists of and
 * their content hash (what trust is keyed by; `pipec run GRAPH.json` re-checks it), and `python` (the
 * PyTorch package the export carries). Paths are relative to the program's folder.
 */
export interface CustomDef {
  class: string;
  base: string;
  module?: string;
  files?: string[];
  hash?: string;
  python?: {
    file: string;
    package: string;
    module: string;
    files: string[];
    hash: string;
    config_class?: { module: string; name: string };
    model_type?: string;
    moe_block?: string;
  };
  /** The class's own config.json settings (from its checkpoint), beyond what the base computes. */
  config?: Record<string, AttrValue>;
}

/**
 * A LoRA adapter (PEFT's LoraConfig) on linear layers of one component: y = x W^T + (alpha / rank) *
 * dropout(x) A^T B^T, A [rank, in] initialised as PEFT does (Kaiming-uniform, a = sqrt(5)), B [out, rank]
 * zeros, so an untrained adapter changes nothing. Stages train and freeze it by `name`.
 */
export interface AdapterDef {
  /** `component.adapter`, e.g. "lm.lora". */
  name: string;
  /** The adapted component. */
  component: string;
  kind: 'lora';
  rank: number;
  alpha: number;
  dropout: number;
  /** PEFT's target_modules: module names (the last part of a linear layer's name, e.g. q_proj, w1). */
  targets: string[];
  /**
   * QLoRA: the adapted component's base weights are held quantized (bitsandbytes nf4 / int8) in the
   * exported program on GPU; pipec's runtime keeps them in fp32 and says so.
   */
  quantize: 'none' | 'nf4' | 'int8';
  /**
   * Per adapted linear layer of the component (HF name of its weight, `{i}` for loop indices):
   * `<module>.lora_A.weight` [rank, in] and `<module>.lora_B.weight` [out, rank], PEFT's names without
   * the `base_model.model.` prefix and the adapter name.
   */
  tensors: TensorDef[];
  params: number;
}

/** A per-component (or per-adapter) optimizer setting of a stage: `train: [proj(lr: 2e-4), lm]`. */
export interface ParamGroupDef {
  /** A trained component or adapter of the stage. */
  name: string;
  /** Its learning rate (the schedule scales it as it scales the optimizer's `lr`). */
  lr?: number;
  weight_decay?: number;
}

export interface NodeDef {
  id: string;
  op: string;
  component?: string;
  inputs: string[];
  attrs: Record<string, AttrValue>;
  shape: Dim[];
}

export interface ModelDef {
  name: string;
  inputs: { name: string; dtype: 'float32' | 'int32'; shape: Dim[] }[];
  components: ComponentDef[];
  nodes: NodeDef[];
  outputs: { logits: string; loss: string };
  image_tokens?: number;
  /** LoRA adapters declared in the model (`adapter lm.lora = lora(...)`); absent: none. */
  adapters?: AdapterDef[];
}

export interface StagePlan {
  name: string;
  model: string;
  after?: string;
  handoff: { component: string; from: string }[];
  train: string[];
  freeze: string[];
  data: string;
  optimizer: { name: string; attrs: Record<string, AttrValue> };
  schedule: { name: string; attrs: Record<string, AttrValue> };
  batch: number;
  accumulate: number;
  global_batch: number;
  epochs?: number;
  steps?: number;
  max_length: number;
  precision: 'bf16' | 'fp16' | 'fp32';
  devices: { nodes: number; per_node: number; kind: string; memory?: number };
  sharding: 'none' | 'ddp' | 'zero1' | 'zero2' | 'zero3' | 'fsdp';
  gradient_checkpointing: boolean;
  clip_grad: number;
  seed: number;
  /** LLaVA's group_by_modality_length: batches of similar length, records with and without images apart. Absent: false. */
  group_by_length?: boolean;
  /** Trained components or adapters with their own learning rate or weight decay; absent: none. */
  param_groups?: ParamGroupDef[];
  checkpoint: { every: number; keep: number };
  memory: {
    total_params: number;
    trainable_params: number;
    per_device: { weights: number; gradients: number; optimizer: number; activations: number; total: number };
  };
}

export interface DatasetDef {
  name: string;
  constructor: string;
  attrs: Record<string, AttrValue>;
  /**
   * A mixture's sources (constructor "mixture"), in the order written: each a dataset of the graph (not
   * a mixture) with its `ratio` of every epoch (the ratios add up to 1) or its `count` of records per
   * epoch; all ratios or all counts.
   */
  sources?: MixtureSource[];
}

export interface MixtureSource {
  dataset: string;
  ratio?: number;
  count?: number;
}

export interface Graph {
  format: typeof GRAPH_FORMAT;
  version: number;
  source: string;
  models: ModelDef[];
  datasets: DatasetDef[];
  templates: { name: string; fields: Record<string, AttrValue> }[];
  stages: StagePlan[];
}
