// Where in the .pipe program a component (or one of its arguments) is declared, for errors about a
// run's model: the graph carries no source ranges, so the declaration is found in the program text the
// graph names. When that file is gone, the location is the run's graph.json.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph } from '../../compiler/ir/graph.js';
import type { ErrorLocation } from '../errors.js';

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** `encoder vision = vit(...)` -> the position of `vision`, or of `arg:` inside its declaration when given and written. */
export function locateComponent(graph: Graph, fallback: string, component: string, arg?: string): ErrorLocation {
  const file = graph.source;
  let text: string;
  try {
    text = fs.readFileSync(path.resolve(file), 'utf8');
  } catch {
    return { file: fallback };
  }
  const decl = new RegExp(`\\b(?:encoder|projector|llm)\\s+(${escape(component)})\\s*=`).exec(text);
  if (!decl) return { file };
  let at = decl.index + decl[0].indexOf(component);
  if (arg) {
    // The declaration runs to the next component, flow or closing brace at the start of a line
    const rest = text.slice(at);
    const end = rest.search(/\n\s*(?:encoder|projector|llm|flow)\b|\n\s*\}/);
    const m = new RegExp(`\\b${escape(arg)}\\s*:`).exec(end < 0 ? rest : rest.slice(0, end));
    if (m) at += m.index;
  }
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  return { file, line, col: at - before.lastIndexOf('\n') };
}
