// Human-readable views of a lowered graph: text with the shape at every edge, and Graphviz DOT.
import { formatCount } from '../compiler/check/values.js';
import type { CheckResult } from '../compiler/check/passes.js';
import type { Dim, Graph } from '../compiler/ir/graph.js';

/** The detected checkpoint layout of every component with weights, by `model/component`. */
export function layoutsOf(check: CheckResult | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of check?.program.models.values() ?? []) for (const c of m.components.values()) if (c.layout) out.set(`${m.name}/${c.name}`, c.layout);
  return out;
}

const dims = (s: Dim[]) => `[${s.join(', ')}]`;

/** `layouts`: the checkpoint layout the checker detected per `model/component` (hf-layout.ts). */
export function renderGraph(g: Graph, layouts: ReadonlyMap<string, string> = new Map()): string {
  const lines: string[] = [];
  for (const m of g.models) {
    lines.push(`model ${m.name}${m.image_tokens ? ` (${m.image_tokens} image tokens per image)` : ''}`);
    const shapes = new Map<string, Dim[]>();
    for (const i of m.inputs) {
      shapes.set(i.name, i.shape);
      lines.push(`  input ${i.name}: ${i.dtype} ${dims(i.shape)}`);
    }
    const comps = new Map(m.components.map((c) => [c.name, c]));
    for (const n of m.nodes) {
      const ins = n.inputs.map((i) => `${i} ${dims(shapes.get(i) ?? [])}`).join(', ');
      const comp = n.component && n.id === n.component ? comps.get(n.component) : undefined;
      const extra = comp ? `  (${comp.constructor === 'custom' ? `custom ${comp.custom?.class}` : comp.constructor}, ${formatCount(comp.params)} params)` : '';
      lines.push(`  ${n.id} = ${n.op}(${ins}) -> ${dims(n.shape)}${extra}`);
      const layout = comp?.weights ? layouts.get(`${m.name}/${comp.name}`) : undefined;
      if (comp?.weights) lines.push(`      weights "${comp.weights}"${layout ? `: ${layout}` : ''}`);
      shapes.set(n.id, n.shape);
    }
    lines.push('');
  }
  for (const s of g.stages) {
    lines.push(`stage ${s.name}${s.after ? ` (after ${s.after})` : ''}: train [${s.train.join(', ')}], freeze [${s.freeze.join(', ')}], data ${s.data}, global batch ${s.global_batch}`);
  }
  return `${lines.join('\n')}\n`;
}

export function renderDot(g: Graph): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = ['digraph pipec {', '  rankdir=LR;', '  node [shape=box, fontname="monospace"];'];
  for (const m of g.models) {
    lines.push(`  subgraph ${q(`cluster_${m.name}`)} {`, `    label=${q(m.name)};`);
    const shapes = new Map<string, Dim[]>();
    for (const i of m.inputs) {
      shapes.set(i.name, i.shape);
      lines.push(`    ${q(`${m.name}/${i.name}`)} [label=${q(i.name)}, shape=ellipse];`);
    }
    for (const n of m.nodes) {
      lines.push(`    ${q(`${m.name}/${n.id}`)} [label=${q(`${n.id}\n${n.op}`)}];`);
      for (const i of n.inputs) lines.push(`    ${q(`${m.name}/${i}`)} -> ${q(`${m.name}/${n.id}`)} [label=${q(dims(shapes.get(i) ?? []))}];`);
      shapes.set(n.id, n.shape);
    }
    lines.push('  }');
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
