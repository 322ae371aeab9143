// The fast path of parse(): the grammar of grammar.ts with the AST built in the rules themselves
// (Chevrotain's embedded actions), no CST. It reads well-formed files only: error recovery off, commas
// required, expressions at most FAST_DEPTH levels deep. At anything else (a syntax error, a missing
// comma, deep nesting, a nesting diagnostic of the AST builder) it gives up and parse() reads the file
// with the CST parser and build-ast.ts, which recover and report; so every diagnostic still comes from
// there. For the files it reads it makes the AST build-ast.ts makes (test/parser.test.ts compares them).
import { EmbeddedActionsParser, type IToken, type TokenType } from 'chevrotain';
import type * as A from '../ast/nodes.js';
import { endOffsetOf, startOffsetOf, type SourceFile } from '../diagnostics/source.js';
import * as T from '../lexer/tokens.js';
import { AstBuilder, type ClimbItem } from './build-ast.js';

const { Kw } = T;

/** Expression levels the fast path reads; deeper, the CST parser's limits and reports apply. */
const FAST_DEPTH = 24;

/** Thrown to stop the fast path; never leaves fastParse. */
class GiveUp {}
const GIVE_UP = new GiveUp();

type Suffix = { kind: 'member'; name: IToken; end: IToken } | { kind: 'call'; args: A.Arg[]; end: IToken } | { kind: 'index'; items: A.Expr[]; end: IToken };
type SigItem = A.SignatureItem;

class FastGrammar extends EmbeddedActionsParser {
  b!: AstBuilder;
  src!: SourceFile;
  private depth = 0;
  imports: A.ImportDecl[] = [];
  decls: A.Decl[] = [];

  constructor() {
    super(T.allTokens, { recoveryEnabled: false, maxLookahead: 2 });
    this.performSelfAnalysis();
  }

  /** The range from `first` to the last token consumed, as a CST node's location gives it. */
  private from(first: IToken): A.Expr['range'] {
    return this.src.range(first.startOffset, this.LA(0).endOffset! + 1);
  }

  private deeper(levels: number): void {
    this.depth += levels;
    if (this.depth > FAST_DEPTH && !this.RECORDING_PHASE) throw GIVE_UP;
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
    const first = this.CONSUME(Kw.import);
    const path = this.CONSUME(T.StringLit);
    this.ACTION(() => this.imports.push({ kind: 'Import', path: this.b.string(path), range: this.from(first) }));
  });

  modelDecl = this.RULE('modelDecl', () => {
    const first = this.CONSUME(Kw.model);
    const name = this.CONSUME(T.Identifier);
    this.CONSUME(T.LBrace);
    const components: A.ComponentDecl[] = [];
    const flows: A.FlowDecl[] = [];
    const adapters: A.AdapterDecl[] = [];
    this.MANY(() =>
      this.OR([
        { ALT: () => { const c = this.SUBRULE(this.componentDecl); this.ACTION(() => components.push(c)); } },
        { ALT: () => { const f = this.SUBRULE(this.flowDecl); this.ACTION(() => flows.push(f)); } },
        { ALT: () => { const a = this.SUBRULE(this.adapterDecl); this.ACTION(() => adapters.push(a)); } },
      ]),
    );
    this.CONSUME(T.RBrace);
    this.ACTION(() => this.decls.push({ kind: 'Model', name: this.b.ident(name), components, flows, adapters, range: this.from(first) }));
  });

  adapterDecl = this.RULE('adapterDecl', (): A.AdapterDecl => {
    const first = this.CONSUME(Kw.adapter);
    const component = this.CONSUME(T.Identifier);
    this.CONSUME(T.Dot);
    const name = this.CONSUME(T.Name);
    this.CONSUME(T.Equals);
    const init = this.SUBRULE(this.expression);
    return this.ACTION(() => ({ kind: 'Adapter' as const, component: this.b.ident(component), name: this.b.ident(name), init, range: this.from(first) }));
  });

  componentDecl = this.RULE('componentDecl', (): A.ComponentDecl => {
    const role = this.OR([{ ALT: () => this.CONSUME(Kw.encoder) }, { ALT: () => this.CONSUME(Kw.projector) }, { ALT: () => this.CONSUME(Kw.llm) }]);
    const roleRange = this.ACTION(() => this.b.tokRange(role));
    const name = this.CONSUME(T.Identifier);
    this.CONSUME(T.Equals);
    const init = this.SUBRULE(this.expression);
    let weights: IToken | undefined;
    this.OPTION(() => {
      this.CONSUME(Kw.weights);
      weights = this.CONSUME(T.StringLit);
    });
    return this.ACTION(() => ({
      kind: 'Component' as const,
      role: role.image as A.Role,
      roleRange,
      name: this.b.ident(name),
      init,
      weights: weights ? this.b.string(weights) : undefined,
      range: this.from(role),
    }));
  });

  flowDecl = this.RULE('flowDecl', (): A.FlowDecl => {
    const first = this.CONSUME(Kw.flow);
    const chain = [this.CONSUME(T.Identifier)];
    this.AT_LEAST_ONE(() => {
      this.CONSUME(T.Arrow);
      chain.push(this.CONSUME2(T.Identifier));
    });
    let at: IToken | undefined;
    this.OPTION(() => {
      this.CONSUME(Kw.at);
      at = this.CONSUME(T.StringLit);
    });
    return this.ACTION(() => ({ kind: 'Flow' as const, chain: chain.map((t) => this.b.ident(t)), at: at ? this.b.string(at) : undefined, range: this.from(first) }));
  });

  datasetDecl = this.RULE('datasetDecl', () => {
    const first = this.CONSUME(Kw.dataset);
    const name = this.CONSUME(T.Identifier);
    this.CONSUME(T.Equals);
    const init = this.SUBRULE(this.expression);
    this.ACTION(() => this.decls.push({ kind: 'Dataset', name: this.b.ident(name), init, range: this.from(first) }));
  });

  stageDecl = this.RULE('stageDecl', () => {
    const first = this.CONSUME(Kw.stage);
    const name = this.CONSUME(T.Identifier);
    this.CONSUME(T.LBrace);
    const fields: A.Field[] = [];
    this.MANY(() => {
      const f = this.SUBRULE(this.field);
      this.ACTION(() => fields.push(f));
    });
    this.CONSUME(T.RBrace);
    this.ACTION(() => this.decls.push({ kind: 'Stage', name: this.b.ident(name), fields, range: this.from(first) }));
  });

  templateDecl = this.RULE('templateDecl', () => {
    const first = this.CONSUME(Kw.template);
    const name = this.CONSUME(T.Identifier);
    this.CONSUME(T.LBrace);
    const fields: A.Field[] = [];
    this.MANY(() => {
      const f = this.SUBRULE(this.field);
      this.ACTION(() => fields.push(f));
    });
    this.CONSUME(T.RBrace);
    this.ACTION(() => this.decls.push({ kind: 'Template', name: this.b.ident(name), fields, range: this.from(first) }));
  });

  field = this.RULE('field', (): A.Field => {
    const name = this.CONSUME(T.Name);
    this.CONSUME(T.Colon);
    const value = this.SUBRULE(this.expression);
    this.OPTION(() => this.CONSUME(T.Comma));
    return this.ACTION(() => ({ kind: 'Field' as const, name: this.b.ident(name), value, range: this.from(name) }));
  });

  private readonly sigKinds = ([Kw.encoder, Kw.projector, Kw.llm, Kw.data, Kw.optimizer, Kw.schedule, Kw.device, Kw.adapter] as TokenType[]).map((tok) => ({ ALT: () => this.CONSUME(tok) }));

  signatureDecl = this.RULE('signatureDecl', () => {
    const kind = this.OR(this.sigKinds);
    const name = this.CONSUME(T.Identifier);
    this.CONSUME(T.LParen);
    const params: A.ParamDecl[] = [];
    this.OPTION(() => {
      const p = this.SUBRULE(this.param);
      this.ACTION(() => params.push(p));
      this.MANY(() => {
        this.CONSUME(T.Comma);
        const q = this.SUBRULE2(this.param);
        this.ACTION(() => params.push(q));
      });
      this.OPTION2(() => this.CONSUME2(T.Comma));
    });
    this.CONSUME(T.RParen);
    let input: A.Expr | undefined;
    let output: A.Expr | undefined;
    this.OPTION3(() => {
      this.CONSUME(T.Colon);
      input = this.SUBRULE(this.expression);
      this.CONSUME(T.Arrow);
      output = this.SUBRULE2(this.expression);
    });
    const where: A.Expr[] = [];
    this.OPTION4(() => {
      this.CONSUME(Kw.where);
      const w = this.SUBRULE3(this.expression);
      this.ACTION(() => where.push(w));
      this.MANY2(() => {
        this.CONSUME3(T.Comma);
        const x = this.SUBRULE4(this.expression);
        this.ACTION(() => where.push(x));
      });
    });
    const items: SigItem[] = [];
    this.OPTION5(() => {
      this.CONSUME(T.LBrace);
      this.MANY3(() => {
        const it = this.OR2([{ ALT: () => this.SUBRULE(this.presetDecl) }, { ALT: () => this.SUBRULE(this.tensorDecl) }, { ALT: () => this.SUBRULE(this.field) }]);
        this.ACTION(() => items.push(it));
      });
      this.CONSUME(T.RBrace);
    });
    this.ACTION(() =>
      this.decls.push({ kind: 'Signature', sigKind: kind.image as A.SignatureKind, name: this.b.ident(name), params, input, output, where, items, range: this.from(kind) }),
    );
  });

  param = this.RULE('param', (): A.ParamDecl => {
    const name = this.CONSUME(T.Name);
    this.CONSUME(T.Colon);
    const type = this.SUBRULE(this.expression);
    let dflt: A.Expr | undefined;
    this.OPTION(() => {
      this.CONSUME(T.Equals);
      dflt = this.SUBRULE2(this.expression);
    });
    return this.ACTION(() => ({ kind: 'Param' as const, name: this.b.ident(name), type, default: dflt, range: this.from(name) }));
  });

  presetDecl = this.RULE('presetDecl', (): SigItem => {
    const first = this.CONSUME(Kw.preset);
    const name = this.CONSUME(T.StringLit);
    this.CONSUME(T.LParen);
    const args = this.SUBRULE(this.args);
    this.CONSUME(T.RParen);
    return this.ACTION(() => ({ kind: 'Preset' as const, name: this.b.string(name), args, range: this.from(first) }));
  });

  tensorDecl = this.RULE('tensorDecl', (): SigItem => {
    const first = this.CONSUME(Kw.tensor);
    const name = this.CONSUME(T.StringLit);
    this.CONSUME(T.LBracket);
    const dims = this.SUBRULE(this.exprList);
    this.CONSUME(T.RBracket);
    const loops: Array<{ var: A.Ident; bound: A.Expr }> = [];
    this.OPTION(() => {
      this.CONSUME(Kw.for);
      const l = this.SUBRULE(this.loopVar);
      this.ACTION(() => loops.push(l));
      this.MANY(() => {
        this.CONSUME(T.Comma);
        const m = this.SUBRULE2(this.loopVar);
        this.ACTION(() => loops.push(m));
      });
    });
    let cond: A.Expr | undefined;
    this.OPTION2(() => {
      this.CONSUME(Kw.if);
      cond = this.SUBRULE(this.expression);
    });
    return this.ACTION(() => ({ kind: 'Tensor' as const, name: this.b.string(name), dims, loops, cond, range: this.from(first) }));
  });

  loopVar = this.RULE('loopVar', () => {
    const v = this.CONSUME(T.Identifier);
    this.CONSUME(T.Lt);
    const bound = this.SUBRULE(this.expression);
    return this.ACTION(() => ({ var: this.b.ident(v), bound }));
  });

  args = this.RULE('args', (): A.Arg[] => {
    const out: A.Arg[] = [];
    this.OPTION(() => {
      const a = this.SUBRULE(this.arg);
      this.ACTION(() => out.push(a));
      this.MANY(() => {
        this.CONSUME(T.Comma);
        const b = this.SUBRULE2(this.arg);
        this.ACTION(() => out.push(b));
      });
      this.OPTION2(() => this.CONSUME2(T.Comma));
    });
    return out;
  });

  arg = this.RULE('arg', (): A.Arg => {
    const first = this.LA(1);
    let name: IToken | undefined;
    this.OPTION(() => {
      name = this.CONSUME(T.Name);
      this.CONSUME(T.Colon);
    });
    const value = this.SUBRULE(this.expression);
    return this.ACTION(() => ({ kind: 'Arg' as const, name: name ? this.b.ident(name) : undefined, value, range: this.from(first) }));
  });

  exprList = this.RULE('exprList', (): A.Expr[] => {
    const out: A.Expr[] = [];
    this.OPTION(() => {
      const e = this.SUBRULE(this.expression);
      this.ACTION(() => out.push(e));
      this.MANY(() => {
        this.CONSUME(T.Comma);
        const f = this.SUBRULE2(this.expression);
        this.ACTION(() => out.push(f));
      });
      this.OPTION2(() => this.CONSUME2(T.Comma));
    });
    return out;
  });

  // ---- expressions: as grammar.ts, operators read flat and given precedence by AstBuilder.climbItems ----

  private readonly binaryOps = ([T.Pipe, Kw.or, Kw.and, T.EqEq, T.NotEq, T.LtEq, T.GtEq, T.Lt, T.Gt, T.Plus, T.Minus, T.Star, T.Slash, T.Percent, Kw.x] as TokenType[]).map((tok) => ({
    ALT: () => this.CONSUME(tok),
  }));

  expression = this.RULE('expression', (): A.Expr => {
    // `not`s before the first operand, then (op not* operand)* after it: made only where there are any.
    let lead: ClimbItem[] | undefined;
    let rest: ClimbItem[] | undefined;
    let nots = 0;
    this.MANY(() => {
      const t = this.CONSUME(Kw.not);
      this.ACTION(() => (lead ??= []).push({ kind: 'not', tok: t }));
      nots++;
    });
    this.deeper(nots);
    const first = this.SUBRULE(this.power);
    this.depth -= nots;
    this.MANY2(() => {
      const op = this.OR(this.binaryOps);
      this.ACTION(() => (rest ??= []).push({ kind: 'op', tok: op }));
      let more = 0;
      this.MANY3(() => {
        const t = this.CONSUME2(Kw.not);
        this.ACTION(() => rest!.push({ kind: 'not', tok: t }));
        more++;
      });
      this.deeper(more);
      const operand = this.SUBRULE2(this.power);
      this.depth -= more;
      this.ACTION(() => rest!.push({ kind: 'operand', expr: operand }));
    });
    return this.ACTION(() => {
      if (!lead && !rest) return first; // the common case: one operand
      const items: ClimbItem[] = [...(lead ?? []), { kind: 'operand', expr: first }, ...(rest ?? [])];
      return this.b.climbItems(items, () => {
        throw GIVE_UP; // asked only for what is missing or too deep, which the fast path never reads
      });
    });
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

  /** A token atom's expression; a bracketed or `if` atom comes built. */
  private atom(a: IToken | A.Expr): A.Expr {
    if (!('tokenType' in a)) return a;
    const type = a.tokenType;
    if (type === T.NumberLit) return this.b.number(a);
    if (type === T.Quantity) return this.b.quantity(a);
    if (type === T.StringLit) return this.b.string(a);
    if (type === Kw.true) return { kind: 'Bool', value: true, range: this.b.tokRange(a) };
    if (type === Kw.false) return { kind: 'Bool', value: false, range: this.b.tokRange(a) };
    return { kind: 'Ref', name: a.image, range: this.b.tokRange(a) };
  }

  power = this.RULE('power', (): A.Expr => {
    const first = this.LA(1);
    this.deeper(1);
    const minus: IToken[] = [];
    this.MANY(() => {
      const m = this.CONSUME(T.Minus);
      this.ACTION(() => minus.push(m));
    });
    this.deeper(minus.length);
    const a = this.OR(this.atoms) as IToken | A.Expr;
    let e = this.ACTION(() => this.atom(a));
    this.MANY2(() => {
      const s = this.OR2(this.suffixes) as Suffix;
      this.ACTION(() => {
        const range = this.src.range(startOffsetOf(e.range), Math.max(s.end.startOffset + s.end.image.length, endOffsetOf(e.range)));
        if (s.kind === 'member') e = this.b.nest({ kind: 'Member', object: e, member: this.b.ident(s.name), range }, [e]);
        else if (s.kind === 'call') e = this.b.nest({ kind: 'Call', callee: e, args: s.args, range }, [e, ...s.args.map((x) => x.value)]);
        else e = this.b.nest({ kind: 'Index', object: e, items: s.items, range }, [e, ...s.items]);
        if (e.kind === 'Missing') throw GIVE_UP;
      });
    });
    this.OPTION(() => {
      const star = this.CONSUME(T.StarStar);
      const exp = this.SUBRULE(this.power);
      this.ACTION(() => {
        e = this.b.flat({ kind: 'Binary', op: '**', left: e, right: exp, opRange: this.b.tokRange(star), range: this.b.span(e, exp) });
      });
    });
    this.depth -= minus.length + 1;
    return this.ACTION(() => {
      if (!minus.length) return e;
      const end = endOffsetOf(this.from(first));
      for (let i = minus.length - 1; i >= 0; i--) {
        e = this.b.nest({ kind: 'Unary', op: '-', operand: e, range: this.src.range(minus[i].startOffset, end) }, [e]);
      }
      return e;
    });
  });

  memberSuffix = this.RULE('memberSuffix', (): Suffix => {
    this.CONSUME(T.Dot);
    const name = this.CONSUME(T.Name);
    return { kind: 'member', name, end: name };
  });

  callSuffix = this.RULE('callSuffix', (): Suffix => {
    this.CONSUME(T.LParen);
    const args = this.SUBRULE(this.args);
    const end = this.CONSUME(T.RParen);
    return { kind: 'call', args, end };
  });

  indexSuffix = this.RULE('indexSuffix', (): Suffix => {
    this.CONSUME(T.LBracket);
    const items = this.SUBRULE(this.exprList);
    const end = this.CONSUME(T.RBracket);
    return { kind: 'index', items, end };
  });

  parenExpr = this.RULE('parenExpr', (): A.Expr => {
    this.CONSUME(T.LParen);
    const e = this.SUBRULE(this.expression);
    this.CONSUME(T.RParen);
    return e;
  });

  listExpr = this.RULE('listExpr', (): A.Expr => {
    const first = this.CONSUME(T.LBracket);
    const items = this.SUBRULE(this.exprList);
    this.CONSUME(T.RBracket);
    return this.ACTION(() => this.b.nest({ kind: 'List', items, range: this.from(first) }, items));
  });

  objectExpr = this.RULE('objectExpr', (): A.Expr => {
    const first = this.CONSUME(T.LBrace);
    const fields: A.Field[] = [];
    this.MANY(() => {
      const f = this.SUBRULE(this.field);
      this.ACTION(() => fields.push(f));
    });
    this.CONSUME(T.RBrace);
    return this.ACTION(() => this.b.nest({ kind: 'Object', fields, range: this.from(first) }, fields.map((f) => f.value)));
  });

  ifExpr = this.RULE('ifExpr', (): A.Expr => {
    const first = this.CONSUME(Kw.if);
    const cond = this.SUBRULE(this.expression);
    this.CONSUME(Kw.then);
    const then = this.SUBRULE2(this.expression);
    this.CONSUME(Kw.else);
    const otherwise = this.SUBRULE3(this.expression);
    return this.ACTION(() => {
      const e: A.IfExpr = { kind: 'If', cond, then, else: otherwise, range: this.from(first) };
      return this.b.nest(e, [e.cond, e.then, e.else]);
    });
  });
}

let shared: FastGrammar | undefined;

/** The AST of a well-formed file, or undefined where parse() must read it with recovery. */
export function fastParse(source: SourceFile, tokens: IToken[]): A.FileNode | undefined {
  const g = (shared ??= new FastGrammar());
  const b = new AstBuilder(source);
  g.input = tokens; // resets the parser's state
  g.b = b;
  g.src = source;
  g.imports = [];
  g.decls = [];
  (g as unknown as { depth: number }).depth = 0;
  try {
    g.file();
  } catch (e) {
    if (e === GIVE_UP) return undefined;
    throw e;
  } finally {
    g.b = undefined as unknown as AstBuilder; // the grammar is shared: keep no file alive
    g.src = undefined as unknown as SourceFile;
  }
  if (g.errors.length || b.diagnostics.length) return undefined;
  const ast: A.FileNode = { kind: 'File', path: source.path, imports: g.imports, decls: g.decls, range: source.range(0, source.text.length) };
  g.imports = [];
  g.decls = [];
  return ast;
}
