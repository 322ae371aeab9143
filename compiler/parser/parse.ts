// parse(): text -> { ast, diagnostics }. Never throws: lexing and parsing errors become diagnostics and the
// recovered, partial AST is still returned so later passes can report what they can. Well-formed text takes
// a fast path (fast-lex.ts, fast-parse.ts: no CST); the rest is read by the CST parser with recovery.
import type { CstNode, IRecognitionException, IToken } from 'chevrotain';
import type { FileNode } from '../ast/nodes.js';
import { M, type MessageDef } from '../diagnostics/catalogue.js';
import type { Diagnostic } from '../diagnostics/diagnostic.js';
import { SourceFile, type Range } from '../diagnostics/source.js';
import { fastLex } from '../lexer/fast-lex.js';
import * as T from '../lexer/tokens.js';
import { AstBuilder } from './build-ast.js';
import { fastParse } from './fast-parse.js';
import { grammar, MAX_NESTING } from './grammar.js';

export interface ParseResult {
  ast: FileNode;
  source: SourceFile;
  diagnostics: Diagnostic[];
}

function make<A extends unknown[]>(m: MessageDef<A>, range: Range, ...args: A): Diagnostic {
  return { code: m.code, severity: m.severity, message: m.format(...args), range };
}

const NESTING_HINT = 'each bracket, `if`, unary `-` or `not`, right side of `**` and suffix `.x` / `(...)` / `[...]` nests one level; write it flatter';

const TOKEN_WORDS: Record<string, string> = {
  Identifier: 'a name',
  Name: 'a name',
  StringLit: 'a string',
  NumberLit: 'a number',
  Quantity: 'a quantity',
  Arrow: "'->'",
  StarStar: "'**'",
  EqEq: "'=='",
  NotEq: "'!='",
  LtEq: "'<='",
  GtEq: "'>='",
  Lt: "'<'",
  Gt: "'>'",
  Equals: "'='",
  Plus: "'+'",
  Minus: "'-'",
  Star: "'*'",
  Slash: "'/'",
  Percent: "'%'",
  Pipe: "'|'",
  Colon: "':'",
  Comma: "','",
  Dot: "'.'",
  LParen: "'('",
  RParen: "')'",
  LBracket: "'['",
  RBracket: "']'",
  LBrace: "'{'",
  RBrace: "'}'",
};

function tokenWord(typeName: string): string {
  if (typeName.startsWith('Kw_')) return `\`${typeName.slice(3)}\``;
  return TOKEN_WORDS[typeName] ?? typeName;
}

function foundWord(tok: IToken): string {
  if (tok.tokenType.name === 'EOF') return 'end of file';
  const image = tok.image.length > 24 ? `${tok.image.slice(0, 24)}...` : tok.image;
  return `'${image}'`;
}

/** What the parser was looking for, by the innermost rule it was in. */
const RULE_EXPECTS: Record<string, string> = {
  file: 'a declaration (import, model, dataset, stage, template, or a component signature)',
  modelDecl: 'a component (`encoder`, `projector`, `llm`) or a `flow`',
  componentDecl: 'a component: `encoder NAME = constructor(...)`',
  stageDecl: 'a stage field such as `train: [proj]`',
  templateDecl: 'a template field such as `user: "USER: "`',
  field: 'a field: `name: value`',
  signatureDecl: 'a parameter, shape, `where` clause or body',
  param: 'a parameter: `name: type = default`',
  flowDecl: "a flow: `flow a -> b -> c`",
  presetDecl: 'a preset: `preset "name" (param: value, ...)`',
  tensorDecl: 'a tensor: `tensor "name" [dims]`',
  args: 'an argument',
  arg: 'an argument',
  objectExpr: 'a field `name: value` or `}`',
};

function expectationFor(e: IRecognitionException): string {
  const stack = e.context?.ruleStack ?? [];
  for (let i = stack.length - 1; i >= 0; i--) {
    const r = RULE_EXPECTS[stack[i]];
    if (r) {
      // Inside an expression rule the most useful thing to say is "an expression".
      const inner = stack[stack.length - 1];
      if (inner === 'power' || inner === 'expression') return 'an expression';
      return r;
    }
  }
  return 'an expression';
}

/** The tokens of a file, for the parser; lexing errors (and escapes a string may not hold) become
 * diagnostics. The first of parse()'s three phases, exported so the benchmark can time each. */
export function lexPipe(source: SourceFile, diagnostics: Diagnostic[]): IToken[] {
  const text = source.text;
  // Well-formed text (nearly all of it) is lexed by hand; anything else by Chevrotain, which reports it.
  let tokens = fastLex(text);
  if (!tokens) {
    const lexed = T.PipeLexer.tokenize(text);
    for (const err of lexed.errors) {
      const ch = text.slice(err.offset, err.offset + (err.length || 1));
      diagnostics.push(make(M.UnexpectedCharacter, source.range(err.offset, err.offset + (err.length || 1)), ch.length > 12 ? `${ch.slice(0, 12)}...` : ch));
    }
    tokens = lexed.tokens;
  }

  // The lexer's own array is handed on unless a token must be replaced or dropped (rare: only in broken files).
  let kept = 0;
  for (let i = 0; i < tokens.length; i++) {
    const tok = tokens[i];
    const type = tok.tokenType;
    if (type === T.UnterminatedString) {
      diagnostics.push(make(M.UnterminatedString, source.range(tok.startOffset, tok.startOffset + tok.image.length)));
      tokens[kept++] = { ...tok, tokenType: T.StringLit, tokenTypeIdx: T.StringLit.tokenTypeIdx!, image: `${tok.image}"` };
      continue;
    }
    if (type === T.UnterminatedComment) {
      diagnostics.push(make(M.UnterminatedComment, source.range(tok.startOffset, tok.startOffset + 2)));
      continue;
    }
    if (type === T.StringLit && tok.image.includes('\\')) {
      for (const m of tok.image.matchAll(/\\(.)/g)) {
        if (!'ntr"\\0'.includes(m[1])) {
          const at = tok.startOffset + (m.index ?? 0);
          diagnostics.push(make(M.BadEscape, source.range(at, at + 2), m[0]));
        }
      }
    }
    tokens[kept++] = tok;
  }
  tokens.length = kept;
  return tokens;
}

/** What the parser made of the tokens: the CST (absent only if the parser gave up entirely), the builder
 * that was handed its top-level declarations if one was, and where the parser cut too deep an expression
 * short (the AST builder reports those places once, see buildAst). */
export interface SyntaxTree {
  cst: CstNode | undefined;
  builder: AstBuilder | undefined;
  cuts: number[];
}

/** The second phase: tokens -> CST; syntax errors become diagnostics. Given a builder, each top-level
 * declaration goes to it as soon as it is parsed and the CST keeps none (parse() does this; the two
 * phases are then one pass). */
export function parseTokens(source: SourceFile, tokens: IToken[], diagnostics: Diagnostic[], builder?: AstBuilder): SyntaxTree {
  const text = source.text;
  const parser = grammar();
  parser.text = text;
  parser.input = tokens;
  parser.onTopLevel = builder && ((n) => builder.topLevel(n));
  let cst: CstNode | undefined;
  try {
    cst = parser.file();
  } finally {
    parser.text = ''; // the grammar is shared: do not keep this file's text alive
    parser.onTopLevel = undefined;
  }

  for (const { after, token } of parser.missingCommas) {
    const d = make(M.ExpectedToken, source.range(token.startOffset, token.startOffset + token.image.length), "','", foundWord(token));
    d.fixes = [{ title: 'Insert `,`', range: source.range(after, after), newText: ',' }];
    diagnostics.push(d);
  }

  for (const { start, end } of parser.tooDeep) {
    const d = make(M.NestingTooDeep, source.range(start, end), MAX_NESTING);
    d.hint = NESTING_HINT;
    diagnostics.push(d);
  }

  const seen = new Set<number>();
  for (const e of parser.errors) {
    const tok = e.token;
    const isEof = tok.tokenType.name === 'EOF' || !Number.isFinite(tok.startOffset);
    const start = isEof ? text.length : tok.startOffset;
    if (seen.has(start)) continue; // recovery can fail several times at one place; report it once
    seen.add(start);
    const range = isEof ? source.endRange() : source.range(tok.startOffset, tok.startOffset + tok.image.length);
    const found = isEof ? 'end of file' : foundWord(tok);
    if (e.name === 'MismatchedTokenException') {
      const expected = /-->\s*(\w+)\s*<--/.exec(e.message)?.[1];
      diagnostics.push(make(M.ExpectedToken, range, expected ? tokenWord(expected) : 'something else', found));
    } else if (e.name === 'NotAllInputParsedException') {
      diagnostics.push(make(M.TrailingInput, range, found));
    } else {
      diagnostics.push(make(M.UnexpectedToken, range, found, expectationFor(e)));
    }
  }
  return { cst, builder, cuts: parser.tooDeep.map((s) => s.start) };
}

/** The third phase: CST -> AST (a recovered, partial one where the file has errors), or, where the parser
 * has handed the declarations to a builder already, that builder's file. */
export function buildAst(source: SourceFile, tree: SyntaxTree, diagnostics: Diagnostic[]): FileNode {
  const { text, path } = source;
  if (!tree.cst) return { kind: 'File', path, imports: [], decls: [], range: source.range(0, text.length) };
  const builder = tree.builder ?? new AstBuilder(source);
  const ast = tree.builder ? builder.finish() : builder.file(tree.cst);
  // The builder may find too deep an expression the parser has already cut short and reported: a cut
  // inside its range, or just after it (what the parser skipped is in no CST node, so the range stops
  // before it), is the same place, reported once.
  for (const d of builder.diagnostics) {
    const at = tree.cuts.find((x) => x >= d.range.start.offset);
    if (at !== undefined && (at <= d.range.end.offset || !text.slice(d.range.end.offset, at).trim())) continue;
    diagnostics.push({ ...d, hint: NESTING_HINT });
  }
  return ast;
}

export function parse(path: string, text: string): ParseResult {
  const source = new SourceFile(path, text);
  const diagnostics: Diagnostic[] = [];
  const tokens = lexPipe(source, diagnostics);
  // A well-formed file (what the compiler reads nearly always) is parsed straight to its AST, no CST; one
  // the fast path gives up on is read again with recovery, which reports what is wrong.
  const ast = diagnostics.length ? undefined : fastParse(source, tokens);
  if (ast) return { ast, source, diagnostics };
  return recover(source, tokens, diagnostics);
}

/** parse() without its fast path: the CST parser, with recovery, and the AST built from the CST. */
export function parseWithRecovery(path: string, text: string): ParseResult {
  const source = new SourceFile(path, text);
  const diagnostics: Diagnostic[] = [];
  return recover(source, lexPipe(source, diagnostics), diagnostics);
}

function recover(source: SourceFile, tokens: IToken[], diagnostics: Diagnostic[]): ParseResult {
  const tree = parseTokens(source, tokens, diagnostics, new AstBuilder(source));
  const ast = buildAst(source, tree, diagnostics);
  return { ast, source, diagnostics };
}
