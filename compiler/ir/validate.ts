// Validate a graph against schema/graph.schema.json (ajv), plus the checks a schema cannot express:
// node inputs name earlier nodes or model inputs, stage plans name real models, components and stages.
import { Ajv, type ValidateFunction } from 'ajv';
import { readFileSync } from 'node:fs';
import type { Graph } from './graph.js';

export const GRAPH_SCHEMA_URL = new URL('../../../schema/graph.schema.json', import.meta.url);

let compiled: ValidateFunction | undefined;
function validator(): ValidateFunction {
  if (!compiled) {
    const schema = JSON.parse(readFileSync(GRAPH_SCHEMA_URL, 'utf8')) as object;
    compiled = new Ajv({ allErrors: true, strict: true, strictRequired: false }).compile(schema);
  }
  return compiled;
}

/** Returns a list of problems; empty when the graph is valid. */
export function validateGraph(g: unknown): string[] {
  const v = validator();
  if (!v(g)) return (v.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`);
  const graph = g as Graph;
  const problems: string[] = [];
  const models = new Map(graph.models.map((m) => [m.name, m]));
  for (const m of graph.models) {
    const known = new Set(m.inputs.map((i) => i.name));
    const comps = new Set(m.components.map((c) => c.name));
    for (const n of m.nodes) {
      for (const i of n.inputs) if (!known.has(i)) problems.push(`model ${m.name}: node ${n.id} reads ${i}, which is not defined before it`);
      if (n.component && !comps.has(n.component)) problems.push(`model ${m.name}: node ${n.id} names unknown component ${n.component}`);
      if (known.has(n.id)) problems.push(`model ${m.name}: node id ${n.id} is defined twice`);
      known.add(n.id);
    }
    if (!known.has(m.outputs.logits) || !known.has(m.outputs.loss)) problems.push(`model ${m.name}: outputs name unknown nodes`);
    const adapterNames = new Set<string>();
    for (const a of m.adapters ?? []) {
      if (!comps.has(a.component)) problems.push(`model ${m.name}: adapter ${a.name} adapts unknown component ${a.component}`);
      if (!a.name.startsWith(`${a.component}.`)) problems.push(`model ${m.name}: adapter ${a.name} is not named after its component ${a.component}`);
      if (adapterNames.has(a.name)) problems.push(`model ${m.name}: adapter ${a.name} is defined twice`);
      adapterNames.add(a.name);
    }
  }
  const stageNames = new Set<string>();
  const datasets = new Set(graph.datasets.map((d) => d.name));
  const mixtures = new Set(graph.datasets.filter((d) => d.constructor === 'mixture').map((d) => d.name));
  for (const d of graph.datasets) {
    if ((d.constructor === 'mixture') !== (d.sources !== undefined)) problems.push(`dataset ${d.name}: ${d.sources ? 'sources belong to a mixture only' : 'a mixture needs sources'}`);
    if (!d.sources) continue;
    for (const x of d.sources) if (!datasets.has(x.dataset) || mixtures.has(x.dataset)) problems.push(`dataset ${d.name}: source ${x.dataset} is ${mixtures.has(x.dataset) ? 'a mixture' : 'not a dataset of the graph'}`);
    const kinds = new Set(d.sources.map((x) => (x.ratio !== undefined ? 'ratio' : 'count')));
    if (kinds.size > 1) problems.push(`dataset ${d.name}: sources mix ratios and counts`);
    const sum = d.sources.reduce((a, x) => a + (x.ratio ?? 0), 0);
    if (kinds.has('ratio') && Math.abs(sum - 1) > 1e-6) problems.push(`dataset ${d.name}: ratios add up to ${sum}, not 1`);
  }
  for (const s of graph.stages) {
    const m = models.get(s.model);
    if (!m) problems.push(`stage ${s.name}: unknown model ${s.model}`);
    else {
      for (const c of [...s.train, ...s.freeze])
        if (!m.components.some((x) => x.name === c) && !(m.adapters ?? []).some((a) => a.name === c)) problems.push(`stage ${s.name}: unknown component or adapter ${c}`);
      for (const g of s.param_groups ?? []) if (!s.train.includes(g.name)) problems.push(`stage ${s.name}: param group ${g.name} is not trained`);
    }
    if (s.after && !stageNames.has(s.after)) problems.push(`stage ${s.name}: after ${s.after} does not come earlier`);
    if (!datasets.has(s.data)) problems.push(`stage ${s.name}: unknown dataset ${s.data}`);
    if (s.global_batch !== s.batch * s.accumulate * s.devices.nodes * s.devices.per_node) problems.push(`stage ${s.name}: global_batch is not batch x accumulate x devices`);
    stageNames.add(s.name);
  }
  return problems;
}
