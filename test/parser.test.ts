// Lexer and parser: syntax only, recovery on, every node with its range; parse never throws.
import { strict as assert } from 'node:assert';
import type * as A from '../compiler/ast/nodes.js';
import { parse } from '../compiler/parser/parse.js';
import { evaluate } from '../compiler/check/values.js';
import { closest } from '../compiler/check/suggest.js';

function expr(text: string): A.Expr {
  const r = parse('t.pipe', `stage s { x: ${text} }`);
  assert.deepEqual(r.diagnostics, []);
  return (r.ast.decls[0] as A.StageDecl).fields[0].value;
}

const plainScope = { name: (r: A.RefExpr) => ({ t: 'word' as const, name: r.name }), error: (_: unknown, why: string) => assert.fail(why) };

describe('parser', () => {
  it('builds a typed AST whose nodes carry source ranges', () => {
    const text = 'model m {\n  encoder v = vit(image: 32) weights "w"\n  flow v -> p -> lm at "<image>"\n}\n';
    const r = parse('a.pipe', text);
    assert.deepEqual(r.diagnostics, []);
    const m = r.ast.decls[0] as A.ModelDecl;
    assert.equal(m.components[0].name.name, 'v');
    assert.deepEqual([m.components[0].name.range.start.line, m.components[0].name.range.start.column], [2, 11]);
    assert.equal(m.components[0].weights?.value, 'w');
    assert.deepEqual(m.flows[0].chain.map((i) => i.name), ['v', 'p', 'lm']);
    assert.equal(m.flows[0].at?.value, '<image>');
    const call = m.components[0].init as A.CallExpr;
    assert.equal(text.slice(call.range.start.offset, call.range.end.offset), 'vit(image: 32)');
  });

  it('reports every syntax error in one parse and keeps the declarations around them', () => {
    const r = parse('b.pipe', 'stage a { batch: }\nstage b { train: [x y] }\nmodel m { encoder v = vit( }\nstage c { batch: 4 }\n');
    assert.ok(r.diagnostics.length >= 3, r.diagnostics.map((d) => d.message).join('\n'));
    assert.deepEqual([...new Set(r.diagnostics.map((d) => d.range.start.line))], [1, 2, 3]);
    assert.deepEqual(r.ast.decls.map((d) => d.name.name), ['a', 'b', 'm', 'c']);
    const c = r.ast.decls[3] as A.StageDecl;
    assert.equal((c.fields[0].value as A.NumberExpr).value, 4);
  });

  it('lexes numbers, exponents and quantities apart', () => {
    assert.deepEqual(evaluate(expr('1e-3'), plainScope), { t: 'num', v: 0.001 });
    assert.deepEqual(evaluate(expr('80GB'), plainScope), { t: 'size', bytes: 80e9 });
    assert.deepEqual(evaluate(expr('24GiB'), plainScope), { t: 'size', bytes: 24 * 2 ** 30 });
    assert.deepEqual(evaluate(expr('2e3'), plainScope), { t: 'num', v: 2000 });
  });

  it('gives operators their usual precedence and associativity', () => {
    assert.deepEqual(evaluate(expr('-2 ** 2'), plainScope), { t: 'num', v: -4 });
    assert.deepEqual(evaluate(expr('2 ** 3 ** 2'), plainScope), { t: 'num', v: 512 });
    assert.deepEqual(evaluate(expr('(384 / 14) ** 2'), plainScope), { t: 'num', v: (384 / 14) ** 2 });
    assert.deepEqual(evaluate(expr('floor(384 / 14) ** 2 + 1'), plainScope), { t: 'num', v: 730 });
    assert.deepEqual(evaluate(expr('1 + 2 * 3 == 7 and not false'), plainScope), { t: 'bool', v: true });
    assert.deepEqual(evaluate(expr('if 3 % 2 == 1 then "odd" else "even"'), plainScope), { t: 'str', v: 'odd' });
  });

  it('replicates devices: N x gpu and NODES x PER_NODE x gpu', () => {
    const scope = { ...plainScope, call: () => ({ t: 'devices' as const, nodes: 1, perNode: 1, device: 'gpu', memory: 80e9 }) };
    assert.deepEqual(evaluate(expr('8 x gpu(memory: 80GB)'), scope), { t: 'devices', nodes: 1, perNode: 8, device: 'gpu', memory: 80e9 });
    assert.deepEqual(evaluate(expr('2 x 8 x gpu(memory: 80GB)'), scope), { t: 'devices', nodes: 2, perNode: 8, device: 'gpu', memory: 80e9 });
  });

  it('never throws, whatever the input', () => {
    for (const text of ['', '\u0000', '{{{{', '"', '/*', 'model', 'stage s { x: ((((((((1', '@#$%^&', 'x'.repeat(10000)]) {
      const r = parse('c.pipe', text);
      for (const d of r.diagnostics) assert.ok(d.range.start.offset >= 0 && d.range.end.offset <= text.length);
    }
  });
});

describe('did you mean', () => {
  it('suggests close names, counting a transposition as one edit', () => {
    assert.equal(closest('mlp_gleu', ['mlp_gelu', 'linear', 'identity']), 'mlp_gelu');
    assert.equal(closest('chta', ['plain', 'chat']), 'chat');
    assert.equal(closest('optimzer', ['optimizer', 'schedule']), 'optimizer');
    assert.equal(closest('zzz', ['optimizer', 'schedule']), undefined);
  });
});
