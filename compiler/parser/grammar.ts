// The .pipe grammar: syntax only, no actions. `build-ast.ts` turns the CST into the typed AST.
//
// Nesting is bounded. Every operand is a `power` node, one level deeper than the expression it is in (so
// each bracket, `if` and right side of `**` opens a level), and each unary `-` and `not` opens a level too;
// past MAX_NESTING levels the parser skips the rest of that expression (recorded in `tooDeep`, reported as
// PIPE1014) instead of recursing further, so the parser and the AST builder recurse a bounded depth
// whatever the input. Flat chains (`1 + 1 + ...`, `a.b.c`) are read in loops; the AST builder bounds how
// deep suffix chains nest.
import { CstParser, EOF, tokenMatcher, type CstNode, type IToken, type TokenType } from 'chevrotain';
import * as T from '../lexer/tokens.js';

const { Kw } = T;

/** Expression levels the parser reads; a human writes a handful, generated code a few dozen. The node
 * stack allows several hundred, so this leaves room for the passes that walk the tree after parsing. */
export const MAX_NESTING = 64;

const OPENERS = new Set<TokenType>([T.LParen, T.LBracket, T.LBrace]);
const CLOSERS = new Set<TokenType>([T.RParen, T.RBracket, T.RBrace]);
/** Past this many expression levels, a missing or extra token is recovered from by skipping ahead (re-sync)
 * only: Chevrotain's single-token insertion walks the grammar along the whole rule stack, recursively, which
 * would double the stack a deep parse needs. */
const IN_RULE_RECOVERY_LEVELS = 16;

/** The part of Chevrotain's recovery (an internal method, not in its typings) that the grammar limits. */
interface InRuleRecovery {
  getFollowsForInRuleRecovery(tokType: TokenType, tokIdxInRule: number): TokenType[];
}

/** Tokens that never occur inside an expression at its own bracket level: a too-deep expression ends
 * before them (keywords only when not after `.`, where they are member names). */
const ENDS_EXPRESSION = new Set<TokenType>([
  T.Comma, T.Colon, T.Equals, T.Arrow,
  Kw.import, Kw.model, Kw.encoder, Kw.projector, Kw.llm, Kw.flow, Kw.at, Kw.dataset, Kw.stage, Kw.weights, Kw.where,
  Kw.preset, Kw.tensor, Kw.template, Kw.data, Kw.optimizer, Kw.schedule, Kw.device, Kw.adapter, Kw.for,
]);

export class PipeGrammar extends CstParser {
  /** Expression levels open at the current token (see the header). */
  private depth = 0;
  /** Where expressions went deeper than MAX_NESTING, as offsets of what was skipped (empty where nothing
   * was left to skip): one span per operand at the deepest allowed level (its `if` condition and branches,
   * say, may each be skipped; one report). */
  tooDeep: Array<{ start: number; end: number; epoch: number }> = [];
  /** Counts the times the parser came back up from past the limit, to tell those operands apart. */
  private epoch = 0;
  /** The text being parsed (set by parse()): tells whether two tokens are on one line. */
  text = '';
  /** Commas missing between two arguments or list items on one line (`f(a: 1 b: 2)`, `[vision lm]`): the
   * parser reads on as if the comma were there, so the one mistake is one diagnostic (parse.ts reports
   * each), not a failed call and whatever recovery makes of the rest. `after`: the offset just past the
   * item before the gap; `token`: the item that follows it. */
  missingCommas: Array<{ after: number; token: IToken }> = [];

  constructor() {
    super(T.allTokens, { recoveryEnabled: true, maxLookahead: 2, nodeLocationTracking: 'onlyOffset' });
    this.performSelfAnalysis();
  }

  override reset(): void {
    super.reset();
    this.depth = 0;
    this.tooDeep = [];
    this.epoch = 0;
    this.missingCommas = [];
  }

  /** Before another item of a comma-separated list: the comma, or, when the next item starts after spaces on
   * the line where the previous one ended, nothing (recorded as a missing comma). Across a line break no
   * comma is assumed: there a missing `)` or `]` is the likelier mistake, and recovery handles that. Nor
   * between two tokens that touch (`"a, b: "img"`): that is a misplaced quote, not two items. */
  private readonly separator = {
    GATE: () => this.RECORDING_PHASE || this.LA(1).tokenType === T.Comma || this.spacedOnOneLine(this.LA(0), this.LA(1)),
  };

  private spacedOnOneLine(a: IToken, b: IToken): boolean {
    if (!Number.isFinite(a.startOffset) || !Number.isFinite(b.startOffset) || b.tokenType === EOF) return false;
    const gap = this.text.slice(a.startOffset + a.image.length, b.startOffset);
    return gap.length > 0 && /^[ \t]+$/.test(gap);
  }

  /** The comma between two items, optional in the grammar; see `separator`. */
  private noteMissingComma(): void {
    if (this.RECORDING_PHASE || this.LA(1).tokenType === T.Comma) return;
    const prev = this.LA(0);
    this.missingCommas.push({ after: prev.startOffset + prev.image.length, token: this.LA(1) });
  }

  /** Close `levels` expression levels. */
  private leave(levels: number): void {
    if (this.depth > MAX_NESTING && this.depth - levels <= MAX_NESTING) this.epoch++;
    this.depth -= levels;
  }

  /** A CST node, as Chevrotain makes it but for `children`: there `Object.create(null)`, which V8 keeps as a
   * hash table (a slow, several-times-larger object per node, most of the CST's memory and so of the
   * collector's work); here a plain object. The keys are rule and token names (`expression`, `Kw_if`),
   * none of them a name Object.prototype has. */
  cstInvocationStateUpdate(fullRuleName: string): void {
    const self = this as unknown as { setInitialNodeLocation(n: CstNode): void; CST_STACK: CstNode[] };
    const node: CstNode = { name: fullRuleName, children: {} };
    self.setInitialNodeLocation(node);
    self.CST_STACK.push(node);
  }

  /** Where each top-level declaration goes once parsed, instead of into the `file` node (parse() builds its
   * AST there and then, so no whole-file CST outlives the parse: less for the collector to copy). */
  onTopLevel: ((node: CstNode) => void) | undefined;

  /** A finished child node, added to its parent; a top-level one goes to onTopLevel where that is set. The
   * `file` node's location still covers it. Chevrotain calls this for partial nodes of a failed rule too. */
  cstPostNonTerminal(ruleCstResult: CstNode, ruleName: string): void {
    const self = this as unknown as { CST_STACK: CstNode[]; setNodeLocationFromNode(parent: CstNode['location'], child: CstNode['location']): void };
    if (this.onTopLevel && self.CST_STACK.length === 1) {
      self.setNodeLocationFromNode(self.CST_STACK[0].location, ruleCstResult.location);
      this.onTopLevel(ruleCstResult);
      return;
    }
    (CstParser.prototype as unknown as { cstPostNonTerminal(r: CstNode, n: string): void }).cstPostNonTerminal.call(this, ruleCstResult, ruleName);
  }

  /** Deep in an expression, no follow set: single-token insertion is off there, deletion still works. */
  getFollowsForInRuleRecovery(tokType: TokenType, tokIdxInRule: number): TokenType[] {
    if (this.depth > IN_RULE_RECOVERY_LEVELS) return [];
    return (CstParser.prototype as unknown as InRuleRecovery).getFollowsForInRuleRecovery.call(this, tokType, tokIdxInRule);
  }

  /** Open one more expression level, or, past the limit, skip the rest of this expression and say no. */
  private enter(): boolean {
    // The outermost operand is level 0 (depth 1), so an operand may be entered at depth MAX_NESTING.
    if (this.depth <= MAX_NESTING) {
      this.depth++;
      return true;
    }
    this.skipTooDeep();
    return false;
  }

  /** Skip to the end of the expression that starts here: the closer of a bracket opened before it, or a
   * token that cannot be inside it, or the end of the file. The skipped tokens are in no CST node. */
  private skipTooDeep(): void {
    const first = this.LA(1);
    let last: IToken | undefined;
    let open = 0;
    let ifs = 0; // `if`s begun in the skipped part: their `then` and `else` belong to it
    for (let t = first; t.tokenType !== EOF; t = this.LA(1)) {
      const type = t.tokenType;
      if (OPENERS.has(type)) open++;
      else if (CLOSERS.has(type)) {
        if (open === 0) break;
        open--;
      } else if (open === 0 && last && last.tokenType !== T.Dot) {
        if (ENDS_EXPRESSION.has(type)) break;
        if (tokenMatcher(t, T.Name) && this.LA(2).tokenType === T.Colon) break; // the next `field: value`
        if (type === Kw.then || type === Kw.else) {
          if (ifs === 0) break; // the condition or a branch of an `if` around this expression ends here
          if (type === Kw.else) ifs--;
        }
      }
      if (type === Kw.if && last?.tokenType !== T.Dot) ifs++;
      last = t;
      this.SKIP_TOKEN();
    }
    // Nothing to skip (`(((...()...)))`): the operand that is missing here is still too deep.
    const before = this.LA(0);
    const at = first.tokenType !== EOF ? first.startOffset : Number.isFinite(before.startOffset) ? before.startOffset + before.image.length : 0;
    const end = last ? last.startOffset + last.image.length : at;
    const prev = this.tooDeep[this.tooDeep.length - 1];
    if (prev?.epoch === this.epoch) prev.end = Math.max(prev.end, end);
    else this.tooDeep.push({ start: last ? first.startOffset : at, end, epoch: this.epoch });
  }

  file = this.RULE('file', () => {
    this.MANY(() =>
      this.OR([
        { ALT: () => this.SUBRULE(this.importDecl) },
        { ALT: () => this.SUBRULE(this.modelDecl) },
        { ALT: () => this.SUBRULE(this.datasetDecl) },
        { ALT: () => this.SUBRULE(this.stageDecl) },
        { ALT: () => this.SUBRULE(this.templateDecl) },
        { ALT: () => this.SUBRULE(this.signatureDecl) },
      ]),
    );
  });

  importDecl = this.RULE('importDecl', () => {
    this.CONSUME(Kw.import);
    this.CONSUME(T.StringLit);
  });

  modelDecl = this.RULE('modelDecl', () => {
    this.CONSUME(Kw.model);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.LBrace);
    this.MANY(() =>
      this.OR([{ ALT: () => this.SUBRULE(this.componentDecl) }, { ALT: () => this.SUBRULE(this.flowDecl) }, { ALT: () => this.SUBRULE(this.adapterDecl) }]),
    );
    this.CONSUME(T.RBrace);
  });

  componentDecl = this.RULE('componentDecl', () => {
    this.OR([
      { ALT: () => this.CONSUME(Kw.encoder, { LABEL: 'role' }) },
      { ALT: () => this.CONSUME(Kw.projector, { LABEL: 'role' }) },
      { ALT: () => this.CONSUME(Kw.llm, { LABEL: 'role' }) },
    ]);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression);
    this.OPTION(() => {
      this.CONSUME(Kw.weights);
      this.CONSUME(T.StringLit);
    });
  });

  /** `adapter lm.lora = lora(rank: 16, ...)`: an adapter named `lora` on the model's component `lm`. */
  adapterDecl = this.RULE('adapterDecl', () => {
    this.CONSUME(Kw.adapter);
    this.CONSUME(T.Identifier, { LABEL: 'component' });
    this.CONSUME(T.Dot);
    this.CONSUME(T.Name, { LABEL: 'adapter' });
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression);
  });

  flowDecl = this.RULE('flowDecl', () => {
    this.CONSUME(Kw.flow);
    this.CONSUME(T.Identifier);
    this.AT_LEAST_ONE(() => {
      this.CONSUME(T.Arrow);
      this.CONSUME2(T.Identifier);
    });
    this.OPTION(() => {
      this.CONSUME(Kw.at);
      this.CONSUME(T.StringLit);
    });
  });

  datasetDecl = this.RULE('datasetDecl', () => {
    this.CONSUME(Kw.dataset);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression);
  });

  stageDecl = this.RULE('stageDecl', () => {
    this.CONSUME(Kw.stage);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.LBrace);
    this.MANY(() => this.SUBRULE(this.field));
    this.CONSUME(T.RBrace);
  });

  templateDecl = this.RULE('templateDecl', () => {
    this.CONSUME(Kw.template);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.LBrace);
    this.MANY(() => this.SUBRULE(this.field));
    this.CONSUME(T.RBrace);
  });

  field = this.RULE('field', () => {
    this.CONSUME(T.Name);
    this.CONSUME(T.Colon);
    this.SUBRULE(this.expression);
    this.OPTION(() => this.CONSUME(T.Comma));
  });

  signatureDecl = this.RULE('signatureDecl', () => {
    this.OR(
      ([Kw.encoder, Kw.projector, Kw.llm, Kw.data, Kw.optimizer, Kw.schedule, Kw.device, Kw.adapter] as TokenType[]).map((tok) => ({
        ALT: () => this.CONSUME(tok, { LABEL: 'sigKind' }),
      })),
    );
    this.CONSUME(T.Identifier);
    this.CONSUME(T.LParen);
    this.OPTION(() => {
      this.SUBRULE(this.param);
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.SUBRULE2(this.param);
      });
      this.OPTION2(() => this.CONSUME2(T.Comma));
    });
    this.CONSUME(T.RParen);
    this.OPTION3(() => {
      this.CONSUME(T.Colon);
      this.SUBRULE(this.expression, { LABEL: 'input' });
      this.CONSUME(T.Arrow);
      this.SUBRULE2(this.expression, { LABEL: 'output' });
    });
    this.OPTION4(() => {
      this.CONSUME(Kw.where);
      this.SUBRULE3(this.expression, { LABEL: 'where' });
      this.MANY2(() => {
        this.CONSUME3(T.Comma);
        this.SUBRULE4(this.expression, { LABEL: 'where' });
      });
    });
    this.OPTION5(() => {
      this.CONSUME(T.LBrace);
      this.MANY3(() =>
        this.OR2([
          { ALT: () => this.SUBRULE(this.presetDecl) },
          { ALT: () => this.SUBRULE(this.tensorDecl) },
          { ALT: () => this.SUBRULE(this.field) },
        ]),
      );
      this.CONSUME(T.RBrace);
    });
  });

  param = this.RULE('param', () => {
    this.CONSUME(T.Name);
    this.CONSUME(T.Colon);
    this.SUBRULE(this.expression, { LABEL: 'type' });
    this.OPTION(() => {
      this.CONSUME(T.Equals);
      this.SUBRULE2(this.expression, { LABEL: 'default' });
    });
  });

  presetDecl = this.RULE('presetDecl', () => {
    this.CONSUME(Kw.preset);
    this.CONSUME(T.StringLit);
    this.CONSUME(T.LParen);
    this.SUBRULE(this.args);
    this.CONSUME(T.RParen);
  });

  tensorDecl = this.RULE('tensorDecl', () => {
    this.CONSUME(Kw.tensor);
    this.CONSUME(T.StringLit);
    this.CONSUME(T.LBracket);
    this.SUBRULE(this.exprList);
    this.CONSUME(T.RBracket);
    this.OPTION(() => {
      this.CONSUME(Kw.for);
      this.SUBRULE(this.loopVar);
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.SUBRULE2(this.loopVar);
      });
    });
    this.OPTION2(() => {
      this.CONSUME(Kw.if);
      this.SUBRULE(this.expression, { LABEL: 'cond' });
    });
  });

  loopVar = this.RULE('loopVar', () => {
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Lt);
    this.SUBRULE(this.expression);
  });

  args = this.RULE('args', () => {
    this.OPTION(() => {
      this.SUBRULE(this.arg);
      this.MANY({
        ...this.separator,
        DEF: () => {
          this.noteMissingComma();
          this.OPTION3(() => this.CONSUME3(T.Comma));
          this.SUBRULE2(this.arg);
        },
      });
      this.OPTION2(() => this.CONSUME2(T.Comma));
    });
  });

  arg = this.RULE('arg', () => {
    this.OPTION(() => {
      this.CONSUME(T.Name);
      this.CONSUME(T.Colon);
    });
    this.SUBRULE(this.expression);
  });

  exprList = this.RULE('exprList', () => {
    this.OPTION(() => {
      this.SUBRULE(this.expression);
      this.MANY({
        ...this.separator,
        DEF: () => {
          this.noteMissingComma();
          this.OPTION3(() => this.CONSUME3(T.Comma));
          this.SUBRULE2(this.expression);
        },
      });
      this.OPTION2(() => this.CONSUME2(T.Comma));
    });
  });

  // ---- expressions ----
  // Binary operators are parsed flat (operand (op operand)*) and given their precedence when the AST is
  // built (build-ast.ts); an operand is one `power` node, whatever its prefixes and suffixes. A rule per
  // precedence level, or per prefix, would cost a dozen rule calls and CST nodes per literal, and a long
  // expression is mostly literals.

  /** The binary operators, made once: Chevrotain recommends not building alternatives on every call. */
  private readonly binaryOps = ([T.Pipe, Kw.or, Kw.and, T.EqEq, T.NotEq, T.LtEq, T.GtEq, T.Lt, T.Gt, T.Plus, T.Minus, T.Star, T.Slash, T.Percent, Kw.x] as TokenType[]).map(
    (tok) => ({ ALT: () => this.CONSUME(tok, { LABEL: 'op' }) }),
  );

  // The loops below are made once, not per operand: closures made on every call were a fifth of what
  // parsing allocates. A prefix loop (`not`s, `-`s) recurses into no rule, so the one counter below
  // serves each loop while it runs; the rule copies it out right after.

  /** `not`s or `-`s read by the prefix loop now running. */
  private prefixes = 0;
  /** Set by the `-` loop of `power` when one `-` more would be too deep. */
  private prefixesFull = false;

  /** `not`s before the first operand; one past the limit, for `power` to skip. */
  private readonly firstNots = {
    GATE: () => this.depth + this.prefixes <= MAX_NESTING,
    DEF: () => {
      this.CONSUME(Kw.not);
      this.prefixes++;
    },
  };

  /** `not`s before a later operand. */
  private readonly laterNots = {
    GATE: () => this.depth + this.prefixes <= MAX_NESTING,
    DEF: () => {
      this.CONSUME2(Kw.not);
      this.prefixes++;
    },
  };

  /** An operator and the operand after it. */
  private readonly laterOperand = () => {
    this.OR(this.binaryOps);
    this.prefixes = 0;
    this.MANY3(this.laterNots);
    const more = this.prefixes;
    this.depth += more;
    try {
      this.SUBRULE2(this.power);
    } finally {
      this.leave(more);
    }
  };

  /** `not` binds looser than comparisons (`not a == b` is `not (a == b)`); the AST builder applies that.
   * Each `not` is a level: past the limit `power` skips the rest, `not`s included. */
  expression = this.RULE('expression', () => {
    this.prefixes = 0;
    this.MANY(this.firstNots);
    const nots = this.prefixes;
    this.depth += nots;
    try {
      this.SUBRULE(this.power);
    } finally {
      this.leave(nots);
    }
    this.MANY2(this.laterOperand);
  });

  private readonly atoms = [
    { ALT: () => this.CONSUME(T.NumberLit) },
    { ALT: () => this.CONSUME(T.Quantity) },
    { ALT: () => this.CONSUME(T.StringLit) },
    { ALT: () => this.CONSUME(Kw.true) },
    { ALT: () => this.CONSUME(Kw.false) },
    { ALT: () => this.CONSUME(T.Identifier) },
    { ALT: () => this.SUBRULE(this.parenExpr) },
    { ALT: () => this.SUBRULE(this.listExpr) },
    { ALT: () => this.SUBRULE(this.objectExpr) },
    { ALT: () => this.SUBRULE(this.ifExpr) },
  ];

  private readonly suffixes = [
    { ALT: () => this.SUBRULE(this.memberSuffix) },
    { ALT: () => this.SUBRULE(this.callSuffix) },
    { ALT: () => this.SUBRULE(this.indexSuffix) },
  ];

  /** The `-`s of an operand; the atom is at level depth - 1 + prefixes. */
  private readonly minuses = {
    GATE: () => {
      if (this.depth + this.prefixes <= MAX_NESTING) return true;
      this.prefixesFull = true; // never set while Chevrotain records the grammar
      return false;
    },
    DEF: () => {
      this.CONSUME(T.Minus);
      this.prefixes++;
    },
  };

  private readonly suffix = () => this.OR2(this.suffixes);

  private readonly exponent = () => {
    this.CONSUME(T.StarStar);
    this.SUBRULE(this.power);
  };

  /** One operand: `-`s, an atom, suffixes (`.x`, `(...)`, `[...]`, read in a loop; the AST builder bounds
   * how deep they nest), and `** power`: right-associative, and binding tighter than a `-` on its left
   * (-2 ** 2 == -4). Each `-` is a level. */
  power = this.RULE('power', () => {
    if (!this.enter()) return;
    let minus = 0;
    try {
      this.prefixes = 0;
      this.prefixesFull = false;
      this.MANY(this.minuses);
      minus = this.prefixes;
      this.depth += minus;
      if (this.prefixesFull && this.LA(1).tokenType === T.Minus) {
        this.skipTooDeep();
        return;
      }
      this.OR(this.atoms);
      this.MANY2(this.suffix);
      this.OPTION(this.exponent);
    } finally {
      this.leave(minus + 1);
    }
  });

  memberSuffix = this.RULE('memberSuffix', () => {
    this.CONSUME(T.Dot);
    this.CONSUME(T.Name);
  });

  callSuffix = this.RULE('callSuffix', () => {
    this.CONSUME(T.LParen);
    this.SUBRULE(this.args);
    this.CONSUME(T.RParen);
  });

  indexSuffix = this.RULE('indexSuffix', () => {
    this.CONSUME(T.LBracket);
    this.SUBRULE(this.exprList);
    this.CONSUME(T.RBracket);
  });

  parenExpr = this.RULE('parenExpr', () => {
    this.CONSUME(T.LParen);
    this.SUBRULE(this.expression);
    this.CONSUME(T.RParen);
  });

  listExpr = this.RULE('listExpr', () => {
    this.CONSUME(T.LBracket);
    this.SUBRULE(this.exprList);
    this.CONSUME(T.RBracket);
  });

  objectExpr = this.RULE('objectExpr', () => {
    this.CONSUME(T.LBrace);
    this.MANY(() => this.SUBRULE(this.field));
    this.CONSUME(T.RBrace);
  });

  ifExpr = this.RULE('ifExpr', () => {
    this.CONSUME(Kw.if);
    this.SUBRULE(this.expression, { LABEL: 'cond' });
    this.CONSUME(Kw.then);
    this.SUBRULE2(this.expression, { LABEL: 'then' });
    this.CONSUME(Kw.else);
    this.SUBRULE3(this.expression, { LABEL: 'else' });
  });
}

/** One grammar instance, reused by resetting `input` (building it runs Chevrotain's grammar analysis). */
let shared: PipeGrammar | undefined;
export function grammar(): PipeGrammar {
  return (shared ??= new PipeGrammar());
}
