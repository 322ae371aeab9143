// Pass 3: bind every model component to its constructor (stdlib or `custom(...)`), type its parameters,
// check its `where` constraints, and evaluate its shape contract, tensors and parameter count.
import * as path from 'node:path';
import type * as A from '../ast/nodes.js';
import { M } from '../diagnostics/catalogue.js';
import type { Range } from '../diagnostics/source.js';
import { configSection, isLlavaConfig, sectionValue } from './hf-config-section.js';
import { familyOf, splitWeightsRef } from './hf-layout.js';
import { llavaVisionFields } from './hf-llava.js';
import { bindAdapters } from './adapters.js';
import { bindCall, exprText, type CallContext, type Instance } from './instance.js';
import type { ComponentInfo, CustomInfo, Host, LoadedFile, ModelInfo, Program, Reporter, SigInfo, TensorSpec } from './program.js';
import { declKindWord } from './resolve.js';
import { didYouMean, suggestName } from './suggest.js';
import { evaluate, show, type Dim, type Scope, type Value } from './values.js';

const CUSTOM_PARAMS = new Set(['class', 'module', 'python', 'trust', 'base']);

export function checkModels(
  program: Program,
  host: Host,
  reporter: Reporter,
  sigOf: (d: A.SignatureDecl) => SigInfo,
  weightOverrides: Map<string, { dir: string; range: Range }> = new Map(),
): void {
  const templates = new Set(program.templates.keys());
  for (const file of program.files) {
    if (file.isStdlib) continue;
    for (const decl of file.ast.decls) {
      if (decl.kind !== 'Model' || !decl.name.name) continue;
      if (program.models.has(decl.name.name)) continue;
      const model: ModelInfo = { decl, file, name: decl.name.name, components: new Map(), adapters: new Map(), edges: [] };
      program.models.set(model.name, model);
      bindModel(model, file, host, reporter, templates, sigOf, weightOverrides);
    }
  }
}

function bindModel(
  model: ModelInfo,
  file: LoadedFile,
  host: Host,
  reporter: Reporter,
  templates: Set<string>,
  sigOf: (d: A.SignatureDecl) => SigInfo,
  weightOverrides: Map<string, { dir: string; range: Range }>,
): void {
  const instances = new Map<string, Instance>();

  const callScope: Scope = {
    name: (ref) => ({ t: 'word', name: ref.name }),
    member: (obj, member) => {
      if (obj.kind !== 'Ref') {
        reporter.evalError(obj.range, 'write a reference as `component.parameter`');
        return undefined;
      }
      const target = model.components.get(obj.name);
      if (!target) {
        reporter.report(M.UnknownComponent, obj.range, obj.name, model.name).hint = didYouMean(obj.name, model.components.keys());
        return undefined;
      }
      const inst = instances.get(obj.name);
      if (!inst) return undefined; // its constructor failed to bind; already reported
      if (!inst.sig.params.has(member.name)) {
        reporter.report(M.UnknownMember, member.range, member.name, obj.name).hint = didYouMean(member.name, inst.sig.params.keys());
        return undefined;
      }
      return inst.get(member.name);
    },
    error: (range, why) => reporter.evalError(range, why),
  };
  const ctx: CallContext = { reporter, callScope, templates };

  for (const c of model.decl.components) {
    if (!c.name.name) continue;
    if (model.components.has(c.name.name)) {
      const d = reporter.report(M.DuplicateDeclaration, c.name.range, 'component', c.name.name);
      d.related = [{ message: 'first declared here', range: model.components.get(c.name.name)!.decl.name.range }];
      continue;
    }
    const info: ComponentInfo = {
      decl: c,
      model,
      name: c.name.name,
      role: c.role,
      op: '',
      params: new Map(),
      paramRanges: new Map(),
      tensors: [],
      paramCount: 0,
      ok: false,
    };
    const wo = weightOverrides.get(c.name.name);
    if (wo) info.weights = weightsRef(wo.dir, path.resolve(wo.dir), wo.range);
    else if (c.weights) info.weights = weightsRef(c.weights.value, path.resolve(path.dirname(file.path), c.weights.value), c.weights.range);
    model.components.set(info.name, info);
    const inst = bindComponent(info, file, host, reporter, ctx, sigOf);
    if (inst) instances.set(info.name, inst);
  }

  for (const info of model.components.values()) {
    const inst = instances.get(info.name);
    if (!inst) continue;
    const ok = inst.finish();
    info.params = inst.values;
    info.paramRanges = inst.ranges;
    if (!ok) continue;
    info.ok = evaluateContract(info, inst, reporter);
  }
  bindAdapters(model, file, reporter, ctx, sigOf);
}

/** `weights "DIR#ROOT"`: the path without the ROOT (hf-layout.ts picks the part of the checkpoint with it). */
function weightsRef(dir: string, abs: string, range: Range): NonNullable<ComponentInfo['weights']> {
  const { part } = splitWeightsRef(dir);
  return { dir, abs: part === undefined ? abs : splitWeightsRef(abs).path, part, range };
}

function bindComponent(info: ComponentInfo, file: LoadedFile, host: Host, reporter: Reporter, ctx: CallContext, sigOf: (d: A.SignatureDecl) => SigInfo): Instance | undefined {
  const init = info.decl.init;
  if (init.kind === 'Missing') return undefined;
  if (init.kind !== 'Call' || init.callee.kind !== 'Ref') {
    reporter.report(M.NotACall, init.range, `component \`${info.name}\``);
    return undefined;
  }
  const ctorName = init.callee.name;
  if (ctorName === 'custom') return bindCustom(info, init, file, host, reporter, ctx, sigOf);
  const sig = lookupSig(ctorName, init.callee.range, info.role, file, reporter, sigOf);
  if (!sig) return undefined;
  info.sig = sig;
  info.op = opName(sig);
  const inst = bindCall(sig, init, ctx, info.name);
  fillFromConfig(info, inst, sig, init, host, reporter);
  return inst;
}

const sigIndex = new WeakMap<LoadedFile, Map<string, A.SignatureDecl>>();

/** Signatures visible in a file, keyed by `kind:name` (built once per file; lookups happen per call). */
function signaturesByKind(file: LoadedFile): Map<string, A.SignatureDecl> {
  let index = sigIndex.get(file);
  if (!index) {
    index = new Map();
    for (const f of [file, ...file.imports])
      for (const d of f.ast.decls) if (d.kind === 'Signature' && !index.has(`${d.sigKind}:${d.name.name}`)) index.set(`${d.sigKind}:${d.name.name}`, d);
    sigIndex.set(file, index);
  }
  return index;
}

/** The `role` constructor `name` visible in `file`, if there is one: what lookupSig picks without reporting
 * anything (the language server resolves names as the checker does). */
export function findSignature(name: string, role: string, file: LoadedFile): A.SignatureDecl | undefined {
  return signaturesByKind(file).get(`${role}:${name}`);
}

export function lookupSig(name: string, range: Range, role: string, file: LoadedFile, reporter: Reporter, sigOf: (d: A.SignatureDecl) => SigInfo): SigInfo | undefined {
  // Constructors of different kinds may share a name (projector `linear`, schedule `linear`): the kind
  // the position asks for picks among them.
  const sameKind = findSignature(name, role, file);
  if (sameKind) return sigOf(sameKind);
  const decl = file.scope.get(name);
  if (!decl) {
    const candidates = [...file.scope.values()].filter((d) => d.kind === 'Signature' && d.sigKind === role).map((d) => d.name.name);
    const d = reporter.report(M.UnknownConstructor, range, name);
    if (suggestName(d, name, candidates, range)) return undefined;
    if (!candidates.length) d.hint = `no ${role} constructors are in scope; did you forget an import such as \`import "std/${role === 'encoder' ? 'vision' : role === 'projector' ? 'projectors' : role === 'llm' ? 'llm' : role === 'data' ? 'data' : 'train'}"\`?`;
    else d.hint = `known ${role} constructors: ${candidates.join(', ')}`;
    return undefined;
  }
  if (decl.kind !== 'Signature') {
    reporter.report(M.WrongDeclKind, range, name, declKindWord(decl), `${/^[aeiou]/.test(role) ? 'an' : 'a'} ${role} constructor`);
    return undefined;
  }
  if (decl.sigKind !== role) {
    reporter.report(M.RoleMismatch, range, name, declKindWord(decl).replace(/ constructor$/, ''), `${/^[aeiou]/.test(role) ? 'an' : 'a'} ${role}`);
    return undefined;
  }
  return sigOf(decl);
}

function opName(sig: SigInfo): string {
  const f = sig.fields.get('op');
  return f && f.value.kind === 'String' ? f.value.value : sig.name;
}

function bindCustom(info: ComponentInfo, call: A.CallExpr, file: LoadedFile, host: Host, reporter: Reporter, ctx: CallContext, sigOf: (d: A.SignatureDecl) => SigInfo): Instance | undefined {
  const own = new Map<string, A.Arg>();
  const rest: A.Arg[] = [];
  call.args.forEach((a, i) => {
    const name = a.name?.name ?? (i === 0 ? 'class' : undefined);
    if (name && CUSTOM_PARAMS.has(name)) own.set(name, a);
    else rest.push(a);
  });
  const str = (key: string): string | undefined => {
    const a = own.get(key);
    if (!a) return undefined;
    if (a.value.kind === 'String') return a.value.value;
    reporter.report(M.TypeMismatch, a.value.range, `\`custom\` parameter \`${key}\``, 'a string', exprText(a.value));
    return undefined;
  };
  const className = str('class');
  const module = str('module');
  const python = str('python');
  if (!className) {
    reporter.report(M.MissingParameter, call.range, 'class', 'custom').hint = 'write `custom("MyModelClass", module: "./my_model.ts", python: "./my_model/modeling_my.py", trust: true, base: llama)`';
    return undefined;
  }
  if (!module && !python) {
    // either half may be absent, not both: `module:` is what pipec runs, `python:` what the export carries
    if (!own.has('module') && !own.has('python'))
      reporter.report(M.MissingParameter, call.range, 'module', 'custom').hint = 'point `module:` at the TypeScript or JavaScript file that exports the class (what `pipec run` runs), and/or `python:` at its modeling_*.py (what `pipec export` carries)';
    return undefined;
  }
  const trustArg = own.get('trust');
  let trust = false;
  if (trustArg) {
    if (trustArg.value.kind === 'Bool') trust = trustArg.value.value;
    else reporter.report(M.TypeMismatch, trustArg.value.range, '`custom` parameter `trust`', 'bool', exprText(trustArg.value));
  }
  const dir = path.dirname(file.path);
  const custom: CustomInfo = { className, trust, base: '' };
  if (module) Object.assign(custom, { module, modulePath: path.resolve(dir, module) });
  if (python) Object.assign(custom, { python, pythonPath: path.resolve(dir, python) });
  info.custom = custom;
  info.op = 'custom';
  // Only the TypeScript half runs inside pipec: a program that names one asks for it to be run (the
  // person running pipec grants that: `pipec trust`, `--trust`; runtime/trust.ts).
  if (module && !trust) {
    const d = reporter.report(M.CustomNotTrusted, trustArg?.value.range ?? call.range, className);
    d.hint = `read "${module}" and, if it should run, add \`trust: true\`; pipec runs it only once you trust the files (\`pipec trust FILE.pipe\` or \`pipec run --trust\`)`;
  }
  const baseArg = own.get('base');
  if (!baseArg || baseArg.value.kind !== 'Ref') {
    const d = reporter.report(M.CustomNeedsBase, baseArg?.value.range ?? call.range, className);
    d.hint = `e.g. \`base: ${info.role === 'llm' ? 'mixtral' : info.role === 'encoder' ? 'siglip_vit' : 'mlp_gelu'}\``;
    return undefined;
  }
  const sig = lookupSig(baseArg.value.name, baseArg.value.range, info.role, file, reporter, sigOf);
  if (!sig) return undefined;
  custom.base = sig.name;
  info.sig = sig;
  const inst = bindCall(sig, { ...call, args: rest }, ctx, info.name);
  fillFromConfig(info, inst, sig, { ...call, args: rest }, host, reporter);
  return inst;
}

/** config.json of a component's checkpoint: inside the folder, or beside a single .safetensors file. */
export function weightsConfigFile(weights: NonNullable<ComponentInfo['weights']>, host: Host): string | undefined {
  if (host.isDirectory(weights.abs)) return path.join(weights.abs, 'config.json');
  if (weights.abs.endsWith('.safetensors')) return path.join(path.dirname(weights.abs), 'config.json');
  return undefined;
}

/** Parameters the call gives itself: named or positional arguments, and a preset's. */
function explicitParams(sig: SigInfo, call: A.CallExpr): Set<string> {
  const out = new Set<string>();
  let positional = 0;
  for (const a of call.args) {
    if (a.name?.name === 'preset') {
      const preset = a.value.kind === 'String' ? sig.presets.get(a.value.value) : undefined;
      for (const p of preset?.args ?? []) if (p.name) out.add(p.name.name);
    } else if (a.name) out.add(a.name.name);
    else if (positional < sig.order.length) out.add(sig.order[positional++]!);
  }
  return out;
}

/**
 * Parameters the call leaves out (defaults) come from the checkpoint's config.json, through the
 * signature's `hf_config` keys looked up in the component's section (hf-config-section.ts), and for an
 * encoder under a LLaVA config, `select_layer` / `select` from its vision_feature_* fields (hf-llava.ts).
 * What the call gives (arguments, a preset) stays, and the weights pass checks it against the config.
 */
function fillFromConfig(info: ComponentInfo, inst: Instance, sig: SigInfo, call: A.CallExpr, host: Host, reporter: Reporter): void {
  if (!info.weights) return;
  const cfgPath = weightsConfigFile(info.weights, host);
  const text = cfgPath ? host.readFile(cfgPath) : undefined;
  if (text === undefined || !cfgPath) return;
  let cfg: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) cfg = parsed as Record<string, unknown>;
    else reporter.report(M.BadConfigJson, info.weights.range, host.display(cfgPath), 'it is not a JSON object');
  } catch (e) {
    reporter.report(M.BadConfigJson, info.weights.range, host.display(cfgPath), (e as Error).message);
  }
  const family = familyOf(sig.name);
  if (!cfg || !family) return;
  const explicit = explicitParams(sig, call);
  const section = configSection(cfg, family);
  for (const [param, keys] of hfConfigKeys(sig, reporter)) {
    if (explicit.has(param) || !sig.params.has(param)) continue;
    const v = jsonToValue(sectionValue(cfg, section, keys)?.value);
    if (v) inst.setValue(param, v, info.weights.range);
  }
  if (family === 'vision' && isLlavaConfig(cfg)) {
    const clsValue = sig.params.has('cls') ? inst.get('cls') : undefined;
    const cls = clsValue?.t === 'bool' ? clsValue.v : undefined;
    const f = llavaVisionFields(cfg, sig.name, cls);
    if (f.select_layer && typeof f.select_layer.value === 'number' && !explicit.has('select_layer') && sig.params.has('select_layer')) inst.setValue('select_layer', { t: 'num', v: f.select_layer.value }, info.weights.range);
    if (f.select?.value && !explicit.has('select') && sig.params.has('select')) inst.setValue('select', { t: 'str', v: f.select.value }, info.weights.range);
  }
}

/** `hf_config: { hidden: "hidden_size" | "vision_config.hidden_size" }` from a signature body. */
export function hfConfigKeys(sig: SigInfo, reporter: Reporter): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const f = sig.fields.get('hf_config');
  if (!f) return out;
  const v = evaluate(f.value, { name: (r) => ({ t: 'word', name: r.name }), error: (r, why) => reporter.evalError(r, why) });
  if (!v || v.t !== 'obj') return out;
  for (const [param, keys] of v.fields) {
    const list = keys.t === 'list' ? keys.items : [keys];
    out.set(
      param,
      list.flatMap((k) => (k.t === 'str' ? [k.v] : [])),
    );
  }
  return out;
}

export function jsonToValue(raw: unknown): Value | undefined {
  if (typeof raw === 'number') return { t: 'num', v: raw };
  if (typeof raw === 'string') return { t: 'str', v: raw };
  if (typeof raw === 'boolean') return { t: 'bool', v: raw };
  return undefined;
}

function checkDims(dims: Dim[], what: string, info: ComponentInfo, related: Range, reporter: Reporter): boolean {
  for (const d of dims) {
    if (typeof d === 'number' && (!Number.isInteger(d) || d < 1)) {
      const diag = reporter.report(M.BadDimension, info.decl.init.range, `${what} of \`${info.name}\``, String(d));
      diag.related = [{ message: 'the dimension is declared here', range: related }];
      return false;
    }
  }
  return true;
}

function evaluateContract(info: ComponentInfo, inst: Instance, reporter: Reporter): boolean {
  const sig = inst.sig;
  const shapeOf = (e: A.Expr | undefined, what: string): Dim[] | undefined => {
    if (!e) return undefined;
    const v = evaluate(e, inst.sigScope('symbol'));
    if (!v) return undefined;
    if (v.t !== 'shape') {
      reporter.evalError(e.range, `the ${what} shape of \`${sig.name}\` must be written like Tensor[n, hidden]`);
      return undefined;
    }
    return checkDims(v.dims, `the ${what}`, info, e.range, reporter) ? v.dims : undefined;
  };
  info.input = shapeOf(sig.decl.input, 'input');
  info.output = shapeOf(sig.decl.output, 'output');
  if (sig.decl.output && !info.output) return false;

  const tensors: TensorSpec[] = [];
  let count = 0;
  for (const item of sig.decl.items) {
    if (item.kind !== 'Tensor') continue;
    const scope = new Map<string, Value>();
    const loops: TensorSpec['loops'] = [];
    let ok = true;
    for (const l of item.loops) {
      const b = evaluate(l.bound, inst.sigScope('error'));
      if (!b || b.t !== 'num' || !Number.isInteger(b.v) || b.v < 0) {
        if (b) reporter.evalError(l.bound.range, `a loop bound must be a non-negative integer, got ${show(b)}`);
        ok = false;
        break;
      }
      loops.push({ var: l.var.name, count: b.v });
      scope.set(l.var.name, { t: 'num', v: 0 });
    }
    if (!ok) return false;
    if (item.cond) {
      const c = evaluate(item.cond, inst.sigScope('error', scope));
      if (!c) return false;
      if (c.t === 'bool' && !c.v) continue;
    }
    const shape: number[] = [];
    for (const d of item.dims) {
      const v = evaluate(d, inst.sigScope('error', scope));
      if (!v) return false;
      if (v.t !== 'num' || !Number.isInteger(v.v) || v.v < 1) {
        reporter.report(M.BadDimension, info.decl.init.range, `of tensor "${item.name.value}" in \`${info.name}\``, show(v)).related = [{ message: 'the dimension is declared here', range: d.range }];
        return false;
      }
      shape.push(v.v);
    }
    const repeat = loops.reduce((a, l) => a * l.count, 1);
    count += repeat * shape.reduce((a, b) => a * b, 1);
    tensors.push({ name: item.name.value, shape, loops });
  }
  if (!Number.isSafeInteger(count)) {
    reporter.report(M.OutOfRange, info.decl.init.range, `the parameter count of \`${info.name}\``, `at most ${Number.MAX_SAFE_INTEGER}`, String(count));
    return false;
  }
  info.tensors = tensors;
  info.paramCount = count;

  const act = sig.fields.get('activations');
  const actCk = sig.fields.get('checkpointed_activations');
  if (act) {
    info.activations = (tokens, checkpointed) => {
      const field = checkpointed && actCk ? actCk : act;
      const v = evaluate(field.value, inst.sigScope('error', new Map([['tokens', { t: 'num', v: tokens }]])));
      return v && v.t === 'num' ? v.v : undefined;
    };
  }
  return true;
}
