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
  | { k: 'int' | 'float' | 'string' | 'bool' | 'path' | 'size' | 'Template' | 'Roles' }
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
  module: string; // as written, relative to the .pipe file
  modulePath: string; // absolute
  trust: boolean;
  base: string;
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

export interface ModelInfo {
  decl: A.ModelDecl;
  file: LoadedFile;
  name: string;
  components: Map<string, ComponentInfo>;
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
  clipGrad: number;
  seed: number;
  checkpoint: { every: number; keep: number };
  /** The field nodes actually in force, own or inherited, for locating diagnostics. */
  fieldNodes: Map<string, A.Field>;
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
