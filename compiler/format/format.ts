// The .pipe formatter (`pipec fmt`, and the language server's formatting): token spacing is normalised,
// block structure is indented by two spaces per `{`, and the author's line breaks, comments and the
// alignment of continuation lines (inside parentheses, or starting with `:` / `where` / `weights` / `->`)
// are kept. Output depends only on the tokens and on what it keeps, so formatting is idempotent.
import type { IToken } from 'chevrotain';
import { PipeLexer } from '../lexer/tokens.js';
import { parse } from '../parser/parse.js';

export type FormatResult = { text: string; changed: boolean } | { error: string };

const BINARY = new Set(['Arrow', 'StarStar', 'EqEq', 'NotEq', 'LtEq', 'GtEq', 'Lt', 'Gt', 'Equals', 'Plus', 'Minus', 'Star', 'Slash', 'Percent', 'Pipe', 'Kw_x', 'Kw_and', 'Kw_or']);
/** After these a `-` is a sign, not a subtraction. */
const BEFORE_SIGN = new Set([...BINARY, 'LParen', 'LBracket', 'LBrace', 'Comma', 'Colon', 'Kw_not', 'Kw_if', 'Kw_then', 'Kw_else', 'Kw_where', 'Kw_for']);
const SIGNATURE_START = new Set(['Kw_encoder', 'Kw_projector', 'Kw_llm', 'Kw_data', 'Kw_optimizer', 'Kw_schedule', 'Kw_device']);
const CONTINUATION = /^(:|where\b|weights\b|->|\||and\b|or\b)/;

function gap(prev: IToken, cur: IToken, prevIsSign: boolean): string {
  const p = prev.tokenType.name;
  const c = cur.tokenType.name;
  if (prevIsSign) return '';
  if (c === 'Colon' && p === 'RParen') return ' '; // a signature's `(...) : In -> Out`
  if (c === 'Comma' || c === 'Colon' || c === 'Dot' || c === 'RParen' || c === 'RBracket') return '';
  if (p === 'LParen' || p === 'LBracket' || p === 'Dot') return '';
  if ((c === 'LParen' || c === 'LBracket') && (p === 'Identifier' || p === 'RParen' || p === 'RBracket')) return '';
  return ' ';
}

export function format(text: string): FormatResult {
  const src = text.replace(/\r\n?/g, '\n');
  const parsed = parse('<format>', src);
  const first = parsed.diagnostics.find((d) => d.severity === 'error');
  if (first) return { error: `${first.range.start.line}:${first.range.start.column}: ${first.message}; fix it before formatting` };
  const lexed = PipeLexer.tokenize(src);
  const tokens = [...lexed.tokens, ...(lexed.groups.comments ?? [])].sort((a, b) => a.startOffset - b.startOffset);
  const lines = src.split('\n');
  const byLine = new Map<number, IToken[]>();
  for (const t of tokens) {
    const line = (t.startLine ?? 1) - 1;
    if (!byLine.has(line)) byLine.set(line, []);
    byLine.get(line)!.push(t);
  }
  const out: string[] = [];
  let braces = 0;
  let parens = 0; // ( and [ and object-literal { — inside these, continuation lines keep their alignment
  const braceIsObject: boolean[] = [];
  let skipUntil = -1; // lines inside a block comment stay as written
  let prev: IToken | undefined;
  let prevIsSign = false;
  let isSignatureHeader = false; // a `where` list continued over lines keeps its alignment
  for (let i = 0; i < lines.length; i++) {
    if (i <= skipUntil) {
      out.push(lines[i].replace(/[ \t]+$/, ''));
      continue;
    }
    const toks = byLine.get(i) ?? [];
    if (!toks.length) {
      out.push('');
      continue;
    }
    const original = lines[i];
    const trimmed = original.trimStart();
    const startsClosing = toks[0].tokenType.name === 'RBrace';
    let indent: string;
    const continues = prev !== undefined && (prev.tokenType.name === 'Comma' || BINARY.has(prev.tokenType.name)) && braceIsObject.length === braces;
    if (parens > 0 || CONTINUATION.test(trimmed) || (continues && toks[0].tokenType.name !== 'RBrace' && isSignatureHeader)) indent = original.slice(0, original.length - trimmed.length).replace(/\t/g, '  ');
    else indent = '  '.repeat(Math.max(0, braces - (startsClosing ? 1 : 0)));
    let line = indent;
    toks.forEach((t, k) => {
      const name = t.tokenType.name;
      if (k > 0) {
        const before = toks[k - 1];
        if (name === 'LineComment' || name === 'BlockComment') {
          // Keep the author's gap before a trailing comment (they are often aligned).
          const between = src.slice(before.startOffset + before.image.length, t.startOffset);
          line += between.length ? between.replace(/\t/g, ' ') : ' ';
        } else line += gap(before, t, prevIsSign);
      }
      line += t.image;
      if (name === 'BlockComment' && t.image.includes('\n')) skipUntil = i + t.image.split('\n').length - 1;
      if (name === 'LBrace') {
        const object = !!prev && ['Colon', 'Equals', 'Comma', 'LParen', 'LBracket'].includes(prev.tokenType.name);
        if (object) parens++;
        else braces++;
        braceIsObject.push(object);
      } else if (name === 'RBrace') {
        if (braceIsObject.pop()) parens = Math.max(0, parens - 1);
        else braces = Math.max(0, braces - 1);
      }
      else if (name === 'LParen' || name === 'LBracket') parens++;
      else if (name === 'RParen' || name === 'RBracket') parens = Math.max(0, parens - 1);
      if (braces === 0 && parens === 0 && k === 0) isSignatureHeader = SIGNATURE_START.has(name) ? true : name === 'Kw_where' || name === 'Colon' ? isSignatureHeader : false;
      if (name !== 'LineComment' && name !== 'BlockComment') {
        prevIsSign = name === 'Minus' && (!prev || BEFORE_SIGN.has(prev.tokenType.name) || prev.tokenType.name.startsWith('Kw_'));
        prev = t;
      }
    });
    if (toks[toks.length - 1].tokenType.name === 'BlockComment' && skipUntil > i) {
      // the rest of a multi-line comment is pushed verbatim by the skip branch
      line = line.slice(0, line.length - toks[toks.length - 1].image.length) + toks[toks.length - 1].image.split('\n')[0];
    }
    out.push(line.replace(/[ \t]+$/, ''));
  }
  // one blank line at most between items, none at the ends, exactly one final newline
  const collapsed: string[] = [];
  for (const l of out) if (!(l === '' && (collapsed.length === 0 || collapsed[collapsed.length - 1] === ''))) collapsed.push(l);
  while (collapsed.length && collapsed[collapsed.length - 1] === '') collapsed.pop();
  const result = collapsed.length ? `${collapsed.join('\n')}\n` : '';
  return { text: result, changed: result !== text };
}
