// Pass 7: datasets and stages. Stage fields are typed here; a stage inherits every field but `train`,
// `freeze` and `after` from the stage it starts `after`. Stage rules: each component of the stage's model
// is trained or frozen, never both; a stage trains something; `after` has no cycles and hands trained
// components over without a change of shape; max_length holds the image tokens and fits the llm.
import type * as A from '../ast/nodes.js';
import { M } from '../diagnostics/catalogue.js';
import type { Range } from '../diagnostics/source.js';
import { lookupSig } from './components.js';
import { bindCall, coerce, type CallContext } from './instance.js';
import type { AdapterInfo, ComponentInfo, DatasetInfo, LoadedFile, Precision, Program, Reporter, Sharding, SigInfo, StageInfo } from './program.js';
import { declKindWord } from './resolve.js';
import { didYouMean, suggestName } from './suggest.js';
import { evaluate, show, typeName, type Scope, type Value } from './values.js';

/** A run-config override already located in its YAML (or --set) source. */
export interface StageOverride {
  stage: string;
  path: string[];
  value: Value;
  range: Range;
}

/** What a stage field means, its type and default, and whether a stage inherits it from its `after`: the
 * one description of the fields, in Markdown. The checker knows the names from it, the language server's
 * hover and completion show it, and docs/language.md §9 is the same table (a test compares them). */
export interface StageFieldDoc {
  meaning: string;
  type: string;
  default: string;
  inherited: string;
}

export const STAGE_FIELDS: Record<string, StageFieldDoc> = {
  model: { meaning: 'the model to train', type: 'a model name', default: 'required', inherited: 'yes' },
  after: { meaning: 'the stage this one continues from', type: 'a stage name', default: 'none', inherited: 'no' },
  train: { meaning: 'components and adapters whose weights are updated, each optionally with its own `lr` / `weight_decay`', type: 'list of `name`, `component.adapter` or `name(lr: x, weight_decay: y)`, non-empty', default: 'required', inherited: 'no' },
  freeze: { meaning: 'components and adapters whose weights stay fixed', type: 'list of component and adapter names', default: '`[]`', inherited: 'no' },
  data: { meaning: 'the dataset', type: 'a dataset name', default: 'required', inherited: 'yes' },
  optimizer: { meaning: 'e.g. `adamw(lr: 1e-3)`', type: 'call (or bare name) of an `optimizer` constructor', default: 'required', inherited: 'yes' },
  schedule: { meaning: 'e.g. `cosine(warmup_ratio: 0.03)`', type: 'call (or bare name) of a `schedule` constructor', default: '`constant` (no arguments)', inherited: 'yes' },
  batch: { meaning: 'micro-batch per device', type: 'int ≥ 1', default: 'required', inherited: 'yes' },
  accumulate: { meaning: 'gradient accumulation steps', type: 'int ≥ 1', default: '1', inherited: 'yes' },
  epochs: { meaning: 'passes over the data', type: 'number > 0', default: 'one of `epochs`/`steps` required', inherited: 'yes, unless the stage sets `epochs` or `steps` itself' },
  steps: { meaning: 'optimizer steps', type: 'int ≥ 1', default: '(see `epochs`)', inherited: 'yes, unless the stage sets `epochs` or `steps` itself' },
  max_length: { meaning: 'tokens per sample, image tokens included', type: 'int ≥ 1', default: "the llm's `context`", inherited: 'yes' },
  precision: { meaning: 'training precision', type: '`bf16` | `fp16` | `fp32`', default: '`fp32`', inherited: 'yes' },
  devices: { meaning: 'the devices the stage runs on', type: '`N x dev(...)`, `NODES x N x dev(...)`, `dev(...)` or `dev`', default: 'none: no fit check; lowered as 1 × `cpu`', inherited: 'yes' },
  sharding: { meaning: 'how model state is split across devices', type: '`none` | `ddp` | `zero1` | `zero2` | `zero3` | `fsdp`', default: '`none`', inherited: 'yes' },
  checkpoint: { meaning: 'when checkpoints are written', type: '`{ every: int ≥ 0, keep: int ≥ 1 }` (`every: 0`: only at the end)', default: '`{ every: 0, keep: 1 }`', inherited: 'yes (the whole object)' },
  gradient_checkpointing: { meaning: 'recompute activations in backward to save memory', type: 'bool', default: '`false`', inherited: 'yes' },
  clip_grad: { meaning: 'gradient-norm clipping threshold (0 disables)', type: 'number ≥ 0', default: '`1.0`', inherited: 'yes' },
  seed: { meaning: 'seed for initialisation and data order', type: 'int ≥ 0', default: '0', inherited: 'yes' },
  group_by_length: { meaning: "batches of similar length, records with and without images apart (LLaVA's `group_by_modality_length`)", type: 'bool', default: '`false`', inherited: 'yes' },
};

/** Markdown without its code marks, for plain-text places (hints, completion details). */
export const plainText = (md: string): string => md.replace(/`/g, '');

const NOT_INHERITED = new Set(Object.keys(STAGE_FIELDS).filter((k) => STAGE_FIELDS[k].inherited === 'no'));
const PRECISIONS = ['bf16', 'fp16', 'fp32'];
const SHARDINGS = ['none', 'ddp', 'zero1', 'zero2', 'zero3', 'fsdp'];

interface Ctx {
  program: Program;
  reporter: Reporter;
  sigOf: (d: A.SignatureDecl) => SigInfo;
  overrides: StageOverride[];
}

export function checkDatasets(program: Program, reporter: Reporter, sigOf: (d: A.SignatureDecl) => SigInfo, pathOverrides: Map<string, Map<string, { value: Value; range: Range }>>): void {
  const templates = new Set(program.templates.keys());
  for (const file of program.files) {
    if (file.isStdlib) continue;
    for (const decl of file.ast.decls) {
      if (decl.kind !== 'Dataset' || !decl.name.name || program.datasets.has(decl.name.name)) continue;
      const info: DatasetInfo = { decl, name: decl.name.name, ctor: '', params: new Map(), ok: false };
      program.datasets.set(info.name, info);
      if (decl.init.kind === 'Missing') continue;
      if (decl.init.kind !== 'Call' || decl.init.callee.kind !== 'Ref') {
        reporter.report(M.NotACall, decl.init.range, `dataset \`${info.name}\``);
        continue;
      }
      const sig = lookupSig(decl.init.callee.name, decl.init.callee.range, 'data', file, reporter, sigOf);
      if (!sig) continue;
      info.ctor = sig.name;
      const ctx: CallContext = { reporter, templates, callScope: wordScope(reporter) };
      const inst = bindCall(sig, decl.init, ctx);
      for (const [param, o] of pathOverrides.get(info.name) ?? []) {
        if (sig.params.has(param)) inst.setValue(param, o.value, o.range);
        else reporter.report(M.UnknownParameter, o.range, param, sig.name);
      }
      info.ok = inst.finish();
      info.params = inst.values;
      info.paramRanges = inst.ranges;
    }
  }
  // Mixtures, once every dataset is known: their sources must be datasets, not mixtures.
  for (const info of program.datasets.values()) if (info.ctor === 'mixture' && info.ok) checkMixture(info, program, reporter);
}

/**
 * A mixture: exactly one of `ratios` (shares of every epoch, adding up to 1) and `counts` (records per
 * epoch, whole numbers), each key a dataset of the program that is not itself a mixture.
 */
function checkMixture(info: DatasetInfo, program: Program, reporter: Reporter): void {
  const call = info.decl.init as A.CallExpr;
  const given = (['ratios', 'counts'] as const).filter((k) => {
    const v = info.params.get(k);
    return v?.t === 'obj' && v.fields.size > 0;
  });
  if (given.length !== 1) {
    const d = reporter.report(M.MixtureShares, call.range, info.name, given.length ? 'gives both `ratios` and `counts`' : 'names no sources');
    d.hint = 'give `ratios: { a: 0.7, b: 0.3 }` (shares of every epoch) or `counts: { a: 5000, b: 2000 }` (records per epoch)';
    info.ok = false;
    return;
  }
  const by = given[0]!;
  const shares = info.params.get(by) as Extract<Value, { t: 'obj' }>;
  const arg = call.args.find((a) => a.name?.name === by);
  const rangeOf = (key: string): Range => {
    const obj = arg?.value.kind === 'Object' ? arg.value : undefined;
    return obj?.fields.find((f) => f.name.name === key)?.name.range ?? info.paramRanges?.get(by) ?? call.range;
  };
  const file = program.files.find((f) => f.ast.decls.includes(info.decl));
  const sources: NonNullable<DatasetInfo['sources']> = [];
  let sum = 0;
  for (const [key, v] of shares.fields) {
    const share = (v as { v: number }).v;
    const range = rangeOf(key);
    const decl = file?.scope.get(key);
    const target = program.datasets.get(key);
    if (!decl || decl.kind !== 'Dataset' || !target) {
      if (decl) reporter.report(M.WrongDeclKind, range, key, declKindWord(decl), 'a dataset');
      else reporter.report(M.UnknownName, range, 'dataset', key).hint = didYouMean(key, [...program.datasets.keys()].filter((n) => n !== info.name));
      info.ok = false;
      continue;
    }
    if (target.ctor === 'mixture') {
      reporter.report(M.MixtureNested, range, key, info.name);
      info.ok = false;
      continue;
    }
    if (by === 'counts' && !Number.isSafeInteger(share)) {
      reporter.report(M.OutOfRange, range, `\`${key}\` in \`counts\``, 'a whole number of records', String(share));
      info.ok = false;
      continue;
    }
    if (by === 'ratios' && share > 1) {
      reporter.report(M.OutOfRange, range, `\`${key}\` in \`ratios\``, 'at most 1 (a share of every epoch)', String(share));
      info.ok = false;
      continue;
    }
    sum += share;
    sources.push({ dataset: target, ...(by === 'ratios' ? { ratio: share } : { count: share }) });
  }
  if (info.ok && by === 'ratios' && Math.abs(sum - 1) > 1e-9) {
    const d = reporter.report(M.MixtureRatioSum, arg?.value.range ?? call.range, info.name, String(Math.round(sum * 1e9) / 1e9));
    d.hint = 'ratios are shares of every epoch; make them add up to 1, or give `counts` (records per epoch) instead';
    info.ok = false;
  }
  if (info.ok) info.sources = sources;
}

function wordScope(reporter: Reporter): Scope {
  return { name: (r) => ({ t: 'word', name: r.name }), error: (r, why) => reporter.evalError(r, why) };
}

export function checkStages(program: Program, reporter: Reporter, sigOf: (d: A.SignatureDecl) => SigInfo, overrides: StageOverride[]): void {
  const ctx: Ctx = { program, reporter, sigOf, overrides };
  const decls = new Map<string, { decl: A.StageDecl; file: LoadedFile }>();
  for (const file of program.files) {
    if (file.isStdlib) continue;
    for (const d of file.ast.decls) if (d.kind === 'Stage' && d.name.name && !decls.has(d.name.name)) decls.set(d.name.name, { decl: d, file });
  }
  for (const o of overrides) {
    if (!decls.has(o.stage)) {
      const d = reporter.report(M.OverrideUnknownStage, o.range, o.stage);
      d.hint = didYouMean(o.stage, decls.keys());
    }
  }

  // Order stages so that each comes after the one it continues from; report cycles once.
  const afterOf = new Map<string, { name: string; range: Range } | undefined>();
  for (const [name, { decl, file }] of decls) {
    const f = decl.fields.find((x) => x.name.name === 'after');
    if (!f || f.value.kind === 'Missing') continue;
    if (f.value.kind !== 'Ref') {
      reporter.report(M.TypeMismatch, f.value.range, '`after`', 'a stage name', typeName(evaluate(f.value, wordScope(reporter)) ?? { t: 'word', name: '?' }));
      continue;
    }
    const target = f.value.name;
    if (!decls.has(target)) {
      const other = file.scope.get(target);
      if (other) reporter.report(M.WrongDeclKind, f.value.range, target, declKindWord(other), 'a stage');
      else reporter.report(M.UnknownName, f.value.range, 'stage', target).hint = didYouMean(target, decls.keys());
      continue;
    }
    afterOf.set(name, { name: target, range: f.value.range });
  }
  const order: string[] = [];
  const state = new Map<string, 'busy' | 'done'>();
  const inCycle = new Set<string>();
  // Each stage has at most one `after`, so its dependencies are a chain: follow it in a loop (a chain of
  // thousands of stages costs no stack), then emit the chain from its far end, dependencies first.
  for (const start of decls.keys()) {
    const trail: string[] = [];
    const at = new Map<string, number>(); // name -> index in trail
    for (let name: string | undefined = start; name !== undefined && state.get(name) !== 'done'; name = afterOf.get(name)?.name) {
      if (state.get(name) === 'busy') {
        const cycle = [...trail.slice(at.get(name)), name];
        const first = cycle[0];
        if (!inCycle.has(first)) {
          cycle.forEach((c) => inCycle.add(c));
          const a = afterOf.get(cycle[cycle.length - 2]);
          reporter.report(M.AfterCycle, a?.range ?? decls.get(first)!.decl.name.range, cycle.join(' -> '));
        }
        break;
      }
      state.set(name, 'busy');
      at.set(name, trail.length);
      trail.push(name);
    }
    for (let i = trail.length - 1; i >= 0; i--) {
      state.set(trail[i], 'done');
      order.push(trail[i]);
    }
  }

  const infos = new Map<string, StageInfo>();
  for (const name of order) {
    const { decl, file } = decls.get(name)!;
    const a = afterOf.get(name);
    const after = a && !inCycle.has(name) ? infos.get(a.name) : undefined;
    const info = checkStage(decl, file, after, ctx);
    infos.set(name, info);
  }
  // Keep the source order in the program (and so in the lowered plan), not the dependency order.
  program.stages = [...decls.keys()].map((n) => infos.get(n)!).filter(Boolean);
}

function checkStage(decl: A.StageDecl, file: LoadedFile, after: StageInfo | undefined, ctx: Ctx): StageInfo {
  const { reporter, program } = ctx;
  const name = decl.name.name;
  const fields = new Map<string, A.Field>();
  if (after) for (const [k, f] of after.fieldNodes) if (!NOT_INHERITED.has(k)) fields.set(k, f);
  const own = new Set<string>();
  /** Fields that a misspelled one most likely meant: one mistake is one diagnostic, the misspelling, so
   * these are not also reported missing (nor are the train/freeze rules applied to a misspelled list),
   * here or in a stage that continues from this one and would have inherited them. */
  const meant = new Set<string>();
  if (after) for (const k of after.meantFields) if (!NOT_INHERITED.has(k)) meant.add(k);
  for (const f of decl.fields) {
    const key = f.name.name;
    if (!(key in STAGE_FIELDS)) {
      const d = reporter.report(M.UnknownStageField, f.name.range, key);
      const near = suggestName(d, key, Object.keys(STAGE_FIELDS), f.name.range);
      if (near) meant.add(near);
      else d.hint = `stage fields are ${Object.keys(STAGE_FIELDS).join(', ')}`;
      continue;
    }
    if (own.has(key)) {
      reporter.report(M.DuplicateField, f.name.range, key);
      continue;
    }
    own.add(key);
    fields.set(key, f);
  }
  if (own.has('epochs') || own.has('steps')) {
    // A stage that sets its own length does not inherit the other kind of length.
    if (!own.has('epochs')) fields.delete('epochs');
    if (!own.has('steps')) fields.delete('steps');
  }

  const info: StageInfo = {
    decl,
    name,
    after,
    train: [],
    freeze: [],
    trainAdapters: [],
    freezeAdapters: [],
    groups: new Map(),
    batch: 1,
    accumulate: 1,
    precision: 'fp32',
    sharding: 'none',
    gradientCheckpointing: false,
    groupByLength: false,
    clipGrad: 1.0,
    seed: 0,
    checkpoint: { every: 0, keep: 1 },
    fieldNodes: fields,
    meantFields: meant,
    ok: true,
  };
  const ov = ctx.overrides.filter((o) => o.stage === name);
  const scalarOverride = (key: string): { value: Value; range: Range } | undefined => {
    const hits = ov.filter((o) => o.path.length === 1 && o.path[0] === key);
    return hits[hits.length - 1];
  };
  const fail = (): undefined => {
    info.ok = false;
    return undefined;
  };
  // Missing fields are gathered into one diagnostic. A stage whose `after` did not resolve may inherit
  // what it lacks, so it is not blamed for missing fields.
  const afterField = decl.fields.find((f) => f.name.name === 'after');
  const missing: string[] = [];
  const need = (key: string): A.Field | undefined => {
    const f = fields.get(key);
    if (!f && !scalarOverride(key)) {
      if ((!afterField || after) && !meant.has(key)) missing.push(key);
      info.ok = false;
    }
    return f;
  };
  const value = (key: string): { v: Value; range: Range } | undefined => {
    const o = scalarOverride(key);
    if (o) return { v: o.value, range: o.range };
    const f = fields.get(key);
    if (!f) return undefined;
    const v = evaluate(f.value, wordScope(reporter));
    return v ? { v, range: f.value.range } : fail();
  };
  const intField = (key: string, min: number): number | undefined => {
    const x = value(key);
    if (!x) return undefined;
    if (x.v.t !== 'num' || !Number.isInteger(x.v.v)) return (reporter.report(M.TypeMismatch, x.range, `stage field \`${key}\``, 'int', typeName(x.v)), fail());
    if (x.v.v < min || !Number.isSafeInteger(x.v.v)) return (reporter.report(M.OutOfRange, x.range, `\`${key}\``, x.v.v < min ? `>= ${min}` : `at most ${Number.MAX_SAFE_INTEGER}`, String(x.v.v)), fail());
    return x.v.v;
  };
  const numField = (key: string, min: number, strict: boolean): number | undefined => {
    const x = value(key);
    if (!x) return undefined;
    if (x.v.t !== 'num') return (reporter.report(M.TypeMismatch, x.range, `stage field \`${key}\``, 'a number', typeName(x.v)), fail());
    if (strict ? x.v.v <= min : x.v.v < min) return (reporter.report(M.OutOfRange, x.range, `\`${key}\``, `${strict ? '>' : '>='} ${min}`, String(x.v.v)), fail());
    return x.v.v;
  };
  const enumField = (key: string, allowed: string[]): string | undefined => {
    const x = value(key);
    if (!x) return undefined;
    const v = coerce(x.v, { k: 'enum', values: allowed }, `stage field \`${key}\``, x.range, { reporter, templates: new Set() });
    return v && v.t === 'str' ? v.v : fail();
  };

  // model
  const modelField = need('model');
  if (modelField && modelField.value.kind !== 'Missing') {
    const m = refTo(modelField.value, 'model', file, ctx);
    if (m) info.model = program.models.get(m);
  }
  const model = info.model;

  // train / freeze
  /** Components a misspelled name in train/freeze most likely meant: not reported as neither trained nor
   * frozen as well. `unsure`: a list had an entry that names no component closely, or was no list at all;
   * which components it meant is anyone's guess, so the rules about the lists as a whole wait for a fix. */
  const meantComps = new Set<string>();
  let unsure = meant.has('train') || meant.has('freeze');
  /** A list entry's name: `proj`, `lm.lora`, or the callee of `proj(lr: 2e-4)`; undefined for anything else. */
  const entryName = (item: A.Expr): string | undefined => {
    const e = item.kind === 'Call' ? item.callee : item;
    if (e.kind === 'Ref') return e.name;
    if (e.kind === 'Member' && e.object.kind === 'Ref') return `${e.object.name}.${e.member.name}`;
    return undefined;
  };
  const compList = (key: 'train' | 'freeze'): { comps: ComponentInfo[]; adapters: AdapterInfo[] } => {
    const out = { comps: [] as ComponentInfo[], adapters: [] as AdapterInfo[] };
    const f = fields.get(key);
    if (!f || f.value.kind === 'Missing') return out;
    if (f.value.kind !== 'List') {
      reporter.report(M.TypeMismatch, f.value.range, `stage field \`${key}\``, 'a list of components such as [proj, lm]', 'something else');
      info.ok = false;
      unsure = true;
      return out;
    }
    for (const item of f.value.items) {
      const name = entryName(item);
      const target = item.kind === 'Call' ? item.callee : item;
      if (name === undefined || (item.kind === 'Call' && key === 'freeze')) {
        reporter.report(M.TypeMismatch, item.range, `\`${key}\``, key === 'train' ? 'a component or adapter name, or one with its own settings such as proj(lr: 2e-4)' : 'a component or adapter name', 'an expression');
        info.ok = false;
        unsure = true;
        continue;
      }
      if (!model) continue;
      if (target.kind === 'Member') {
        const a = model.adapters.get(name);
        if (!a) {
          const d = reporter.report(M.UnknownAdapter, target.range, name, model.name);
          if (!suggestName(d, name, model.adapters.keys(), target.range)) d.hint = `declare it in model \`${model.name}\`, e.g. \`adapter ${name} = lora(rank: 16, targets: ["q_proj", "v_proj"])\``;
          info.ok = false;
          unsure = true;
          continue;
        }
        if (out.adapters.includes(a)) reporter.report(M.DuplicateField, target.range, name);
        else out.adapters.push(a);
      } else {
        const c = model.components.get(name);
        if (!c) {
          const d = reporter.report(M.UnknownComponent, target.range, name, model.name);
          const near = suggestName(d, name, model.components.keys(), target.range);
          if (near) meantComps.add(near);
          else unsure = true;
          info.ok = false;
          continue;
        }
        if (out.comps.includes(c)) reporter.report(M.DuplicateField, target.range, name);
        else out.comps.push(c);
      }
      if (item.kind === 'Call') groupSettings(name, item);
    }
    return out;
  };
  /** `proj(lr: 2e-4, weight_decay: 0.0)` in `train`: the entry's own optimizer settings. */
  const groupSettings = (name: string, call: A.CallExpr): void => {
    const g: { lr?: number; weightDecay?: number } = {};
    for (const a of call.args) {
      const key = a.name?.name;
      if (key !== 'lr' && key !== 'weight_decay') {
        const d = reporter.report(M.UnknownParameter, a.name?.range ?? a.range, key ?? '(unnamed)', `${name}(...)`);
        d.hint = 'a trained component or adapter takes `lr:` and `weight_decay:` of its own, e.g. `proj(lr: 2e-4)`';
        info.ok = false;
        continue;
      }
      const v = evaluate(a.value, wordScope(reporter));
      if (!v) {
        info.ok = false;
        continue;
      }
      if (v.t !== 'num') {
        reporter.report(M.TypeMismatch, a.value.range, `\`${key}\` of \`${name}\``, 'a number', typeName(v));
        info.ok = false;
        continue;
      }
      if (key === 'lr' ? !(v.v > 0) : !(v.v >= 0)) {
        reporter.report(M.OutOfRange, a.value.range, `\`${key}\` of \`${name}\``, key === 'lr' ? '> 0' : '>= 0', String(v.v));
        info.ok = false;
        continue;
      }
      if (key === 'lr') g.lr = v.v;
      else g.weightDecay = v.v;
    }
    info.groups.set(name, g);
  };
  const trainLists = compList('train');
  const freezeLists = compList('freeze');
  info.train = trainLists.comps;
  info.freeze = freezeLists.comps;
  info.trainAdapters = trainLists.adapters;
  info.freezeAdapters = freezeLists.adapters;
  if (model) {
    const trainF = fields.get('train');
    const freezeF = fields.get('freeze');
    const entry = (f: A.Field | undefined, n: string): A.Expr => {
      const item = (f?.value as A.ListExpr).items.find((i) => entryName(i) === n)!;
      return item.kind === 'Call' ? item.callee : item;
    };
    for (const n of [...info.train.map((c) => c.name), ...info.trainAdapters.map((a) => a.name)]) {
      if (info.freeze.some((c) => c.name === n) || info.freezeAdapters.some((a) => a.name === n)) {
        const d = reporter.report(M.TrainedAndFrozen, entry(freezeF, n).range, n, name, model.adapters.has(n) ? 'adapter' : 'component');
        d.related = [{ message: 'trained here', range: entry(trainF, n).range }];
        info.ok = false;
      }
    }
    if ((trainF || freezeF) && !unsure) {
      const parts = [...[...model.components.values()].map((c) => ({ name: c.name, what: 'component', listed: info.train.includes(c) || info.freeze.includes(c) })),
        ...[...model.adapters.values()].map((a) => ({ name: a.name, what: 'adapter', listed: info.trainAdapters.includes(a) || info.freezeAdapters.includes(a) }))];
      for (const c of parts) {
        if (!c.listed && !meantComps.has(c.name)) {
          const d = reporter.report(M.NeitherTrainedNorFrozen, (freezeF ?? trainF)!.value.range, c.name, name, c.what);
          d.hint = `add \`${c.name}\` to \`train\` or to \`freeze\``;
          info.ok = false;
        }
      }
    }
    if (!unsure && (!trainF || (trainF.value.kind === 'List' && trainF.value.items.length === 0))) {
      const d = reporter.report(M.TrainsNothing, (trainF?.value.range ?? decl.name.range), name);
      d.hint = 'name the components to train, e.g. `train: [proj]`';
      info.ok = false;
    }
    // QLoRA: a quantized base holds no trainable weights.
    for (const a of model.adapters.values()) {
      if (a.quantize !== 'none' && info.train.includes(a.component)) {
        const d = reporter.report(M.QuantizedBaseTrained, entry(trainF, a.component.name).range, name, a.component.name, a.name, a.quantize);
        d.hint = `train \`${a.name}\` and move \`${a.component.name}\` to \`freeze\``;
        d.related = [{ message: 'quantized here', range: a.decl.range }];
        info.ok = false;
      }
    }
  }

  // hand-off from `after`
  if (after && model && after.model) {
    let handed = 0;
    for (const c of after.train) {
      const here = model.components.get(c.name);
      if (!here) {
        reporter.report(M.HandOffModelMissing, (fields.get('after') ?? fields.get('model'))!.value.range, c.name, after.name);
        info.ok = false;
        continue;
      }
      handed++;
      if (here !== c && c.ok && here.ok) {
        const before = tensorSignature(c);
        const now = tensorSignature(here);
        if (before !== now) {
          const d = reporter.report(M.HandOffShapeChanged, here.decl.init.range, c.name, after.name, describe(c), describe(here));
          d.related = [{ message: `\`${c.name}\` as trained in \`${after.name}\``, range: c.decl.init.range }];
          info.ok = false;
        }
      }
    }
    for (const a of after.trainAdapters) {
      const here = model.adapters.get(a.name);
      if (!here) {
        reporter.report(M.HandOffModelMissing, (fields.get('after') ?? fields.get('model'))!.value.range, a.name, after.name, 'adapter');
        info.ok = false;
        continue;
      }
      handed++;
      if (here !== a && a.ok && here.ok && tensorSignature(a) !== tensorSignature(here)) {
        const d = reporter.report(M.HandOffShapeChanged, here.decl.init.range, a.name, after.name, `lora(rank: ${a.rank}, targets: ${a.targets.join(', ')})`, `lora(rank: ${here.rank}, targets: ${here.targets.join(', ')})`);
        d.related = [{ message: `\`${a.name}\` as trained in \`${after.name}\``, range: a.decl.init.range }];
        info.ok = false;
      }
    }
    if (handed === 0 && after.train.length + after.trainAdapters.length > 0) reporter.report(M.HandOffNothing, fields.get('after')!.value.range, name, after.name);
  }

  // data
  const dataField = need('data');
  if (dataField && dataField.value.kind !== 'Missing') {
    const d = refTo(dataField.value, 'dataset', file, ctx);
    if (d) info.data = program.datasets.get(d);
  }

  // optimizer, schedule: constructor calls typed by their signatures
  const optF = need('optimizer');
  if (optF) info.optimizer = callField(optF, 'optimizer', file, ctx, ov);
  const schedF = fields.get('schedule');
  if (schedF) info.schedule = callField(schedF, 'schedule', file, ctx, ov);
  else info.schedule = { name: 'constant', params: new Map() };

  need('batch');
  info.batch = intField('batch', 1) ?? 1;
  info.accumulate = intField('accumulate', 1) ?? 1;
  // A config's `epochs` or `steps` replaces the program's length of either kind (docs/language.md, section 11)
  const lengthOverride = ov.filter((o) => o.path.length === 1 && (o.path[0] === 'epochs' || o.path[0] === 'steps')).pop();
  if (lengthOverride && !(fields.has('epochs') && fields.has('steps'))) fields.delete(lengthOverride.path[0] === 'epochs' ? 'steps' : 'epochs');
  const hasEpochs = fields.has('epochs') || !!scalarOverride('epochs');
  const hasSteps = fields.has('steps') || !!scalarOverride('steps');
  if (hasEpochs && hasSteps) {
    // Both inherited (neither set here nor overridden): the stage they come from has reported it already.
    const inherited = !own.has('epochs') && !own.has('steps') && !scalarOverride('epochs') && !scalarOverride('steps');
    if (!inherited) reporter.report(M.EpochsAndSteps, (fields.get('steps') ?? fields.get('epochs'))?.name.range ?? decl.name.range, name);
    info.ok = false;
  } else if (!hasEpochs && !hasSteps) {
    if ((!afterField || after) && !meant.has('epochs') && !meant.has('steps')) missing.push('epochs` or `steps');
    info.ok = false;
  }
  if (missing.length) {
    const d = reporter.report(M.MissingStageField, decl.name.range, missing.join('`, `'), name);
    d.hint = `add ${missing.map((k) => (k.includes('`') ? '`epochs: 1` or `steps: 1000`' : `\`${k}: ...\` (${plainText(STAGE_FIELDS[k].meaning)})`)).join('; ')}`;
  }
  info.epochs = numField('epochs', 0, true);
  info.steps = intField('steps', 1);
  info.maxLength = intField('max_length', 1);
  info.precision = (enumField('precision', PRECISIONS) ?? 'fp32') as Precision;
  info.sharding = (enumField('sharding', SHARDINGS) ?? 'none') as Sharding;
  info.clipGrad = numField('clip_grad', 0, false) ?? 1.0;
  info.seed = intField('seed', 0) ?? 0;
  const gc = value('gradient_checkpointing');
  if (gc) {
    if (gc.v.t === 'bool') info.gradientCheckpointing = gc.v.v;
    else reporter.report(M.TypeMismatch, gc.range, 'stage field `gradient_checkpointing`', 'bool', typeName(gc.v));
  }
  const gl = value('group_by_length');
  if (gl) {
    if (gl.v.t === 'bool') info.groupByLength = gl.v.v;
    else reporter.report(M.TypeMismatch, gl.range, 'stage field `group_by_length`', 'bool', typeName(gl.v));
  }
  checkpointField(info, fields.get('checkpoint'), ov, ctx);
  devicesField(info, fields.get('devices'), file, ov, ctx);
  const world = info.devices ? info.devices.nodes * info.devices.perNode : 1;
  if (!Number.isSafeInteger(info.batch * info.accumulate * world)) {
    reporter.report(M.OutOfRange, (fields.get('batch') ?? fields.get('accumulate'))?.value.range ?? decl.name.range, 'the global batch (batch x accumulate x devices)', `at most ${Number.MAX_SAFE_INTEGER}`, String(info.batch * info.accumulate * world));
    info.ok = false;
  }
  if (info.sharding !== 'none' && info.sharding !== 'ddp' && info.devices && info.devices.nodes * info.devices.perNode === 1) {
    reporter.report(M.ShardingNeedsDevices, scalarOverride('sharding')?.range ?? fields.get('sharding')?.value.range ?? decl.name.range, info.sharding);
  }

  // bf16/fp16 mixed precision needs an accelerator; on declared cpu devices the stage runs in fp32
  // (pipec's runtime computes in fp32 on every backend; the exported program autocasts on CUDA only).
  if (info.precision !== 'fp32' && info.devices?.device === 'cpu') {
    // at what this stage itself says: its precision, else its devices, else (both inherited) its name
    const at = scalarOverride('precision')?.range ?? (own.has('precision') ? fields.get('precision')!.value.range : undefined)
      ?? (own.has('devices') || ov.some((o) => o.path[0] === 'devices') ? info.devices.range : decl.name.range);
    const d = reporter.report(M.PrecisionOnCpu, at, info.precision);
    d.hint = 'write `precision: fp32` (the memory estimate counts 2-byte weights for bf16/fp16), or declare the gpu devices the stage is meant for';
  }

  // sequence length against the image tokens and the llm's context
  if (model?.llm?.ok) {
    const context = model.llm.params.get('context');
    const ml = info.maxLength;
    const mlRange = scalarOverride('max_length')?.range ?? fields.get('max_length')?.value.range;
    if (ml === undefined && context?.t === 'num') info.maxLength = context.v;
    else if (ml !== undefined && mlRange) {
      if (context?.t === 'num' && ml > context.v) {
        const d = reporter.report(M.LengthExceedsContext, mlRange, ml, model.llm.name, context.v);
        d.hint = `lower max_length to at most ${context.v}`;
        info.ok = false;
      }
      if (model.imageTokens !== undefined && model.imageTokens >= ml) {
        const d = reporter.report(M.ImageTokensExceedLength, mlRange, model.imageTokens, ml);
        d.hint = `each sample holds ${model.imageTokens} image tokens plus its text; raise max_length above ${model.imageTokens}`;
        info.ok = false;
      } else if (model.imageTokens !== undefined) {
        // A multi-image dataset: each of a record's images takes the image tokens (`max_images` of them)
        for (const d of dataSources(info.data)) {
          const k = maxImagesOf(d);
          if (k <= 1 || k * model.imageTokens < ml) continue;
          const diag = reporter.report(M.ImagesExceedLength, mlRange, name, ml, d.name, k, model.imageTokens);
          diag.hint = `raise max_length above ${k * model.imageTokens}, or lower \`max_images\` of \`${d.name}\``;
          info.ok = false;
        }
      }
    }
  }
  return info;
}

/** The datasets a stage's data reads: a mixture's sources, or the dataset itself. */
export function dataSources(d: DatasetInfo | undefined): DatasetInfo[] {
  if (!d) return [];
  return d.sources ? d.sources.map((x) => x.dataset) : [d];
}

/** A dataset's `max_images` (1 for datasets that have none). */
export function maxImagesOf(d: DatasetInfo): number {
  const v = d.params.get('max_images');
  return v?.t === 'num' ? v.v : 1;
}

function refTo(e: A.Expr, want: 'model' | 'dataset', file: LoadedFile, ctx: Ctx): string | undefined {
  if (e.kind !== 'Ref') {
    ctx.reporter.report(M.TypeMismatch, e.range, `\`${want === 'model' ? 'model' : 'data'}\``, `a ${want} name`, 'an expression');
    return undefined;
  }
  const decl = file.scope.get(e.name);
  const kind = want === 'model' ? 'Model' : 'Dataset';
  if (!decl) {
    const candidates = [...file.scope.values()].filter((d) => d.kind === kind).map((d) => d.name.name);
    ctx.reporter.report(M.UnknownName, e.range, want, e.name).hint = didYouMean(e.name, candidates);
    return undefined;
  }
  if (decl.kind !== kind) {
    ctx.reporter.report(M.WrongDeclKind, e.range, e.name, declKindWord(decl), `a ${want}`);
    return undefined;
  }
  return e.name;
}

function callField(f: A.Field, kind: 'optimizer' | 'schedule', file: LoadedFile, ctx: Ctx, ov: StageOverride[]): { name: string; params: Map<string, Value> } | undefined {
  const e = f.value;
  if (e.kind === 'Missing') return undefined;
  const call: A.CallExpr | undefined = e.kind === 'Call' ? e : e.kind === 'Ref' ? { kind: 'Call', callee: e, args: [], range: e.range } : undefined;
  if (!call || call.callee.kind !== 'Ref') {
    ctx.reporter.report(M.NotACall, e.range, `\`${kind}\``);
    return undefined;
  }
  const rename = ov.filter((o) => o.path[0] === kind && o.path[1] === 'name').pop();
  const ctorName = rename && rename.value.t === 'str' ? rename.value.v : call.callee.name;
  const sig = lookupSig(ctorName, rename?.range ?? call.callee.range, kind, file, ctx.reporter, ctx.sigOf);
  if (!sig) return undefined;
  const inst = bindCall(sig, rename ? { ...call, args: [] } : call, { reporter: ctx.reporter, templates: new Set(), callScope: wordScope(ctx.reporter) });
  for (const o of ov) {
    if (o.path[0] !== kind || o.path.length !== 2 || o.path[1] === 'name') continue;
    if (!sig.params.has(o.path[1])) {
      ctx.reporter.report(M.UnknownParameter, o.range, o.path[1], sig.name).hint = didYouMean(o.path[1], sig.params.keys());
      continue;
    }
    inst.setValue(o.path[1], o.value, o.range);
  }
  if (!inst.finish()) return undefined;
  return { name: sig.name, params: inst.values };
}

function checkpointField(info: StageInfo, f: A.Field | undefined, ov: StageOverride[], ctx: Ctx): void {
  const entries = new Map<string, { v: Value; range: Range }>();
  if (f && f.value.kind !== 'Missing') {
    if (f.value.kind !== 'Object') {
      ctx.reporter.report(M.TypeMismatch, f.value.range, 'stage field `checkpoint`', '{ every: STEPS, keep: K }', 'something else');
      return;
    }
    for (const fld of f.value.fields) {
      if (fld.name.name !== 'every' && fld.name.name !== 'keep') {
        ctx.reporter.report(M.UnknownStageField, fld.name.range, `checkpoint.${fld.name.name}`).hint = didYouMean(fld.name.name, ['every', 'keep']) ?? 'checkpoint takes `every` and `keep`';
        continue;
      }
      const v = evaluate(fld.value, wordScope(ctx.reporter));
      if (v) entries.set(fld.name.name, { v, range: fld.value.range });
    }
  }
  for (const o of ov) if (o.path[0] === 'checkpoint' && o.path.length === 2) entries.set(o.path[1], { v: o.value, range: o.range });
  for (const [k, x] of entries) {
    if (x.v.t !== 'num' || !Number.isInteger(x.v.v) || x.v.v < (k === 'keep' ? 1 : 0)) {
      ctx.reporter.report(M.OutOfRange, x.range, `checkpoint.${k}`, k === 'keep' ? 'an integer >= 1' : 'an integer >= 0 (0: only at the end of the stage)', show(x.v));
      continue;
    }
    info.checkpoint[k as 'every' | 'keep'] = x.v.v;
  }
}

function devicesField(info: StageInfo, f: A.Field | undefined, file: LoadedFile, ov: StageOverride[], ctx: Ctx): void {
  const { reporter } = ctx;
  let dev: StageInfo['devices'];
  if (f && f.value.kind !== 'Missing') {
    const scope: Scope = {
      name: (r) => deviceCall({ kind: 'Call', callee: r, args: [], range: r.range }),
      call: (c) => deviceCall(c),
      error: (r, why) => reporter.evalError(r, why),
    };
    const deviceCall = (c: A.CallExpr): Value | undefined => {
      if (c.callee.kind !== 'Ref') return undefined;
      const sig = lookupSig(c.callee.name, c.callee.range, 'device', file, reporter, ctx.sigOf);
      if (!sig) return undefined;
      const inst = bindCall(sig, c, { reporter, templates: new Set(), callScope: wordScope(reporter) });
      if (!inst.finish()) return undefined;
      const mem = inst.values.get('memory');
      return { t: 'devices', nodes: 1, perNode: 1, device: sig.name, memory: mem?.t === 'size' ? mem.bytes : undefined };
    };
    const v = evaluate(f.value, scope);
    if (v && v.t === 'devices') dev = { nodes: v.nodes, perNode: v.perNode, device: v.device, memory: v.memory, range: f.value.range };
    else if (v) reporter.report(M.TypeMismatch, f.value.range, 'stage field `devices`', 'devices such as `8 x gpu(memory: 80GB)`', typeName(v));
  }
  for (const o of ov) {
    if (o.path[0] !== 'devices' || o.path.length !== 2) continue;
    dev ??= { nodes: 1, perNode: 1, device: 'gpu', range: o.range };
    const x = o.value;
    if (o.path[1] === 'count' && x.t === 'num') dev = { ...dev, perNode: Math.max(1, Math.round(x.v / dev.nodes)), range: o.range };
    else if (o.path[1] === 'nodes' && x.t === 'num') dev = { ...dev, perNode: Math.max(1, Math.round((dev.nodes * dev.perNode) / x.v)), nodes: x.v, range: o.range };
    else if (o.path[1] === 'kind' && x.t === 'str') dev = { ...dev, device: x.v, range: o.range };
    else if (o.path[1] === 'memory' && (x.t === 'size' || x.t === 'num')) dev = { ...dev, memory: x.t === 'size' ? x.bytes : x.v, range: o.range };
  }
  info.devices = dev;
}

/** A component's or adapter's tensors (names, shapes, repeats) as one string: equal when a hand-off keeps the layout. */
function tensorSignature(c: Pick<ComponentInfo, 'tensors'>): string {
  return c.tensors.map((t) => `${t.name}:${t.shape.join('x')}:${t.loops.map((l) => l.count).join('x')}`).join(';');
}

function describe(c: ComponentInfo): string {
  const keys = ['in', 'out', 'hidden', 'depth', 'layers', 'vocab'].filter((k) => c.params.has(k));
  return `${c.sig?.name ?? c.op}(${keys.map((k) => `${k}: ${show(c.params.get(k))}`).join(', ')})`;
}
