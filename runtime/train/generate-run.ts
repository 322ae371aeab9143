// `pipec generate RUN_DIR --image x.png --prompt "..."`: loads a finished run (its graph, tokenizer and
// final checkpoint), lays the prompt out with the last stage's template, and generates.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph } from '../../compiler/ir/graph.js';
import { type BackendChoice, initBackend } from '../backend/backends.js';
import { microBatchWork } from '../backend/wasm-threads.js';
import { encoderOf, imageShapeOf, preprocessFor, primaryDataset, SHAPES_CHAT, templateFor } from '../data/datasets.js';
import { buildPrompt, PLAIN, type TemplateSpec } from '../data/examples.js';
import { loadImageFile, preprocessImage } from '../data/images.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { vocabTokenizerFromJson, type TextTokenizer } from '../data/vocab-tokenizer.js';
import { loadCustomOps } from '../custom.js';
import { M, runtimeError } from '../errors.js';
import { generate } from '../generate.js';
import { ModelRunner } from '../model.js';
import { ParamStore, paramSpecs } from '../params.js';
import { latestCheckpoint, loadComponents, readTrainerState } from './checkpoint.js';

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

export async function generateFromRun(runDir: string, o: GenerateRunOptions): Promise<string> {
  const graphFile = path.join(runDir, 'graph.json');
  if (!fs.existsSync(graphFile)) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no graph.json (was it written by `pipec run`?)'], { file: runDir });
  const graph = JSON.parse(fs.readFileSync(graphFile, 'utf8')) as Graph;
  const ckpt = latestCheckpoint(runDir);
  if (!ckpt || !readTrainerState(ckpt).final) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no final checkpoint; finish the run first (`pipec run --resume`)'], { file: runDir });
  // One sequence, one token a step once the prompt is in: the wasm backend's thread count follows that size
  const last = graph.stages[graph.stages.length - 1]!;
  const backend = await initBackend(o.backend, { work: microBatchWork(last.memory.total_params, 1, last.max_length) });
  o.log(backend.note);
  const model = graph.models.find((m) => m.name === graph.stages[graph.stages.length - 1]!.model)!;
  const params = new ParamStore(paramSpecs(model.components), 0);
  loadComponents(ckpt, model.components.map((c) => c.name), params);
  const tok = readRunTokenizer(runDir);
  const enc = encoderOf(model);
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
  const custom = await loadCustomOps(model, path.dirname(path.resolve(graph.source)));
  const [ids] = generate(new ModelRunner(model, params, custom), [{ ids: prompt.ids, imageStart: prompt.imageStart, pixels }], {
    maxNewTokens: o.maxNewTokens, eosId: tok.eosId, temperature: o.temperature, topP: o.topP, seed: o.seed, imageShape: imageShapeOf(model),
  });
  params.dispose();
  return tok.decode(ids!, { skipSpecialTokens: true });
}
