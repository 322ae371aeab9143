// Hostile inputs from issue 11: how long `pipec check` takes (compile() and rendering the diagnostics as
// the CLI does) on a 5 MB one-line expression, 2,500 terms, deep nesting, unclosed brackets, 1 MB of
// random bytes and a 5 MB line with one stray character, and how much it prints. Each input is checked
// RUNS times after one warm-up; prints the median. Asserts nothing about time.
//
//   npm run bench:hostile
import { renderAll } from '../compiler/diagnostics/render.js';
import { compile } from '../compiler/service/service.js';
import { repo } from '../test/paths.js';
import { median } from './stats.js';

const RUNS = 3;
const HEADER = 'import "std/vision"\nimport "std/projectors"\nimport "std/llm"\nimport "std/data"\nimport "std/train"\n';
const program = (count: string) => `${HEADER}model m {
  encoder vision = vit(image: 32, patch: 8, hidden: 64, layers: 2, heads: 4, mlp: 128)
  projector proj = mlp_gelu(depth: 2, in: vision.hidden, out: lm.hidden)
  llm lm = llama(vocab: 512, hidden: 128, layers: 2, heads: 4, mlp: 256, context: 128)
  flow vision -> proj -> lm at "<image>"
}
dataset d = synthetic_shapes(count: ${count})
stage s {
  model: m
  train: [proj]
  freeze: [vision, lm]
  data: d
  optimizer: adamw(lr: 1e-3)
  batch: 4
  epochs: 1
  max_length: 64
}
`;

/** Deterministic bytes (a linear congruential generator's high bits), read as a file is: UTF-8. */
function randomText(n: number, seed: number): string {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b.toString('utf8');
}

const terms = (n: number) => Array(n).fill('1').join(' + ');
const fiveMb = terms(1_250_000); // "1 + " is 4 characters

const INPUTS: Array<[string, () => string]> = [
  ['2,500 terms on one line', () => program(terms(2500))],
  ['5 MB one-line expression (1.25M terms)', () => program(fiveMb)],
  ['5 MB line with one stray character', () => program(`${fiveMb.slice(0, 2_500_000)}1@${fiveMb.slice(2_500_002)}`)],
  ['400 nested parentheses', () => program(`${'('.repeat(400)}1${')'.repeat(400)}`)],
  ['100,000 nested parentheses', () => program(`${'('.repeat(100_000)}1${')'.repeat(100_000)}`)],
  ['10,000 unclosed brackets', () => program('[('.repeat(5000))],
  ['1 MB of random bytes', () => randomText(1_000_000, 1)],
  ['1 MB of random bytes (another seed)', () => randomText(1_000_000, 2)],
];

const file = repo('pipelines/__hostile__.pipe');
console.log(`pipec check on hostile inputs, median of ${RUNS} after a warm-up (compile + render as the CLI does)`);
for (const [name, make] of INPUTS) {
  const text = make();
  const times: number[] = [];
  let printed = 0;
  let count = 0;
  for (let i = 0; i <= RUNS; i++) {
    const t0 = performance.now();
    const r = compile({ file, text, cwd: repo('.'), lower: true });
    printed = renderAll(r.diagnostics, r.sources, { style: 'cli' }).length;
    count = r.diagnostics.length;
    if (i > 0) times.push(performance.now() - t0);
  }
  const ms = median(times);
  console.log(`${name.padEnd(40)} ${(text.length / 1e6).toFixed(2).padStart(6)} MB  ${(ms / 1000).toFixed(2).padStart(7)} s  ${String(count).padStart(4)} diagnostics, ${printed} characters printed`);
}
