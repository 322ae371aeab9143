// Part of pass 3 (models): bind each `adapter lm.lora = lora(...)` of a model to its `adapter`
// constructor, check its targets against the adapted component's linear layers, and derive its tensors
// under PEFT's names: per adapted layer `<module>.lora_A.weight` [rank, in] and `<module>.lora_B.weight`
// [out, rank], repeated like the layer. Runs after the model's components are bound (their tensors are
// what the targets are checked against).
import type * as A from '../ast/nodes.js';
import { M } from '../diagnostics/catalogue.js';
import { bindCall, type CallContext } from './instance.js';
import { lookupSig } from './components.js';
import type { AdapterInfo, ComponentInfo, LoadedFile, ModelInfo, Reporter, SigInfo, TensorSpec } from './program.js';
import { didYouMean, suggestName } from './suggest.js';
import type { Value } from './values.js';

/** Linear layers of a component by module name (the name's last part before `.weight`, PEFT's
 * target_modules): its 2-D weights, except embeddings (PEFT adapts those differently). A module named
 * by a loop index (the projector's `linear_{k+2}`) is one module per index: `linear_2`, `linear_3`. */
export function linearLayers(c: ComponentInfo): Map<string, TensorSpec[]> {
  const out = new Map<string, TensorSpec[]>();
  for (const t of c.tensors) {
    if (t.shape.length !== 2 || !t.name.endsWith('.weight') || /embed/.test(t.name)) continue;
    for (const spec of byModuleIndex(t)) {
      const parts = spec.name.split('.');
      const module = parts[parts.length - 2]!;
      out.set(module, [...(out.get(module) ?? []), spec]);
    }
  }
  return out;
}

/** A tensor whose module name holds loop indices, as one tensor per value of those loops. */
function byModuleIndex(t: TensorSpec): TensorSpec[] {
  const parts = t.name.split('.');
  const module = parts[parts.length - 2]!;
  let specs = [t];
  for (const loop of t.loops) {
    const at = new RegExp(`\\{${loop.var}\\s*(?:([+-])\\s*(\\d+))?\\}`, 'g');
    if (!new RegExp(at.source).test(module)) continue;
    specs = specs.flatMap((s) =>
      Array.from({ length: loop.count }, (_, i) => {
        const p = s.name.split('.');
        p[p.length - 2] = p[p.length - 2]!.replace(at, (_m, sign?: string, n?: string) => String(i + (n ? (sign === '-' ? -1 : 1) * Number(n) : 0)));
        return { name: p.join('.'), shape: s.shape, loops: s.loops.filter((l) => l !== loop) };
      }),
    );
  }
  return specs;
}

export function bindAdapters(model: ModelInfo, file: LoadedFile, reporter: Reporter, ctx: CallContext, sigOf: (d: A.SignatureDecl) => SigInfo): void {
  /** `component/module` -> the adapter that adapts it: the runtime and the exports give a layer one adapter. */
  const taken = new Map<string, AdapterInfo>();
  for (const decl of model.decl.adapters) {
    if (!decl.component.name || !decl.name.name) continue;
    const name = `${decl.component.name}.${decl.name.name}`;
    const component = model.components.get(decl.component.name);
    if (!component) {
      const d = reporter.report(M.UnknownComponent, decl.component.range, decl.component.name, model.name);
      suggestName(d, decl.component.name, model.components.keys(), decl.component.range);
      continue;
    }
    const prev = model.adapters.get(name);
    if (prev) {
      const d = reporter.report(M.DuplicateDeclaration, decl.name.range, 'adapter', name);
      d.related = [{ message: 'first declared here', range: prev.decl.name.range }];
      continue;
    }
    const info: AdapterInfo = { decl, name, component, kind: 'lora', rank: 0, alpha: 0, dropout: 0, targets: [], quantize: 'none', tensors: [], paramCount: 0, adaptedParams: 0, ok: false };
    model.adapters.set(name, info);
    if (decl.init.kind !== 'Call' || decl.init.callee.kind !== 'Ref') {
      reporter.report(M.NotACall, decl.init.range, 'an adapter');
      continue;
    }
    const sig = lookupSig(decl.init.callee.name, decl.init.callee.range, 'adapter', file, reporter, sigOf);
    if (!sig) continue;
    const inst = bindCall(sig, decl.init, ctx, name);
    if (!inst.finish()) continue;
    const num = (k: string): number => {
      const v = inst.values.get(k);
      return v?.t === 'num' ? v.v : 0;
    };
    const str = (v: Value | undefined): string => (v?.t === 'str' ? v.v : '');
    const targetsValue = inst.values.get('targets');
    info.rank = num('rank');
    info.alpha = num('alpha');
    info.dropout = num('dropout');
    info.targets = targetsValue?.t === 'list' ? targetsValue.items.map(str) : [];
    info.quantize = (str(inst.values.get('quantize')) || 'none') as AdapterInfo['quantize'];
    if (!component.ok) continue; // its tensors are unknown; its own error is reported
    const layers = linearLayers(component);
    const listRange = inst.ranges.get('targets') ?? decl.init.range;
    const written = decl.init.args.find((x) => x.name?.name === 'targets')?.value;
    let ok = true;
    for (const [i, t] of info.targets.entries()) {
      const range = written?.kind === 'List' && written.items.length === info.targets.length ? written.items[i]!.range : listRange;
      if (!layers.has(t)) {
        const d = reporter.report(M.AdapterTargetUnknown, range, t, component.name, component.sig?.name ?? component.op);
        d.hint = didYouMean(t, layers.keys(), (s) => `"${s}"`) ?? `its linear layers are ${[...layers.keys()].map((s) => `"${s}"`).join(', ') || 'none'}`;
        ok = false;
        continue;
      }
      const other = taken.get(`${component.name}/${t}`);
      if (other) {
        const d = reporter.report(M.AdapterTargetTaken, range, name, t, component.name, other.name);
        d.related = [{ message: `\`${other.name}\` adapts it`, range: other.decl.range }];
        d.hint = `give each layer one adapter: drop "${t}" from one of their targets`;
        ok = false;
      }
    }
    if (!ok) continue;
    for (const t of info.targets) taken.set(`${component.name}/${t}`, info);
    for (const t of new Set(info.targets)) {
      for (const spec of layers.get(t)!) {
        const [out, inn] = spec.shape as [number, number];
        const base = spec.name.slice(0, -'.weight'.length);
        const repeat = spec.loops.reduce((n, l) => n * l.count, 1);
        info.tensors.push({ name: `${base}.lora_A.weight`, shape: [info.rank, inn], loops: spec.loops });
        info.tensors.push({ name: `${base}.lora_B.weight`, shape: [out, info.rank], loops: spec.loops });
        info.paramCount += repeat * info.rank * (inn + out);
        info.adaptedParams += repeat * out * inn;
      }
    }
    info.ok = true;
  }
}
