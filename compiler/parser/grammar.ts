// The .pipe grammar: syntax only, no actions. `build-ast.ts` turns the CST into the typed AST.
import { CstParser, type TokenType } from 'chevrotain';
import * as T from '../lexer/tokens.js';

const { Kw } = T;

export class PipeGrammar extends CstParser {
  constructor() {
    super(T.allTokens, { recoveryEnabled: true, maxLookahead: 2, nodeLocationTracking: 'onlyOffset' });
    this.performSelfAnalysis();
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
    this.MANY(() => this.OR([{ ALT: () => this.SUBRULE(this.componentDecl) }, { ALT: () => this.SUBRULE(this.flowDecl) }]));
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
      ([Kw.encoder, Kw.projector, Kw.llm, Kw.data, Kw.optimizer, Kw.schedule, Kw.device] as TokenType[]).map((tok) => ({
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
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.SUBRULE2(this.arg);
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
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.SUBRULE2(this.expression);
      });
      this.OPTION2(() => this.CONSUME2(T.Comma));
    });
  });

  // ---- expressions ----
  // Binary operators are parsed flat (operand (op operand)*) and given their precedence when the AST is
  // built (build-ast.ts): a rule per precedence level would make a dozen CST nodes per literal.

  expression = this.RULE('expression', () => {
    this.SUBRULE(this.operand);
    this.MANY(() => {
      this.OR(
        ([T.Pipe, Kw.or, Kw.and, T.EqEq, T.NotEq, T.LtEq, T.GtEq, T.Lt, T.Gt, T.Plus, T.Minus, T.Star, T.Slash, T.Percent, Kw.x] as TokenType[]).map((tok) => ({
          ALT: () => this.CONSUME(tok, { LABEL: 'op' }),
        })),
      );
      this.SUBRULE2(this.operand);
    });
  });

  /** `not` binds looser than comparisons (`not a == b` is `not (a == b)`); the AST builder applies that. */
  operand = this.RULE('operand', () => {
    this.MANY(() => this.CONSUME(Kw.not));
    this.SUBRULE(this.unary);
  });

  unary = this.RULE('unary', () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.Minus);
          this.SUBRULE(this.unary);
        },
      },
      { ALT: () => this.SUBRULE(this.power) },
    ]);
  });

  // Right-associative, and binds tighter than unary minus on its left: -2 ** 2 == -4.
  power = this.RULE('power', () => {
    this.SUBRULE(this.postfix);
    this.OPTION(() => {
      this.CONSUME(T.StarStar);
      this.SUBRULE(this.unary);
    });
  });

  postfix = this.RULE('postfix', () => {
    this.SUBRULE(this.primary);
    this.MANY(() =>
      this.OR([
        { ALT: () => this.SUBRULE(this.memberSuffix) },
        { ALT: () => this.SUBRULE(this.callSuffix) },
        { ALT: () => this.SUBRULE(this.indexSuffix) },
      ]),
    );
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

  primary = this.RULE('primary', () => {
    this.OR([
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
    ]);
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
