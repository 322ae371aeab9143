// Compile-time values and the expression evaluator shared by every pass (parameters, shapes, constraints,
// stage fields). Evaluation never throws: problems are reported through the scope and yield `undefined`.
import type * as A from '../ast/nodes.js';
import type { Range } from '../diagnostics/source.js';

export type Value =
  | { t: 'num'; v: number }
  | { t: 'str'; v: string }
  | { t: 'bool'; v: boolean }
  | { t: 'size'; bytes: number }
  | { t: 'list'; items: Value[] }
  | { t: 'obj'; fields: Map<string, Value> }
  /** A free dimension in a shape contract, e.g. the `n` of `Tensor[n, in]`. */
  | { t: 'sym'; name: string }
  /** A bare word that names no declaration: an enum member such as `bf16` or `zero3`. */
  | { t: 'word'; name: string }
  /** `Tensor[729, 1152]` */
  | { t: 'shape'; ctor: string; dims: Dim[] }
  /** `16 x gpu(memory: 80GB)`; `2 x 8 x gpu(...)` gives nodes 2, perNode 8. */
  | { t: 'devices'; nodes: number; perNode: number; device: string; memory?: number };

export type Dim = number | string;

export const num = (v: number): Value => ({ t: 'num', v });
export const str = (v: string): Value => ({ t: 'str', v });

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
};
export const SIZE_UNIT_NAMES = Object.keys(SIZE_UNITS);
const SIZE_TEXT = new RegExp(`^(\\d+(?:\\.\\d+)?)(${SIZE_UNIT_NAMES.join('|')})$`);

/** "80GB" -> 80e9 bytes; undefined for text that is not a number with a size unit. */
export function parseSize(text: string): number | undefined {
  const m = SIZE_TEXT.exec(text);
  return m ? Number(m[1]) * SIZE_UNITS[m[2]] : undefined;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1e12) return `${(bytes / 1e12).toFixed(2)} TB`;
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(1)} KB`;
  return `${bytes} B`;
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

export function show(v: Value | undefined): string {
  if (!v) return '?';
  switch (v.t) {
    case 'num':
      return String(v.v);
    case 'str':
      return JSON.stringify(v.v);
    case 'bool':
      return String(v.v);
    case 'size':
      return formatBytes(v.bytes);
    case 'list':
      return `[${v.items.map(show).join(', ')}]`;
    case 'obj':
      return `{ ${[...v.fields].map(([k, x]) => `${k}: ${show(x)}`).join(', ')} }`;
    case 'sym':
    case 'word':
      return v.name;
    case 'shape':
      return `${v.ctor}${showDims(v.dims)}`;
    case 'devices':
      return `${v.nodes > 1 ? `${v.nodes} x ` : ''}${v.perNode} x ${v.device}${v.memory ? `(memory: ${formatBytes(v.memory)})` : ''}`;
  }
}

export function showDims(dims: Dim[]): string {
  return `[${dims.join(', ')}]`;
}

export function typeName(v: Value): string {
  switch (v.t) {
    case 'num':
      return Number.isInteger(v.v) ? `int ${v.v}` : `float ${v.v}`;
    case 'str':
      return `string ${JSON.stringify(v.v)}`;
    case 'bool':
      return `bool ${v.v}`;
    case 'size':
      return `size ${formatBytes(v.bytes)}`;
    case 'list':
      return 'a list';
    case 'obj':
      return 'an object';
    case 'sym':
      return `symbol ${v.name}`;
    case 'word':
      return `\`${v.name}\``;
    case 'shape':
      return 'a shape';
    case 'devices':
      return 'devices';
  }
}

export function equalValues(a: Value, b: Value): boolean {
  return show(a) === show(b);
}

/** How the evaluator treats names and calls; each pass supplies its own. */
export interface Scope {
  /** A bare name. Return undefined when unknown (the scope reports it, or not, as it sees fit). */
  name(ref: A.RefExpr): Value | undefined;
  /** `a.b` */
  member?(obj: A.Expr, member: A.Ident, range: Range): Value | undefined;
  /** `f(args)` */
  call?(call: A.CallExpr): Value | undefined;
  /** Report an evaluation problem at a range. */
  error(range: Range, why: string): void;
}

export function evaluate(e: A.Expr, scope: Scope): Value | undefined {
  switch (e.kind) {
    case 'Missing':
      return undefined;
    case 'Number':
      if (!Number.isFinite(e.value)) return bad(scope, e.range, `${e.text} is too large for a number`);
      return num(e.value);
    case 'Quantity': {
      const unit = SIZE_UNITS[e.unit];
      if (unit === undefined) {
        scope.error(e.range, `unknown unit \`${e.unit}\`; use one of ${SIZE_UNIT_NAMES.join(', ')}`);
        return undefined;
      }
      return { t: 'size', bytes: e.value * unit };
    }
    case 'String':
      return str(e.value);
    case 'Bool':
      return { t: 'bool', v: e.value };
    case 'Ref':
      return scope.name(e);
    case 'Member':
      if (!scope.member) {
        scope.error(e.range, 'member access is not allowed here');
        return undefined;
      }
      return scope.member(e.object, e.member, e.range);
    case 'Call':
      if (e.callee.kind === 'Ref' && e.callee.name in BUILTINS && !scope.call) return builtin(e, scope);
      if (!scope.call) {
        scope.error(e.range, 'a call is not allowed here');
        return undefined;
      }
      return scope.call(e);
    case 'Index': {
      if (e.object.kind !== 'Ref') {
        scope.error(e.range, 'a shape is written `Tensor[d1, d2, ...]`');
        return undefined;
      }
      const dims: Dim[] = [];
      for (const item of e.items) {
        const v = evaluate(item, scope);
        if (!v) return undefined;
        if (v.t === 'num') dims.push(v.v);
        else if (v.t === 'sym') dims.push(v.name);
        else {
          scope.error(item.range, `a dimension must be a number, got ${typeName(v)}`);
          return undefined;
        }
      }
      return { t: 'shape', ctor: e.object.name, dims };
    }
    case 'List': {
      const items: Value[] = [];
      for (const it of e.items) {
        const v = evaluate(it, scope);
        if (!v) return undefined;
        items.push(v);
      }
      return { t: 'list', items };
    }
    case 'Object': {
      const fields = new Map<string, Value>();
      for (const f of e.fields) {
        const v = evaluate(f.value, scope);
        if (!v) return undefined;
        fields.set(f.name.name, v);
      }
      return { t: 'obj', fields };
    }
    case 'If': {
      const c = evaluate(e.cond, scope);
      if (!c) return undefined;
      if (c.t !== 'bool') {
        scope.error(e.cond.range, `a condition must be true or false, got ${typeName(c)}`);
        return undefined;
      }
      return evaluate(c.v ? e.then : e.else, scope);
    }
    case 'Unary': {
      const v = evaluate(e.operand, scope);
      if (!v) return undefined;
      if (e.op === '-') {
        if (v.t === 'num') return num(-v.v);
        scope.error(e.range, `cannot negate ${typeName(v)}`);
        return undefined;
      }
      if (v.t === 'bool') return { t: 'bool', v: !v.v };
      scope.error(e.range, `\`not\` needs true or false, got ${typeName(v)}`);
      return undefined;
    }
    case 'Binary':
      return binary(e, scope);
  }
}

/** Arithmetic helpers usable in shape contracts, e.g. `floor(image / patch) ** 2`. */
const BUILTINS: Record<string, (xs: number[]) => number> = {
  floor: (xs) => Math.floor(xs[0]),
  ceil: (xs) => Math.ceil(xs[0]),
  // A loop, not Math.min(...xs): spreading a very long argument list overflows the stack.
  min: (xs) => xs.reduce((a, b) => Math.min(a, b)),
  max: (xs) => xs.reduce((a, b) => Math.max(a, b)),
};

function builtin(e: A.CallExpr, scope: Scope): Value | undefined {
  const name = (e.callee as A.RefExpr).name;
  const xs: number[] = [];
  for (const a of e.args) {
    const v = evaluate(a.value, scope);
    if (!v) return undefined;
    if (v.t !== 'num' || a.name) return bad(scope, a.range, `${name}() takes numbers, got ${typeName(v)}`);
    xs.push(v.v);
  }
  if (xs.length === 0 || ((name === 'floor' || name === 'ceil') && xs.length !== 1)) return bad(scope, e.range, `${name}() takes ${name === 'floor' || name === 'ceil' ? 'one number' : 'numbers'}`);
  return num(BUILTINS[name](xs));
}

/** A chain `a + b + c + ...` is a tree whose left operands are binary again: it is folded in a loop from
 * its leftmost operand, so a chain of any length costs no stack. */
function binary(e: A.BinaryExpr, scope: Scope): Value | undefined {
  const spine: A.BinaryExpr[] = [];
  let x: A.Expr = e;
  for (; x.kind === 'Binary'; x = x.left) spine.push(x);
  let v = evaluate(x, scope);
  for (let i = spine.length - 1; i >= 0; i--) v = binaryStep(spine[i], v, i < spine.length - 1 && spine[i + 1].op === '|', scope);
  return v;
}

/** One operator of a chain, given the value of its left operand (undefined: that failed). `owned`: that
 * value is a list the previous `|` of this chain made, which nothing else holds, so `|` may extend it. */
function binaryStep(e: A.BinaryExpr, l: Value | undefined, owned: boolean, scope: Scope): Value | undefined {
  const v = binaryRaw(e, l, owned, scope);
  if (v && v.t === 'num' && !Number.isFinite(v.v)) return bad(scope, e.range, 'the result is too large for a number');
  if (v && v.t === 'size' && !Number.isFinite(v.bytes)) return bad(scope, e.range, 'the result is too large for a size');
  return v;
}

function binaryRaw(e: A.BinaryExpr, l: Value | undefined, owned: boolean, scope: Scope): Value | undefined {
  if (e.op === 'and' || e.op === 'or') {
    if (!l) return undefined;
    if (l.t !== 'bool') return bad(scope, e.left.range, `\`${e.op}\` needs true or false, got ${typeName(l)}`);
    if (e.op === 'and' && !l.v) return l;
    if (e.op === 'or' && l.v) return l;
    const r = evaluate(e.right, scope);
    if (!r) return undefined;
    if (r.t !== 'bool') return bad(scope, e.right.range, `\`${e.op}\` needs true or false, got ${typeName(r)}`);
    return r;
  }
  const r = evaluate(e.right, scope);
  if (!l || !r) return undefined;
  switch (e.op) {
    case '==':
      return { t: 'bool', v: equalValues(l, r) };
    case '!=':
      return { t: 'bool', v: !equalValues(l, r) };
    case 'x': {
      // Replication is left-associative: `2 x 8 x gpu(...)` is `(2 x 8) x gpu(...)`, so the counts arrive
      // first as a list [nodes, perNode] and then meet the device.
      const counts = l.t === 'list' ? l.items : [l];
      if (counts.length > 2) return bad(scope, e.left.range, 'write devices as `NODES x PER_NODE x gpu(...)` at most');
      for (const c of counts) if (c.t !== "num" || !Number.isSafeInteger(c.v) || c.v < 1) return bad(scope, e.left.range, `a device count must be a positive integer, got ${typeName(c)}`);
      if (r.t === 'num') return { t: 'list', items: [...counts, r] };
      if (r.t !== 'devices' || r.nodes * r.perNode !== 1) return bad(scope, e.right.range, `\`x\` replicates a device such as \`gpu(memory: 80GB)\`, got ${typeName(r)}`);
      const n = counts.map((c) => (c as { v: number }).v);
      return { ...r, nodes: n.length === 2 ? n[0] : 1, perNode: n[n.length - 1] };
    }
    case '|': {
      // `a | b | c` is one list; extending it in place keeps a long chain linear.
      if (owned && l.t === 'list') {
        l.items.push(r);
        return l;
      }
      return { t: 'list', items: [...(l.t === 'list' ? l.items : [l]), r] };
    }
  }
  if (l.t === 'size' || r.t === 'size') return sizeArith(e, l, r, scope);
  if (l.t !== 'num' || r.t !== 'num') {
    if (e.op === '+' && l.t === 'str' && r.t === 'str') return str(l.v + r.v);
    if (l.t === 'sym' || r.t === 'sym') return bad(scope, e.range, `a free dimension (${l.t === 'sym' ? l.name : (r as { name: string }).name}) can only stand alone in a shape`);
    return bad(scope, e.opRange, `operator ${e.op} needs numbers, got ${typeName(l)} and ${typeName(r)}`);
  }
  const a = l.v;
  const b = r.v;
  switch (e.op) {
    case '+':
      return num(a + b);
    case '-':
      return num(a - b);
    case '*':
      return num(a * b);
    case '/':
      if (b === 0) return bad(scope, e.right.range, 'division by zero');
      return num(a / b);
    case '%':
      if (b === 0) return bad(scope, e.right.range, 'modulo by zero');
      return num(a % b);
    case '**':
      return num(a ** b);
    case '<':
      return { t: 'bool', v: a < b };
    case '<=':
      return { t: 'bool', v: a <= b };
    case '>':
      return { t: 'bool', v: a > b };
    case '>=':
      return { t: 'bool', v: a >= b };
  }
  return undefined;
}

function sizeArith(e: A.BinaryExpr, l: Value, r: Value, scope: Scope): Value | undefined {
  const lb = l.t === 'size' ? l.bytes : l.t === 'num' ? l.v : undefined;
  const rb = r.t === 'size' ? r.bytes : r.t === 'num' ? r.v : undefined;
  if (lb === undefined || rb === undefined) return bad(scope, e.opRange, `operator ${e.op} needs sizes or numbers`);
  switch (e.op) {
    case '+':
      return l.t === 'size' && r.t === 'size' ? { t: 'size', bytes: lb + rb } : bad(scope, e.opRange, 'add sizes to sizes');
    case '-':
      return l.t === 'size' && r.t === 'size' ? { t: 'size', bytes: lb - rb } : bad(scope, e.opRange, 'subtract sizes from sizes');
    case '*':
      return { t: 'size', bytes: lb * rb };
    case '/':
      return rb === 0 ? bad(scope, e.right.range, 'division by zero') : l.t === 'size' && r.t === 'size' ? num(lb / rb) : { t: 'size', bytes: lb / rb };
    case '<':
      return { t: 'bool', v: lb < rb };
    case '<=':
      return { t: 'bool', v: lb <= rb };
    case '>':
      return { t: 'bool', v: lb > rb };
    case '>=':
      return { t: 'bool', v: lb >= rb };
  }
  return bad(scope, e.opRange, `operator ${e.op} does not apply to sizes`);
}

function bad(scope: Scope, range: Range, why: string): undefined {
  scope.error(range, why);
  return undefined;
}
