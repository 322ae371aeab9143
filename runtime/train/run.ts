// `pipec run`: trains a compiled graph stage by stage into a run directory:
//   RUN/graph.json          the resolved graph that was run
//   RUN/tokenizer.json      the tokenizer (generated datasets write their word vocabulary)
//   RUN/metrics.jsonl       one line per optimizer step;  RUN/eval.jsonl  evaluation figures
//   RUN/dashboard.html      the charts;  RUN/tb/  TensorBoard event files (metrics-log.ts writes these four)
//   RUN/checkpoints/        see checkpoint.ts;  RUN/summary.json  the outcome, incl. evaluation
//   RUN/run.json            marks the folder as this program's run;  RUN/run.lock  while a process writes it
// The folder is opened under its lock, and whether this run may use it is decided there (run-dir.ts).
// Determinism: initialisation and data order depend only on the stage seed, so `--resume` from a
// checkpoint at step s replays exactly the batches an uninterrupted run would have seen after s.
// Data streams (runtime/data/feed.ts): records are read by index and their images decoded in worker
// threads a few micro-batches ahead, so memory does not grow with the dataset.
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Graph, ModelDef, StagePlan } from '../../compiler/ir/graph.js';
import { initBackend, type ActiveBackend, type BackendChoice } from '../backend/backends.js';
import { microBatchWork } from '../backend/wasm-threads.js';
import type { Batch, Sample } from '../data/batch.js';
import { imageShapeOf, prepareDataset } from '../data/datasets.js';
import { StageFeed } from '../data/feed.js';
import { ImagePool } from '../data/image-workers.js';
import { preflightRun } from '../data/preflight.js';
import { openStageData, type StageData } from '../data/stage-data.js';
import { runTokenizer } from '../data/run-tokenizer.js';
import { loadCustomOps } from '../custom.js';
import { M, runtimeError } from '../errors.js';
import { ModelRunner } from '../model.js';
import { modelParamSpecs, ownersOf, ParamStore } from '../params.js';
import { Rng } from '../random.js';
import { writeFileAtomic } from '../weights/atomic.js';
import { checkpointName, loadComponents, loadOptimizer, loadWeightsInto, saveCheckpoint, type SavePhase, type StageSummary, type TrainerState } from './checkpoint.js';
import { evaluateShapes, type EvalResult } from './evaluate.js';
import { graphHash } from './graph-hash.js';
import { verifyManifest } from './manifest.js';
import { accuracyPoints, MetricsLog } from './metrics-log.js';
import { type DropoutStream, loraModules } from '../ops/lora.js';
import { CompiledStepper } from '../graph-step/compiled-step.js';
import { clipByGlobalNorm, Optimizer, type ParamSettings } from './optimizer.js';
import { Progress } from './progress.js';
import { accumulateGradients, realTokens } from './step.js';
import { findResumePoint, type ResumePoint } from './resume.js';
import { type PackageFile, runPythonPackages } from './python-package.js';
import { openRunDir, writeRunMarker, type OpenRunDir } from './run-dir.js';
import { lrMultiplier } from './schedule.js';

export { graphHash };

export interface RunOptions {
  graph: Graph;
  /** Directory that relative paths of the program (weights, data) are resolved against. */
  baseDir: string;
  runDir: string;
  backend: BackendChoice;
  resume?: boolean;
  /** Start again in a folder that holds a run (of this program or another): its files are deleted first. */
  overwrite?: boolean;
  /** The command line, recorded in the lock so a second run can say who holds the folder. */
  command?: string;
  out?: Progress;
  /** Stop (as if killed) after this many optimizer steps in total: for tests and benchmarks. */
  stopAfterSteps?: number;
  evaluate?: boolean;
  /**
   * On the tensorflow backend, run each training step as one compiled graph (runtime/graph-step; the
   * default). false, or PIPEC_COMPILED_STEP=0 in the environment: op by op, the reference it is tested against.
   */
  compiledStep?: boolean;
  hooks?: { beforePublish?: (checkpoint: string) => void; checkpointPhase?: (phase: SavePhase, checkpoint: string) => void };
}

export interface RunSummary {
  backend: string;
  /** Every stage of the run, also those finished by an earlier process before a resume. */
  stages: StageSummary[];
  evaluation?: EvalResult[];
  /** Training time of the whole run, across the processes of a resumed run. */
  seconds: number;
  stopped_early?: boolean;
}

function stagesInOrder(g: Graph): StagePlan[] {
  return g.stages; // the compiler emits them in declaration order, `after` targets first (checked)
}

/** Micro-batches of one epoch in a seeded order: the same on every run, backend and resume. */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  return Rng.derive(seed, `epoch${epoch}`).shuffle(Array.from({ length: n }, (_, i) => i));
}

export function stageSteps(stage: StagePlan, trainCount: number): { microPerEpoch: number; steps: number } {
  const microPerEpoch = Math.floor(trainCount / stage.batch);
  const steps = stage.steps ?? Math.floor(((stage.epochs ?? 1) * microPerEpoch) / stage.accumulate);
  return { microPerEpoch, steps };
}

/** The samples of micro-batch `k` (0-based over the whole stage). */
export function microBatch(samples: readonly Sample[], stage: StagePlan, microPerEpoch: number, k: number): Sample[] {
  const epoch = Math.floor(k / microPerEpoch), within = k % microPerEpoch;
  const order = epochOrder(samples.length, stage.seed, epoch);
  return order.slice(within * stage.batch, (within + 1) * stage.batch).map((i) => samples[i]!);
}

export async function runProgram(o: RunOptions): Promise<RunSummary> {
  // read (and checked against the graph) before the folder is touched: every checkpoint carries these bytes
  const packages = runPythonPackages(o.graph, o.baseDir);
  const run = openRunDir(o.runDir, { hash: graphHash(o.graph), policy: o.resume ? 'resume' : o.overwrite ? 'overwrite' : 'new', command: o.command ?? process.argv.slice(1).join(' ') });
  const pool = new ImagePool();
  const opened: StageData[] = [];
  try {
    return await trainInRunDir({ ...o, runDir: run.dir }, run, pool, opened, packages);
  } finally {
    try {
      for (const d of opened) d.close();
    } finally {
      await pool.close();
      run.close();
    }
  }
}

/** Micro-batches the feed prepares ahead of the one being trained: a whole optimizer step and more (PIPEC_DATA_AHEAD overrides). */
function feedAhead(stage: StagePlan): number {
  const env = process.env.PIPEC_DATA_AHEAD;
  return env && /^\d+$/.test(env) ? Number(env) : Math.max(4, 2 * stage.accumulate);
}

/** Where the run continues (--resume), after the notes of opening the folder; then the folder is marked as this run's. */
function startRun(o: RunOptions, run: OpenRunDir, hash: string, out: Progress): ResumePoint | null {
  for (const n of run.notes) out.line(`note: ${n}`);
  let resumeFrom: ResumePoint | null = null;
  if (o.resume) {
    resumeFrom = findResumePoint(o.runDir, o.graph, hash, (l) => out.line(l));
    const { state } = resumeFrom;
    out.line(`resuming from ${path.relative(process.cwd(), resumeFrom.dir) || resumeFrom.dir} (stage ${state.stage}, step ${state.step}/${state.total_steps})`);
  }
  writeRunMarker(o.runDir, o.graph, hash);
  return resumeFrom;
}

async function trainInRunDir(o: RunOptions, run: OpenRunDir, pool: ImagePool, opened: StageData[], packages: ReadonlyMap<string, readonly PackageFile[]>): Promise<RunSummary> {
  const t0 = performance.now();
  const out = o.out ?? new Progress(process.stderr);
  // The size of the largest stage's micro-batch, for the wasm backend's thread count (wasm-threads.ts)
  const work = Math.max(0, ...o.graph.stages.map((s) => microBatchWork(s.memory.total_params, s.batch, s.max_length)));
  const backend: ActiveBackend = await initBackend(o.backend, { work });
  out.line(backend.note);
  const g = o.graph;
  const hash = graphHash(g);
  const resumeFrom = startRun(o, run, hash, out);
  const log = new MetricsLog(o.runDir, g, resumeFrom?.state); // on resume, first drops the steps it redoes
  writeFileAtomic(path.join(o.runDir, 'graph.json'), JSON.stringify(g, null, 2) + '\n');

  // The run's tokenizer (a dataset's tokenizer.json, else the generated word vocabulary), kept in the run folder
  const { tokenizer, json: tokenizerJson } = runTokenizer(g, o.baseDir);
  writeFileAtomic(path.join(o.runDir, 'tokenizer.json'), tokenizerJson);

  // Every stage's data, read as training will read it, before any stage trains (runtime/data/preflight.ts).
  const checks = preflightRun({ graph: g, baseDir: o.baseDir, tokenizer, cacheDir: o.runDir, log: (s) => out.line(s) });

  // Stages an earlier process finished come from the checkpoint, so summary.json covers every stage
  const summary: RunSummary = { backend: backend.name, stages: [...(resumeFrom?.state.stages_done ?? [])], seconds: 0 };
  const carriedSeconds = resumeFrom?.state.elapsed?.run_seconds ?? 0;
  const stageCheckpoints: Record<string, string> = { ...(resumeFrom?.state.stage_checkpoints ?? {}) };
  let params: ParamStore | null = null;
  let paramsModel: string | null = null;
  let totalSteps = 0;
  let lastStage: { model: ModelDef; stage: StagePlan } | null = null;

  const stages = stagesInOrder(g);
  for (let si = 0; si < stages.length; si++) {
    const stage = stages[si]!;
    if (resumeFrom && si < resumeFrom.state.stage_index) continue; // finished before the interruption
    const model = g.models.find((m) => m.name === stage.model)!;
    // The records the pre-flight passed, read by index as training goes (runtime/data/stage-data.ts)
    const data = openStageData({ graph: g, stage, model, tokenizer, baseDir: o.baseDir, cacheDir: o.runDir, checks });
    opened.push(data);
    for (const w of data.warnings) out.line(`warning PIPE9008: ${w}`);
    lastStage = { model, stage };
    const samples = data.orders.samplesPerEpoch;
    const { steps } = stageSteps(stage, samples);
    if (steps < 1) throw runtimeError(M.DataBadRecord, [0, `dataset "${stage.data}" has ${samples} training records, fewer than one batch of ${stage.batch}`], undefined, 'lower the batch size or add data');

    let fresh = false;
    // Parameters: fresh (seeded) or declared weights, then hand-off from earlier stages, then the checkpoint when resuming.
    if (!params || paramsModel !== model.name) {
      params?.dispose();
      fresh = true;
      params = new ParamStore(modelParamSpecs(model), stage.seed);
      paramsModel = model.name;
      for (const c of model.components) if (c.weights) loadWeightsInto(path.resolve(o.baseDir, c.weights), params.ofComponent(c.name), params, c.weights);
    }
    // Hand-off: after a resume, or into a different model, the previous stages' components come from
    // their final checkpoints; within one process and model they are already in memory.
    const resumingHere = resumeFrom && si === resumeFrom.state.stage_index ? resumeFrom : null;
    if (fresh && si > 0 && !resumingHere) { // a resume's checkpoint holds every component itself
      for (const h of handoffsOf(g, stage, model)) if (stageCheckpoints[h.from]) loadHandoff(path.join(o.runDir, 'checkpoints', stageCheckpoints[h.from]!), h.component, params);
    }
    if (resumingHere) loadComponents(resumingHere.dir, ownersOf(model), params);
    if (resumingHere?.state.final) continue; // the interruption came after this stage had finished

    const trainable = new Map<string, tf.Variable>();
    for (const c of stage.train) for (const n of params.ofComponent(c)) trainable.set(n, params.get(n));
    const own = new Map<string, ParamSettings>();
    for (const g of stage.param_groups ?? []) for (const n of params.ofComponent(g.name)) own.set(n, g);
    const optimizer = new Optimizer(stage.optimizer.name, stage.optimizer.attrs, trainable, own);
    let step = 0;
    if (resumingHere) {
      const was = resumingHere.state.data?.samples_per_epoch;
      if (was !== undefined && was !== samples) throw runtimeError(M.ResumeMismatch, [`stage ${stage.name} was trained on ${was} samples per epoch, its data now gives ${samples}`], { file: resumingHere.dir }, 'resume with the data the run started with, or start again with --overwrite');
      if (resumingHere.state.total_steps !== steps) throw runtimeError(M.ResumeMismatch, [`stage ${stage.name} had ${resumingHere.state.total_steps} steps, now ${steps} (did its data change?)`], { file: resumingHere.dir }, 'resume with the data the run started with, or start again with --overwrite');
      step = resumingHere.state.step;
      if (trainable.size) loadOptimizer(resumingHere.dir, optimizer, resumingHere.state.optimizer?.step ?? 0);
    }
    const runner = new ModelRunner(model, params, await loadCustomOps(model, o.baseDir));
    const imageShape = imageShapeOf(model);
    const padId = tokenizer.padId ?? 0;
    const baseLr = Number(stage.optimizer.attrs['lr']);
    out.line(`stage ${stage.name}: train [${stage.train.join(', ')}], frozen [${stage.freeze.join(', ')}]; ${samples} records, ${steps} steps of global batch ${stage.global_batch} (batch ${stage.batch} x accumulate ${stage.accumulate})${step ? `, from step ${step}` : ''}`);
    for (const a of model.adapters ?? []) if (a.quantize !== 'none' && stage.train.includes(a.name)) out.line(`note: adapter ${a.name} declares quantize: ${a.quantize} (QLoRA); pipec's runtime holds and computes \`${a.component}\` in fp32 (the exported PyTorch program quantizes it on CUDA)`);
    // tfjs has no bf16/fp16 compute on any of pipec's backends: say so instead of ignoring the field.
    if (stage.precision !== 'fp32') out.line(`note: stage ${stage.name} declares ${stage.precision}; backend ${backend.name} has no ${stage.precision} compute, so it trains with fp32 weights and compute (the exported PyTorch program autocasts to ${stage.precision} on CUDA)`);
    const unchecked = stage.gradient_checkpointing ? [...new Set(model.nodes.filter((n) => n.op === 'custom' && n.component).map((n) => n.component!))] : [];
    for (const c of unchecked) out.line(`note: stage ${stage.name} sets gradient_checkpointing; custom component ${c} is recomputed in backward only where it calls its base op (its own layers keep their activations in pipec's runtime)`);
    const nonFinite = (loss: number) =>
      runtimeError(M.NonFiniteLoss, [String(loss), stage.name, step + 1], undefined, `the last good checkpoint is kept in ${path.join(o.runDir, 'checkpoints')}; lower the learning rate or check the data`);
    // tensorflow runs each step as one graph, wasm as a replay of its kernels (runtime/graph-step); other
    // backends, and PIPEC_COMPILED_STEP=0, op by op. LoRA dropout draws its masks in JavaScript, element
    // by element over the layer's input, so it cannot be compiled, and the compiled step's padding to a
    // length bucket would draw other masks than the exported program's: such a model trains op by op.
    const loraDropout = [...loraModules(model).values()].some((u) => u.dropout > 0);
    const compiler = o.compiledStep === false || process.env['PIPEC_COMPILED_STEP'] === '0' ? undefined : CompiledStepper.compilerFor();
    if (compiler && loraDropout && trainable.size) out.line(`note: the compiled step is off for stage ${stage.name}: LoRA dropout draws its masks in JavaScript; it trains op by op`);
    const compiled = compiler && !loraDropout && trainable.size
      ? new CompiledStepper(compiler, runner, params.vars, trainable, optimizer, { clip: stage.clip_grad, maxLength: stage.max_length, gradientCheckpointing: stage.gradient_checkpointing, note: (l) => out.line(l) })
      : undefined;
    const eagerStep = (micro: Batch[], lr: number, dropout: (a: number) => DropoutStream) => {
      const { grads, loss, lmLoss, auxLoss, tokens } = accumulateGradients(runner, trainable, micro, { gradientCheckpointing: stage.gradient_checkpointing, dropout });
      if (!Number.isFinite(loss)) {
        for (const t of grads.values()) t.dispose();
        throw nonFinite(loss);
      }
      const gradNorm = clipByGlobalNorm(grads, stage.clip_grad);
      optimizer.apply(grads, lr);
      for (const t of grads.values()) t.dispose();
      return { loss, lmLoss, auxLoss, tokens, gradNorm };
    };
    const stageT0 = performance.now();
    let tokensSeen = 0, lastLoss = NaN;
    // this stage's training time and tokens, including an earlier process's before the resume
    const carried = resumingHere?.state.elapsed ?? { stage_seconds: 0, stage_tokens: 0 };
    const stageSeconds = () => carried.stage_seconds + (performance.now() - stageT0) / 1000;

    const checkpoint = (final: boolean) => {
      const name = checkpointName(si, stage.name, step);
      if (final) stageCheckpoints[stage.name] = name;
      const state: TrainerState = {
        format: 'pipec.checkpoint', version: 1, graph_hash: hash, stage: stage.name, stage_index: si, step, total_steps: steps, final,
        stage_checkpoints: { ...stageCheckpoints }, optimizer: { name: optimizer.name, step: optimizer.state.step }, time: new Date().toISOString(),
        stages_done: [...summary.stages],
        data: { samples_per_epoch: samples, micro_batch: step * stage.accumulate },
        elapsed: { run_seconds: carriedSeconds + (performance.now() - t0) / 1000, stage_seconds: stageSeconds(), stage_tokens: carried.stage_tokens + tokensSeen },
      };
      run.lock.verify(); // a lock removed by hand under this process: stop before writing
      saveCheckpoint({
        runDir: o.runDir, name, components: model.components, adapters: model.adapters, params: params!, optimizer, state, keep: stage.checkpoint.keep, packages,
        beforePublish: () => o.hooks?.beforePublish?.(name), phase: (p) => o.hooks?.checkpointPhase?.(p, name),
      });
    };

    // Micro-batches from the stage's sources, prepared a few ahead (images decoded in worker threads)
    const feed = new StageFeed({ sources: data.sources, orders: data.orders, imageShape, padId, pool, ahead: feedAhead(stage), end: steps * stage.accumulate });
    feed.start(step * stage.accumulate);
    while (step < steps) {
      const stepT0 = performance.now();
      const waited0 = feed.waited;
      const micro: Batch[] = [];
      for (let a = 0; a < stage.accumulate; a++) micro.push(await feed.take());
      const first = step * stage.accumulate; // LoRA dropout's masks follow the micro-batch, so a resume draws the same ones
      const dropout = (a: number) => ({ seed: stage.seed, key: `${stage.name}/${first + a}` });
      const lr = baseLr * lrMultiplier(stage.schedule, step, steps);
      const r = compiled ? { ...compiled.step(micro, lr, dropout), tokens: micro.reduce((n, b) => n + realTokens(b), 0) } : eagerStep(micro, lr, dropout);
      const { loss, lmLoss, auxLoss, tokens, gradNorm } = r;
      if (!Number.isFinite(loss)) throw nonFinite(loss);
      // One event-loop turn per step (~0.1 ms): Node runs N-API finalisers only there, and the webgpu
      // backend's per-dispatch bind groups are freed by them (lavapipe crashes at 65530 otherwise).
      await new Promise<void>((r) => setImmediate(r));
      step++;
      totalSteps++;
      tokensSeen += tokens;
      lastLoss = loss;
      const elapsed = (performance.now() - stageT0) / 1000;
      const stepSec = (performance.now() - stepT0) / 1000;
      log.step({
        stage: stage.name, stage_index: si, step, loss, lm_loss: lmLoss, ...(auxLoss ? { aux_loss: auxLoss } : {}),
        lr, grad_norm: gradNorm, tokens, tokens_per_s: tokens / stepSec, elapsed_s: elapsed, data_wait_s: Math.round((feed.waited - waited0) * 1e4) / 1e4,
      });
      out.step({ stage: stage.name, step, total: steps, loss, lr, tokensPerSec: tokensSeen / elapsed, etaSec: (elapsed / (step - (resumingHere?.state.step ?? 0))) * (steps - step) });
      if (step < steps && stage.checkpoint.every > 0 && step % stage.checkpoint.every === 0) checkpoint(false);
      if (o.stopAfterSteps !== undefined && totalSteps >= o.stopAfterSteps) {
        compiled?.dispose();
        optimizer.dispose();
        params.dispose();
        summary.stopped_early = true;
        log.finish('stopped');
        summary.seconds = (performance.now() - t0) / 1000;
        return summary;
      }
    }
    const seconds = stageSeconds();
    summary.stages.push({ name: stage.name, steps, final_loss: lastLoss, seconds, tokens_per_s: (carried.stage_tokens + tokensSeen) / seconds, skipped_records: data.skipped });
    data.close();
    checkpoint(true);
    log.stageDone();
    compiled?.dispose();
    optimizer.dispose();
    // A custom class that computes a targeted layer without ctx.blocks.linear leaves its adapter unused: say so.
    for (const a of (model.adapters ?? []).filter((x) => stage.train.includes(x.name) && steps > 0)) {
      const missed = [...loraModules({ adapters: [a] }).keys()].filter((m) => !runner.loraUsed.has(m));
      if (missed.length) out.line(`note: adapter ${a.name} targets ${missed.length} layer${missed.length === 1 ? '' : 's'} that stage ${stage.name} never computed through pipec's linear layers (${missed.slice(0, 3).join(', ')}${missed.length > 3 ? ', ...' : ''}), so ${missed.length === 1 ? 'it was' : 'they were'} not adapted here; a custom class adapts its own layers where it computes them with ctx.blocks.linear(x, ctx.param(W))`);
    }
    out.line(`stage ${stage.name} done: ${steps} steps in ${seconds.toFixed(1)} s, final loss ${lastLoss.toFixed(4)}; waited ${feed.waited.toFixed(1)} s for data`);
  }

  // Held-out evaluation of generated data (small: its held-out part is prepared in memory)
  const evalData = o.evaluate !== false && lastStage && g.datasets.find((d) => d.name === lastStage!.stage.data)?.constructor === 'synthetic_shapes'
    ? prepareDataset(lastStage.stage.data, { graph: g, baseDir: o.baseDir, model: lastStage.model, tokenizer, maxLength: lastStage.stage.max_length })
    : undefined;
  if (lastStage && evalData?.heldoutRecords && params) {
    const runner = new ModelRunner(lastStage.model, params, await loadCustomOps(lastStage.model, o.baseDir));
    summary.evaluation = evaluateShapes({ runner, tokenizer, template: evalData.template, imageShape: imageShapeOf(lastStage.model), imageTokens: lastStage.model.image_tokens ?? 0 }, evalData);
    log.evaluation(accuracyPoints(summary.evaluation));
    for (const e of summary.evaluation) out.line(`held-out accuracy on "${e.question}" questions (${e.language}): ${(e.accuracy * 100).toFixed(1)}% (${e.correct}/${e.total})`);
  }
  summary.seconds = carriedSeconds + (performance.now() - t0) / 1000;
  run.lock.verify();
  writeFileAtomic(path.join(o.runDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  log.finish('finished');
  params?.dispose();
  return summary;
}

/**
 * What a stage takes over from earlier stages: the compiler's hand-offs, and an adapter of this model
 * that the stage it continues from trained (a LoRA stage after a LoRA stage starts from its adapter).
 */
function handoffsOf(g: Graph, stage: StagePlan, model: ModelDef): { component: string; from: string }[] {
  const out = [...stage.handoff];
  const prev = g.stages.find((s) => s.name === stage.after);
  for (const a of model.adapters ?? []) if (prev?.train.includes(a.name) && !out.some((h) => h.component === a.name)) out.push({ component: a.name, from: prev.name });
  return out;
}

/** A hand-off from an earlier stage's final checkpoint, whose files must match its manifest. */
function loadHandoff(dir: string, component: string, params: ParamStore): void {
  const damaged = verifyManifest(dir);
  if (damaged) throw runtimeError(M.RunDirInvalid, [dir, `this stage's hand-off reads it, but ${damaged}`], { file: dir }, 'the earlier stage\'s final checkpoint is damaged: start the run again with --overwrite');
  loadComponents(dir, [component], params);
}
