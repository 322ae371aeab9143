// `pipec export --target torch`: a readable, self-contained PyTorch program generated from the
// execution graph (never the source): model.py (the components under pipec's Hugging Face parameter
// names, and one class per model whose forward lists the graph's nodes in order) and train.py (the
// stage loop with pipec's freezing, optimizer, schedule, accumulation, clipping, hand-off and
// checkpoints, data-parallel over torchrun processes), reading the shards `pipec prepare` writes, and
// per-stage launch configurations (launch.ts). The output is a pure function of the graph:
// the same graph gives byte-identical files. See docs/export.md.
import type { AdapterDef, AttrValue, ComponentDef, Graph, ModelDef, NodeDef } from '../../compiler/ir/graph.js';
import { adapterConfig } from '../train/adapters.js';
import { graphHash } from '../train/run.js';
import { hfConfig } from '../weights/hf-config.js';
import { customPackageFiles, exportsPython, pythonPackageName, readPythonHalves } from './custom-python.js';
import { ExportError } from './export-error.js';
import { launchFiles } from './launch.js';
import { modelLib, trainLib } from './torch-lib.js';

export { ExportError };

const SUPPORTED = new Set(['vit', 'clip_vit', 'siglip_vit', 'cnn', 'linear', 'mlp_gelu', 'identity', 'llama', 'mistral', 'mixtral']);
const PY_RESERVED = new Set([
  'False', 'None', 'True', 'and', 'as', 'assert', 'async', 'await', 'break', 'class', 'continue', 'def', 'del', 'elif', 'else', 'except',
  'finally', 'for', 'from', 'global', 'if', 'import', 'in', 'is', 'lambda', 'nonlocal', 'not', 'or', 'pass', 'raise', 'return', 'try',
  'while', 'with', 'yield', 'self', 'aux_losses', 'pixel_values', 'input_ids', 'attention_mask', 'image_start', 'labels', 'loss', 'lm_loss', 'aux_loss',
]);

/** A JSON-like value as a Python literal; `indent` >= 0 lays dicts and lists of dicts out over lines. */
export function py(v: unknown, indent = -1, depth = 0): string {
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return Number.isNaN(v) ? 'float("nan")' : v > 0 ? 'float("inf")' : '-float("inf")';
    return String(v);
  }
  if (typeof v === 'string') return JSON.stringify(v);
  const pad = (d: number) => ' '.repeat(indent * d);
  const multi = indent >= 0;
  if (Array.isArray(v)) {
    const items = v.map((x) => py(x, indent, depth + 1));
    const long = multi && v.some((x) => x !== null && typeof x === 'object' && !Array.isArray(x));
    return long ? `[\n${items.map((s) => `${pad(depth + 1)}${s},`).join('\n')}\n${pad(depth)}]` : `[${items.join(', ')}]`;
  }
  const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
  if (!entries.length) return '{}';
  const items = entries.map(([k, x]) => `${JSON.stringify(k)}: ${py(x, indent, depth + 1)}`);
  const isDict = (y: unknown) => y !== null && typeof y === 'object' && !Array.isArray(y);
  const long = multi && entries.some(([, x]) => isDict(x) || (Array.isArray(x) && x.some(isDict)));
  return long ? `{\n${items.map((s) => `${pad(depth + 1)}${s},`).join('\n')}\n${pad(depth)}}` : `{${items.join(', ')}}`;
}

function className(model: string): string {
  const base = model.replace(/[^A-Za-z0-9]+/g, ' ').trim().split(/\s+/).map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
  return `${/^[0-9]/.test(base) ? 'M' : ''}${base || 'Model'}Model`;
}

export interface TorchExportOptions {
  /** Export a custom component as its `base` op (its own class is not carried, even when it has a PyTorch half). */
  customAsBase?: boolean;
  /** The program's folder: where the custom components' Python halves are read (their files are carried into the export). */
  baseDir?: string;
}

/** The op a component is exported as: its own, or a custom component's base (its PyTorch class, when carried, follows the base's shapes). */
function exportedOp(c: ComponentDef, o: TorchExportOptions): string {
  if (c.custom || c.op === 'custom') {
    if (!c.custom || (!o.customAsBase && !c.custom.python))
      throw new ExportError(`component "${c.name}" is a custom component (${c.custom?.class ?? 'custom'}) without a PyTorch half: name its modeling file with \`python:\` to carry the class, or export with --custom-as-base (its base, ${c.custom?.base ?? '?'}, without the class's own code)`);
    return c.custom.base;
  }
  return c.op;
}

function componentSpec(c: ComponentDef, o: TorchExportOptions): Record<string, unknown> {
  const op = exportedOp(c, o);
  if (!SUPPORTED.has(op)) throw new ExportError(`component "${c.name}" has op "${op}", which the torch exporter does not know`);
  const carried = exportsPython(c, o);
  return {
    name: c.name,
    role: c.role,
    op,
    ...(c.custom ? { custom: { class: c.custom.class, ...(c.custom.module ? { module: c.custom.module } : {}), ...(carried ? { python: c.custom.python!.file } : { exported_as: c.custom.base }) } } : {}),
    // the user's PyTorch class, from the package carried beside model.py (custom_<component>/)
    ...(carried ? { python: { package: pythonPackageName(c), module: c.custom!.python!.module, class: c.custom!.class, aux_loss_coef: op === 'mixtral' ? Number(c.attrs['aux_loss_coef'] ?? 0.02) : 0 } } : {}),
    attrs: c.attrs,
    tensors: c.tensors.map((t) => ({ name: t.name, shape: t.shape, repeat: Object.entries(t.repeat ?? {}) })),
    hf_config: JSON.parse(JSON.stringify(hfConfig(c))) as AttrValue,
  };
}

/**
 * A LoRA adapter for model.py's Adapter: its settings, its tensors (pipec's names) and the
 * adapter_config.json pipec writes for it (runtime/train/adapters.ts), its base_model_name_or_path filled
 * in when a checkpoint is written.
 */
function adapterSpec(m: ModelDef, a: AdapterDef): Record<string, unknown> {
  const comp = m.components.find((c) => c.name === a.component);
  if (!comp) throw new ExportError(`adapter "${a.name}" adapts component "${a.component}", which model "${m.name}" does not have`);
  return {
    name: a.name, component: a.component, rank: a.rank, alpha: a.alpha, dropout: a.dropout, targets: a.targets, quantize: a.quantize,
    tensors: a.tensors.map((t) => ({ name: t.name, shape: t.shape, repeat: Object.entries(t.repeat ?? {}) })),
    peft_config: adapterConfig(a, comp, null),
  };
}

function nodeCode(m: ModelDef, n: NodeDef, v: (id: string) => string, o: TorchExportOptions): string[] {
  const comp = n.component ? m.components.find((c) => c.name === n.component) : undefined;
  const ins = n.inputs.map(v);
  const out = v(n.id);
  const shape = `[${n.shape.join(', ')}]`;
  const call = (expr: string, guard: string[]) => (guard.length ? `${out} = None if ${guard.map((g) => `${g} is None`).join(' or ')} else ${expr}` : `${out} = ${expr}`);
  const c = (name: string) => `self.components[${JSON.stringify(name)}]`;
  let head = `# ${n.id}: ${n.op}${n.component ? ` (component ${n.component})` : ''} -> ${shape}`;
  let op = n.op;
  if (op === 'custom') {
    if (!comp) throw new ExportError(`node "${n.id}" runs a custom component that the graph does not declare`);
    op = exportedOp(comp, o);
    if (exportsPython(comp, o)) {
      const pkg = pythonPackageName(comp);
      head += `\n# the user's class ${comp.custom!.class} (${pkg}/${comp.custom!.python!.module.replace(/\./g, '/')}.py, carried from ${comp.custom!.python!.file})`;
      return [head, call(`custom_lm(${c(comp.name)}, ${ins[0]}, attention_mask, aux_losses)`, [ins[0]!])];
    }
    head += `\n# NOTE: custom class ${comp.custom!.class} (${comp.custom!.module ?? comp.custom!.python?.file ?? '?'}) exported as its base, ${op}; its own forward is not translated`;
  }
  if (op === 'token_embedding' && comp && exportsPython(comp, o)) return [head, call(`custom_embed(${c(comp.name)}, ${ins[0]})`, [ins[0]!])];
  switch (op) {
    case 'vit':
    case 'clip_vit':
    case 'siglip_vit':
    case 'cnn':
    case 'linear':
    case 'mlp_gelu':
    case 'identity':
      return [head, call(`${c(comp!.name)}(${ins[0]})`, [ins[0]!])];
    case 'token_embedding':
      return [head, call(`${c(comp!.name)}.embed(${ins[0]})`, [ins[0]!])];
    case 'llava_splice': {
      const tokens = Number(n.attrs['image_tokens'] ?? m.image_tokens ?? 0);
      return [`${head}; the image marker's ${tokens} positions take the features`, call(`llava_splice(${ins[0]}, ${ins[1]}, image_start, ${tokens})`, [ins[0]!])];
    }
    case 'llama':
    case 'mistral':
    case 'mixtral':
      return [head, call(`${c(comp!.name)}(${ins[0]}, attention_mask, aux_losses)`, [ins[0]!])];
    case 'causal_lm_loss': {
      const ignore = typeof n.attrs['ignore_index'] === 'number' ? n.attrs['ignore_index'] : -100;
      return [head, `lm_loss = None if labels is None else causal_lm_loss(${ins[0]}, labels, ${ignore})`];
    }
    default:
      throw new ExportError(`node "${n.id}" has op "${n.op}", which the torch exporter does not know`);
  }
}

function modelClass(m: ModelDef, o: TorchExportOptions): string {
  const names = new Map<string, string>([['pixel_values', 'pixel_values'], ['input_ids', 'input_ids'], ['attention_mask', 'attention_mask'], ['labels', 'labels']]);
  const used = new Set(names.values());
  const v = (id: string): string => {
    let name = names.get(id);
    if (name) return name;
    name = id.replace(/[^A-Za-z0-9_]/g, '_');
    if (/^[0-9]/.test(name) || PY_RESERVED.has(name)) name = `n_${name}`;
    while (used.has(name)) name += '_';
    used.add(name);
    names.set(id, name);
    return name;
  };
  const spec = {
    name: m.name,
    image_tokens: m.image_tokens ?? 0,
    weights: Object.fromEntries(m.components.filter((c) => c.weights).map((c) => [c.name, c.weights!])),
    components: m.components.map((c) => componentSpec(c, o)),
    ...(m.adapters?.length ? { adapters: m.adapters.map((a) => adapterSpec(m, a)) } : {}),
  };
  const body: string[] = ['aux_losses = []', 'lm_loss = None'];
  let hasLoss = false;
  for (const n of m.nodes) {
    body.push(...nodeCode(m, n, v, o).flatMap((l) => l.split('\n')));
    if (n.op === 'causal_lm_loss') hasLoss = true;
  }
  if (!hasLoss) body.push('# the graph has no loss node');
  const logits = v(m.outputs.logits);
  body.push(
    'aux_loss = sum(aux_losses) if aux_losses else None',
    'loss = None if lm_loss is None else (lm_loss + aux_loss if aux_loss is not None else lm_loss)',
    `return {"logits": ${logits}, "loss": loss, "lm_loss": lm_loss, "aux_loss": aux_loss}`,
  );
  const flow = m.components.map((c) => `${c.name} (${c.op})`).join(', ');
  return [
    `class ${className(m.name)}(PipeModel):`,
    `    """model ${m.name}: ${flow}. forward() runs the execution graph's nodes in order."""`,
    '',
    `    spec = ${py(spec, 4, 1)}`,
    '',
    '    def forward(self, pixel_values, input_ids, attention_mask, image_start, labels=None):',
    ...body.map((l) => `        ${l}`),
  ].join('\n');
}

function header(g: Graph, hash: string, what: string, carried: string[]): string {
  return [
    `# ${what}`,
    `# Generated by \`pipec export --target torch\` from ${g.source} (graph ${hash}, ${g.format} v${g.version}).`,
    '# Do not edit: change the .pipe program and export again. Needs only PyTorch (>= 1.13); uses the',
    '# `safetensors` package when it is installed. docs/export.md describes the files.',
    ...(carried.length ? [`# The users' own classes come from the packages beside this file (${carried.join(', ')}), and need what they import.`] : []),
  ].join('\n');
}

export function exportTorch(g: Graph, o: TorchExportOptions = {}): Map<string, string> {
  const hash = graphHash(g);
  const python = readPythonHalves(g, o); // checked against the graph's hashes before anything is generated
  const carried = [...new Set(g.models.flatMap((m) => m.components.filter((c) => python.has(c.name)).map((c) => `${pythonPackageName(c)}/`)))].sort();
  const models = g.models.map((m) => modelClass(m, o));
  const modelPy = [
    header(g, hash, 'model.py: the models of the program, under pipec\'s Hugging Face parameter names.', carried),
    modelLib().trimEnd(),
    '',
    '',
    '# --------------------------------------------------------------------------------------------------',
    '# The program\'s models, generated from its execution graph.',
    '# --------------------------------------------------------------------------------------------------',
    `GRAPH_HASH = ${JSON.stringify(hash)}`,
    `SOURCE = ${JSON.stringify(g.source)}`,
    '',
    '',
    models.join('\n\n\n'),
    '',
    '',
    `MODELS = {${g.models.map((m) => `${JSON.stringify(m.name)}: ${className(m.name)}`).join(', ')}}`,
    '',
  ].join('\n');

  const stages = g.stages.map((s) => ({
    name: s.name, model: s.model, after: s.after ?? null, handoff: s.handoff, train: s.train, freeze: s.freeze, data: s.data,
    optimizer: s.optimizer, schedule: s.schedule, batch: s.batch, accumulate: s.accumulate, global_batch: s.global_batch,
    precision: s.precision, gradient_checkpointing: s.gradient_checkpointing, clip_grad: s.clip_grad, seed: s.seed, checkpoint: s.checkpoint, devices: s.devices, sharding: s.sharding,
    ...(s.param_groups ? { param_groups: s.param_groups } : {}),
  }));
  const stageBlock = [
    '# --------------------------------------------------------------------------------------------------',
    '# The program\'s stages, in order (the graph\'s stage plans). Step counts come from the prepared data.',
    '# --------------------------------------------------------------------------------------------------',
    `STAGES = ${py(stages, 4, 0)}`,
    '',
    '',
  ].join('\n');
  const usage = [
    '"""Trains the program stage by stage, as `pipec run` does, from data prepared by `pipec prepare`:',
    '',
    ...g.stages.map((s) => `    pipec prepare ${g.source} --stage ${s.name} -o data/${s.name}`),
    '    python3 train.py --data data --out run [--resume] [--init DIR]',
    '"""',
  ].join('\n');
  const trainPy = [header(g, hash, 'train.py: the training program.', carried), usage, trainLib(stageBlock).trimEnd(), ''].join('\n');
  return new Map([
    ['model.py', modelPy],
    ['train.py', trainPy],
    // the graph, which train.py copies into its run folder as pipec run does (RUN/graph.json): pipec's
    // merge, eval and export then read a run of the exported trainer as one of its own
    ['graph.json', JSON.stringify(g, null, 2) + '\n'],
    ...launchFiles(g, o),
    ...customPackageFiles(g, o, python),
  ]);
}
