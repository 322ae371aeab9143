// Lowering: a checked Program -> the execution graph IR. Runs only when the checker reported no errors.
// Output is deterministic: every list follows source or flow order, every object is built in a fixed key
// order, so compiling twice gives byte-identical JSON.
import type { StageEstimate } from '../check/memory.js';
import type { AdapterInfo, ComponentInfo, ModelInfo, Program, StageInfo, TensorSpec } from '../check/program.js';
import { evaluate, type Value } from '../check/values.js';
import type { AdapterDef, AttrValue, ComponentDef, CustomDef, DatasetDef, Dim, Graph, ModelDef, NodeDef, StagePlan, TensorDef } from '../ir/graph.js';
import { GRAPH_FORMAT, GRAPH_VERSION } from '../ir/graph.js';

/** Signature fields that describe the compiler's bookkeeping, not the component the runtime builds. */
const META_FIELDS = new Set(['hf_config', 'activations', 'checkpointed_activations', 'op', 'states']);

export function toAttr(v: Value): AttrValue {
  switch (v.t) {
    case 'num':
    case 'str':
    case 'bool':
      return v.v;
    case 'size':
      return v.bytes;
    case 'list':
      return v.items.map(toAttr);
    case 'obj':
      return Object.fromEntries([...v.fields].map(([k, x]) => [k, toAttr(x)]));
    case 'sym':
    case 'word':
      return v.name;
    case 'shape':
      return v.dims;
    case 'devices':
      return { nodes: v.nodes, per_node: v.perNode, kind: v.device };
  }
}

function attrsOf(params: Map<string, Value>): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const [k, v] of params) out[k] = toAttr(v);
  return out;
}

function tensorDef(t: TensorSpec): TensorDef {
  return t.loops.length ? { name: t.name, shape: t.shape, repeat: Object.fromEntries(t.loops.map((l) => [l.var, l.count])) } : { name: t.name, shape: t.shape };
}

function lowerComponent(c: ComponentInfo): ComponentDef {
  const attrs = attrsOf(c.params);
  for (const [name, f] of c.sig?.fields ?? []) {
    if (META_FIELDS.has(name)) continue;
    const v = evaluate(f.value, { name: (r) => ({ t: 'word', name: r.name }), error: () => undefined });
    if (v) attrs[name] = toAttr(v);
  }
  const def: ComponentDef = {
    name: c.name,
    role: c.role,
    op: c.op,
    constructor: c.custom ? 'custom' : (c.sig?.name ?? c.op),
    attrs,
    params: c.paramCount,
    tensors: c.tensors.map(tensorDef),
  };
  if (c.weights) def.weights = c.weights.dir;
  if (c.custom) def.custom = customDef(c.custom);
  return def;
}

/** A custom component's record: class, base, and each half that is there with its files and content hash. */
function customDef(c: NonNullable<ComponentInfo['custom']>): CustomDef {
  const def: CustomDef = { class: c.className, base: c.base };
  if (c.code) Object.assign(def, { module: `./${c.code.module}`, files: c.code.files, hash: c.code.hash });
  if (c.py) {
    const { configClass, modelType, moeBlock, ...rest } = c.py;
    def.python = { ...rest, ...(configClass ? { config_class: configClass } : {}), ...(modelType ? { model_type: modelType } : {}), ...(moeBlock ? { moe_block: moeBlock } : {}) };
  }
  if (c.config) def.config = JSON.parse(JSON.stringify(c.config)) as Record<string, AttrValue>;
  return def;
}

/** Components in flow order (producers first), ties broken by declaration order. */
function flowOrder(model: ModelInfo): ComponentInfo[] {
  const comps = [...model.components.values()];
  const indeg = new Map(comps.map((c) => [c, 0]));
  const outgoing = new Map<ComponentInfo, ComponentInfo[]>(); // in edge order, as a scan of all edges would find them
  for (const e of model.edges) {
    indeg.set(e.to, (indeg.get(e.to) ?? 0) + 1);
    const tos = outgoing.get(e.from) ?? [];
    tos.push(e.to);
    outgoing.set(e.from, tos);
  }
  const out: ComponentInfo[] = [];
  const ready = comps.filter((c) => indeg.get(c) === 0);
  for (let i = 0; i < ready.length; i++) {
    const c = ready[i];
    out.push(c);
    for (const to of outgoing.get(c) ?? []) {
      indeg.set(to, indeg.get(to)! - 1);
      if (indeg.get(to) === 0) ready.push(to);
    }
  }
  return out;
}

/** Edges into each component, in edge order. */
function incomingEdges(model: ModelInfo): Map<ComponentInfo, ModelInfo['edges']> {
  const into = new Map<ComponentInfo, ModelInfo['edges']>();
  for (const e of model.edges) {
    const list = into.get(e.to) ?? [];
    list.push(e);
    into.set(e.to, list);
  }
  return into;
}

function lowerModel(model: ModelInfo): ModelDef {
  const order = flowOrder(model);
  const inputs: ModelDef['inputs'] = [];
  const encoder = order.find((c) => c.role === 'encoder');
  if (encoder?.input) inputs.push({ name: 'pixel_values', dtype: 'float32', shape: ['B', ...encoder.input] });
  inputs.push({ name: 'input_ids', dtype: 'int32', shape: ['B', 'T'] });
  inputs.push({ name: 'attention_mask', dtype: 'int32', shape: ['B', 'T'] });
  inputs.push({ name: 'labels', dtype: 'int32', shape: ['B', 'T'] });

  const nodes: NodeDef[] = [];
  const llm = model.llm!;
  const into = incomingEdges(model);
  for (const c of order) {
    const incoming = into.get(c) ?? [];
    if (c.role !== 'llm') {
      const out: Dim[] = c.resolvedOutput ?? c.output ?? [];
      nodes.push({ id: c.name, op: c.op, component: c.name, inputs: c.role === 'encoder' ? ['pixel_values'] : incoming.map((e) => e.from.name), attrs: {}, shape: ['B', ...out] });
      continue;
    }
    const hidden = c.input?.[c.input.length - 1] ?? 'D';
    const embed = `${c.name}.embed`;
    nodes.push({ id: embed, op: 'token_embedding', component: c.name, inputs: ['input_ids'], attrs: {}, shape: ['B', 'T', hidden] });
    let stream = embed;
    for (const e of incoming) {
      const id = `${c.name}.splice_${e.from.name}`;
      nodes.push({ id, op: 'llava_splice', inputs: [stream, e.from.name, 'input_ids'], attrs: { marker: e.at ?? '<image>', image_tokens: model.imageTokens ?? 0 }, shape: ['B', 'T', hidden] });
      stream = id;
    }
    const vocab = c.output?.[c.output.length - 1] ?? 'V';
    nodes.push({ id: c.name, op: c.op, component: c.name, inputs: [stream, 'attention_mask'], attrs: {}, shape: ['B', 'T', vocab] });
  }
  const lossAttrs: Record<string, AttrValue> = { ignore_index: -100 };
  const aux = llm.params.get('aux_loss_coef');
  if (aux?.t === 'num') lossAttrs.aux_loss_coef = aux.v;
  nodes.push({ id: 'loss', op: 'causal_lm_loss', inputs: [llm.name, 'labels'], attrs: lossAttrs, shape: [] });
  const def: ModelDef = { name: model.name, inputs, components: order.map(lowerComponent), nodes, outputs: { logits: llm.name, loss: 'loss' } };
  if (model.imageTokens !== undefined) def.image_tokens = model.imageTokens;
  if (model.adapters.size) def.adapters = [...model.adapters.values()].map(lowerAdapter);
  return def;
}

function lowerAdapter(a: AdapterInfo): AdapterDef {
  return {
    name: a.name,
    component: a.component.name,
    kind: a.kind,
    rank: a.rank,
    alpha: a.alpha,
    dropout: a.dropout,
    targets: a.targets,
    quantize: a.quantize,
    tensors: a.tensors.map(tensorDef),
    params: a.paramCount,
  };
}

function stageOrder(stages: StageInfo[]): StageInfo[] {
  const out: StageInfo[] = [];
  const placed = new Set<StageInfo>();
  while (out.length < stages.length) {
    const next = stages.find((s) => !placed.has(s) && (!s.after || placed.has(s.after)));
    if (!next) break;
    placed.add(next);
    out.push(next);
  }
  return out;
}

function lowerStage(s: StageInfo, est: StageEstimate | undefined): StagePlan {
  const dev = s.devices ?? { nodes: 1, perNode: 1, device: 'cpu', memory: undefined };
  const plan: StagePlan = {
    name: s.name,
    model: s.model!.name,
    handoff: s.after
      ? [...s.after.train.filter((c) => s.model!.components.has(c.name)), ...s.after.trainAdapters.filter((a) => s.model!.adapters.has(a.name))].map((c) => ({ component: c.name, from: s.after!.name }))
      : [],
    train: [...s.train.map((c) => c.name), ...s.trainAdapters.map((a) => a.name)],
    freeze: [...s.freeze.map((c) => c.name), ...s.freezeAdapters.map((a) => a.name)],
    data: s.data!.name,
    optimizer: { name: s.optimizer!.name, attrs: attrsOf(s.optimizer!.params) },
    schedule: { name: s.schedule!.name, attrs: attrsOf(s.schedule!.params) },
    batch: s.batch,
    accumulate: s.accumulate,
    global_batch: s.batch * s.accumulate * dev.nodes * dev.perNode,
    max_length: s.maxLength ?? 1,
    precision: s.precision,
    devices: dev.memory === undefined ? { nodes: dev.nodes, per_node: dev.perNode, kind: dev.device } : { nodes: dev.nodes, per_node: dev.perNode, kind: dev.device, memory: dev.memory },
    sharding: s.sharding,
    gradient_checkpointing: s.gradientCheckpointing,
    clip_grad: s.clipGrad,
    seed: s.seed,
    checkpoint: { ...s.checkpoint },
    memory: {
      total_params: est?.totalParams ?? 0,
      trainable_params: est?.trainableParams ?? 0,
      per_device: {
        weights: Math.round(est?.perDevice.weights ?? 0),
        gradients: Math.round(est?.perDevice.gradients ?? 0),
        optimizer: Math.round(est?.perDevice.optimizer ?? 0),
        activations: Math.round(est?.perDevice.activations ?? 0),
        total: Math.round(est?.perDevice.total ?? 0),
      },
    },
  };
  if (s.after) plan.after = s.after.name;
  if (s.groupByLength) plan.group_by_length = true;
  if (s.groups.size)
    plan.param_groups = [...s.groups].map(([name, g]) => ({ name, ...(g.lr !== undefined ? { lr: g.lr } : {}), ...(g.weightDecay !== undefined ? { weight_decay: g.weightDecay } : {}) }));
  if (s.epochs !== undefined) plan.epochs = s.epochs;
  else plan.steps = s.steps;
  // Keep `after` next to `model` in the JSON for readability.
  const { name, model, after, ...rest } = plan;
  return (after ? { name, model, after, ...rest } : { name, model, ...rest }) as StagePlan;
}

export function lower(program: Program, estimates: Map<string, StageEstimate>, source: string): Graph {
  const usedModels = new Set(program.stages.map((s) => s.model?.name));
  const models = [...program.models.values()].filter((m) => usedModels.has(m.name) || program.stages.length === 0);
  const usedTemplates = new Set<string>();
  const datasets = [...program.datasets.values()].map((d): DatasetDef => {
    const attrs = attrsOf(d.params);
    if (typeof attrs.template === 'string') usedTemplates.add(attrs.template);
    if (!d.sources) return { name: d.name, constructor: d.ctor, attrs };
    return { name: d.name, constructor: d.ctor, attrs, sources: d.sources.map((x) => ({ dataset: x.dataset.name, ...(x.ratio !== undefined ? { ratio: x.ratio } : { count: x.count! }) })) };
  });
  const templates = [...program.templates.values()]
    .filter((t) => usedTemplates.has(t.name.name))
    .map((t) => {
      const fields: Record<string, AttrValue> = {};
      for (const f of t.fields) {
        const v = evaluate(f.value, { name: (r) => ({ t: 'word', name: r.name }), error: () => undefined });
        if (v) fields[f.name.name] = toAttr(v);
      }
      return { name: t.name.name, fields };
    });
  return {
    format: GRAPH_FORMAT,
    version: GRAPH_VERSION,
    source,
    models: models.map(lowerModel),
    datasets,
    templates,
    stages: stageOrder(program.stages).map((s) => lowerStage(s, estimates.get(s.name))),
  };
}
