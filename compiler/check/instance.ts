// Binding a constructor call to its signature: positional and named arguments, presets, defaults that
// refer to other parameters, type checks, `where` constraints. Shared by components, datasets,
// optimizers, schedules and devices. Parameter values are computed lazily so that a default such as
// `kv_heads: int = heads` or an argument such as `in: vision.hidden` is evaluated on first use, and a
// cycle is reported instead of looping.
import type * as A from '../ast/nodes.js';
import { M } from '../diagnostics/catalogue.js';
import type { Range } from '../diagnostics/source.js';
import type { LoadedFile, ParamType, Reporter, SigInfo } from './program.js';
import { coerceRoles } from './roles.js';
import { closest, didYouMean, suggestName } from './suggest.js';
import { evaluate, show, typeName, type Scope, type Value } from './values.js';

type Source =
  | { kind: 'expr'; expr: A.Expr; scope: 'sig' | 'call'; range: Range }
  | { kind: 'value'; value: Value; range: Range };

export interface CallContext {
  reporter: Reporter;
  /** Parameters being evaluated right now, across instances, for cycle messages: vision.hidden -> proj.out */
  stack?: string[];
  /** Names in the caller's scope: `vision.hidden`, dataset names, words. */
  callScope: Scope;
  templates: Set<string>;
}

export class Instance {
  readonly values = new Map<string, Value>();
  readonly ranges = new Map<string, Range>();
  private readonly sources = new Map<string, Source>();
  private readonly busy = new Set<string>();
  private readonly failed = new Set<string>();
  /** Parameters that a misspelled argument most likely meant: reported as that misspelling, not also missing. */
  readonly meant = new Set<string>();
  ok = true;

  constructor(
    readonly sig: SigInfo,
    readonly callRange: Range,
    private readonly ctx: CallContext,
    readonly label: string = sig.name,
  ) {
    for (const [name, p] of sig.params) if (p.decl.default) this.sources.set(name, { kind: 'expr', expr: p.decl.default, scope: 'sig', range: p.decl.default.range });
  }

  setExpr(name: string, expr: A.Expr, scope: 'sig' | 'call', range: Range): void {
    this.sources.set(name, { kind: 'expr', expr, scope, range });
  }

  setValue(name: string, value: Value, range: Range): void {
    this.sources.set(name, { kind: 'value', value, range });
  }

  has(name: string): boolean {
    return this.sources.has(name);
  }

  /** The scope in which defaults, presets, constraints and shapes see the parameters. */
  sigScope(free: 'symbol' | 'error', extra?: Map<string, Value>): Scope {
    return {
      name: (ref) => {
        const x = extra?.get(ref.name);
        if (x) return x;
        if (this.sig.params.has(ref.name)) return this.get(ref.name);
        if (free === 'symbol') return { t: 'sym', name: ref.name };
        this.ctx.reporter.report(M.UnknownName, ref.range, 'parameter', ref.name).hint = didYouMean(ref.name, this.sig.params.keys());
        return undefined;
      },
      error: (range, why) => this.ctx.reporter.evalError(range, why),
    };
  }

  get(name: string): Value | undefined {
    const done = this.values.get(name);
    if (done) return done;
    if (this.failed.has(name)) return undefined;
    const src = this.sources.get(name);
    const info = this.sig.params.get(name);
    if (!src || !info) return undefined;
    const stack = (this.ctx.stack ??= []);
    const key = `${this.label}.${name}`;
    if (this.busy.has(name)) {
      this.ctx.reporter.report(M.ReferenceCycle, src.range, [...stack.slice(stack.indexOf(key)), key].join(' -> '));
      this.failed.add(name);
      this.ok = false;
      return undefined;
    }
    this.busy.add(name);
    stack.push(key);
    let v: Value | undefined;
    if (src.kind === 'value') v = src.value;
    else v = evaluate(src.expr, src.scope === 'sig' ? this.sigScope('error') : this.ctx.callScope);
    stack.pop();
    this.busy.delete(name);
    if (v) v = coerce(v, info.type, `parameter \`${name}\` of \`${this.sig.name}\``, src.range, this.ctx);
    if (!v) {
      this.failed.add(name);
      this.ok = false;
      return undefined;
    }
    this.values.set(name, v);
    this.ranges.set(name, src.range);
    return v;
  }

  /** Evaluate every parameter and then the `where` constraints. */
  finish(): boolean {
    for (const name of this.sig.order) {
      if (!this.sources.has(name)) {
        this.ok = false;
        if (this.meant.has(name)) continue;
        const d = this.ctx.reporter.report(M.MissingParameter, this.callRange, name, this.sig.name);
        d.hint = `add \`${name}: ${typeWord(this.sig.params.get(name)!.type)}\` to the call`;
        continue;
      }
      this.get(name);
    }
    if (!this.ok) return false;
    for (const cond of this.sig.decl.where) {
      const v = evaluate(cond, this.sigScope('error'));
      if (!v) {
        this.ok = false;
        continue;
      }
      if (v.t === 'bool' && !v.v) {
        const used = [...new Set(namesIn(cond))].filter((n) => this.values.has(n));
        const d = this.ctx.reporter.report(M.ConstraintFailed, this.callRange, this.sig.name, `\`${exprText(cond)}\``, used.map((n) => `${n} = ${show(this.values.get(n))}`).join(', ') || 'it does not hold');
        d.related = [{ message: 'the constraint is declared here', range: cond.range }];
        this.ok = false;
      }
    }
    return this.ok;
  }
}

/** Bind `ctor(args)`: positional arguments in declaration order, then named ones; `preset:` first. */
export function bindCall(sig: SigInfo, call: A.CallExpr, ctx: CallContext, label?: string): Instance {
  const inst = new Instance(sig, call.range, ctx, label);
  const seen = new Set<string>();
  let positional = 0;
  const presetArg = call.args.find((a) => a.name?.name === 'preset');
  if (presetArg) {
    const pv = evaluate(presetArg.value, ctx.callScope);
    if (pv && pv.t === 'str') {
      const preset = sig.presets.get(pv.v);
      if (!preset) {
        const d = ctx.reporter.report(M.UnknownPreset, presetArg.value.range, pv.v, sig.name);
        const near = closest(pv.v, sig.presets.keys());
        d.hint = near ? `did you mean "${near}"?` : sig.presets.size ? `known presets: ${[...sig.presets.keys()].map((p) => `"${p}"`).join(', ')}` : `\`${sig.name}\` has no presets`;
        if (near) d.fixes = [{ title: `Use "${near}"`, range: presetArg.value.range, newText: JSON.stringify(near) }];
        inst.ok = false;
      } else {
        for (const a of preset.args) {
          if (!a.name || !sig.params.has(a.name.name)) {
            if (a.name) ctx.reporter.report(M.UnknownParameter, a.name.range, a.name.name, sig.name);
            continue;
          }
          inst.setExpr(a.name.name, a.value, 'sig', a.value.range);
        }
      }
    } else if (pv) ctx.reporter.report(M.TypeMismatch, presetArg.value.range, '`preset`', 'a string', typeName(pv));
  }
  for (const a of call.args) {
    if (a === presetArg) continue;
    let name: string;
    if (!a.name) {
      if (positional >= sig.order.length) {
        ctx.reporter.report(M.PositionalArgument, a.range, sig.name, sig.order.length);
        inst.ok = false;
        continue;
      }
      name = sig.order[positional++];
    } else name = a.name.name;
    if (!sig.params.has(name)) {
      const d = ctx.reporter.report(M.UnknownParameter, a.name?.range ?? a.range, name, sig.name);
      const near = suggestName(d, name, sig.params.keys(), a.name?.range);
      if (near) {
        inst.meant.add(near);
      } else d.hint = `\`${sig.name}\` takes ${sig.order.join(', ') || 'no parameters'}`;
      inst.ok = false;
      continue;
    }
    if (seen.has(name)) {
      ctx.reporter.report(M.DuplicateArgument, a.name?.range ?? a.range, name);
      inst.ok = false;
      continue;
    }
    seen.add(name);
    inst.setExpr(name, a.value, 'call', a.value.range);
  }
  return inst;
}

export function typeWord(t: ParamType): string {
  return t.k === 'enum' ? t.values.map((v) => JSON.stringify(v)).join(' | ') : t.k === 'Template' ? 'a template name' : t.k === 'Roles' ? 'roles such as { user: "ユーザー", assistant: "システム" }' : t.k === 'Mixture' ? 'datasets with their shares, such as { llava: 0.7, ja: 0.3 }' : t.k === 'strings' ? 'a string or a list of strings' : t.k;
}

/** Check a value against a parameter type, converting words and strings where the type says so. */
export function coerce(v: Value, type: ParamType, what: string, range: Range, ctx: { reporter: Reporter; templates: Set<string> }): Value | undefined {
  const mismatch = (): undefined => {
    ctx.reporter.report(M.TypeMismatch, range, what, typeWord(type), typeName(v));
    return undefined;
  };
  switch (type.k) {
    case 'int':
      if (v.t === 'num' && Number.isSafeInteger(v.v)) return v;
      if (v.t === 'num' && Number.isInteger(v.v)) {
        ctx.reporter.report(M.OutOfRange, range, what, `at most ${Number.MAX_SAFE_INTEGER}`, String(v.v));
        return undefined;
      }
      return mismatch();
    case 'float':
      return v.t === 'num' ? v : mismatch();
    case 'string':
    case 'path':
      return v.t === 'str' ? v : mismatch();
    case 'strings': {
      // a string, or a list of strings or bare words (`targets: [q_proj, v_proj]`); lowered as a list
      const one = (x: Value): Value | undefined => (x.t === 'str' ? x : x.t === 'word' ? { t: 'str', v: x.name } : undefined);
      if (v.t !== 'list') {
        const s = one(v);
        return s ? { t: 'list', items: [s] } : mismatch();
      }
      const items: Value[] = [];
      for (const x of v.items) {
        const s = one(x);
        if (!s) return mismatch();
        items.push(s);
      }
      return { t: 'list', items };
    }
    case 'bool':
      return v.t === 'bool' ? v : mismatch();
    case 'size':
      if (v.t === 'size') return v;
      if (v.t === 'num') return { t: 'size', bytes: v.v };
      return mismatch();
    case 'Template': {
      const name = v.t === 'str' || v.t === 'word' ? (v.t === 'str' ? v.v : v.name) : undefined;
      if (name === undefined) return mismatch();
      if (!ctx.templates.has(name)) {
        const d = ctx.reporter.report(M.UnknownName, range, 'template', name);
        d.hint = didYouMean(name, ctx.templates, (s) => `"${s}"`) ?? `known templates: ${[...ctx.templates].join(', ')}`;
        return undefined;
      }
      return { t: 'str', v: name };
    }
    case 'Roles':
      return coerceRoles(v, what, range, ctx.reporter);
    case 'Mixture': {
      // dataset name -> a positive number; which names are datasets is checked with the other datasets (stages.ts)
      if (v.t !== 'obj') return mismatch();
      for (const [k, x] of v.fields) {
        if (x.t !== 'num') return (ctx.reporter.report(M.TypeMismatch, range, `\`${k}\` in ${what}`, 'a number', typeName(x)), undefined);
        if (!(x.v > 0) || !Number.isFinite(x.v)) return (ctx.reporter.report(M.OutOfRange, range, `\`${k}\` in ${what}`, '> 0', String(x.v)), undefined);
      }
      return v;
    }
    case 'enum': {
      const name = v.t === 'str' ? v.v : v.t === 'word' ? v.name : undefined;
      if (name === undefined) return mismatch();
      if (!type.values.includes(name)) {
        const d = ctx.reporter.report(M.NotInEnum, range, what, type.values.map((x) => JSON.stringify(x)).join(' | '), JSON.stringify(name));
        const near = closest(name, type.values);
        if (near) {
          d.hint = `did you mean "${near}"?`;
          d.fixes = [{ title: `Use "${near}"`, range, newText: v.t === 'word' ? near : JSON.stringify(near) }];
        }
        return undefined;
      }
      return { t: 'str', v: name };
    }
  }
}

/** The names an expression reads (constructor names of calls and the shape of `Tensor[...]` aside), in
 * order. A loop over a stack, so a long chain `a + b + c + ...` (as deep as it is long) costs no stack. */
export function namesIn(root: A.Expr): string[] {
  const names: string[] = [];
  const todo: A.Expr[] = [root];
  const push = (xs: readonly A.Expr[]) => {
    for (let i = xs.length - 1; i >= 0; i--) todo.push(xs[i]);
  };
  for (let e = todo.pop(); e; e = todo.pop()) {
    switch (e.kind) {
      case 'Ref':
        names.push(e.name);
        break;
      case 'Binary':
        push([e.left, e.right]);
        break;
      case 'Unary':
        todo.push(e.operand);
        break;
      case 'If':
        push([e.cond, e.then, e.else]);
        break;
      case 'Call':
        push(e.args.map((a) => a.value));
        break;
      case 'List':
      case 'Index':
        push(e.items);
        break;
      case 'Member':
        todo.push(e.object);
        break;
    }
  }
  return names;
}

const PRECEDENCE: Record<A.BinaryOp, number> = { '|': 0, or: 1, and: 2, '==': 3, '!=': 3, '<': 3, '<=': 3, '>': 3, '>=': 3, '+': 4, '-': 4, '*': 5, '/': 5, '%': 5, x: 5, '**': 6 };

/** Messages and hovers show at most this much of an expression. */
const EXPR_TEXT_MAX = 200;

/** Source text of an expression, for messages (`image % patch == 0`); a long one is cut short with `...`. */
export function exprText(e: A.Expr): string {
  const text = fullText(e);
  return text.length > EXPR_TEXT_MAX ? `${text.slice(0, EXPR_TEXT_MAX - 3)}...` : text;
}

function fullText(e: A.Expr): string {
  switch (e.kind) {
    case 'Number':
      return e.text;
    case 'Quantity':
      return e.text;
    case 'String':
      return JSON.stringify(e.value);
    case 'Bool':
      return String(e.value);
    case 'Ref':
      return e.name;
    case 'Member':
      return `${fullText(e.object)}.${e.member.name}`;
    case 'Call':
      return `${fullText(e.callee)}(${e.args.map((a) => (a.name ? `${a.name.name}: ` : '') + fullText(a.value)).join(', ')})`;
    case 'Index':
      return `${fullText(e.object)}[${e.items.map(fullText).join(', ')}]`;
    case 'List':
      return `[${e.items.map(fullText).join(', ')}]`;
    case 'Object':
      return `{ ${e.fields.map((f) => `${f.name.name}: ${fullText(f.value)}`).join(', ')} }`;
    case 'Binary': {
      // The left operands of a chain are binary again: walk them in a loop, from the leftmost.
      const spine: A.BinaryExpr[] = [];
      let x: A.Expr = e;
      for (; x.kind === 'Binary'; x = x.left) spine.push(x);
      let text = fullText(x);
      for (let i = spine.length - 1; i >= 0; i--) {
        const b = spine[i];
        if (b.left.kind === 'Binary' && PRECEDENCE[b.left.op] < PRECEDENCE[b.op]) text = `(${text})`;
        const r = b.right;
        const right = r.kind === 'Binary' && PRECEDENCE[r.op] <= PRECEDENCE[b.op] ? `(${fullText(r)})` : fullText(r);
        text = `${text} ${b.op} ${right}`;
      }
      return text;
    }
    case 'Unary':
      return e.op === 'not' ? `not ${fullText(e.operand)}` : `-${fullText(e.operand)}`;
    case 'If':
      return `if ${fullText(e.cond)} then ${fullText(e.then)} else ${fullText(e.else)}`;
    case 'Missing':
      return '?';
  }
}

export type { LoadedFile };
