// Compiler speed on a generated 10,000-line program: median parse, check and lower times, printed.
import * as os from 'node:os';
import * as path from 'node:path';
import { checkProgram } from '../compiler/check/passes.js';
import { validateGraph } from '../compiler/ir/validate.js';
import { lower } from '../compiler/lower/lower.js';
import { parse } from '../compiler/parser/parse.js';
import { nodeHost } from '../compiler/service/service.js';
import { repo } from '../test/paths.js';

function program(lines: number): string {
  const out = ['import "std/vision"', 'import "std/projectors"', 'import "std/llm"', 'import "std/data"', 'import "std/train"', ''];
  for (let i = 0; out.length + 18 <= lines; i++) {
    out.push(
      `model m${i} {`,
      `  encoder vision = vit(image: 32, patch: 8, hidden: 64, layers: 2, heads: 4, mlp: 128)`,
      `  projector proj = mlp_gelu(depth: 2, in: vision.hidden, out: lm.hidden)`,
      `  llm lm = llama(vocab: 512, hidden: 128, layers: 2, heads: 4, kv_heads: 2, mlp: 256, context: 128)`,
      `  flow vision -> proj -> lm at "<image>"`,
      `}`,
      `dataset d${i} = synthetic_shapes(count: 100, seed: ${i})`,
      `stage s${i} {`,
      `  model: m${i}`,
      `  train: [proj]`,
      `  freeze: [vision, lm]`,
      `  data: d${i}`,
      `  optimizer: adamw(lr: 1e-3)`,
      `  batch: 4`,
      `  epochs: 1`,
      `  max_length: 64`,
      `}`,
      '',
    );
  }
  while (out.length < lines) out.push(`// ${out.length}`);
  return `${out.join('\n')}\n`;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)];

function time(fn: () => void, warmup = 3, runs = 15): number[] {
  for (let i = 0; i < warmup; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  return ts;
}

const text = program(10_000);
const file = repo('pipelines/__bench__.pipe');
const host = nodeHost();
const first = checkProgram(file, text, host);
const errors = first.reporter.diagnostics.filter((d) => d.severity === 'error');
if (errors.length) throw new Error(`the benchmark program must be clean: ${errors[0].message}`);

const tParse = time(() => parse(file, text));
const tCheck = time(() => checkProgram(file, text, host)); // includes its own parse
const checked = checkProgram(file, text, host);
const tLower = time(() => lower(checked.program, checked.estimates, path.basename(file)));
const graph = lower(checked.program, checked.estimates, path.basename(file));
const tValidate = time(() => validateGraph(graph));

console.log(`pipec compiler, ${text.split('\n').length - 1}-line program, ${first.program.models.size} models / ${first.program.stages.length} stages (node ${process.version}, ${os.cpus().length} cores, 15 runs after 3 warm-up)`);
const row = (name: string, xs: number[]) => console.log(`  ${name.padEnd(26)} median ${median(xs).toFixed(1).padStart(7)} ms   p90 ${p90(xs).toFixed(1).padStart(7)} ms`);
row('parse', tParse);
row('parse + check (all passes)', tCheck);
row('lower', tLower);
row('validate graph (ajv)', tValidate);
console.log(`  total parse+check+lower (medians): ${(median(tCheck) + median(tLower)).toFixed(1)} ms   (goal: <= 200 ms)`);
