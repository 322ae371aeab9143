// Shared by the export suites (test/export*.test.ts): compiling the repository's programs, writing an
// export, torchrun, comparing losses, logits and checkpoints, and pipec's reference run for 2 processes.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Graph } from '../../compiler/ir/graph.js';
import { compile } from '../../compiler/service/service.js';
import { collate } from '../../runtime/data/batch.js';
import { imageShapeOf, prepareDataset } from '../../runtime/data/datasets.js';
import { runTokenizer } from '../../runtime/export/prepare.js';
import { exportTorch } from '../../runtime/export/torch.js';
import { ModelRunner } from '../../runtime/model.js';
import { modelParamSpecs, ownersOf, ParamStore } from '../../runtime/params.js';
import { loadComponents } from '../../runtime/train/checkpoint.js';
import { readMetrics, type StepMetrics } from '../../runtime/train/metrics.js';
import { Progress } from '../../runtime/train/progress.js';
import { microBatch, runProgram, stageSteps } from '../../runtime/train/run.js';
import { readWeights } from '../../runtime/weights/safetensors.js';
import { childEnv, tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

export const quiet = new Progress({ write: () => true });

/** Compiles a program of the repository; `source` is kept repository-relative so exports are machine-independent. */
export function graphOf(rel: string, sets: string[] = []): Graph {
  const r = compile({ file: repo(rel), configFiles: [], sets, lower: true });
  assert.ok(r.graph, `${rel} compiles: ${r.diagnostics.map((d) => d.message).join('; ')}`);
  return { ...r.graph, source: rel };
}

/** Writes the PyTorch export of `g` into `dir`; returns `dir`. */
export function writeExport(g: Graph, dir: string, o: { customAsBase?: boolean } = {}): string {
  for (const [name, text] of exportTorch(g, { ...o, baseDir: repo(path.dirname(g.source)) })) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/** A TCP port nobody listens on now (for torchrun's rendezvous). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Debian's torch 1.13 torchrun under Python 3.11 crashes in to_map without these (docs/export.md). */
export const TORCHRUN_FIX = ['--redirects', '1', '--tee', '1'];

/** Runs `torchrun --nproc_per_node N` (python -m torch.distributed.run, gloo on CPU) in `cwd`, its logs under cwd/torchrun-logs; returns its output. */
export async function torchrun(python: string, nproc: number, script: string, args: string[], cwd: string): Promise<string> {
  const port = await freePort();
  const r = spawnSync(python, ['-m', 'torch.distributed.run', '--nproc_per_node', String(nproc), ...TORCHRUN_FIX, '--log_dir', path.join(cwd, 'torchrun-logs'), '--master_addr', '127.0.0.1', '--master_port', String(port), script, ...args],
    { encoding: 'utf8', cwd, env: childEnv(), maxBuffer: 64 * 1024 * 1024 });
  const output = `${r.stdout}\n${r.stderr}`;
  assert.equal(r.status, 0, `torchrun --nproc_per_node ${nproc} ${script} ${args.join(' ')} failed:\n${output.slice(-4000)}`);
  return output;
}

/** Mean of the losses of `rows`. */
export const meanLoss = (rows: { loss: number }[]) => rows.reduce((a, m) => a + m.loss, 0) / rows.length;

/** Relative difference of two losses. */
export const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(a), 1e-12);

type LossRow = { loss: number; stage: string; step: number };

/** The first `steps` losses of two runs agree step by step to `tol` (relative); returns the worst difference. */
export function compareLosses(name: string, a: LossRow[], b: LossRow[], steps: number, tol = 1e-4): number {
  assert.ok(a.length >= steps && b.length >= steps, `${name}: ${a.length} pipec steps, ${b.length} torch steps`);
  let worst = 0;
  for (let i = 0; i < steps; i++) {
    assert.deepEqual([b[i]!.stage, b[i]!.step], [a[i]!.stage, a[i]!.step]);
    const r = rel(a[i]!.loss, b[i]!.loss);
    worst = Math.max(worst, r);
    assert.ok(r < tol, `${name} ${a[i]!.stage} step ${a[i]!.step}: pipec ${a[i]!.loss}, torch ${b[i]!.loss} (relative ${r.toExponential(2)})`);
  }
  console.log(`      ${name}: ${steps} steps, worst relative loss difference ${worst.toExponential(2)}`);
  return worst;
}

/** Two whole runs: the same steps, and every loss to `tol`. */
export function sameLosses(name: string, a: LossRow[], b: LossRow[], tol: number): void {
  assert.equal(b.length, a.length, `${name}: ${b.length} steps, pipec ${a.length}`);
  compareLosses(name, a, b, a.length, tol);
}

/** pipec's logits for prepared micro-batch `k` of `stage` under the given weights folder (on the active backend). */
export function pipecLogits(g: Graph, stageName: string, weightsDir: string, k: number): { data: Float32Array; shape: number[] } {
  const stage = g.stages.find((s) => s.name === stageName)!;
  const model = g.models.find((m) => m.name === stage.model)!;
  const { tokenizer } = runTokenizer(g, repo(path.dirname(g.source)));
  const data = prepareDataset(stage.data, { graph: g, baseDir: repo(path.dirname(g.source)), model, tokenizer, maxLength: stage.max_length });
  const { microPerEpoch } = stageSteps(stage, data.train.length);
  const batch = collate(microBatch(data.train, stage, microPerEpoch, k), tokenizer.padId ?? 0, imageShapeOf(model));
  const store = new ParamStore(modelParamSpecs(model), 12345);
  loadComponents(weightsDir, ownersOf(model), store); // the components and, from their PEFT folders, the adapters
  const out = tf.tidy(() => {
    const r = new ModelRunner(model, store).forward({ pixels: batch.pixels ? tf.tensor4d(batch.pixels.data, batch.pixels.shape) : null, inputIds: batch.inputIds, info: batch.info });
    return { data: r.logits.dataSync() as Float32Array, shape: r.logits.shape };
  });
  store.dispose();
  return out;
}

/** A raw float32 file (what train.py --eval-logits writes). */
export function readF32(file: string): Float32Array {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** max |a - b| / max |a|: agreement relative to the scale of `a`. */
export function maxRelDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) (d = Math.max(d, Math.abs(a[i]! - b[i]!)), m = Math.max(m, Math.abs(a[i]!)));
  return d / Math.max(m, 1e-12);
}

/** Largest |a - b| over every tensor of two weights folders (pipec's reader), relative to the largest |a| of its tensor. */
export function tensorsAgree(name: string, dirA: string, dirB: string, tol: number): void {
  const a = readWeights(dirA), b = readWeights(dirB);
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), `${name}: the same tensors`);
  let worst = 0;
  for (const [k, x] of a) worst = Math.max(worst, maxRelDiff(x.data, b.get(k)!.data));
  console.log(`      ${name}: ${a.size} tensors, worst difference ${worst.toExponential(2)} of the tensor's largest value`);
  assert.ok(worst < tol, `${name}: ${worst}`);
}

export interface Reference {
  /** The run directory. */
  dir: string;
  metrics: StepMetrics[];
  /** Seconds the run took. */
  seconds: number;
}

const references = new Map<string, Promise<Reference>>();

/**
 * pipec's own run of a repository program (wasm, fp32, no evaluation): the reference the exported trainer is
 * compared with. Made once per test process for each program, --set list and --stop-after, by whichever
 * test needs it first (again if its folder has gone with the temp root).
 */
export async function pipecReference(rel: string, o: { sets?: string[]; stopAfter?: number } = {}): Promise<Reference> {
  const key = JSON.stringify([rel, o.sets ?? [], o.stopAfter ?? null]);
  let run = references.get(key);
  // in parallel mode the temp root goes after each file, and this process may then run another file
  if (run && !fs.existsSync((await run.catch(() => ({ dir: '' }))).dir)) run = undefined;
  if (!run) {
    run = (async () => {
      const dir = path.join(tmpDir(`reference-${path.basename(rel, '.pipe')}`), 'pipec');
      const t0 = performance.now();
      await runProgram({ graph: graphOf(rel, o.sets), baseDir: repo(path.dirname(rel)), runDir: dir, backend: 'wasm', out: quiet, stopAfterSteps: o.stopAfter, evaluate: false });
      return { dir, metrics: readMetrics(dir), seconds: (performance.now() - t0) / 1000 };
    })();
    references.set(key, run);
  }
  return run;
}

/** pipec's tiny.pipe with accumulate 2: the reference for the exported trainer with 2 processes x accumulate 1 (DDP, FSDP). */
export const tinyAccumulate2 = () => pipecReference('test/runtime/tiny.pipe', { sets: ['stage.align.accumulate=2', 'stage.finetune.accumulate=2'] });
