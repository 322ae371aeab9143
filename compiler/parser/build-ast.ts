// CST -> typed AST. Error recovery can leave any child missing, so every accessor tolerates absence and
// yields a `Missing` expression or skips the declaration rather than throwing.
import type { CstElement, CstNode, IToken } from 'chevrotain';
import type * as A from '../ast/nodes.js';
import { M } from '../diagnostics/catalogue.js';
import type { Diagnostic } from '../diagnostics/diagnostic.js';
import { endOffsetOf, startOffsetOf, type Range, type SourceFile } from '../diagnostics/source.js';
import { MAX_NESTING } from './grammar.js';

type Children = Record<string, CstElement[] | undefined>;

/** The flat `not* power (op not* power)*` list of an expression, operands already built. */
export type ClimbItem = { kind: 'not'; tok: IToken } | { kind: 'operand'; expr: A.Expr } | { kind: 'op'; tok: IToken };

/** Binding strength of the binary operators (all left-associative; `**` is handled in the grammar). */
const PRECEDENCE: Record<string, number> = { '|': 0, or: 1, and: 2, '==': 4, '!=': 4, '<': 4, '<=': 4, '>': 4, '>=': 4, '+': 5, '-': 5, '*': 6, '/': 6, '%': 6, x: 6 };
/** `not` takes everything that binds tighter than `and`. */
const NOT_PRECEDENCE = 3;

/** No children under a key (read-only, like every array toks() and nodes() return). */
const NONE: readonly CstElement[] = Object.freeze([]);

function isToken(e: CstElement): e is IToken {
  return (e as IToken).image !== undefined;
}

function ok(n: number | undefined): n is number {
  return n !== undefined && Number.isFinite(n);
}

export class AstBuilder {
  private lastGoodOffset = 0;
  /** How many levels each expression nests (absent: 0). The grammar bounds nesting through brackets and
   * prefix operators; suffix chains (`a.b.c`, `f(x)(y)`) it reads flat, so they are bounded here. The left
   * operand of a binary operator is no deeper (long chains `1 + 1 + ...` are walked in loops). */
  private readonly levels = new Map<A.Expr, number>();
  /** PIPE1014 where the grammar's count cannot see the nesting: suffix chains, and `not`s that each take
   * the rest of a chain (see climb). */
  readonly diagnostics: Diagnostic[] = [];
  constructor(private readonly src: SourceFile) {}

  /** How many levels below `e` its deepest atom is: 0 for an atom, -1 for nothing (what the parser
   * skipped as too deep is Missing, and must not count as a level once more). */
  private level(e: A.Expr): number {
    return e.kind === 'Missing' ? -1 : (this.levels.get(e) ?? 0);
  }

  /** `e`, one level above the deepest of `inner`; past MAX_NESTING, reported and replaced by Missing. */
  nest(e: A.Expr, inner: Iterable<A.Expr>): A.Expr {
    let deepest = -1;
    for (const x of inner) deepest = Math.max(deepest, this.level(x));
    if (deepest + 1 > MAX_NESTING) {
      this.diagnostics.push({ code: M.NestingTooDeep.code, severity: M.NestingTooDeep.severity, message: M.NestingTooDeep.format(MAX_NESTING), range: e.range });
      return { kind: 'Missing', range: e.range };
    }
    this.levels.set(e, deepest + 1);
    return e;
  }

  /** A binary node is as deep as its deeper operand. */
  flat(e: A.BinaryExpr): A.Expr {
    const l = Math.max(this.level(e.left), this.level(e.right));
    if (l > 0) this.levels.set(e, l);
    return e;
  }

  // ---- ranges ----

  tokRange(t: IToken | undefined): Range {
    if (t && ok(t.startOffset) && !t.isInsertedInRecovery) {
      const end = ok(t.endOffset) ? t.endOffset + 1 : t.startOffset + t.image.length;
      this.lastGoodOffset = end;
      return this.src.lineRange(t.startOffset, end); // a token holds no line break
    }
    return this.src.range(this.lastGoodOffset, this.lastGoodOffset);
  }

  private nodeRange(n: CstNode | undefined): Range {
    const loc = n?.location;
    if (loc && ok(loc.startOffset) && ok(loc.endOffset)) {
      this.lastGoodOffset = Math.max(this.lastGoodOffset, loc.startOffset);
      return this.src.range(loc.startOffset, loc.endOffset + 1);
    }
    if (loc && ok(loc.startOffset)) return this.src.range(loc.startOffset, loc.startOffset);
    return this.src.range(this.lastGoodOffset, this.lastGoodOffset);
  }

  // ---- child access ----

  private tok(c: Children, key: string, i = 0): IToken | undefined {
    const e = c[key]?.[i];
    return e && isToken(e) && !e.isInsertedInRecovery ? e : undefined;
  }
  // A key of `children` holds tokens only or nodes only (a token name or label, or a rule name or label), so
  // the CST's own array is handed out, not copied, where nothing is to be left out. Callers only read it.
  private toks(c: Children, key: string): IToken[] {
    const all = c[key];
    if (!all) return NONE as IToken[];
    for (const e of all) if (!isToken(e) || e.isInsertedInRecovery) return all.filter((e): e is IToken => isToken(e) && !e.isInsertedInRecovery);
    return all as IToken[];
  }
  private node(c: Children, key: string, i = 0): CstNode | undefined {
    const e = c[key]?.[i];
    return e && !isToken(e) ? e : undefined;
  }
  private nodes(c: Children, key: string): CstNode[] {
    const all = c[key];
    if (!all) return NONE as CstNode[];
    for (const e of all) if (isToken(e)) return all.filter((e): e is CstNode => !isToken(e));
    return all as CstNode[];
  }

  ident(t: IToken | undefined): A.Ident {
    return { kind: 'Ident', name: t?.image ?? '', range: this.tokRange(t) };
  }

  string(t: IToken | undefined): A.StringExpr {
    return { kind: 'String', value: t ? unquote(t.image) : '', range: this.tokRange(t) };
  }

  // ---- declarations ----

  private readonly imports: A.ImportDecl[] = [];
  private readonly decls: A.Decl[] = [];

  /** The whole file's AST from its CST. */
  file(cst: CstNode): A.FileNode {
    // Children of `file` are grouped by rule name; restore source order so the AST reads like the file.
    const all = Object.values(cst.children)
      .flat()
      .filter((e): e is CstNode => !!e && !isToken(e))
      .sort((a, b) => (a.location?.startOffset ?? 0) - (b.location?.startOffset ?? 0));
    for (const n of all) this.topLevel(n);
    return this.finish();
  }

  /** One top-level declaration, in source order: parse() hands each over as soon as it is parsed (see
   * PipeGrammar.onTopLevel), so its CST is garbage before the next one is read. */
  topLevel(n: CstNode): void {
    switch (n.name) {
      case 'importDecl':
        this.imports.push({ kind: 'Import', path: this.string(this.tok(n.children, 'StringLit')), range: this.nodeRange(n) });
        break;
      case 'modelDecl':
        this.decls.push(this.model(n));
        break;
      case 'datasetDecl':
        this.decls.push({ kind: 'Dataset', name: this.ident(this.tok(n.children, 'Identifier')), init: this.expr(this.node(n.children, 'expression')), range: this.nodeRange(n) });
        break;
      case 'stageDecl':
        this.decls.push({ kind: 'Stage', name: this.ident(this.tok(n.children, 'Identifier')), fields: this.nodes(n.children, 'field').map((f) => this.field(f)), range: this.nodeRange(n) });
        break;
      case 'templateDecl':
        this.decls.push({ kind: 'Template', name: this.ident(this.tok(n.children, 'Identifier')), fields: this.nodes(n.children, 'field').map((f) => this.field(f)), range: this.nodeRange(n) });
        break;
      case 'signatureDecl':
        this.decls.push(this.signature(n));
        break;
    }
  }

  /** The file of the declarations handed over so far. */
  finish(): A.FileNode {
    return { kind: 'File', path: this.src.path, imports: this.imports, decls: this.decls, range: this.src.range(0, this.src.text.length) };
  }

  private model(n: CstNode): A.ModelDecl {
    const c = n.children;
    const components: A.ComponentDecl[] = [];
    const flows: A.FlowDecl[] = [];
    for (const m of this.nodes(c, 'componentDecl')) {
      const mc = m.children;
      const roleTok = this.tok(mc, 'role');
      const weights = this.tok(mc, 'StringLit');
      components.push({
        kind: 'Component',
        role: (roleTok?.image ?? 'encoder') as A.Role,
        roleRange: this.tokRange(roleTok),
        name: this.ident(this.tok(mc, 'Identifier')),
        init: this.expr(this.node(mc, 'expression')),
        weights: weights ? this.string(weights) : undefined,
        range: this.nodeRange(m),
      });
    }
    for (const f of this.nodes(c, 'flowDecl')) {
      const at = this.tok(f.children, 'StringLit');
      flows.push({
        kind: 'Flow',
        chain: this.toks(f.children, 'Identifier').map((t) => this.ident(t)),
        at: at ? this.string(at) : undefined,
        range: this.nodeRange(f),
      });
    }
    const adapters: A.AdapterDecl[] = this.nodes(c, 'adapterDecl').map((a) => ({
      kind: 'Adapter',
      component: this.ident(this.tok(a.children, 'component')),
      name: this.ident(this.tok(a.children, 'adapter')),
      init: this.expr(this.node(a.children, 'expression')),
      range: this.nodeRange(a),
    }));
    return { kind: 'Model', name: this.ident(this.tok(c, 'Identifier')), components, flows, adapters, range: this.nodeRange(n) };
  }

  private field(n: CstNode): A.Field {
    const c = n.children;
    return { kind: 'Field', name: this.ident(this.tok(c, 'Name')), value: this.expr(this.node(c, 'expression')), range: this.nodeRange(n) };
  }

  private signature(n: CstNode): A.SignatureDecl {
    const c = n.children;
    const items: A.SignatureItem[] = [];
    const itemNodes = [...this.nodes(c, 'presetDecl'), ...this.nodes(c, 'tensorDecl'), ...this.nodes(c, 'field')].sort(
      (a, b) => (a.location?.startOffset ?? 0) - (b.location?.startOffset ?? 0),
    );
    for (const it of itemNodes) {
      const ic = it.children;
      if (it.name === 'presetDecl') {
        items.push({ kind: 'Preset', name: this.string(this.tok(ic, 'StringLit')), args: this.args(this.node(ic, 'args')), range: this.nodeRange(it) });
      } else if (it.name === 'tensorDecl') {
        const cond = this.node(ic, 'cond');
        items.push({
          kind: 'Tensor',
          name: this.string(this.tok(ic, 'StringLit')),
          dims: this.exprList(this.node(ic, 'exprList')),
          loops: this.nodes(ic, 'loopVar').map((lv) => ({ var: this.ident(this.tok(lv.children, 'Identifier')), bound: this.expr(this.node(lv.children, 'expression')) })),
          cond: cond ? this.expr(cond) : undefined,
          range: this.nodeRange(it),
        });
      } else {
        items.push(this.field(it));
      }
    }
    const input = this.node(c, 'input');
    const output = this.node(c, 'output');
    const kindTok = this.tok(c, 'sigKind');
    return {
      kind: 'Signature',
      sigKind: (kindTok?.image ?? 'encoder') as A.SignatureKind,
      name: this.ident(this.tok(c, 'Identifier')),
      params: this.nodes(c, 'param').map((p) => {
        const dflt = this.node(p.children, 'default');
        return {
          kind: 'Param' as const,
          name: this.ident(this.tok(p.children, 'Name')),
          type: this.expr(this.node(p.children, 'type')),
          default: dflt ? this.expr(dflt) : undefined,
          range: this.nodeRange(p),
        };
      }),
      input: input ? this.expr(input) : undefined,
      output: output ? this.expr(output) : undefined,
      where: this.nodes(c, 'where').map((w) => this.expr(w)),
      items,
      range: this.nodeRange(n),
    };
  }

  private args(n: CstNode | undefined): A.Arg[] {
    if (!n) return [];
    return this.nodes(n.children, 'arg').map((a) => {
      const nameTok = this.tok(a.children, 'Name');
      return { kind: 'Arg', name: nameTok ? this.ident(nameTok) : undefined, value: this.expr(this.node(a.children, 'expression')), range: this.nodeRange(a) };
    });
  }

  private exprList(n: CstNode | undefined): A.Expr[] {
    return n ? this.nodes(n.children, 'expression').map((e) => this.expr(e)) : [];
  }

  // ---- expressions ----

  expr(n: CstNode | undefined): A.Expr {
    if (!n) return { kind: 'Missing', range: this.nodeRange(undefined) };
    switch (n.name) {
      case 'expression':
        return this.climb(n);
      case 'power':
        return this.power(n);
      default:
        return { kind: 'Missing', range: this.nodeRange(n) };
    }
  }

  span(a: A.Expr | { range: Range }, b: A.Expr): Range {
    return this.src.range(startOffsetOf(a.range), endOffsetOf(b.range)); // ends no earlier than it starts
  }

  /** Precedence climbing over the flat `not* power (op not* power)*` list of an `expression`. */
  private climb(n: CstNode): A.Expr {
    const c = n.children;
    const operands = this.nodes(c, 'power');
    if (operands.length === 1 && !c['Kw_not'] && !c['op']) return this.power(operands[0]); // the common case: one operand
    const nots = this.toks(c, 'Kw_not');
    if (operands.length === 1 && !nots.length) return this.power(operands[0]);
    const items: ClimbItem[] = [];
    const ops = (c['op'] ?? []).filter(isToken);
    let k = 0; // the next `not`; those before op i belong to operand i
    operands.forEach((o, i) => {
      const before = i < ops.length ? ops[i].startOffset : Infinity;
      for (; k < nots.length && nots[k].startOffset < before; k++) items.push({ kind: 'not', tok: nots[k] });
      items.push({ kind: 'operand', expr: this.power(o) });
      if (i < ops.length) items.push({ kind: 'op', tok: ops[i] });
    });
    return this.climbItems(items, () => this.nodeRange(n));
  }

  /** Precedence climbing over an expression's items; `whole` is the expression's range (for what is
   * missing or too deep in it). */
  climbItems(items: readonly ClimbItem[], whole: () => Range): A.Expr {
    let at = 0;
    // A `not` takes what follows up to a looser operator, `not`s in it included: `not a + not b + ...`
    // nests once per `not` although each operand has one. Past the limit the rest is one PIPE1014.
    let open = 0;
    const parse = (minPrec: number): A.Expr => {
      let left: A.Expr;
      const first = items[at++];
      if (!first) return { kind: 'Missing', range: whole() };
      if (first.kind === 'not') {
        if (open === MAX_NESTING) {
          const range = this.src.range(first.tok.startOffset, endOffsetOf(whole()));
          at = items.length;
          this.diagnostics.push({ code: M.NestingTooDeep.code, severity: M.NestingTooDeep.severity, message: M.NestingTooDeep.format(MAX_NESTING), range });
          return { kind: 'Missing', range };
        }
        open++;
        const operand = parse(NOT_PRECEDENCE);
        open--;
        left = this.nest({ kind: 'Unary', op: 'not', operand, range: this.span({ range: this.tokRange(first.tok) }, operand) }, [operand]);
      } else if (first.kind === 'operand') left = first.expr;
      else left = { kind: 'Missing', range: this.tokRange(first.tok) };
      for (;;) {
        const next = items[at];
        if (!next || next.kind !== 'op') return left;
        const prec = PRECEDENCE[next.tok.image] ?? 0;
        if (prec < minPrec) return left;
        at++;
        const right = parse(prec + 1);
        left = this.flat({ kind: 'Binary', op: next.tok.image as A.BinaryOp, left, right, opRange: this.tokRange(next.tok), range: this.span(left, right) });
      }
    };
    return parse(0);
  }

  /** One operand: `-`s, an atom, its suffixes, `** power`. */
  private power(n: CstNode): A.Expr {
    const c = n.children;
    let e = this.postfix(n);
    if (c['StarStar']) {
      const star = this.tok(c, 'StarStar');
      const exp = this.expr(this.node(c, 'power'));
      e = this.flat({ kind: 'Binary', op: '**', left: e, right: exp, opRange: this.tokRange(star), range: this.span(e, exp) });
    }
    const minus = this.toks(c, 'Minus');
    if (!minus.length) return e;
    const end = endOffsetOf(this.nodeRange(n));
    for (let i = minus.length - 1; i >= 0; i--) {
      e = this.nest({ kind: 'Unary', op: '-', operand: e, range: this.src.range(minus[i].startOffset, end) }, [e]);
    }
    return e;
  }

  /** The atom of a `power` node and its suffixes, applied from the left. */
  private postfix(n: CstNode): A.Expr {
    let e = this.primary(n);
    const c = n.children;
    if (!c['memberSuffix'] && !c['callSuffix'] && !c['indexSuffix']) return e; // the common case: no suffix
    const suffixes = [...this.nodes(n.children, 'memberSuffix'), ...this.nodes(n.children, 'callSuffix'), ...this.nodes(n.children, 'indexSuffix')].sort(
      (a, b) => (a.location?.startOffset ?? 0) - (b.location?.startOffset ?? 0),
    );
    for (const s of suffixes) {
      const range = this.src.range(startOffsetOf(e.range), Math.max(endOffsetOf(this.nodeRange(s)), endOffsetOf(e.range)));
      if (s.name === 'memberSuffix') e = this.nest({ kind: 'Member', object: e, member: this.ident(this.tok(s.children, 'Name')), range }, [e]);
      else if (s.name === 'callSuffix') {
        const args = this.args(this.node(s.children, 'args'));
        e = this.nest({ kind: 'Call', callee: e, args, range }, [e, ...args.map((a) => a.value)]);
      } else {
        const items = this.exprList(this.node(s.children, 'exprList'));
        e = this.nest({ kind: 'Index', object: e, items, range }, [e, ...items]);
      }
      if (e.kind === 'Missing') {
        // The rest of the chain is as deep or deeper: one report for the chain, and the whole chain is missing.
        e.range = this.src.range(e.range.start.offset, this.nodeRange(n).end.offset);
        break;
      }
    }
    return e;
  }

  number(t: IToken): A.Expr {
    return { kind: 'Number', value: Number(t.image), text: t.image, range: this.tokRange(t) };
  }

  quantity(t: IToken): A.Expr {
    const m = /^([0-9.]+(?:[eE][+-]?\d+)?)([A-Za-z]+)$/.exec(t.image);
    return { kind: 'Quantity', value: Number(m?.[1] ?? NaN), unit: m?.[2] ?? '', text: t.image, range: this.tokRange(t) };
  }

  /** The atom of a `power` node: a literal, a name, or a bracketed or `if` expression. */
  private primary(n: CstNode): A.Expr {
    const c = n.children;
    let t: IToken | undefined;
    if ((t = this.tok(c, 'NumberLit'))) return this.number(t);
    if ((t = this.tok(c, 'Quantity'))) return this.quantity(t);
    if ((t = this.tok(c, 'StringLit'))) return this.string(t);
    if ((t = this.tok(c, 'Kw_true'))) return { kind: 'Bool', value: true, range: this.tokRange(t) };
    if ((t = this.tok(c, 'Kw_false'))) return { kind: 'Bool', value: false, range: this.tokRange(t) };
    if ((t = this.tok(c, 'Identifier'))) return { kind: 'Ref', name: t.image, range: this.tokRange(t) };
    let s: CstNode | undefined;
    if ((s = this.node(c, 'parenExpr'))) return this.expr(this.node(s.children, 'expression'));
    if ((s = this.node(c, 'listExpr'))) {
      const items = this.exprList(this.node(s.children, 'exprList'));
      return this.nest({ kind: 'List', items, range: this.nodeRange(s) }, items);
    }
    if ((s = this.node(c, 'objectExpr'))) {
      const fields = this.nodes(s.children, 'field').map((f) => this.field(f));
      return this.nest({ kind: 'Object', fields, range: this.nodeRange(s) }, fields.map((f) => f.value));
    }
    if ((s = this.node(c, 'ifExpr'))) {
      const e: A.IfExpr = {
        kind: 'If',
        cond: this.expr(this.node(s.children, 'cond')),
        then: this.expr(this.node(s.children, 'then')),
        else: this.expr(this.node(s.children, 'else')),
        range: this.nodeRange(s),
      };
      return this.nest(e, [e.cond, e.then, e.else]);
    }
    return { kind: 'Missing', range: this.nodeRange(n) };
  }
}

const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\', '0': '\0' };

/** Strip quotes and resolve escapes; unknown escapes are kept literally (the lexer pass reports them). */
export function unquote(image: string): string {
  const body = image.startsWith('"') ? image.slice(1, image.endsWith('"') && image.length > 1 ? -1 : undefined) : image;
  return body.replace(/\\(.)/g, (_, ch: string) => ESCAPES[ch] ?? `\\${ch}`);
}
