// The semantic model every pass reads and fills in: loaded files, scopes, declarations, component
// instances, models and stages. Passes add to it in the order written down in passes.ts.
import type * as A from '../ast/nodes.js';
import { M, type MessageDef } from '../diagnostics/catalogue.js';
import type { Diagnostic } from '../diagnostics/diagnostic.js';
import type { Range, SourceFile } from '../diagnostics/source.js';
import type { Dim, Value } from './values.js';

export interface Host {
  readFile(path: string): string | undefined;
  exists(path: string): boolean;
  isDirectory(path: string): boolean;
  /** Absolute folder of the standard library (`import "std/vision"` reads vision.pipe there). */
  stdlibDir: string;
  /** How a path is shown in diagnostics (relative to the working directory). */
  display(path: string): string;
  /** The path with symbolic links resolved, undefined when it does not exist (custom code must stay in the program's folder). */
  realPath?(path: string): string | undefined;
}

export interface LoadedFile {
  path: string; // absolute
  source: SourceFile;
  ast: A.FileNode;
  imports: LoadedFile[];
  scope: Map<string, A.Decl>;
  isStdlib: boolean;
}

export type ParamType =
  | { k: 'int' | 'float' | 'string' | 'strings' | 'bool' | 'path' | 'size' | 'Template' | 'Roles' | 'Mixture' }
  | { k: 'enum'; values: string[] };

export interface ParamInfo {
  decl: A.ParamDecl;
  type: ParamType;
}

export interface SigInfo {
  decl: A.SignatureDecl;
  file: LoadedFile;
  name: string;
  kind: A.SignatureKind;
  params: Map<string, ParamInfo>;
  order: string[];
  presets: Map<string, A.PresetDecl>;
  fields: Map<string, A.Field>;
}

export interface TensorSpec {
  /** HF parameter name, with `{i}` placeholders for each loop variable. */
  name: string;
  shape: number[];
  loops: { var: string; count: number }[];
}

export interface CustomInfo {
  className: string;
  /** The TypeScript/JavaScript half (what pipec's runtime runs): as written, relative to the .pipe file. */
  module?: string;
  modulePath?: string; // absolute
  /** The PyTorch half (the modeling_*.py file defining the class, in its package folder): as written. */
  python?: string;
  pythonPath?: string; // absolute
  /** `trust: true` in the program: a request to run the module; the person running pipec grants it. */
  trust: boolean;
  base: string;
  /** Filled by the custom pass (custom.ts): the module's files, relative to the program's folder, and their content hash. */
  code?: { module: string; files: string[]; hash: string };
  /** Filled by the custom pass (custom.ts): the Python package and what the export needs of it. */
  py?: {
    file: string;
    package: string;
    module: string;
    files: string[];
    hash: string;
    configClass?: { module: string; name: string };
    modelType?: string;
    moeBlock?: string;
  };
  /** Keys of the checkpoint's config.json that the base does not compute: the class's own settings. */
  config?: Record<string, unknown>;
}

/** One `encoder vision = siglip_vit(...)` inside a model, after its parameters are bound. */
export interface ComponentInfo {
  decl: A.ComponentDecl;
  model: ModelInfo;
  name: string;
  role: A.Role;
  sig?: SigInfo;
  op: string;
  custom?: CustomInfo;
  /** `weights "DIR"` or `weights "DIR#ROOT"`: dir as written, abs the resolved path (a folder or a .safetensors file), part the ROOT. */
  weights?: { dir: string; abs: string; part?: string; range: Range };
  /** The checkpoint layout the weights pass detected (hf-layout.ts), in words: for hover and `pipec graph`. */
  layout?: string;
  params: Map<string, Value>;
  /** Where each bound parameter value came from (for diagnostics against a checkpoint). */
  paramRanges: Map<string, Range>;
  input?: Dim[];
  output?: Dim[];
  /** Output with free dimensions bound by the flow (e.g. [729, 4096]). */
  resolvedOutput?: Dim[];
  tensors: TensorSpec[];
  paramCount: number;
  /** Stored activations per sample (elements) for `tokens` tokens; undefined when the signature has none. */
  activations?: (tokens: number, checkpointed: boolean) => number | undefined;
  ok: boolean;
}

/** `adapter lm.lora = lora(...)` inside a model, once bound (adapters.ts). */
export interface AdapterInfo {
  decl: A.AdapterDecl;
  /** `lm.lora` */
  name: string;
  component: ComponentInfo;
  kind: 'lora';
  rank: number;
  alpha: number;
  dropout: number;
  targets: string[];
  quantize: 'none' | 'nf4' | 'int8';
  /** lora_A [rank, in] and lora_B [out, rank] per adapted linear layer, with the layer's loops. */
  tensors: TensorSpec[];
  paramCount: number;
  /** Parameters of the component's linear layers that the adapter covers (what QLoRA stores quantized). */
  adaptedParams: number;
  ok: boolean;
}

export interface ModelInfo {
  decl: A.ModelDecl;
  file: LoadedFile;
  name: string;
  components: Map<string, ComponentInfo>;
  /** By full name (`lm.lora`), in declaration order. */
  adapters: Map<string, AdapterInfo>;
  /** Flow edges in order: from -> to, with the splice marker on the edge into the llm. */
  edges: { from: ComponentInfo; to: ComponentInfo; at?: string; range: Range }[];
  llm?: ComponentInfo;
  imageTokens?: number;
}

export interface Program {
  entry: LoadedFile;
  files: LoadedFile[];
  sigs: Map<A.SignatureDecl, SigInfo>;
  models: Map<string, ModelInfo>;
  datasets: Map<string, DatasetInfo>;
  templates: Map<string, A.TemplateDecl>;
  stages: StageInfo[];
}

export interface DatasetInfo {
  decl: A.DatasetDecl;
  name: string;
  ctor: string;
  params: Map<string, Value>;
  /** Where each bound argument came from (the call, a run config, or a default in the stdlib). */
  paramRanges?: Map<string, Range>;
  /** A mixture's sources in the order written, with their ratio or count (checked: datasets, not mixtures). */
  sources?: { dataset: DatasetInfo; ratio?: number; count?: number }[];
  ok: boolean;
}

export type Precision = 'bf16' | 'fp16' | 'fp32';
export type Sharding = 'none' | 'ddp' | 'zero1' | 'zero2' | 'zero3' | 'fsdp';

export interface StageInfo {
  decl: A.StageDecl;
  name: string;
  after?: StageInfo;
  model?: ModelInfo;
  train: ComponentInfo[];
  freeze: ComponentInfo[];
  /** Adapters the stage trains / keeps frozen (`train: [lm.lora]`). */
  trainAdapters: AdapterInfo[];
  freezeAdapters: AdapterInfo[];
  /** Per trained component or adapter: its own optimizer settings (`train: [proj(lr: 2e-4)]`). */
  groups: Map<string, { lr?: number; weightDecay?: number }>;
  data?: DatasetInfo;
  optimizer?: { name: string; params: Map<string, Value> };
  schedule?: { name: string; params: Map<string, Value> };
  batch: number;
  accumulate: number;
  epochs?: number;
  steps?: number;
  maxLength?: number;
  precision: Precision;
  devices?: { nodes: number; perNode: number; device: string; memory?: number; range: Range };
  sharding: Sharding;
  gradientCheckpointing: boolean;
  /** LLaVA's group_by_modality_length (order.ts at run time). */
  groupByLength: boolean;
  clipGrad: number;
  seed: number;
  checkpoint: { every: number; keep: number };
  /** The field nodes actually in force, own or inherited, for locating diagnostics. */
  fieldNodes: Map<string, A.Field>;
  /** Fields that a misspelled field of this stage (or of one it inherits from) most likely meant: not
   * reported missing here, nor in the stages that continue from it (one mistake, one diagnostic). */
  meantFields: Set<string>;
  ok: boolean;
}

/** Collects diagnostics; every pass reports through it so that codes and messages come from the catalogue. */
export class Reporter {
  readonly diagnostics: Diagnostic[] = [];
  /** `file:offset` of every "cannot evaluate" so far (a set, not a search: there can be very many). */
  private readonly evalErrorsAt = new Set<string>();

  report<Args extends unknown[]>(m: MessageDef<Args>, range: Range, ...args: Args): Diagnostic {
    const d: Diagnostic = { code: m.code, severity: m.severity, message: m.format(...args), range };
    this.diagnostics.push(d);
    return d;
  }

  /** A "cannot evaluate" problem, unless one was already reported at the same place. */
  evalError(range: Range, why: string): void {
    const at = `${range.file}:${range.start.offset}`;
    if (this.evalErrorsAt.has(at)) return;
    if (why.startsWith('unknown unit')) {
      const m = /`([^`]*)`; use one of (.*)$/.exec(why);
      this.report(M.UnknownUnit, range, m?.[1] ?? '?', m?.[2] ?? '');
      return;
    }
    this.evalErrorsAt.add(at);
    this.report(M.CannotEvaluate, range, why);
  }
}

export function withHint(d: Diagnostic, hint: string | undefined): Diagnostic {
  if (hint) d.hint = hint;
  return d;
}
