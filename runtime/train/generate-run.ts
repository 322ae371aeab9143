// `pipec generate RUN_DIR --image x.png --prompt "..."`: loads a finished run (its graph, tokenizer and
// final checkpoint), lays the prompt out with the last stage's template, and generates. What the model
// cannot answer is refused before any weights load (a UsageError, exit 2): no image for a model that
// always trained with one, or words its word-level vocabulary does not have (they would be <unk>, which
// it never saw, and the answer would be a silent guess).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph, ModelDef } from '../../compiler/ir/graph.js';
import { UsageError } from '../../compiler/service/service.js';
import { type BackendChoice, initBackend } from '../backend/backends.js';
import { microBatchWork } from '../backend/wasm-threads.js';
import { encoderOf, imageShapeOf, preprocessFor, primaryDataset, SHAPES_CHAT, templateFor } from '../data/datasets.js';
import { buildPrompt, PLAIN, type TemplateSpec } from '../data/examples.js';
import { loadImageFile, preprocessImage } from '../data/images.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { SPECIALS, VocabTokenizer, vocabTokenizerFromJson, type TextTokenizer } from '../data/vocab-tokenizer.js';
import { loadCustomOps } from '../custom.js';
import { M, runtimeError } from '../errors.js';
import { generate } from '../generate.js';
import { ModelRunner } from '../model.js';
import { modelParamSpecs, ownersOf, ParamStore } from '../params.js';
import { latestCheckpoint, loadComponents, readTrainerState } from './checkpoint.js';
import type { AskContext } from './evaluate.js';

export interface GenerateRunOptions {
  backend: BackendChoice;
  image?: string;
  prompt: string;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  log: (s: string) => void;
}

export function readRunTokenizer(runDir: string): TextTokenizer {
  const file = path.join(runDir, 'tokenizer.json');
  if (!fs.existsSync(file)) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no tokenizer.json'], { file: runDir });
  return vocabTokenizerFromJson(JSON.parse(fs.readFileSync(file, 'utf8'))) ?? loadTokenizer(file);
}

/** The template the run's last stage trained with (a mixture's: its first source's). */
export function runTemplate(graph: Graph): TemplateSpec {
  const last = graph.stages[graph.stages.length - 1]!;
  const d = primaryDataset(graph, last.data);
  if (d?.constructor === 'synthetic_shapes') return d.attrs['task'] === 'caption' ? PLAIN : SHAPES_CHAT;
  if (d?.constructor === 'llava_json') return templateFor(graph, String(d.attrs['template'] ?? 'plain'), undefined);
  return SHAPES_CHAT;
}

/**
 * Whether the run's model needs an image: it has a vision encoder and its last stage trained on data
 * whose every record has one (generated shapes, or llava_json unless `require_image: false`).
 */
export function needsImage(graph: Graph, model: ModelDef): boolean {
  if (!encoderOf(model)) return false;
  const d = graph.datasets.find((x) => x.name === graph.stages[graph.stages.length - 1]!.data);
  return !(d?.constructor === 'llava_json' && d.attrs['require_image'] === false);
}

/** Refuses a prompt with words a word-level vocabulary does not have, naming them and the words it has. */
export function checkPromptWords(tok: TextTokenizer, prompt: string): void {
  if (!(tok instanceof VocabTokenizer)) return; // subword tokenizers spell any word
  const unknown = tok.unknownWords(prompt).filter((w) => w !== '<image>');
  if (!unknown.length) return;
  const known = tok.vocab.filter((w) => !(SPECIALS as readonly string[]).includes(w));
  const shown = known.length > 60 ? `${known.slice(0, 60).join(' ')} ...` : known.join(' ');
  throw new UsageError(
    `the prompt has ${unknown.length === 1 ? 'a word' : 'words'} this run's vocabulary does not have: ${unknown.map((w) => JSON.stringify(w)).join(', ')} ` +
      `(read as <unk>, which the model never trained on, the answer would be a guess)\n   hint: rephrase with the ${known.length} words it knows${tok.lowercase ? ' (any case)' : ''}: ${shown}`,
  );
}

function loadFinalWeights(ckpt: string, model: ModelDef): ParamStore {
  const params = new ParamStore(modelParamSpecs(model), 0);
  loadComponents(ckpt, ownersOf(model), params);
  return params;
}

async function runnerFor(graph: Graph, model: ModelDef, params: ParamStore): Promise<ModelRunner> {
  return new ModelRunner(model, params, await loadCustomOps(model, path.dirname(path.resolve(graph.source))));
}

/** A finished run's last model with its final weights, as an AskContext (evaluate.ts) to put questions to; the caller has started a backend. */
export async function loadRunForQuestions(runDir: string): Promise<AskContext & { model: ModelDef; params: ParamStore }> {
  const graph = JSON.parse(fs.readFileSync(path.join(runDir, 'graph.json'), 'utf8')) as Graph;
  const ckpt = latestCheckpoint(runDir);
  if (!ckpt || !readTrainerState(ckpt).final) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no final checkpoint; finish the run first (`pipec run --resume`)'], { file: runDir });
  const model = graph.models.find((m) => m.name === graph.stages[graph.stages.length - 1]!.model)!;
  const params = loadFinalWeights(ckpt, model);
  return { model, params, runner: await runnerFor(graph, model, params), tokenizer: readRunTokenizer(runDir), template: runTemplate(graph), imageShape: imageShapeOf(model), imageTokens: model.image_tokens ?? 0 };
}

export async function generateFromRun(runDir: string, o: GenerateRunOptions): Promise<string> {
  const graphFile = path.join(runDir, 'graph.json');
  if (!fs.existsSync(graphFile)) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no graph.json (was it written by `pipec run`?)'], { file: runDir });
  const graph = JSON.parse(fs.readFileSync(graphFile, 'utf8')) as Graph;
  const ckpt = latestCheckpoint(runDir);
  if (!ckpt || !readTrainerState(ckpt).final) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no final checkpoint; finish the run first (`pipec run --resume`)'], { file: runDir });
  const last = graph.stages[graph.stages.length - 1]!;
  const model = graph.models.find((m) => m.name === last.model)!;
  const enc = encoderOf(model);
  if (!o.image && needsImage(graph, model))
    throw new UsageError(`this run's model reads an image with every prompt (its encoder \`${enc!.name}\` trained on images only): give one with --image FILE`);
  const tok = readRunTokenizer(runDir);
  checkPromptWords(tok, o.prompt);
  // One sequence, one token a step once the prompt is in: the wasm backend's thread count follows that size
  const backend = await initBackend(o.backend, { work: microBatchWork(last.memory.total_params, 1, last.max_length) });
  o.log(backend.note);
  const params = loadFinalWeights(ckpt, model);
  let pixels: Float32Array | undefined;
  if (o.image) {
    if (!enc) throw runtimeError(M.RunDirInvalid, [runDir, 'its model has no vision encoder, so --image cannot be used'], { file: runDir });
    let rgb;
    try {
      rgb = loadImageFile(o.image);
    } catch (e) {
      throw runtimeError(M.DataImageCorrupt, [0, o.image, (e as Error).message], { file: o.image });
    }
    // as the last stage's data prepared its images (LLaVA-1.5's `pad`, or the encoder's processor)
    pixels = preprocessImage(rgb, preprocessFor(enc, String(primaryDataset(graph, last.data)?.attrs['image_aspect'] ?? 'processor')));
  }
  const text = pixels && !o.prompt.includes('<image>') ? `<image>\n${o.prompt}` : o.prompt;
  const prompt = buildPrompt([{ role: 'user', text }], runTemplate(graph), tok, '<image>', pixels ? (model.image_tokens ?? 0) : 0);
  const [ids] = generate(await runnerFor(graph, model, params), [{ ids: prompt.ids, imageStart: prompt.imageStart, pixels }], {
    maxNewTokens: o.maxNewTokens, eosId: tok.eosId, temperature: o.temperature, topP: o.topP, seed: o.seed, imageShape: imageShapeOf(model),
  });
  params.dispose();
  return tok.decode(ids!, { skipSpecialTokens: true });
}
