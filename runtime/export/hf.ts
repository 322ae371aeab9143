// `pipec export RUN --target hf -o DIR`: a finished run as one folder that transformers loads with
// LlavaForConditionalGeneration / AutoModelForImageTextToText and AutoProcessor (docs/export.md):
//   config.json                         LlavaConfig: vision_config, text_config, projector and image-token fields
//   model.safetensors                   the final checkpoint's tensors under LLaVA's names (hf-llava.ts), or
//   model-0000k-of-0000n.safetensors + model.safetensors.index.json   when larger than --max-shard-size
//   tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template.jinja   (hf-tokenizer.ts)
//   preprocessor_config.json            CLIPImageProcessor / SiglipImageProcessor with pipec's size, crop and mean/std
//   processor_config.json               LlavaProcessor: patch size, feature strategy, image token
//   generation_config.json              bos / eos / pad ids
//   pipec_export.json                   where it came from (run, checkpoint, graph hash) and the export's notes
// The folder is built under a temporary name beside DIR and renamed into place; an existing DIR is
// replaced only when it is empty or an earlier export.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AdapterDef } from '../../compiler/ir/graph.js';
import { M, runtimeError } from '../errors.js';
import { LORA_A, loraModules, type LoraUse } from '../ops/lora.js';
import { foldInto, PEFT_PREFIX } from '../train/adapters.js';
import { openRun, type OpenedRun } from '../train/open-run.js';
import { fsyncDir, writeFileSynced } from '../weights/atomic.js';
import { readWeights } from '../weights/safetensors.js';
import { DEFAULT_MAX_SHARD, parseSize, writeShardedSafetensors } from '../weights/shards.js';
import type { StreamedTensor } from '../weights/safetensors.js';
import { type LlavaPlan, type LlavaTensor, planLlava, type VisionInput } from './hf-llava.js';
import { exportTokenizer } from './hf-tokenizer.js';

export const HF_EXPORT_FORMAT = 'pipec.hf-export';

export interface HfExportOptions {
  /** Largest shard, in bytes of tensor data (default 5 GB, as save_pretrained). */
  maxShardBytes?: number;
  /** Write custom components as their base op. */
  customAsBase?: boolean;
}

export interface HfExportResult {
  dir: string;
  files: string[];
  /** Tensor data written, in bytes. */
  bytes: number;
  notes: string[];
}

/** The image processor transformers' LLaVA processor runs: pipec's preprocessing (runtime/data/images.ts) as its config. */
function imageProcessorConfig(v: VisionInput): Record<string, unknown> {
  const common = {
    do_convert_rgb: true, do_normalize: true, do_rescale: true, do_resize: true, image_mean: v.mean, image_std: v.std,
    processor_class: 'LlavaProcessor', resample: 3 /* bicubic */, rescale_factor: 1 / 255,
  };
  // SigLIP squashes to a square; CLIP resizes the shorter side and crops the middle
  if (v.op === 'siglip') return { image_processor_type: 'SiglipImageProcessor', ...common, size: { height: v.image, width: v.image } };
  return { image_processor_type: 'CLIPImageProcessor', ...common, do_center_crop: true, crop_size: { height: v.image, width: v.image }, size: { shortest_edge: v.image } };
}

/** Tensor `t` of the LLaVA folder, read when written from `checkpointDir` (one sub-folder per component, as a
 * run's checkpoint or `pipec prepare --init`'s initial weights). */
export function tensorSource(checkpointDir: string, t: LlavaTensor): StreamedTensor {
  const from = t.from;
  const read = (): Float32Array => {
    if ('identity' in from) {
      const n = from.identity, eye = new Float32Array(n * n);
      for (let i = 0; i < n; i++) eye[i * n + i] = 1;
      return eye;
    }
    if ('zeros' in from) return new Float32Array(from.zeros);
    const dir = path.join(checkpointDir, from.component);
    const got = readWeights(dir, [from.source]).get(from.source);
    if (!got) throw runtimeError(M.TensorMissing, [from.source, dir], { file: dir });
    if (got.info.shape.join(',') !== t.shape.join(','))
      throw runtimeError(M.WeightShapeMismatch, [from.source, dir, `[${got.info.shape.join(', ')}]`, `[${t.shape.join(', ')}]`], { file: dir });
    return got.data;
  };
  return { name: t.name, shape: t.shape, read };
}

/** The final checkpoint's folders of custom classes whose Python package is there (runs before pipec copied it have none). */
function classFolders(run: OpenedRun): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of run.model.components) {
    const py = c.custom?.python;
    const folder = path.join(run.checkpoint, c.name);
    if (py && fs.existsSync(path.join(folder, path.posix.basename(py.file)))) out[c.name] = folder;
  }
  return out;
}

/** Builds the folder's files (tensors are streamed when written). */
export function planHfExport(run: OpenedRun, o: HfExportOptions = {}): { plan: LlavaPlan; files: Map<string, string>; tensors: StreamedTensor[]; notes: string[] } {
  const llm = run.model.components.find((c) => c.role === 'llm');
  const tokens = exportTokenizer(run, Number(llm?.attrs['vocab'] ?? Infinity), Number(llm?.attrs['context'] ?? 0));
  const plan = planLlava(run.graph, run.model, { imageTokenId: tokens.imageTokenId, tokenIds: tokens.ids, customAsBase: o.customAsBase, graphFile: path.join(run.dir, 'graph.json'), classFolders: classFolders(run) });
  const notes = [...plan.notes, ...tokens.notes];
  const files = new Map<string, string>([['config.json', JSON.stringify(plan.config, null, 2) + '\n'], ...tokens.files]);
  files.set('preprocessor_config.json', JSON.stringify(imageProcessorConfig(plan.vision), null, 2) + '\n');
  files.set('processor_config.json', JSON.stringify({
    image_token: run.marker, num_additional_image_tokens: plan.vision.additionalTokens, patch_size: plan.vision.patch,
    processor_class: 'LlavaProcessor', vision_feature_select_strategy: plan.vision.strategy,
  }, null, 2) + '\n');
  const gen = Object.fromEntries(Object.entries({ bos_token_id: tokens.ids.bos, eos_token_id: tokens.ids.eos, pad_token_id: tokens.ids.pad }).filter(([, v]) => v !== undefined));
  files.set('generation_config.json', JSON.stringify(gen, null, 2) + '\n');
  files.set('pipec_export.json', JSON.stringify({
    format: HF_EXPORT_FORMAT, version: 1, run: run.dir, checkpoint: path.basename(run.checkpoint), graph_hash: run.state.graph_hash,
    source: run.graph.source, model: run.model.name, notes,
  }, null, 2) + '\n');
  const adapters = run.model.adapters ?? [];
  if (adapters.length) notes.push(`${adapters.map((a) => a.name).join(', ')} folded into the weights (W + alpha/r B A, as \`pipec merge\`): a LLaVA folder holds no adapters; PEFT loads the checkpoint's own adapter folder`);
  const lora = loraModules(run.model); // adapted module -> its adapter, as the runtime applies them
  return { plan, files, tensors: plan.tensors.map((t) => withAdapter(tensorSource(run.checkpoint, t), t, run.checkpoint, lora, adapters)), notes };
}

/** Tensor `t` with the LoRA adapter that targets it folded in (read from the checkpoint's adapter folder). */
function withAdapter(src: StreamedTensor, t: LlavaTensor, checkpointDir: string, lora: ReadonlyMap<string, LoraUse>, adapters: AdapterDef[]): StreamedTensor {
  const from = t.from;
  if (!('component' in from) || !from.source.endsWith('.weight')) return src;
  const module = from.source.slice(0, -'.weight'.length);
  const use = lora.get(module);
  const a = use && adapters.find((x) => x.name === use.adapter && x.component === from.component);
  if (!a) return src;
  return {
    ...src,
    read: () => {
      const w = { shape: t.shape, data: src.read() };
      const dir = path.join(checkpointDir, a.name);
      const names = [`${PEFT_PREFIX}${module}${LORA_A}`, `${PEFT_PREFIX}${module}.lora_B.weight`];
      const got = readWeights(dir, names);
      const [A, B] = names.map((n) => got.get(n));
      if (!A || !B) throw runtimeError(M.TensorMissing, [A ? names[1]! : names[0]!, dir], { file: dir });
      foldInto(w, A.data, B.data, a.rank, a.alpha / a.rank);
      return w.data;
    },
  };
}

/** Exports the run in `runDir` into `outDir`. */
export function exportHf(runDir: string, outDir: string, o: HfExportOptions = {}): HfExportResult {
  const run = openRun(runDir);
  const { files, tensors, notes } = planHfExport(run, o);
  const out = path.resolve(outDir);
  if (fs.existsSync(out) && !replaceable(out)) throw runtimeError(M.HfOutputExists, [outDir], { file: outDir }, 'choose another -o, or remove the folder first');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.tmp-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  try {
    const weights = writeShardedSafetensors(tmp, tensors, o.maxShardBytes ?? parseSize(DEFAULT_MAX_SHARD)!, { format: 'pt' });
    for (const [name, text] of files) writeFileSynced(path.join(tmp, name), text);
    fsyncDir(tmp);
    publish(tmp, out);
    return { dir: out, files: [...weights.files, ...files.keys()], bytes: weights.totalBytes, notes };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** An existing output folder may be replaced when it is empty or was written by this exporter. */
function replaceable(dir: string): boolean {
  if (!fs.statSync(dir).isDirectory()) return false;
  const names = fs.readdirSync(dir);
  if (names.length === 0) return true;
  try {
    return (JSON.parse(fs.readFileSync(path.join(dir, 'pipec_export.json'), 'utf8')) as { format?: string }).format === HF_EXPORT_FORMAT;
  } catch {
    return false;
  }
}

/** Renames `tmp` to `out`; an earlier export there is moved aside first and removed after. */
function publish(tmp: string, out: string): void {
  let old: string | undefined;
  if (fs.existsSync(out)) {
    old = path.join(path.dirname(out), `.${path.basename(out)}.old-${process.pid}`);
    fs.rmSync(old, { recursive: true, force: true });
    fs.renameSync(out, old);
  }
  fs.renameSync(tmp, out);
  fsyncDir(path.dirname(out));
  if (old) fs.rmSync(old, { recursive: true, force: true });
}
