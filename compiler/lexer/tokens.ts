// Token vocabulary of .pipe. Keywords belong to the `Name` category so that a keyword may still be used
// wherever a plain name is expected (a stage field called `data`, an argument called `template`).
import { createToken, Lexer, type IToken, type TokenType } from 'chevrotain';

export const Name = createToken({ name: 'Name', pattern: Lexer.NA });
export const Identifier = createToken({ name: 'Identifier', pattern: /[A-Za-z_][A-Za-z0-9_]*/, categories: [Name] });

function keyword(word: string): TokenType {
  return createToken({ name: `Kw_${word}`, pattern: new RegExp(`${word}(?![A-Za-z0-9_])`), longer_alt: Identifier, categories: [Name] });
}

export const Kw = {
  import: keyword('import'),
  model: keyword('model'),
  encoder: keyword('encoder'),
  projector: keyword('projector'),
  llm: keyword('llm'),
  flow: keyword('flow'),
  at: keyword('at'),
  dataset: keyword('dataset'),
  stage: keyword('stage'),
  weights: keyword('weights'),
  where: keyword('where'),
  preset: keyword('preset'),
  tensor: keyword('tensor'),
  template: keyword('template'),
  data: keyword('data'),
  optimizer: keyword('optimizer'),
  schedule: keyword('schedule'),
  device: keyword('device'),
  adapter: keyword('adapter'),
  if: keyword('if'),
  then: keyword('then'),
  else: keyword('else'),
  true: keyword('true'),
  false: keyword('false'),
  and: keyword('and'),
  or: keyword('or'),
  not: keyword('not'),
  for: keyword('for'),
  // `16 x gpu(...)`: replication. Reserved, so `x` cannot name anything.
  x: keyword('x'),
} as const;

export const WhiteSpace = createToken({ name: 'WhiteSpace', pattern: /[ \t\r\n\uFEFF]+/, group: Lexer.SKIPPED });
export const LineComment = createToken({ name: 'LineComment', pattern: /\/\/[^\n]*/, group: 'comments' });
export const BlockComment = createToken({ name: 'BlockComment', pattern: /\/\*[\s\S]*?\*\//, group: 'comments', line_breaks: true });
// A size or count with a unit glued on: 80GB, 1.5TiB, 7B. The unit is validated by the checker.
// The lookahead keeps `1e-3` a number: an `e` that starts an exponent is never a unit.
export const Quantity = createToken({ name: 'Quantity', pattern: /(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?(?![eE][+-]?\d)[A-Za-z]+/ });
export const NumberLit = createToken({ name: 'NumberLit', pattern: /(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?/ });
export const StringLit = createToken({ name: 'StringLit', pattern: /"(?:[^"\\\n]|\\.)*"/ });
export const UnterminatedString = createToken({ name: 'UnterminatedString', pattern: /"(?:[^"\\\n]|\\.)*/ });
export const UnterminatedComment = createToken({ name: 'UnterminatedComment', pattern: /\/\*[\s\S]*/, line_breaks: true });

export const Arrow = createToken({ name: 'Arrow', pattern: /->/ });
export const StarStar = createToken({ name: 'StarStar', pattern: /\*\*/ });
export const EqEq = createToken({ name: 'EqEq', pattern: /==/ });
export const NotEq = createToken({ name: 'NotEq', pattern: /!=/ });
export const LtEq = createToken({ name: 'LtEq', pattern: /<=/ });
export const GtEq = createToken({ name: 'GtEq', pattern: />=/ });
export const Lt = createToken({ name: 'Lt', pattern: /</ });
export const Gt = createToken({ name: 'Gt', pattern: />/ });
export const Equals = createToken({ name: 'Equals', pattern: /=/ });
export const Plus = createToken({ name: 'Plus', pattern: /\+/ });
export const Minus = createToken({ name: 'Minus', pattern: /-/ });
export const Star = createToken({ name: 'Star', pattern: /\*/ });
export const Slash = createToken({ name: 'Slash', pattern: /\// });
export const Percent = createToken({ name: 'Percent', pattern: /%/ });
export const Pipe = createToken({ name: 'Pipe', pattern: /\|/ });
export const Colon = createToken({ name: 'Colon', pattern: /:/ });
export const Comma = createToken({ name: 'Comma', pattern: /,/ });
export const Dot = createToken({ name: 'Dot', pattern: /\./ });
export const LParen = createToken({ name: 'LParen', pattern: /\(/ });
export const RParen = createToken({ name: 'RParen', pattern: /\)/ });
export const LBracket = createToken({ name: 'LBracket', pattern: /\[/ });
export const RBracket = createToken({ name: 'RBracket', pattern: /]/ });
export const LBrace = createToken({ name: 'LBrace', pattern: /{/ });
export const RBrace = createToken({ name: 'RBrace', pattern: /}/ });

/** Order matters: comments before Slash, longer operators before their prefixes, keywords before Identifier. */
export const allTokens: TokenType[] = [
  WhiteSpace,
  LineComment,
  BlockComment,
  UnterminatedComment,
  StringLit,
  UnterminatedString,
  Quantity,
  NumberLit,
  Arrow,
  StarStar,
  EqEq,
  NotEq,
  LtEq,
  GtEq,
  Lt,
  Gt,
  Equals,
  Plus,
  Minus,
  Star,
  Slash,
  Percent,
  Pipe,
  Colon,
  Comma,
  Dot,
  LParen,
  RParen,
  LBracket,
  RBracket,
  LBrace,
  RBrace,
  Name,
  ...Object.values(Kw),
  Identifier,
];

/** Offsets only: SourceFile turns them into lines and columns where needed; tracking them here too made
 * lexing two to three times slower. */
export const PipeLexer = new Lexer(allTokens, { positionTracking: 'onlyOffset', ensureOptimizations: false });

/** The parser's node locations need each token's end offset, which 'onlyOffset' leaves out. Adding it to a
 * made token (as parse() once did) gives every token a second, out-of-object property store: garbage the
 * collector then copies. So the token is made with it, through the lexer's (untyped, internal) factory. */
(PipeLexer as unknown as { createTokenInstance: unknown }).createTokenInstance = (image: string, startOffset: number, tokenTypeIdx: number, tokenType: TokenType): IToken => ({
  image,
  startOffset,
  endOffset: startOffset + image.length - 1,
  tokenTypeIdx,
  tokenType,
});
