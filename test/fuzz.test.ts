// Property-based: generated texts (test/fuzz/generators.ts) go through parse + check + lower, and each
// must have the property of test/fuzz/property.ts: compile() returns, every diagnostic is located inside
// its document with a valid code, at most 100 per file, and a program without errors lowers. 10,000
// programs over the properties of test/fuzz/suite.ts, with fixed seeds so a failure reproduces
// (fast-check shrinks it to a small counterexample first). `npm run fuzz -- --runs 100000` runs more.
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { M } from '../compiler/diagnostics/catalogue.js';
import { format } from '../compiler/format/format.js';
import { complete } from '../compiler/lsp/completion.js';
import { hoverFor } from '../compiler/lsp/hover.js';
import { SymbolIndex } from '../compiler/lsp/navigation.js';
import { documentSymbols, foldingRanges, inlayHints, semanticTokens } from '../compiler/lsp/outline.js';
import { MAX_NESTING } from '../compiler/parser/grammar.js';
import { compile } from '../compiler/service/service.js';
import { CORPUS, HOSTS, tokenize, untokenize } from './fuzz/generators.js';
import { checkText, lineCol, newTally, type Tally } from './fuzz/property.js';
import { PROPERTIES, REGRESSIONS } from './fuzz/suite.js';
import { repo } from './paths.js';

describe('property: parse + check + lower never throw and keep diagnostics inside their documents', function () {
  this.timeout(300_000);
  const tallies = new Map<string, Tally>();
  let failed = false;

  it('the mutation lexer joins back to its input, and lineCol agrees with SourceFile on a known case', () => {
    for (const t of CORPUS) assert.equal(untokenize(tokenize(t)), t);
    assert.deepEqual(lineCol('a\r\nb\n\ncd', 7), { line: 4, column: 2 });
    assert.ok(CORPUS.length >= 10, `${CORPUS.length} seed programs`);
  });

  for (const r of REGRESSIONS) it(`regression: ${r.name}`, () => checkText(r.text));

  for (const p of PROPERTIES) {
    it(`${p.name} (${p.runs} runs, seed ${p.seed})`, () => {
      const tally = newTally();
      tallies.set(p.name, tally);
      try {
        fc.assert(p.property(tally), { numRuns: p.runs, seed: p.seed });
      } catch (e) {
        failed = true;
        throw e;
      }
    });
  }

  it('ran 10,000 programs, and each generator reached what it is for', function () {
    if (failed) this.skip(); // a failed property stops early; its own failure is the report
    const t = (name: string) => {
      const found = [...tallies].find(([n]) => n.startsWith(name));
      assert.ok(found, name);
      return found[1];
    };
    const total = [...tallies.values()].reduce((n, x) => n + x.programs, 0);
    assert.ok(total >= 10_000, `${total} programs`);
    // Mutations keep most programs past the parser: the checker's passes see them, some lower cleanly.
    for (const name of ['real programs with 1-3 edits', 'real programs with 1-4 renamed']) {
      const { outcomes, programs } = t(name);
      assert.ok(outcomes.errors > programs / 10 && outcomes.clean > programs / 50, `${name}: ${JSON.stringify(outcomes)}`);
    }
    // Nesting is cut at the limit in some programs and fine in others.
    const deep = t('deep nesting');
    assert.ok((deep.codes.get(M.NestingTooDeep.code) ?? 0) > deep.programs / 10, `deep nesting: PIPE1014 in ${deep.codes.get(M.NestingTooDeep.code)}`);
    assert.ok(deep.outcomes.clean + deep.outcomes.errors > 0, `deep nesting: ${JSON.stringify(deep.outcomes)}`);
    // Long chains are checked (not only parsed), and random bytes fill the per-file cap.
    const long = t('long lines: flat chains');
    assert.ok(long.outcomes.clean + long.outcomes.errors > long.programs / 4, `long lines: ${JSON.stringify(long.outcomes)}`);
    assert.ok((t('random bytes').codes.get(M.TooManyDiagnostics.code) ?? 0) > 0, 'random bytes never gave PIPE1015');
  });
});

describe('editor features and the formatter on deep and long input', function () {
  this.timeout(120_000);
  // In a component's parameter (hover shows the component), a dataset argument, a stage field.
  const inputs: Array<[string, string]> = [
    ['nesting at the limit', HOSTS[1](`${'('.repeat(MAX_NESTING - 1)}256${')'.repeat(MAX_NESTING - 1)}`)],
    ['nesting past the limit', HOSTS[0](`${'[{a: f('.repeat(200)}1`)],
    ['not past the limit', HOSTS[2](Array(1000).fill('not true').join(' + '))],
    ['a 3,000-term chain', HOSTS[1](Array(3000).fill('1').join(' + '))],
    ['1,000 member suffixes', HOSTS[1](`vision${'.hidden'.repeat(1000)}`)],
    ['many block comments', `${'/* a\nb */\n'.repeat(2000)}${HOSTS[0]('1')}`],
  ];
  for (const [what, text] of inputs) {
    it(`${what}: hover, outline, folding, tokens, hints, completion and fmt return`, () => {
      const file = repo('pipelines/__editor__.pipe');
      const check = compile({ file, text, lower: false }).check!;
      const index = new SymbolIndex(check);
      for (const sym of index.syms) assert.ok((hoverFor(sym, check) ?? '').length < 5000, `hover of ${sym.name}`);
      const ast = check.program.entry.ast;
      documentSymbols(ast);
      foldingRanges(ast, text);
      semanticTokens(ast, text);
      inlayHints(ast, check);
      for (const at of [0, text.length >> 2, text.length >> 1, text.length - 2, text.length]) complete(text, at, check, file);
      const f = format(text);
      if ('text' in f) assert.deepEqual(format(f.text), { text: f.text, changed: false });
      else assert.match(f.error, /fix it before formatting/);
    });
  }
});
