// npm run bench:runtime -- training-step time (forward, backward, AdamW) for the quickstart model and a
// 7.3M-parameter reference transformer, on every backend that loads here (webgpu with its adapter named
// beside each figure), plus stock tfjs wasm (our matmul routing off) in the same run; medians, and the
// ratio to stock wasm.
//   node dist/bench/runtime.bench.js [--steps N] [--with-cpu]
import * as tf from '@tensorflow/tfjs-core';
import type { ModelDef } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { initBackend, probeBackends, type ConcreteBackend } from '../runtime/backend/backends.js';
import { setMatmulRouting } from '../runtime/backend/kernels.js';
import { collate, type Batch } from '../runtime/data/batch.js';
import { imageShapeOf, prepareDataset, syntheticTokenizer } from '../runtime/data/datasets.js';
import { ModelRunner } from '../runtime/model.js';
import { ParamStore, paramSpecs } from '../runtime/params.js';
import { Rng } from '../runtime/random.js';
import { Optimizer } from '../runtime/train/optimizer.js';
import { accumulateGradients } from '../runtime/train/step.js';
import { repo } from '../test/paths.js';

const args = process.argv.slice(2);
const STEPS = Number(args[args.indexOf('--steps') + 1] || 0) || 7;
const WITH_CPU = args.includes('--with-cpu');

interface Workload {
  name: string;
  model: ModelDef;
  batch: () => Batch;
}

function workloads(): Workload[] {
  const q = compile({ file: repo('pipelines/quickstart.pipe'), configFiles: [], sets: [], lower: true }).graph!;
  const qm = q.models[0]!;
  const tok = syntheticTokenizer(q, 512);
  const data = prepareDataset('captions', { graph: q, model: qm, tokenizer: tok, maxLength: 64 });
  const qa = prepareDataset('questions', { graph: q, model: qm, tokenizer: tok, maxLength: 64 });
  const r = compile({ file: repo('bench/reference-lm.pipe'), configFiles: [], sets: [], lower: true }).graph!;
  const rm = r.models[0]!;
  const rng = new Rng(5);
  const ids = Int32Array.from({ length: 8 * 128 }, () => rng.int(8000));
  return [
    { name: 'quickstart (0.53M, batch 16 qa)', model: qm, batch: () => collate(qa.train.slice(0, 16), 0, imageShapeOf(qm)) },
    { name: 'quickstart (0.53M, batch 16 captions)', model: qm, batch: () => collate(data.train.slice(0, 16), 0, imageShapeOf(qm)) },
    {
      name: 'reference LM (7.25M, 8x128)', model: rm,
      batch: () => ({ inputIds: ids, labels: ids, info: { attentionMask: new Int32Array(8 * 128).fill(1), batch: 8, length: 128, imageStart: new Array(8).fill(-1) }, pixels: null, labelledTokens: 8 * 127 }),
    },
  ];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function measure(w: Workload): Promise<{ ms: number; tokensPerSec: number }> {
  const params = new ParamStore(paramSpecs(w.model.components), 0);
  const trainable = new Map([...params.vars]);
  const opt = new Optimizer('adamw', { lr: 1e-4, weight_decay: 0.01 }, trainable);
  const runner = new ModelRunner(w.model, params);
  const batch = w.batch();
  const tokens = batch.info.attentionMask.reduce((a, b) => a + b, 0);
  const times: number[] = [];
  for (let i = 0; i < STEPS + 2; i++) {
    const t0 = performance.now();
    const { grads } = accumulateGradients(runner, trainable, [batch]);
    opt.apply(grads, 1e-4);
    for (const g of grads.values()) g.dispose();
    tf.tidy(() => [...params.vars.values()][0]!.dataSync()); // wait for the update
    if (i >= 2) times.push(performance.now() - t0); // two warm-up steps
    await new Promise<void>((r) => setImmediate(r)); // finalisers run (webgpu's bind groups), as in training
  }
  opt.dispose();
  params.dispose();
  const ms = median(times);
  return { ms, tokensPerSec: tokens / (ms / 1000) };
}

const probes = (await probeBackends()).filter((p) => p.available && p.name !== 'tensorflow-gpu' && (WITH_CPU || p.name !== 'cpu'));
const runs: { label: string; backend: ConcreteBackend; routing: boolean; on?: string }[] = [{ label: 'wasm (stock tfjs)', backend: 'wasm', routing: false }];
for (const p of probes) runs.push({ label: p.name === 'wasm' ? 'wasm (pipec routing)' : p.name, backend: p.name, routing: true, ...(p.name === 'webgpu' ? { on: p.detail } : {}) });

console.log(`runtime benchmark: median of ${STEPS} training steps (after 2 warm-up), forward + backward + AdamW; ${new Date().toISOString()}`);
if (!WITH_CPU) console.log('(cpu backend skipped: pure JavaScript, far slower; --with-cpu to include)');
for (const w of workloads()) {
  console.log(`\n${w.name}`);
  console.log('  backend                  step ms   tokens/s   vs stock wasm');
  let stock = 0;
  for (const r of runs) {
    await initBackend(r.backend);
    setMatmulRouting(r.routing);
    const m = await measure(w);
    if (!stock) stock = m.tokensPerSec;
    console.log(`  ${r.label.padEnd(22)} ${m.ms.toFixed(1).padStart(9)} ${m.tokensPerSec.toFixed(0).padStart(10)}   ${(m.tokensPerSec / stock).toFixed(2)}x${r.on ? `   on ${r.on}` : ''}`);
  }
  setMatmulRouting(true);
}
