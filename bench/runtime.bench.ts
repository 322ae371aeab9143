// npm run bench:runtime -- training-step time (forward, backward, AdamW) for the quickstart model and a
// 7.3M-parameter reference transformer, on every backend that loads here (webgpu with its adapter named
// beside each figure; tensorflow and wasm op by op and as the compiled step, runtime/graph-step), plus
// wasm with the matmul routing off (one thread; tfjs's own matmul forms, op by op) in the same run;
// medians, and the ratio to that first row. Each figure names the backend tfjs ran, its threads and the
// machine. (The first row is not stock tfjs-wasm: pipec's kernels -- wasm-extras.ts, which training needs,
// UnsortedSegmentSum among them -- are registered in every wasm process.)
//   node dist/bench/runtime.bench.js [--steps N] [--with-cpu]
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type { ModelDef } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { initBackend, probeBackends, type ConcreteBackend } from '../runtime/backend/backends.js';
import { setMatmulRouting } from '../runtime/backend/kernels.js';
import { microBatchWork, wasmThreadsWanted } from '../runtime/backend/wasm-threads.js';
import { collate, type Batch } from '../runtime/data/batch.js';
import { imageShapeOf, prepareDataset, syntheticTokenizer } from '../runtime/data/datasets.js';
import { ModelRunner } from '../runtime/model.js';
import { ParamStore, paramSpecs } from '../runtime/params.js';
import { Rng } from '../runtime/random.js';
import { Optimizer } from '../runtime/train/optimizer.js';
import { accumulateGradients } from '../runtime/train/step.js';
import { CompiledStepper } from '../runtime/graph-step/compiled-step.js';
import { repo } from '../test/paths.js';
import { median } from './stats.js';

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

interface Measured {
  ms: number;
  tokensPerSec: number;
  /** tf.getBackend() in the measuring process. */
  backend: string;
  /** Threads the backend computes with, as far as it says (see backendThreads). */
  threads: string;
}

/** The threads of the active backend: wasm's own count; libtensorflow's intra-op pool (TF_NUM_INTRAOP_THREADS,
 * else its default, one per logical core); JavaScript's one; a GPU's are not threads of this machine. */
async function backendThreads(): Promise<string> {
  const b = tf.getBackend();
  if (b === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    return String(wasm.getThreadsCount());
  }
  if (b === 'tensorflow') return process.env.TF_NUM_INTRAOP_THREADS ? `${process.env.TF_NUM_INTRAOP_THREADS} (TF_NUM_INTRAOP_THREADS)` : `${os.availableParallelism()} (libtensorflow default)`;
  if (b === 'cpu') return '1 (JavaScript)';
  return 'n/a (GPU)';
}

async function measure(w: Workload, compiled = false): Promise<Omit<Measured, 'backend' | 'threads'>> {
  const params = new ParamStore(paramSpecs(w.model.components), 0);
  const trainable = new Map([...params.vars]);
  const opt = new Optimizer('adamw', { lr: 1e-4, weight_decay: 0.01 }, trainable);
  const runner = new ModelRunner(w.model, params);
  const batch = w.batch();
  const tokens = batch.info.attentionMask.reduce((a, b) => a + b, 0);
  const lastUpdated = [...trainable.values()].at(-1)!; // the optimizer updates in this order
  const times: number[] = [];
  // The compiled step traces two steps, then loads its graph; its first run (TensorFlow optimises the
  // graph then) is a third warm-up step.
  const warmup = compiled ? 3 : 2;
  const stepper = compiled ? new CompiledStepper(CompiledStepper.compilerFor()!, runner, params.vars, trainable, opt, { clip: 0 }) : undefined;
  for (let i = 0; i < STEPS + warmup; i++) {
    const t0 = performance.now();
    if (stepper) stepper.step([batch], 1e-4);
    else {
      const { grads } = accumulateGradients(runner, trainable, [batch]);
      opt.apply(grads, 1e-4);
      for (const g of grads.values()) g.dispose();
    }
    // Wait for the step by reading back one scalar computed from the last parameter updated (the sum of its
    // first element): every backend runs a step's work in order, so it is ready only when the whole step
    // is, and only those 4 bytes come back. (Reading a whole parameter instead, e.g. the 2M-float
    // embedding, costs more than the step itself; the sum is its own one-element tensor, so no backend can
    // hand back a view of the parameter's buffer.) The loss was already read inside the step.
    tf.tidy(() => tf.sum(lastUpdated.reshape([-1]).slice(0, 1)).dataSync());
    if (i >= warmup) times.push(performance.now() - t0);
    await new Promise<void>((r) => setImmediate(r)); // finalisers run (webgpu's bind groups), as in training
  }
  stepper?.dispose();
  opt.dispose();
  params.dispose();
  const ms = median(times);
  return { ms, tokensPerSec: tokens / (ms / 1000) };
}

interface Run {
  label: string;
  backend: ConcreteBackend;
  routing: boolean;
  /** PIPEC_WASM_THREADS for the child (wasm only). */
  threads?: number;
  /** The compiled step (runtime/graph-step), as `pipec run` trains on tensorflow and wasm; else op by op. */
  compiled?: boolean;
  on?: string;
}

/** One measurement in a child process: each backend starts once per process (wasm's thread count too). */
function measureInChild(workload: number, r: Run): Measured | string {
  const env = { ...process.env, ...(r.threads ? { PIPEC_WASM_THREADS: String(r.threads) } : {}) };
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify({ workload, backend: r.backend, routing: r.routing, compiled: r.compiled }), '--steps', String(STEPS)], { env, encoding: 'utf8' });
  const line = child.stdout.split('\n').reverse().find((l) => l.startsWith('{'));
  if (child.status !== 0 || !line) return `failed (exit ${child.status}): ${child.stderr.trim().split('\n').pop() ?? ''}`;
  return JSON.parse(line) as Measured;
}

const childArg = args.indexOf('--child');
if (childArg >= 0) {
  const c = JSON.parse(args[childArg + 1]!) as { workload: number; backend: ConcreteBackend; routing: boolean; compiled?: boolean };
  await initBackend(c.backend);
  setMatmulRouting(c.routing);
  const m = await measure(workloads()[c.workload]!, c.compiled);
  console.log(JSON.stringify({ ...m, backend: tf.getBackend(), threads: await backendThreads() } satisfies Measured));
} else {
  const probes = (await probeBackends()).filter((p) => p.available && p.name !== 'tensorflow-gpu' && (WITH_CPU || p.name !== 'cpu'));
  const threads = Math.min(os.availableParallelism(), 8);
  const runs: Run[] = [{ label: 'wasm, routing off', backend: 'wasm', routing: false, threads: 1 }];
  for (const p of probes) {
    if (p.name === 'tensorflow') {
      runs.push({ label: 'tensorflow, op by op', backend: p.name, routing: true });
      runs.push({ label: 'tensorflow, compiled step', backend: p.name, routing: true, compiled: true });
    } else if (p.name !== 'wasm') runs.push({ label: p.name, backend: p.name, routing: true, ...(p.name === 'webgpu' ? { on: p.detail } : {}) });
    else {
      // pipec's kernels op by op and as the compiled step (its kernels replayed), on one thread and on one per core
      for (const n of threads > 1 ? [1, threads] : [1]) {
        const t = `${n} thread${n === 1 ? '' : 's'}`;
        runs.push({ label: `wasm op by op, ${t}`, backend: 'wasm', routing: true, threads: n });
        runs.push({ label: `wasm compiled, ${t}`, backend: 'wasm', routing: true, threads: n, compiled: true });
      }
    }
  }
  console.log(`runtime benchmark: median of ${STEPS} training steps (after 2 warm-up; the compiled step after 3: two traced, its first compiled run), forward + backward + AdamW; ${new Date().toISOString()}`);
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const machine = `${cpu}, ${os.availableParallelism()} threads`;
  console.log(`machine: ${machine}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.arch()}; node ${process.version}; load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.log('each figure from its own process, measured on this machine; "backend" is tf.getBackend() there, "threads" what it computes with');
  if (!WITH_CPU) console.log('(cpu backend skipped: pure JavaScript, far slower; --with-cpu to include)');
  for (const [i, w] of workloads().entries()) {
    // Multiply-adds per micro-batch as `pipec run` estimates them, which sets wasm's default thread count
    const b = w.batch();
    const work = microBatchWork(paramSpecs(w.model.components).reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0), b.info.batch, b.info.length);
    const defaultThreads = wasmThreadsWanted(work);
    console.log(`\n${w.name}; pipec's default on wasm: ${defaultThreads} thread${defaultThreads === 1 ? '' : 's'} (${(work / 1e9).toFixed(1)} G multiply-adds per micro-batch)`);
    console.log('  run                           step ms   tokens/s   vs first row   backend, threads, machine');
    let stock = 0;
    for (const r of runs) {
      const m = measureInChild(i, r);
      if (typeof m === 'string') {
        console.log(`  ${r.label.padEnd(27)} ${m}`);
        continue;
      }
      if (!stock) stock = m.tokensPerSec;
      const mark = r.compiled && (r.backend !== 'wasm' || r.threads === defaultThreads) ? `   <- pipec default on ${r.backend}` : '';
      const where = `${m.backend}, threads: ${m.threads}, ${r.on ? `GPU adapter ${r.on}, ` : ''}on ${machine}`;
      console.log(`  ${r.label.padEnd(27)} ${m.ms.toFixed(1).padStart(9)} ${m.tokensPerSec.toFixed(0).padStart(10)}   ${`${(m.tokensPerSec / stock).toFixed(2)}x`.padStart(12)}   ${where}${mark}`);
    }
  }
}
