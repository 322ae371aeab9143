// Lexer and parser: syntax only, recovery on, every node with its range; parse never throws.
import { strict as assert } from 'node:assert';
import type * as A from '../compiler/ast/nodes.js';
import fc from 'fast-check';
import { lexPipe, parse, parseWithRecovery } from '../compiler/parser/parse.js';
import { fastParse } from '../compiler/parser/fast-parse.js';
import { SourceFile } from '../compiler/diagnostics/source.js';
import type { Diagnostic } from '../compiler/diagnostics/diagnostic.js';
import { CORPUS, deepNesting, HOSTS, lineSalad, longLine, mutated, valueMutated } from './fuzz/generators.js';
import { MAX_NESTING } from '../compiler/parser/grammar.js';
import { evaluate } from '../compiler/check/values.js';
import { exprText } from '../compiler/check/instance.js';
import { closest } from '../compiler/check/suggest.js';
import { M } from '../compiler/diagnostics/catalogue.js';
import { renderAll } from '../compiler/diagnostics/render.js';
import { compile, MAX_DIAGNOSTICS_PER_FILE } from '../compiler/service/service.js';
import { repo } from './paths.js';

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

describe('nesting and long input', () => {
  // Each builds an expression whose deepest part is `k` levels down (docs/language.md, "Nesting").
  const NESTED: Record<string, (k: number) => string> = {
    parentheses: (k) => `${'('.repeat(k)}1${')'.repeat(k)}`,
    lists: (k) => `${'['.repeat(k)}1${']'.repeat(k)}`,
    objects: (k) => `${'{a: '.repeat(k)}1${'}'.repeat(k)}`,
    calls: (k) => `${'f('.repeat(k)}1${')'.repeat(k)}`,
    'unary minus': (k) => `${'- '.repeat(k)}1`,
    not: (k) => `${'not '.repeat(k)}true`,
    '**': (k) => Array(k + 1).fill('2').join(' ** '),
    'if ... else': (k) => `${'if true then 1 else '.repeat(k)}1`,
    'member suffixes': (k) => `y${'.a'.repeat(k)}`,
    'call suffixes': (k) => `f${'(1)'.repeat(k)}`,
  };

  for (const [what, nested] of Object.entries(NESTED)) {
    it(`${what}: ${MAX_NESTING} levels parse; one more is PIPE1014, and parsing goes on after it`, () => {
      assert.deepEqual(parse('n.pipe', `stage s { x: ${nested(MAX_NESTING)} }`).diagnostics, []);
      const text = `stage s { x: ${nested(MAX_NESTING + 1)} y: 2 }\nstage t { batch: 4 }\n`;
      const r = parse('n.pipe', text);
      assert.deepEqual(r.diagnostics.map((d) => d.code), [M.NestingTooDeep.code]);
      const [s, t] = r.ast.decls as A.StageDecl[];
      assert.deepEqual(s.fields.map((f) => f.name.name), ['x', 'y']);
      assert.deepEqual(s.fields[1].value, { ...s.fields[1].value, kind: 'Number', value: 2 });
      assert.equal(t.name.name, 't');
    });
  }

  it('PIPE1014 points at what is past the limit', () => {
    const text = `stage s { x: f(${'('.repeat(MAX_NESTING + 5)}1${')'.repeat(MAX_NESTING + 5)}) }`;
    const [d] = parse('n.pipe', text).diagnostics;
    // Inside `f(` is level 1, so the parenthesis at index i (from 0) is at level i + 1.
    const first = text.indexOf('(', text.indexOf('f(') + 2) + MAX_NESTING;
    assert.equal(d.range.start.offset, first);
    assert.equal(text.slice(d.range.start.offset, d.range.end.offset), '(((((1)))))');
  });

  it('an operand missing past the limit is PIPE1014 too, not silence', () => {
    const text = `stage s { x: ${'('.repeat(MAX_NESTING + 1)}${')'.repeat(MAX_NESTING + 1)} }`;
    const [d, ...more] = parse('n.pipe', text).diagnostics;
    assert.deepEqual([d.code, more], [M.NestingTooDeep.code, []]);
    assert.equal(d.range.start.offset, text.indexOf(')'));
  });

  it('deeply nested unclosed brackets and 100,000 of one bracket end in a few located errors', () => {
    for (const text of [`stage s { x: ${'[('.repeat(5000)}`, `dataset d = ${'{a: '.repeat(3000)}`, `dataset d = ${'('.repeat(100_000)}`, '('.repeat(100_000)]) {
      const r = parse('u.pipe', text);
      if (text.startsWith('dataset') || text.startsWith('stage')) assert.ok(r.diagnostics.some((d) => d.code === M.NestingTooDeep.code));
      assert.ok(r.diagnostics.length <= 3, r.diagnostics.map((d) => `${d.code} ${d.message}`).join('\n'));
      for (const d of r.diagnostics) assert.ok(d.range.start.offset >= 0 && d.range.end.offset <= text.length);
    }
  });

  it('evaluates a 10,000-term expression on one line, left to right', () => {
    const n = 10_000;
    assert.deepEqual(evaluate(expr(Array(n).fill('1').join(' + ')), plainScope), { t: 'num', v: n });
    assert.deepEqual(evaluate(expr(`${n} ${'- 1 '.repeat(n - 1)}`), plainScope), { t: 'num', v: 1 });
    assert.deepEqual(evaluate(expr(`${Array(n).fill('true').join(' and ')} and false`), plainScope), { t: 'bool', v: false });
    const list = evaluate(expr(Array(n).fill('2').join(' | ')), plainScope);
    assert.ok(list?.t === 'list' && list.items.length === n);
    assert.equal(exprText(expr(Array(n).fill('x1').join(' * '))), `${'x1 * '.repeat(40)}x1 ...`.slice(0, 197) + '...');
  });
});

describe('diagnostics of hostile files', () => {
  it('a file reports at most 100 diagnostics, then one PIPE1015 for the rest, as severe as they are', () => {
    const text = `${'@ '.repeat(250)}\n`;
    const r = compile({ file: repo('pipelines/__hostile__.pipe'), text, cwd: repo('.'), lower: false });
    assert.equal(r.diagnostics.length, MAX_DIAGNOSTICS_PER_FILE + 1);
    assert.ok(r.diagnostics.slice(0, -1).every((d) => d.code === M.UnexpectedCharacter.code));
    const last = r.diagnostics[r.diagnostics.length - 1];
    assert.deepEqual([last.code, last.severity, last.message], [M.TooManyDiagnostics.code, 'error', '150 more diagnostics in this file, not shown (the first 100 are)']);
    assert.equal(last.range.start.offset, 2 * MAX_DIAGNOSTICS_PER_FILE); // where the 101st `@` is
  });

  it('a very long line is shown as a window around the column, underlined there', () => {
    const before = '1 + '.repeat(10_000);
    const text = `dataset d = f(count: ${before}1@ + 1)\n`;
    const r = compile({ file: repo('pipelines/__hostile__.pipe'), text, cwd: repo('.'), lower: false });
    assert.deepEqual(r.diagnostics.map((d) => d.code), [M.UnexpectedCharacter.code]);
    for (const style of ['cli', 'baseline'] as const) {
      const out = renderAll(r.diagnostics, r.sources, { style });
      assert.ok(out.length < 600, `${out.length} characters`);
      const [, shown, underline] = out.split('\n').slice(1);
      assert.match(shown, /^1 \.\.\.[ +1]+1@ \+ 1\)$/);
      assert.equal(underline.indexOf('^'), shown.indexOf('@'));
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

describe('fast path (fast-parse.ts) against the recovering parser', () => {
  // Where the fast path reads a file, its AST must be the one the CST parser and build-ast.ts make, field
  // for field (key order too: ASTs are serialised), and that parser must find nothing to report there.
  let read = 0;
  let gaveUp = 0;
  function agree(text: string): void {
    const slow = parseWithRecovery('f.pipe', text);
    const source = new SourceFile('f.pipe', text);
    const lexed: Diagnostic[] = [];
    const tokens = lexPipe(source, lexed);
    const fast = lexed.length ? undefined : fastParse(source, tokens);
    if (!fast) {
      gaveUp++;
      return;
    }
    read++;
    assert.deepEqual(slow.diagnostics.map((d) => `${d.code} ${d.message}`), [], `the fast path read a file the parser reports: ${JSON.stringify(text.slice(0, 300))}`);
    assert.equal(JSON.stringify(fast), JSON.stringify(slow.ast), JSON.stringify(text.slice(0, 300)));
    // and parse() takes it
    assert.equal(JSON.stringify(parse('f.pipe', text).ast), JSON.stringify(slow.ast));
  }

  it('makes the same AST for every .pipe file in the repository and a large generated program', () => {
    read = gaveUp = 0;
    for (const text of CORPUS) agree(text);
    const big = Array.from({ length: 30 }, (_, i) => CORPUS.find((t) => t.includes('stage '))!.replace(/\b(model|stage|dataset|template) (\w+)/g, `$1 $2_${i}`)).join('\n');
    agree(big);
    assert.ok(read > 40, `read ${read}, gave up on ${gaveUp}`);
  });

  it('makes the same AST for expressions of every kind, or gives way', () => {
    const exprs = [
      '1 + 2 * 3 - 4 / 5 % 6', '2 ** 3 ** 2', '-2 ** 2', '- - 3', 'not a and b or not c == d', 'not not x', 'a | b | c', '1 < 2 and 3 >= 4 or 5 != 6',
      'if a then b else if c then d else e', '[1, [2, 3], {a: 1, b: [x]}]', 'f(1)(2)[3].a.b', 'f(a: 1, b: 2,)', '[1, 2,]', '{ a: 1, b: 2 }', '8 x gpu(memory: 80GB)',
      '(((1)))', 'vision.hidden * 2', '"a\\"b"', 'x.if.then', '2 x 4 x gpu(memory: 40GB)', '1e-3 + .5 + 2.', 'f()', '[]', '{}',
      `${'('.repeat(30)}1${')'.repeat(30)}`, `${'-'.repeat(30)}1`, `${'not '.repeat(30)}x`, `a${'.b'.repeat(70)}`,
    ];
    read = gaveUp = 0;
    for (const e of exprs) for (const host of HOSTS) agree(host(e));
    assert.ok(read > 15 * HOSTS.length, `read ${read}, gave up on ${gaveUp}`);
  });

  it('makes the same AST as the recovering parser on generated and edited programs', () => {
    read = gaveUp = 0;
    fc.assert(fc.property(fc.oneof(valueMutated, mutated(2), deepNesting, longLine, lineSalad), (text) => agree(text)), { numRuns: 600, seed: 15 });
    assert.ok(read > 100 && gaveUp > 100, `read ${read}, gave up on ${gaveUp}: both paths should be exercised`);
  });
});
