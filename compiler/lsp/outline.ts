// Document symbols (outline), folding ranges, semantic tokens and inlay hints for one file.
import { SymbolKind, type DocumentSymbol, type FoldingRange, type InlayHint } from 'vscode-languageserver';
import type * as A from '../ast/nodes.js';
import type { CheckResult } from '../check/passes.js';
import { showDims } from '../check/values.js';
import { PipeLexer } from '../lexer/tokens.js';
import { toLspRange } from './workspace.js';

export function documentSymbols(ast: A.FileNode): DocumentSymbol[] {
  const sym = (name: string, kind: SymbolKind, range: A.Ident['range'], sel: A.Ident['range'], detail?: string, children?: DocumentSymbol[]): DocumentSymbol => ({
    name: name || '?',
    kind,
    range: toLspRange(range),
    selectionRange: toLspRange(sel),
    detail,
    children,
  });
  return ast.decls.map((d) => {
    switch (d.kind) {
      case 'Model':
        return sym(d.name.name, SymbolKind.Class, d.range, d.name.range, 'model', [
          ...d.components.map((c) => sym(c.name.name, SymbolKind.Field, c.range, c.name.range, c.role)),
          ...d.flows.map((f) => sym(f.chain.map((i) => i.name).join(' -> '), SymbolKind.Event, f.range, f.range, 'flow')),
          ...d.adapters.map((a) => sym(`${a.component.name}.${a.name.name}`, SymbolKind.Field, a.range, a.name.range, 'adapter')),
        ]);
      case 'Stage':
        return sym(d.name.name, SymbolKind.Function, d.range, d.name.range, 'stage', d.fields.map((f) => sym(f.name.name, SymbolKind.Property, f.range, f.name.range)));
      case 'Dataset':
        return sym(d.name.name, SymbolKind.Variable, d.range, d.name.range, 'dataset');
      case 'Template':
        return sym(d.name.name, SymbolKind.Struct, d.range, d.name.range, 'template');
      case 'Signature':
        return sym(d.name.name, SymbolKind.Constructor, d.range, d.name.range, d.sigKind);
    }
  });
}

export function foldingRanges(ast: A.FileNode, text: string): FoldingRange[] {
  const out: FoldingRange[] = [];
  for (const d of ast.decls) if (d.range.end.line > d.range.start.line) out.push({ startLine: d.range.start.line - 1, endLine: d.range.end.line - 1 });
  // Lines counted on from the previous comment, not from the top for each one (many comments, long file).
  let line = 0;
  let counted = 0;
  const newlines = (from: number, to: number) => {
    let n = 0;
    for (let i = from; i < to; i++) if (text.charCodeAt(i) === 10) n++;
    return n;
  };
  for (const m of text.matchAll(/\/\*[\s\S]*?\*\//g)) {
    line += newlines(counted, m.index);
    counted = m.index;
    const end = line + newlines(m.index, m.index + m[0].length);
    if (end > line) out.push({ startLine: line, endLine: end, kind: 'comment' });
  }
  return out;
}

export const TOKEN_TYPES = ['keyword', 'type', 'function', 'variable', 'parameter', 'property', 'string', 'number', 'comment', 'operator'] as const;
type TokenType = (typeof TOKEN_TYPES)[number];

/** Semantic tokens: lexical classes, refined by the AST (declared names, components, constructors, fields). */
export function semanticTokens(ast: A.FileNode, text: string): number[] {
  const lexed = PipeLexer.tokenize(text);
  const byOffset = new Map<number, TokenType>();
  const mark = (r: { start: { offset: number } }, t: TokenType) => byOffset.set(r.start.offset, t);
  for (const d of ast.decls) {
    mark(d.name.range, d.kind === 'Signature' ? 'function' : 'type');
    if (d.kind === 'Model') {
      for (const c of d.components) {
        mark(c.name.range, 'variable');
        if (c.init.kind === 'Call') mark(c.init.callee.range, 'function');
      }
      for (const f of d.flows) for (const i of f.chain) mark(i.range, 'variable');
      for (const a of d.adapters) {
        mark(a.component.range, 'variable');
        mark(a.name.range, 'variable');
        if (a.init.kind === 'Call') mark(a.init.callee.range, 'function');
      }
    }
    if (d.kind === 'Stage' || d.kind === 'Template') for (const f of d.fields) mark(f.name.range, 'property');
    if (d.kind === 'Signature') for (const p of d.params) mark(p.name.range, 'parameter');
  }
  const rows: number[] = [];
  let prevLine = 0;
  let prevChar = 0;
  // The lexer tracks offsets only: count lines on from token to token (they are in order).
  let scanned = 0;
  let lineNo = 0;
  let lineStart = 0;
  const all = [...lexed.tokens, ...(lexed.groups.comments ?? [])].sort((a, b) => a.startOffset - b.startOffset);
  for (const t of all) {
    for (; scanned < t.startOffset; scanned++) {
      if (text.charCodeAt(scanned) !== 10) continue;
      lineNo++;
      lineStart = scanned + 1;
    }
    const name = t.tokenType.name;
    let type: TokenType | undefined = byOffset.get(t.startOffset);
    if (!type) {
      if (name.startsWith('Kw_')) type = 'keyword';
      else if (name === 'StringLit') type = 'string';
      else if (name === 'NumberLit' || name === 'Quantity') type = 'number';
      else if (name === 'LineComment' || name === 'BlockComment') type = 'comment';
      else if (['Arrow', 'StarStar', 'EqEq', 'NotEq', 'LtEq', 'GtEq', 'Lt', 'Gt', 'Plus', 'Minus', 'Star', 'Slash', 'Percent', 'Pipe'].includes(name)) type = 'operator';
    }
    if (!type) continue;
    // Multi-line tokens (block comments) are sent line by line, as the protocol requires.
    const lines = t.image.split('\n');
    let line = lineNo;
    let char = t.startOffset - lineStart;
    for (const piece of lines) {
      if (piece.length) {
        rows.push(line - prevLine, line === prevLine ? char - prevChar : char, piece.length, TOKEN_TYPES.indexOf(type), 0);
        prevLine = line;
        prevChar = char;
      }
      line++;
      char = 0;
    }
  }
  return rows;
}

/** The inferred shape after each component in a flow: `vision: [729, 1152] -> proj: [729, 4096] -> lm`. */
export function inlayHints(ast: A.FileNode, check: CheckResult | undefined): InlayHint[] {
  const hints: InlayHint[] = [];
  if (!check) return hints;
  for (const d of ast.decls) {
    if (d.kind !== 'Model') continue;
    const model = check.program.models.get(d.name.name);
    if (!model || model.decl !== d) continue;
    for (const f of d.flows) {
      f.chain.forEach((id, i) => {
        if (i === f.chain.length - 1) return;
        const c = model.components.get(id.name);
        const out = c?.resolvedOutput ?? c?.output;
        if (out) hints.push({ position: toLspRange(id.range).end, label: `: ${showDims(out)}`, paddingLeft: false, paddingRight: true });
      });
    }
  }
  return hints;
}
