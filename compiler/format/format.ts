// The .pipe formatter (`pipec fmt`, and the language server's formatting). It works on the token stream,
// line by line, and never joins or splits lines: it decides each line's indentation and the spaces between
// the tokens on a line, and nothing else.
//
//   - Spacing: one space around binary operators, `=`, `->`, `|` and keywords, one after `:` and `,`, none
//     inside `()` / `[]`, none between a callee and its `(` / `[`, one before `{` and inside a one-line
//     `{ ... }`. A signature's `(...) : In -> Out` keeps the space before its `:`; a unary `-` is glued on.
//   - Indentation: a line that starts an item (a declaration; in a `{ }` a field, component, flow, preset or
//     tensor; in a `(` / `[` left open at the end of its line, an element) is indented two spaces deeper
//     than the line that opened the bracket it is in; a line that starts with a closing bracket goes back
//     to its opener's line.
//   - Continuation lines keep their alignment: a line that started at the column of a token of an earlier
//     line of its item starts at that token's new column. Otherwise, inside a bracket whose content starts
//     on the opener's line it moves with that content, and elsewhere it is indented two more than its item.
//   - Comments are kept. A comment on its own line is indented like the code after it; a trailing comment
//     keeps the spaces before it, or its column when it is aligned with the trailing comment of the line
//     above or below; the inner lines of a block comment are left as written.
//   - Runs of blank lines become one; trailing whitespace and blank lines at the ends go; CRLF becomes LF;
//     the output ends with one newline.
//
// Every decision depends only on the tokens, on input columns and on the output columns of earlier lines,
// and each rule, applied to its own output, gives the same column again; so format(format(x)) == format(x).
// The result is checked to lex to the same tokens as the input before it is returned.
import type { IToken } from 'chevrotain';
import { PipeLexer } from '../lexer/tokens.js';
import { parse } from '../parser/parse.js';

export type FormatResult = { text: string; changed: boolean } | { error: string };

/** Tab stops for measuring columns of the input (the output has no tabs outside strings and comments). */
const TAB = 4;

/** First tokens of a top-level declaration. */
const TOP_ITEMS = new Set(['Kw_import', 'Kw_model', 'Kw_dataset', 'Kw_stage', 'Kw_template', 'Kw_encoder', 'Kw_projector', 'Kw_llm', 'Kw_data', 'Kw_optimizer', 'Kw_schedule', 'Kw_device', 'Kw_adapter']);
/** First tokens of a member of a `{ }` block that is not a `name: value` field. */
const BLOCK_ITEMS = new Set(['Kw_encoder', 'Kw_projector', 'Kw_llm', 'Kw_flow', 'Kw_adapter', 'Kw_preset', 'Kw_tensor']);
const OPENERS = new Set(['LBrace', 'LParen', 'LBracket']);
const CLOSERS = new Set(['RBrace', 'RParen', 'RBracket']);
/** Tokens that can end an operand: after one of these a `-` subtracts and a `{` opens a declaration body. */
const OPERAND_END = new Set(['Identifier', 'NumberLit', 'Quantity', 'StringLit', 'Kw_true', 'Kw_false', 'RParen', 'RBracket', 'RBrace']);

interface Tok {
  type: string;
  image: string;
  /** 0-based lines of its first and last character. */
  line: number;
  endLine: number;
  /** Input columns (tabs expanded) where it starts and where it ends on its last line; once emitted, the
   * output column where it starts. */
  col: number;
  endCol: number;
  newCol: number;
  comment: boolean;
  prevCode?: Tok;
  nextCode?: Tok;
  /** For a comma: the bracket whose items it separates. */
  ctx?: Ctx;
}

/** An open bracket (or the file itself). */
interface Ctx {
  kind: 'file' | 'LBrace' | 'LParen' | 'LBracket';
  open?: Tok;
  /** The opener is the last code on its line: items inside go on their own lines, indented by two. */
  hanging: boolean;
  /** Output indentation of the opener's line, and the opener's input line. */
  indent: number;
  openLine: number;
  /** The input line where the item being formatted started. */
  itemLine?: number;
}

function advance(col: number, s: string): number {
  for (const ch of s) col = ch === '\t' ? col + TAB - (col % TAB) : col + 1;
  return col;
}

function isName(t: Tok): boolean {
  return t.type === 'Identifier' || t.type.startsWith('Kw_');
}

/** A keyword after `.` is a member name (`a.data`), so it ends an operand like an identifier. */
function endsOperand(t: Tok | undefined): boolean {
  return !!t && (OPERAND_END.has(t.type) || (isName(t) && t.prevCode?.type === 'Dot'));
}

function isUnaryMinus(t: Tok): boolean {
  return t.type === 'Minus' && !endsOperand(t.prevCode);
}

/** The spaces between two tokens that stay on one line (a trailing comment is placed separately). */
function gap(p: Tok, t: Tok): string {
  if (t.comment) return p.type === 'LParen' || p.type === 'LBracket' ? '' : ' ';
  if (p.comment) return t.type === 'Comma' || t.type === 'RParen' || t.type === 'RBracket' ? '' : ' ';
  const P = p.type;
  const T = t.type;
  if (isUnaryMinus(p)) return '';
  if (T === 'Colon') return P === 'RParen' ? ' ' : ''; // a signature's `(...) : In -> Out`
  if (T === 'Comma' || T === 'RParen' || T === 'RBracket') return '';
  if (T === 'Dot') return P === 'NumberLit' ? ' ' : ''; // `1 .x` glued would lex as `1.` `x`
  if (P === 'LParen' || P === 'LBracket' || P === 'Dot') return '';
  if (T === 'RBrace') return P === 'LBrace' ? '' : ' ';
  if ((T === 'LParen' || T === 'LBracket') && (P === 'Identifier' || P === 'RParen' || P === 'RBracket' || (isName(p) && p.prevCode?.type === 'Dot'))) return '';
  return ' ';
}

function firstError(text: string): string | undefined {
  const errors = parse('<format>', text).diagnostics.filter((d) => d.severity === 'error');
  if (!errors.length) return undefined;
  const first = errors.reduce((a, b) => (b.range.start.offset < a.range.start.offset ? b : a));
  return `${first.range.start.line}:${first.range.start.column}: ${first.message} (fix it before formatting)`;
}

function lexAll(text: string): IToken[] {
  const lexed = PipeLexer.tokenize(text);
  return [...lexed.tokens, ...(lexed.groups.comments ?? [])].sort((a, b) => a.startOffset - b.startOffset);
}

/** A token's image, less the whitespace at the ends of a comment's lines (which the formatter drops). */
function imageOf(type: string, image: string): string {
  return type === 'LineComment' || type === 'BlockComment' ? image.replace(/[ \t\r]+(?=\n|$)/g, '') : image;
}

export function format(text: string): FormatResult {
  const src = text.replace(/\r\n/g, '\n');
  const error = firstError(src);
  if (error) return { error };

  const lineStarts = [0];
  for (let i = 0; i < src.length; i++) if (src.charCodeAt(i) === 10) lineStarts.push(i + 1);
  const lineOf = (offset: number): number => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };

  let lastLine = -1;
  let lastOffset = 0;
  let lastCol = 0;
  const toks: Tok[] = lexAll(src).map((t) => {
    const line = lineOf(t.startOffset);
    // Columns are measured from the previous token on the same line, so a long line costs linear time.
    const from = line === lastLine ? lastOffset : lineStarts[line];
    const col = advance(line === lastLine ? lastCol : 0, src.slice(from, t.startOffset));
    const endLine = lineOf(t.startOffset + Math.max(0, t.image.length - 1));
    lastLine = endLine;
    lastOffset = t.startOffset + t.image.length;
    lastCol = endLine === line ? advance(col, t.image) : advance(0, src.slice(lineStarts[endLine], lastOffset));
    const comment = t.tokenType.name === 'LineComment' || t.tokenType.name === 'BlockComment';
    return { type: t.tokenType.name, image: t.image, line, endLine, col, endCol: lastCol, newCol: 0, comment };
  });
  if (!toks.length) return { text: '', changed: text !== '' };
  let last: Tok | undefined;
  for (const t of toks) {
    t.prevCode = last;
    if (!t.comment) last = t;
  }
  last = undefined;
  for (let i = toks.length - 1; i >= 0; i--) {
    toks[i].nextCode = last;
    if (!toks[i].comment) last = toks[i];
  }
  /** Input line -> column of the comment that ends it after code. */
  const trailing = new Map<number, number>();
  toks.forEach((t, i) => {
    if (t.comment && i > 0 && toks[i - 1].endLine === t.line && (i + 1 === toks.length || toks[i + 1].line > t.endLine)) trailing.set(t.line, t.col);
  });

  const file: Ctx = { kind: 'file', hanging: true, indent: 0, openLine: 0 };
  const stack: Ctx[] = [file];
  const emitted = new Map<number, Tok[]>(); // input line -> its tokens, for alignment
  const out: string[] = [];
  let cur = ''; // the output line being built, and its width
  let width = 0;
  const put = (s: string) => {
    cur += s;
    width = advance(width, s);
  };
  let curDelta = 0; // how far the current line moved
  let curIndent = 0;

  const isItemStart = (ctx: Ctx, t: Tok): boolean => {
    if (ctx.kind === 'file') return TOP_ITEMS.has(t.type);
    if (ctx.kind === 'LBrace') return BLOCK_ITEMS.has(t.type) || (isName(t) && t.nextCode?.type === 'Colon');
    return t.prevCode === ctx.open || (t.prevCode?.type === 'Comma' && t.prevCode.ctx === ctx);
  };

  /** Keep a line aligned with a token of an earlier line of its item, else put it at `fallback`. */
  const align = (t: Tok, fromLine: number, fallback: number, floor: number): number => {
    for (let line = t.line - 1; line >= fromLine; line--) {
      for (const x of emitted.get(line) ?? []) if (x.col === t.col) return Math.max(x.newCol, floor);
    }
    return Math.max(fallback, floor);
  };

  const indentFor = (t: Tok): number => {
    const ctx = stack[stack.length - 1];
    // A comment on its own line is indented like the code after it (but inside a block it closes).
    const subject = t.comment ? t.nextCode : t;
    const commentLine = t.comment && !(subject && subject.line === t.line);
    if (subject && !commentLine && CLOSERS.has(subject.type)) return ctx.indent;
    if (ctx.hanging) {
      const base = ctx.kind === 'file' ? 0 : ctx.indent + 2;
      const bodyBrace = subject?.type === 'LBrace' && endsOperand(subject.prevCode);
      if (!subject || CLOSERS.has(subject.type) || bodyBrace || isItemStart(ctx, subject)) {
        if (!commentLine && !bodyBrace) ctx.itemLine = t.line;
        return base;
      }
      return align(t, ctx.itemLine ?? ctx.openLine, base + 2, base + 2);
    }
    // Inside a bracket whose content starts on the opener's line, a line moves with that content.
    const anchor = ctx.open!.nextCode!;
    return align(t, ctx.openLine, t.col + anchor.newCol - anchor.col, ctx.indent + 2);
  };

  let prev: Tok | undefined;
  toks.forEach((t, i) => {
    if (!prev || t.line > prev.endLine) {
      if (prev) {
        out.push(cur);
        if (t.line - prev.endLine >= 2) out.push('');
      }
      curIndent = indentFor(t);
      curDelta = curIndent - t.col;
      cur = ' '.repeat(curIndent);
      width = curIndent;
    } else if (t.comment && (i + 1 === toks.length || toks[i + 1].line > t.endLine)) {
      // A trailing comment keeps its column (moved with its line) when it is aligned with the trailing
      // comment of the line above or below, and otherwise the spaces before it.
      const aligned = trailing.get(t.line - 1) === t.col || trailing.get(t.line + 1) === t.col;
      const target = aligned ? Math.max(t.col + curDelta, width + 1) : width + Math.max(1, t.col - prev.endCol);
      put(' '.repeat(target - width));
    } else put(gap(prev, t));

    t.newCol = width;
    if (!emitted.has(t.line)) emitted.set(t.line, []);
    emitted.get(t.line)!.push(t);
    const parts = t.image.split('\n');
    put(parts[0]);
    if (parts.length > 1) {
      // The inner lines of a block comment stay as written; code after it continues its last line.
      for (let k = 1; k < parts.length; k++) {
        out.push(cur);
        cur = parts[k];
      }
      width = advance(0, cur);
      curDelta = 0;
      curIndent = advance(0, /^[ \t]*/.exec(cur)![0]);
    }

    if (OPENERS.has(t.type)) {
      const hanging = !t.nextCode || t.nextCode.line > t.line;
      stack.push({ kind: t.type as Ctx['kind'], open: t, hanging, indent: curIndent, openLine: t.line });
    } else if (CLOSERS.has(t.type)) {
      if (stack.length > 1) stack.pop();
    } else if (t.type === 'Comma') t.ctx = stack[stack.length - 1];
    prev = t;
  });
  out.push(cur);

  const result = `${out.map((l) => l.replace(/[ \t\r]+$/, '')).join('\n')}\n`;
  // The formatter only moves whitespace; if it ever changed a token, refuse rather than corrupt the file.
  const after = lexAll(result);
  if (after.length !== toks.length || after.some((x, k) => imageOf(x.tokenType.name, x.image) !== imageOf(toks[k].type, toks[k].image))) return { error: '1:1: the formatter would change the tokens of this file (a pipec bug); it was left as it is' };
  return { text: result, changed: result !== text };
}
