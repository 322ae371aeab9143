// Names and where they are used: the index behind go to definition, find references and rename. Built
// from the checker's Program, so it resolves names exactly as the compiler does (file scopes, imports,
// components inside their model, a stage's train/freeze inside the stage's model).
import type * as A from '../ast/nodes.js';
import type { CheckResult } from '../check/passes.js';
import type { LoadedFile } from '../check/program.js';
import type { Range } from '../diagnostics/source.js';

export type SymKind = 'model' | 'dataset' | 'stage' | 'template' | 'constructor' | 'component';

export interface Sym {
  name: string;
  kind: SymKind;
  def: Range;
  refs: Range[];
  /** The declaration, for hover and outline. */
  decl: A.Decl | A.ComponentDecl;
  model?: A.ModelDecl;
}

const KIND: Record<A.Decl['kind'], SymKind> = { Model: 'model', Dataset: 'dataset', Stage: 'stage', Template: 'template', Signature: 'constructor' };

export class SymbolIndex {
  readonly syms: Sym[] = [];
  private readonly byDecl = new Map<A.Decl | A.ComponentDecl, Sym>();

  constructor(check: CheckResult) {
    const { program } = check;
    for (const f of program.files) for (const d of f.ast.decls) this.add(d.name.name, KIND[d.kind], d.name.range, d);
    for (const f of program.files) {
      if (f.isStdlib) continue;
      for (const d of f.ast.decls) {
        if (d.kind === 'Model') this.indexModel(d, f);
        else if (d.kind === 'Dataset') this.walkExpr(d.init, f, undefined);
        else if (d.kind === 'Stage') this.indexStage(d, f, check);
      }
    }
  }

  private add(name: string, kind: SymKind, def: Range, decl: A.Decl | A.ComponentDecl, model?: A.ModelDecl): Sym {
    const s: Sym = { name, kind, def, refs: [], decl, model };
    this.syms.push(s);
    this.byDecl.set(decl, s);
    return s;
  }

  private ref(decl: A.Decl | A.ComponentDecl | undefined, range: Range): void {
    const s = decl && this.byDecl.get(decl);
    if (s) s.refs.push(range);
  }

  private indexModel(m: A.ModelDecl, f: LoadedFile): void {
    const comps = new Map<string, A.ComponentDecl>();
    for (const c of m.components) if (c.name.name && !comps.has(c.name.name)) comps.set(c.name.name, c), this.add(c.name.name, 'component', c.name.range, c, m);
    for (const c of m.components) this.walkExpr(c.init, f, comps);
    for (const fl of m.flows) for (const id of fl.chain) this.ref(comps.get(id.name), id.range);
  }

  private indexStage(s: A.StageDecl, f: LoadedFile, check: CheckResult): void {
    const info = check.program.stages.find((x) => x.decl === s);
    const model = info?.model?.decl;
    const comps = new Map((model?.components ?? []).map((c) => [c.name.name, c]));
    for (const field of s.fields) {
      const v = field.value;
      const key = field.name.name;
      if ((key === 'model' || key === 'data' || key === 'after') && v.kind === 'Ref') this.ref(f.scope.get(v.name), v.range);
      else if ((key === 'train' || key === 'freeze') && v.kind === 'List') for (const it of v.items) if (it.kind === 'Ref') this.ref(comps.get(it.name), it.range);
      else this.walkExpr(v, f, undefined);
    }
  }

  /** Constructor calls, `component.param` references, `base: llama`, `template: "chat"`. */
  private walkExpr(e: A.Expr, f: LoadedFile, comps: Map<string, A.ComponentDecl> | undefined): void {
    switch (e.kind) {
      case 'Call':
        if (e.callee.kind === 'Ref') this.ref(f.scope.get(e.callee.name), e.callee.range);
        for (const a of e.args) {
          if (a.name?.name === 'template' && a.value.kind === 'String') {
            const t = [...f.scope.values()].find((d) => d.kind === 'Template' && d.name.name === (a.value as A.StringExpr).value);
            this.ref(t, a.value.range);
          } else this.walkExpr(a.value, f, comps);
        }
        return;
      case 'Ref': {
        const d = f.scope.get(e.name);
        if (d?.kind === 'Signature') this.ref(d, e.range);
        return;
      }
      case 'Member':
        if (e.object.kind === 'Ref' && comps) this.ref(comps.get(e.object.name), e.object.range);
        return;
      case 'Binary': {
        // A chain `a + b + c + ...` nests to the left as deep as it is long: walk that spine in a loop.
        const rights: A.Expr[] = [];
        let x: A.Expr = e;
        for (; x.kind === 'Binary'; x = x.left) rights.push(x.right);
        this.walkExpr(x, f, comps);
        for (let i = rights.length - 1; i >= 0; i--) this.walkExpr(rights[i], f, comps);
        return;
      }
      case 'Unary':
        this.walkExpr(e.operand, f, comps);
        return;
      case 'List':
        e.items.forEach((x) => this.walkExpr(x, f, comps));
        return;
      case 'Object':
        e.fields.forEach((x) => this.walkExpr(x.value, f, comps));
        return;
      case 'If':
        [e.cond, e.then, e.else].forEach((x) => this.walkExpr(x, f, comps));
        return;
      default:
        return;
    }
  }

  /** The symbol whose definition or a use covers (file, line, column), 1-based. */
  at(file: string, line: number, column: number): { sym: Sym; range: Range } | undefined {
    const inside = (r: Range) =>
      r.file === file && (r.start.line < line || (r.start.line === line && r.start.column <= column)) && (r.end.line > line || (r.end.line === line && r.end.column >= column));
    for (const s of this.syms) {
      if (inside(s.def)) return { sym: s, range: s.def };
      for (const r of s.refs) if (inside(r)) return { sym: s, range: r };
    }
    return undefined;
  }
}
