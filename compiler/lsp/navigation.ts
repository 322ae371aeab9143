// Names and where they are used: the index behind go to definition, find references and rename. Built
// from the checker's Program, so it resolves names exactly as the compiler does (file scopes, imports,
// components inside their model, a stage's train/freeze inside the stage's model).
import type * as A from '../ast/nodes.js';
import type { CheckResult } from '../check/passes.js';
import type { LoadedFile } from '../check/program.js';
import { findSignature } from '../check/components.js';
import type { Range } from '../diagnostics/source.js';

export type SymKind = 'model' | 'dataset' | 'stage' | 'template' | 'constructor' | 'component';

/** A name that declares nothing of the user's but has a meaning to show: a stage field (described by the
 * checker's STAGE_FIELDS; declared nowhere), a constructor's parameter named in a call, a preset named in
 * a call (both declared in the constructor's signature). */
export type NameUse =
  | { kind: 'stageField'; name: string; range: Range }
  | { kind: 'param'; sig: A.SignatureDecl; param: A.ParamDecl; range: Range }
  | { kind: 'preset'; sig: A.SignatureDecl; preset: A.PresetDecl; range: Range }
  /** `custom(...)`: a constructor built into the checker, declared in no file. */
  | { kind: 'custom'; range: Range };

/** The constructor kind a stage field's calls are looked up in (`schedule: linear` is not projector `linear`). */
const FIELD_CTOR_KIND: Record<string, A.SignatureKind> = { optimizer: 'optimizer', schedule: 'schedule', devices: 'device' };

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
  readonly uses: NameUse[] = [];
  private readonly byDecl = new Map<A.Decl | A.ComponentDecl, Sym>();

  constructor(check: CheckResult) {
    const { program } = check;
    for (const f of program.files) for (const d of f.ast.decls) this.add(d.name.name, KIND[d.kind], d.name.range, d);
    for (const f of program.files) {
      if (f.isStdlib) continue;
      for (const d of f.ast.decls) {
        if (d.kind === 'Model') this.indexModel(d, f);
        else if (d.kind === 'Dataset') this.walkExpr(d.init, f, undefined, 'data');
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
    for (const c of m.components) this.walkExpr(c.init, f, comps, c.role);
    for (const fl of m.flows) for (const id of fl.chain) this.ref(comps.get(id.name), id.range);
  }

  private indexStage(s: A.StageDecl, f: LoadedFile, check: CheckResult): void {
    const info = check.program.stages.find((x) => x.decl === s);
    const model = info?.model?.decl;
    const comps = new Map((model?.components ?? []).map((c) => [c.name.name, c]));
    for (const field of s.fields) {
      const v = field.value;
      const key = field.name.name;
      this.uses.push({ kind: 'stageField', name: key, range: field.name.range });
      if ((key === 'model' || key === 'data' || key === 'after') && v.kind === 'Ref') this.ref(f.scope.get(v.name), v.range);
      else if ((key === 'train' || key === 'freeze') && v.kind === 'List') {
        for (const it of v.items) if (it.kind === 'Ref') this.ref(comps.get(it.name), it.range);
      } else this.walkExpr(v, f, undefined, FIELD_CTOR_KIND[key]);
    }
  }

  /** The declaration a constructor name means where a `ctorKind` constructor is expected (as the checker
   * looks it up), else whatever the name means in the file's scope. */
  private ctor(name: string, f: LoadedFile, ctorKind: string | undefined): A.Decl | undefined {
    return (ctorKind && findSignature(name, ctorKind, f)) || f.scope.get(name);
  }

  /** Constructor calls and their parameter names and presets, `component.param` references, `base: llama`,
   * `template: "chat"`. `ctorKind`: the kind of constructor a call here builds (a component's role, `data`,
   * or a stage field's); a custom component's `base:` is one of its own role. */
  private walkExpr(e: A.Expr, f: LoadedFile, comps: Map<string, A.ComponentDecl> | undefined, ctorKind?: string): void {
    switch (e.kind) {
      case 'Call': {
        const callee = e.callee.kind === 'Ref' ? this.ctor(e.callee.name, f, ctorKind) : undefined;
        if (e.callee.kind === 'Ref') this.ref(callee, e.callee.range);
        if (e.callee.kind === 'Ref' && !callee && e.callee.name === 'custom') this.uses.push({ kind: 'custom', range: e.callee.range });
        const sig = callee?.kind === 'Signature' ? callee : undefined;
        for (const a of e.args) {
          if (sig && a.name) {
            const param = sig.params.find((p) => p.name.name === a.name!.name);
            if (param) this.uses.push({ kind: 'param', sig, param, range: a.name.range });
          }
          if (sig && a.name?.name === 'preset' && a.value.kind === 'String') {
            const wanted = a.value.value;
            const preset = sig.items.find((i): i is A.PresetDecl => i.kind === 'Preset' && i.name.value === wanted);
            if (preset) this.uses.push({ kind: 'preset', sig, preset, range: a.value.range });
          } else if (a.name?.name === 'template' && a.value.kind === 'String') {
            const t = [...f.scope.values()].find((d) => d.kind === 'Template' && d.name.name === (a.value as A.StringExpr).value);
            this.ref(t, a.value.range);
          } else this.walkExpr(a.value, f, comps, a.name?.name === 'base' && !sig ? ctorKind : undefined);
        }
        return;
      }
      case 'Ref': {
        const d = this.ctor(e.name, f, ctorKind);
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
        this.walkExpr(x, f, comps, ctorKind); // `2 x 8 x gpu(...)`: the device is an operand
        for (let i = rights.length - 1; i >= 0; i--) this.walkExpr(rights[i], f, comps, ctorKind);
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
    const inside = covers(file, line, column);
    for (const s of this.syms) {
      if (inside(s.def)) return { sym: s, range: s.def };
      for (const r of s.refs) if (inside(r)) return { sym: s, range: r };
    }
    return undefined;
  }

  /** The stage field, parameter or preset name at (file, line, column), 1-based. */
  useAt(file: string, line: number, column: number): NameUse | undefined {
    const inside = covers(file, line, column);
    return this.uses.find((u) => inside(u.range));
  }
}

function covers(file: string, line: number, column: number): (r: Range) => boolean {
  return (r) =>
    r.file === file && (r.start.line < line || (r.start.line === line && r.start.column <= column)) && (r.end.line > line || (r.end.line === line && r.end.column >= column));
}
