// `pipec eval FILE.pipe|RUN [--stage S | --data DATASET]`: the loss (and, for question answering, the
// exact-match accuracy) of a program -- its declared weights, fresh initialisation elsewhere -- or of a
// finished run -- its final checkpoint -- on a dataset of the graph, without training. The records come
// through the data pipeline training uses (prepareDataset -> runtime/data/pipeline.ts), with the run's
// tokenizer, the stage's template and max_length. The result is printed and, with -o, written as JSON.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph, StagePlan } from '../../compiler/ir/graph.js';
import { type BackendChoice, initBackend } from '../backend/backends.js';
import { microBatchWork } from '../backend/wasm-threads.js';
import { releaseWebgpu } from '../backend/webgpu.js';
import { imageShapeOf, prepareDataset } from '../data/datasets.js';
import { runTokenizer } from '../data/run-tokenizer.js';
import type { TextTokenizer } from '../data/vocab-tokenizer.js';
import { loadCustomOps } from '../custom.js';
import { M, runtimeError } from '../errors.js';
import { ModelRunner } from '../model.js';
import { modelParamSpecs, ownersOf, ParamStore } from '../params.js';
import { writeFileAtomic } from '../weights/atomic.js';
import { latestCheckpoint, loadComponents, loadWeightsInto, readTrainerState } from '../train/checkpoint.js';
import { readRunTokenizer } from '../train/generate-run.js';
import { evaluateSamples, type DatasetEval } from './evaluate-dataset.js';

export interface EvalCommandOptions {
  stage?: string;
  data?: string;
  backend: BackendChoice;
  output?: string;
  /** Per-record details in the JSON (token ids, labels, loss, last-position logits, answers). */
  records?: boolean;
}

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export interface EvalResult extends DatasetEval {
  format: 'pipec.eval';
  target: string;
  /** What the weights are: the program's declared weights, or the run's final checkpoint. */
  weights: { kind: 'program'; components: Record<string, string> } | { kind: 'run'; checkpoint: string };
  model: string;
  stage: string;
  dataset: string;
  backend: string;
  skipped: number;
  perplexity: number;
  seconds: number;
}

function pickStage(graph: Graph, o: EvalCommandOptions): { stage: StagePlan; dataset: string } {
  const stage = o.stage ? graph.stages.find((s) => s.name === o.stage) : graph.stages[graph.stages.length - 1];
  if (!stage) throw runtimeError(M.EvalBadArgument, [o.stage ? `there is no stage \`${o.stage}\`` : 'the program has no stage'], undefined, `stages: ${graph.stages.map((s) => s.name).join(', ') || 'none'}; eval takes the model, template, batch and max_length from one`);
  const dataset = o.data ?? stage.data;
  const d = graph.datasets.find((x) => x.name === dataset);
  if (!d) throw runtimeError(M.EvalBadArgument, [`there is no dataset \`${dataset}\``], undefined, `datasets: ${graph.datasets.map((d) => d.name).join(', ')}`);
  // a mixture is an order over its sources, not records of its own: each source is evaluated alone
  if (d.constructor === 'mixture') throw runtimeError(M.EvalBadArgument, [`\`${dataset}\` is a mixture`], undefined, `evaluate one of its sources with --data: ${(d.sources ?? []).map((s) => s.dataset).join(', ')}`);
  return { stage, dataset };
}

/** A program: its declared weights; components without weights keep their seeded initialisation. */
export async function evalProgram(graph: Graph, baseDir: string, target: string, o: EvalCommandOptions, io: Io): Promise<number> {
  const { stage, dataset } = pickStage(graph, o);
  const model = graph.models.find((m) => m.name === stage.model)!;
  const components: Record<string, string> = {};
  return evaluateWith(graph, baseDir, target, stage, dataset, runTokenizer(graph, baseDir).tokenizer, o, io, (params) => {
    for (const c of model.components) {
      if (c.weights) {
        loadWeightsInto(path.resolve(baseDir, c.weights), params.ofComponent(c.name), params, c.weights);
        components[c.name] = c.weights;
      } else if (params.ofComponent(c.name).length) {
        io.err(`note: \`${c.name}\` has no weights; it is evaluated as initialised (seed ${stage.seed})\n`);
        components[c.name] = `initialised (seed ${stage.seed})`;
      }
    }
    return { kind: 'program', components };
  });
}

/** A finished run: its graph, tokenizer and final checkpoint. */
export async function evalRun(runDir: string, o: EvalCommandOptions, io: Io): Promise<number> {
  const graphFile = path.join(runDir, 'graph.json');
  if (!fs.existsSync(graphFile)) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no graph.json (was it written by `pipec run`?)'], { file: runDir });
  const graph = JSON.parse(fs.readFileSync(graphFile, 'utf8')) as Graph;
  const ckpt = latestCheckpoint(runDir);
  if (!ckpt || !readTrainerState(ckpt).final) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no final checkpoint; finish the run first (`pipec run --resume`)'], { file: runDir });
  const { stage, dataset } = pickStage(graph, o);
  const baseDir = fs.existsSync(graph.source) ? path.dirname(path.resolve(graph.source)) : runDir;
  return evaluateWith(graph, baseDir, runDir, stage, dataset, readRunTokenizer(runDir), o, io, (params, components) => {
    loadComponents(ckpt, components, params);
    return { kind: 'run', checkpoint: path.relative(runDir, ckpt) };
  });
}

async function evaluateWith(
  graph: Graph, baseDir: string, target: string, stage: StagePlan, dataset: string, tokenizer: TextTokenizer, o: EvalCommandOptions, io: Io,
  load: (params: ParamStore, components: string[]) => EvalResult['weights'],
): Promise<number> {
  const t0 = performance.now();
  const model = graph.models.find((m) => m.name === stage.model)!;
  const backend = await initBackend(o.backend, { work: microBatchWork(stage.memory.total_params, stage.batch, stage.max_length) });
  io.err(`${backend.note}\n`);
  try {
    const data = prepareDataset(dataset, { graph, baseDir, model, tokenizer, maxLength: stage.max_length });
    if (data.skippedDetail) io.err(`warning PIPE9008: ${data.skippedDetail}\n`);
    const samples = [...data.train, ...data.heldout];
    if (!samples.length) throw runtimeError(M.EvalBadArgument, [`dataset \`${dataset}\` has no usable record`], undefined, '`pipec check --data` lists the records that fail');
    const params = new ParamStore(modelParamSpecs(model), stage.seed);
    try {
      const weights = load(params, ownersOf(model));
      const runner = new ModelRunner(model, params, await loadCustomOps(model, baseDir));
      // Exact match needs replies to questions: a `plain` (captioning) template has none.
      const accuracy = data.template.name !== 'plain' || !!data.template.jinja;
      io.err(`eval ${model.name} on \`${dataset}\` (stage ${stage.name}): ${samples.length} records${accuracy ? ', greedy answers compared' : ''}\n`);
      const r = evaluateSamples(runner, samples, tokenizer, { batch: stage.batch, imageShape: imageShapeOf(model), accuracy, details: !!o.records });
      const result: EvalResult = {
        format: 'pipec.eval', target, weights, model: model.name, stage: stage.name, dataset, backend: backend.name, skipped: data.skipped,
        ...r, perplexity: Math.exp(r.loss), seconds: (performance.now() - t0) / 1000,
      };
      io.out(`loss ${r.loss.toFixed(6)} (perplexity ${result.perplexity.toFixed(4)}) over ${r.tokens} tokens of ${r.records} records${r.aux_loss !== undefined ? `; router aux loss ${r.aux_loss.toFixed(6)}` : ''}\n`);
      if (r.accuracy) io.out(`exact match ${r.accuracy.correct}/${r.accuracy.total} (${(r.accuracy.exact_match * 100).toFixed(1)}%)\n`);
      if (o.output) {
        writeFileAtomic(path.resolve(o.output), JSON.stringify(result, null, 2) + '\n');
        io.err(`wrote ${o.output}\n`);
      }
      return 0;
    } finally {
      params.dispose();
    }
  } finally {
    releaseWebgpu();
  }
}
