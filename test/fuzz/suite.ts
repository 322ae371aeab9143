// The fuzz properties, each a generator and the seed and share of programs it gets: test/fuzz.test.ts
// runs them with these counts (10,000 programs in all, in CI), `npm run fuzz -- --runs N` scales them.
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { M } from '../../compiler/diagnostics/catalogue.js';
import { MAX_NESTING } from '../../compiler/parser/grammar.js';
import { deepNesting, lineSalad, longLine, longToken, mutated, nestedParentheses, randomBytes, tokenSoup, valueMutated } from './generators.js';
import { checkText, type Tally } from './property.js';

export interface FuzzProperty {
  name: string;
  /** Programs in the 10,000 of the CI run. */
  runs: number;
  seed: number;
  /** The fast-check property, counting into `tally`. */
  property: (tally: Tally) => fc.IProperty<[unknown]>;
}

const texts = (name: string, runs: number, seed: number, arb: fc.Arbitrary<string>): FuzzProperty => ({
  name,
  runs,
  seed,
  property: (tally) => fc.property(arb, (text) => void checkText(text, tally)),
});

export const PROPERTIES: FuzzProperty[] = [
  texts('token soups', 1500, 2026, tokenSoup),
  texts('lines of real programs in random order', 1000, 2028, lineSalad),
  texts('real programs with 1-3 edits', 2000, 2027, mutated(3)),
  texts('real programs with up to 12 edits', 1200, 2029, mutated(12)),
  texts('real programs with 1-4 renamed names, changed numbers and strings', 1300, 2030, valueMutated),
  texts('deep nesting: brackets, prefix operators, if, ** and suffixes, closed or not', 800, 2031, deepNesting),
  {
    name: `parenthesised counts: clean up to ${MAX_NESTING} levels, one PIPE1014 past them`,
    runs: 200,
    seed: 2032,
    property: (tally) =>
      fc.property(nestedParentheses, ({ k, text }) => {
        const { diagnostics } = checkText(text, tally);
        // `count:` is inside the call's brackets, one level; the 100 is k levels below that.
        if (1 + k <= MAX_NESTING) assert.deepEqual(diagnostics, [], `${k} parentheses`);
        else assert.deepEqual(diagnostics.map((d) => d.code), [M.NestingTooDeep.code], `${k} parentheses`);
      }),
  },
  texts('long lines: flat chains of up to 1,200 terms, with or without a stray character', 300, 2033, longLine),
  texts('long lines: one name, number, string or comment of up to 20,000 characters', 300, 2034, longToken),
  texts('random bytes, code units and bracket noise, alone or in a real program', 1400, 2035, randomBytes),
];

/** Minimal inputs that once broke a property: checked first, whatever the seeds find. */
export const REGRESSIONS: Array<{ name: string; text: string }> = [
  {
    // compile() threw "internal error: the lowered graph does not validate: model m: node id
    // lm.splice_vision is defined twice": the same flow edge twice gave two splice nodes (fixed in 8249a73).
    name: 'the same flow written twice',
    text: [
      'import "std/vision"',
      'import "std/llm"',
      'model m {',
      '  encoder vision = vit(image: 32, patch: 8, hidden: 64, layers: 2, heads: 4, mlp: 128)',
      '  llm lm = llama(vocab: 512, hidden: 128, layers: 2, heads: 4, mlp: 256, context: 128)',
      '  flow vision -> lm at "<image>"',
      '  flow vision -> lm at "<image>"',
      '}',
      '',
    ].join('\n'),
  },
  // Issue 11: these overflowed the stack (exit 3, "Maximum call stack size exceeded").
  { name: '400 nested parentheses', text: `dataset d = f(count: ${'('.repeat(400)}1${')'.repeat(400)})\n` },
  { name: 'unclosed brackets nested 5,000 deep', text: `dataset d = f(count: ${'[('.repeat(5000)}\n` },
  { name: 'a 2,500-term expression on one line', text: `import "std/data"\ndataset d = synthetic_shapes(count: ${Array(2500).fill('1').join(' + ')})\n` },
  { name: 'a 2,000-stage cycle through after', text: `stage s0 { after: s1999 }\n${Array.from({ length: 1999 }, (_, i) => `stage s${i + 1} { after: s${i} }`).join('\n')}\n` },
];
