// Pass 4: flows. Every edge's producer output is unified with its consumer's input contract; free
// dimensions bind (`Tensor[n, in]` takes n = 729), fixed ones must agree. The edge into the llm is the
// LLaVA splice: image features replace the marker token, so only the feature size must match, and the
// image-token count is recorded for the max_length checks of the stages.
import type * as A from '../ast/nodes.js';
import { M } from '../diagnostics/catalogue.js';
import type { ComponentInfo, ModelInfo, Program, Reporter } from './program.js';
import { suggestName } from './suggest.js';
import { showDims, type Dim } from './values.js';

const ROLE_RANK: Record<A.Role, number> = { encoder: 0, projector: 1, llm: 2 };

export function checkFlows(program: Program, reporter: Reporter): void {
  for (const model of program.models.values()) checkModelFlows(model, reporter);
}

function checkModelFlows(model: ModelInfo, reporter: Reporter): void {
  const llms = [...model.components.values()].filter((c) => c.role === 'llm');
  if (llms.length === 0) {
    reporter.report(M.NoLlm, model.decl.name.range, model.name).hint = 'add e.g. `llm lm = llama(preset: "vicuna-7b")`';
    return;
  }
  model.llm = llms[0];
  const connected = new Set<string>();
  /** The edges so far, from -> tos: a set, not a search of all edges for each new one. */
  const edgesFrom = new Map<ComponentInfo, Set<ComponentInfo>>();
  for (const flow of model.decl.flows) {
    const chain: ComponentInfo[] = [];
    let ok = true;
    for (const id of flow.chain) {
      const c = model.components.get(id.name);
      if (!c) {
        const d = reporter.report(M.UnknownComponent, id.range, id.name, model.name);
        const near = suggestName(d, id.name, model.components.keys(), id.range);
        if (near) {
          connected.add(near); // what the misspelling meant is not also "not connected" (one mistake, one report)
        }
        ok = false;
        continue;
      }
      chain.push(c);
      connected.add(c.name);
    }
    if (!ok) continue;
    for (let i = 0; i + 1 < chain.length; i++) {
      const from = chain[i];
      const to = chain[i + 1];
      const range = { file: flow.range.file, start: flow.chain[i].range.start, end: flow.chain[i + 1].range.end };
      if (ROLE_RANK[from.role] > ROLE_RANK[to.role] || (from.role === 'llm' && to.role === 'llm') || (from.role === 'encoder' && to.role === 'encoder')) {
        reporter.report(M.FlowRoleOrder, range, from.name, from.role, to.name, to.role);
        continue;
      }
      const into = to.role === 'llm';
      if (into && !flow.at) {
        reporter.report(M.SpliceMissing, flow.chain[i + 1].range, to.name);
        continue;
      }
      // The same edge written twice (in two flows) is one edge.
      const tos = edgesFrom.get(from) ?? new Set<ComponentInfo>();
      if (tos.has(to)) continue;
      edgesFrom.set(from, tos.add(to));
      model.edges.push({ from, to, at: into ? flow.at?.value : undefined, range });
      checkEdge(from, to, into, range, reporter, model);
    }
  }
  for (const c of model.components.values()) {
    if (!connected.has(c.name) && model.components.size > 1) {
      reporter.report(M.UnconnectedComponent, c.decl.name.range, c.name).hint = `add it to a flow, e.g. \`flow ${c.name} -> ...\``;
    }
  }
}

function checkEdge(from: ComponentInfo, to: ComponentInfo, splice: boolean, range: A.FlowDecl['range'], reporter: Reporter, model: ModelInfo): void {
  if (!from.ok || !to.ok) return;
  const out = from.resolvedOutput ?? from.output;
  const expected = to.input;
  if (!out || !expected) return;
  if (splice) {
    // [n, d] image features become n embedding rows of width d in the llm's [seq, hidden] input.
    if (out.length !== 2) {
      reporter.report(M.RankMismatch, range, from.name, out.length, to.name, 2);
      return;
    }
    const want = expected[expected.length - 1];
    const got = out[1];
    if (typeof want === 'number' && typeof got === 'number' && want !== got) {
      const d = reporter.report(M.FlowShapeMismatch, range, from.name, showDims(out), to.name, showDims(expected), `feature size ${got} != ${want}`);
      d.hint = hintFor(from, 'out', want);
      return;
    }
    if (typeof out[0] === 'number') model.imageTokens = out[0];
    return;
  }
  if (out.length !== expected.length) {
    reporter.report(M.RankMismatch, range, from.name, out.length, to.name, expected.length);
    return;
  }
  const bind = new Map<string, Dim>();
  for (let i = 0; i < out.length; i++) {
    const got = out[i];
    const want = expected[i];
    if (typeof want === 'string') {
      const prev = bind.get(want);
      if (prev !== undefined && prev !== got) {
        reporter.report(M.FlowShapeMismatch, range, from.name, showDims(out), to.name, showDims(expected), `${want} is both ${prev} and ${got}`);
        return;
      }
      bind.set(want, got);
      continue;
    }
    if (typeof got === 'number' && got !== want) {
      const d = reporter.report(M.FlowShapeMismatch, range, from.name, showDims(out), to.name, showDims(expected), `dimension ${i} is ${got}, expected ${want}`);
      d.hint = hintFor(to, 'in', got);
      return;
    }
  }
  if (to.output) to.resolvedOutput = to.output.map((d) => (typeof d === 'string' && bind.has(d) ? bind.get(d)! : d));
}

/** Point at the parameter most likely to fix a mismatch, e.g. `set in: vision.hidden`. */
function hintFor(c: ComponentInfo, param: string, value: Dim): string | undefined {
  if (!c.sig?.params.has(param)) return undefined;
  return `\`${c.name}.${param}\` is ${String(c.params.get(param) && (c.params.get(param) as { v: number }).v)}; it must be ${value}`;
}
