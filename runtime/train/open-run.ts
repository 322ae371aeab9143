// A run folder opened for what comes after training (`pipec export --target hf`, the library API):
// the graph it ran, its final checkpoint, and the tokenizer, chat template and image marker its last
// stage trained with. Opening reads no tensors and needs no backend; loadRunModel loads the weights.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Graph, ModelDef, StagePlan } from '../../compiler/ir/graph.js';
import { validateGraph } from '../../compiler/ir/validate.js';
import { type BackendChoice, initBackend } from '../backend/backends.js';
import { type Batch, pixelTensor } from '../data/batch.js';
import { prepareDataset, type PreparedDataset, SHAPES_CHAT, templateFor } from '../data/datasets.js';
import { PLAIN, type TemplateSpec } from '../data/examples.js';
import { namedTokenizerFile } from '../data/run-tokenizer.js';
import { tokenizerFromJSON } from '../data/tokenizer.js';
import { type TextTokenizer, vocabTokenizerFromJson } from '../data/vocab-tokenizer.js';
import { loadCustomOps } from '../custom.js';
import { M, runtimeError } from '../errors.js';
import { ModelRunner } from '../model.js';
import { modelParamSpecs, ownersOf, ParamStore } from '../params.js';
import { latestCheckpoint, loadComponents, readTrainerState, type TrainerState } from './checkpoint.js';

export interface OpenedRun {
  dir: string;
  graph: Graph;
  /** Where the program's relative paths (data, tokenizer, custom modules) resolve: its .pipe file's folder. */
  baseDir: string;
  /** The last stage: its model is the one the run ends with, its data decides the template. */
  stage: StagePlan;
  model: ModelDef;
  /** The final checkpoint's folder (one sub-folder per component) and its trainer_state.json. */
  checkpoint: string;
  state: TrainerState;
  tokenizer: TextTokenizer;
  /** RUN/tokenizer.json, parsed. */
  tokenizerJson: Record<string, unknown>;
  /** The dataset's tokenizer_config.json the run read its special tokens from, when it is still there. */
  tokenizerConfig?: Record<string, unknown>;
  template: TemplateSpec;
  /** The text the data expanded into the image positions ("<image>" unless the dataset names another). */
  marker: string;
}

const readJson = (file: string): unknown => JSON.parse(fs.readFileSync(file, 'utf8'));

/** The run's graph, validated. */
export function readRunGraph(runDir: string): Graph {
  const file = path.join(runDir, 'graph.json');
  if (!fs.existsSync(file)) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no graph.json (was it written by `pipec run`?)'], { file: runDir });
  let g: unknown;
  try {
    g = readJson(file);
  } catch (e) {
    throw runtimeError(M.GraphInvalid, [file, (e as Error).message], { file });
  }
  const errors = validateGraph(g);
  if (errors.length) throw runtimeError(M.GraphInvalid, [file, errors.slice(0, 3).join('; ')], { file });
  return g as Graph;
}

/** The template and image marker the last stage's data was laid out with (what `pipec generate` uses too). */
export function trainedTemplate(graph: Graph, baseDir: string): { template: TemplateSpec; marker: string } {
  const last = graph.stages[graph.stages.length - 1]!;
  const d = graph.datasets.find((x) => x.name === last.data);
  if (d?.constructor === 'llava_json') {
    const tok = typeof d.attrs['tokenizer'] === 'string' ? path.resolve(baseDir, d.attrs['tokenizer']) : undefined;
    return { template: templateFor(graph, String(d.attrs['template'] ?? 'plain'), tok), marker: String(d.attrs['image_marker'] ?? '<image>') };
  }
  return { template: d?.constructor === 'synthetic_shapes' && d.attrs['task'] === 'caption' ? PLAIN : SHAPES_CHAT, marker: '<image>' };
}

/** Opens a finished run (its latest checkpoint must be a stage's final one, as after `pipec run` completes). */
export function openRun(runDir: string): OpenedRun {
  const dir = path.resolve(runDir);
  const graph = readRunGraph(dir);
  const checkpoint = latestCheckpoint(dir);
  if (!checkpoint || !readTrainerState(checkpoint).final) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no final checkpoint; finish the run first (`pipec run --resume`)'], { file: runDir });
  const state = readTrainerState(checkpoint);
  const stage = graph.stages[graph.stages.length - 1]!;
  const model = graph.models.find((m) => m.name === stage.model)!;
  const baseDir = path.dirname(path.resolve(graph.source));

  const tokFile = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(tokFile)) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no tokenizer.json'], { file: runDir });
  const tokenizerJson = readJson(tokFile) as Record<string, unknown>;
  // As `pipec run` chose it: the generated word vocabulary, or the dataset's tokenizer.json with the
  // special-token names of the tokenizer_config.json beside the original file.
  const named = namedTokenizerFile(graph, baseDir);
  const configFile = named ? path.join(path.dirname(named), 'tokenizer_config.json') : undefined;
  const tokenizerConfig = configFile && fs.existsSync(configFile) ? (readJson(configFile) as Record<string, unknown>) : undefined;
  const tokenizer = vocabTokenizerFromJson(tokenizerJson) ?? tokenizerFromJSON(tokenizerJson, tokFile, tokenizerConfig);
  const { template, marker } = trainedTemplate(graph, baseDir);
  return { dir, graph, baseDir, stage, model, checkpoint, state, tokenizer, tokenizerJson, tokenizerConfig, template, marker };
}

export interface LoadedModel {
  runner: ModelRunner;
  params: ParamStore;
  dispose(): void;
}

/** The run's final weights in a ModelRunner (starts `backend` first when given; otherwise the current one is used). */
export async function loadRunModel(run: OpenedRun, o: { backend?: BackendChoice } = {}): Promise<LoadedModel> {
  if (o.backend) await initBackend(o.backend);
  const params = new ParamStore(modelParamSpecs(run.model), 0);
  try {
    loadComponents(run.checkpoint, ownersOf(run.model), params);
    const runner = new ModelRunner(run.model, params, await loadCustomOps(run.model, run.baseDir));
    return { runner, params, dispose: () => params.dispose() };
  } catch (e) {
    params.dispose();
    throw e;
  }
}

/** A stage's dataset (default: the last stage's) through the training data pipeline: samples, held-out samples and, for generated data, their records. */
export function runSamples(run: OpenedRun, stageName?: string): PreparedDataset {
  const stage = stageName ? run.graph.stages.find((s) => s.name === stageName) : run.stage;
  if (!stage) throw runtimeError(M.RunDirInvalid, [run.dir, `its program has no stage "${stageName}"`], { file: run.dir });
  const model = run.graph.models.find((m) => m.name === stage.model)!;
  return prepareDataset(stage.data, { graph: run.graph, baseDir: run.baseDir, model, tokenizer: run.tokenizer, maxLength: stage.max_length });
}

export interface BatchEvaluation {
  /** LM loss plus auxiliary losses (Mixtral's load balancing), as training minimises it. */
  loss: number;
  lmLoss: number;
  auxLoss: number;
  /** [B, T, V], row-major. */
  logits: Float32Array;
  shape: [number, number, number];
}

/** One forward pass over a collated batch, no gradients: the loss training would see and the logits. */
export function evaluateBatch(runner: ModelRunner, batch: Batch): BatchEvaluation {
  let out: BatchEvaluation | undefined;
  tf.tidy(() => {
    const r = runner.forward({ pixels: pixelTensor(batch), inputIds: batch.inputIds, labels: batch.labels, info: batch.info });
    const num = (t?: tf.Scalar) => (t ? t.dataSync()[0]! : 0);
    out = { loss: num(r.loss), lmLoss: num(r.lmLoss), auxLoss: num(r.auxLoss), logits: r.logits.dataSync() as Float32Array, shape: r.logits.shape as [number, number, number] };
  });
  return out!;
}
