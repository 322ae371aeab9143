// Editor latency: the time from didChange to publishDiagnostics on a 1,000-line document, through a
// real server process over stdio. Prints the median and p90; the goal is <= 50 ms on the 2-core machine.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { LspClient } from '../test/helpers/lsp-client.js';

function document(lines: number): string {
  const out = ['import "std/vision"', 'import "std/projectors"', 'import "std/llm"', 'import "std/data"', 'import "std/train"', ''];
  let i = 0;
  while (out.length + 18 <= lines) {
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
    i++;
  }
  while (out.length < lines) out.push(`// padding line ${out.length}`);
  return out.join('\n') + '\n';
}

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function main(): Promise<void> {
  const lines = 1000;
  const text = document(lines);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pipec-bench-'));
  const file = path.join(dir, 'big.pipe');
  fs.writeFileSync(file, text);
  const uri = pathToFileURL(file).href;
  const client = new LspClient();
  await client.initialize(pathToFileURL(dir).href);
  const first = client.nextDiagnostics(uri);
  client.notify('textDocument/didOpen', { textDocument: { uri, languageId: 'pipe', version: 1, text } });
  const initial = await first;
  if (initial.length) {
    await client.shutdown();
    throw new Error(`the benchmark document should be clean: ${JSON.stringify(initial[0])}`);
  }
  const times: number[] = [];
  for (let v = 2; v < 2 + 40; v++) {
    // Alternate between a clean edit and one with an error, as typing does.
    const edited = v % 2 ? text.replace('batch: 4', `batch: ${v}`) : text.replace('mlp_gelu(depth: 2,', 'mlp_gelu(depth: 2, oops: 1,');
    const t0 = process.hrtime.bigint();
    const next = client.nextDiagnostics(uri);
    client.notify('textDocument/didChange', { textDocument: { uri, version: v }, contentChanges: [{ text: edited }] });
    await next;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (v >= 7) times.push(ms); // the first edits warm the JIT
  }
  await client.shutdown();
  console.log(`didChange -> publishDiagnostics, ${lines}-line document, ${times.length} edits (node ${process.version}, ${os.cpus().length} cores)`);
  console.log(`  median ${quantile(times, 0.5).toFixed(1)} ms   p90 ${quantile(times, 0.9).toFixed(1)} ms   min ${Math.min(...times).toFixed(1)} ms   (goal: median <= 50 ms)`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
