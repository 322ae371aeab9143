// `pipec prepare`: runs pipec's own data pipeline (records, images, templates, tokenizer, image splice
// positions, -100 labels, right padding) and writes a stage's micro-batches, in exactly the order
// `pipec run` trains on them (run.ts: stageSteps, microBatch, collate), as binary shards with an index
// carrying sha256 checksums. The exported PyTorch trainer reads only these. Format: docs/export.md.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph, StagePlan } from '../../compiler/ir/graph.js';
import { collate, type Batch } from '../data/batch.js';
import { imageShapeOf, prepareDataset, stageSources } from '../data/datasets.js';
import { runTokenizer } from '../data/run-tokenizer.js';
import type { TextTokenizer } from '../data/vocab-tokenizer.js';
import { M, runtimeError } from '../errors.js';
import { adapterSpecs, initialValue, paramSpecs } from '../params.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapterConfig, PEFT_PREFIX } from '../train/adapters.js';
import { graphHash, microBatch, stageSteps } from '../train/run.js';
import { hfConfig } from '../weights/hf-config.js';
import { encodeSafetensors } from '../weights/safetensors.js';

/** The run's tokenizer lives in runtime/data/run-tokenizer.ts (shared with the data pre-flight); re-exported for existing importers. */
export { runTokenizer };

export const SHARDS_FORMAT = 'pipec.shards';
export const SHARDS_VERSION = 1;

export interface PrepareOptions {
  graph: Graph;
  /** Where the program's relative paths (data, tokenizer, weights) resolve: the .pipe file's folder. */
  baseDir: string;
  /** With `stage`: the stage's folder. Without: one sub-folder per stage. */
  outDir: string;
  stage?: string;
  /** Also write init/: the fresh weights pipec initialises the stage's model with (its seed). */
  init?: boolean;
  /** Processes the exported trainer will run (torchrun): a step takes accumulate x worldSize micro-batches. Default 1 (as pipec run). */
  worldSize?: number;
  /** Target shard size in bytes (a micro-batch is never split). Default 64 MiB. */
  shardBytes?: number;
}

export interface PreparedStage {
  stage: string;
  dir: string;
  steps: number;
  microBatches: number;
  records: number;
  bytes: number;
}

/** One micro-batch as bytes: input_ids, labels, attention_mask (int32 [B, T]), image_start (int32 [B]), pixels (float32 [B, C, H, W], when any). */
function encodeBatch(b: Batch): Buffer {
  const B = b.info.batch;
  const parts: Buffer[] = [];
  const i32 = (a: Int32Array | number[]) => {
    const arr = a instanceof Int32Array ? a : Int32Array.from(a);
    const out = Buffer.alloc(arr.length * 4);
    for (let i = 0; i < arr.length; i++) out.writeInt32LE(arr[i]!, i * 4);
    return out;
  };
  parts.push(i32(b.inputIds), i32(b.labels), i32(b.info.attentionMask), i32(b.info.imageStart.slice(0, B)));
  if (b.pixels) {
    const d = b.pixels.data;
    const out = Buffer.alloc(d.length * 4);
    for (let i = 0; i < d.length; i++) out.writeFloatLE(d[i]!, i * 4);
    parts.push(out);
  }
  return Buffer.concat(parts);
}

/**
 * What the shards cannot carry of a stage's data, or undefined: they hold one dataset's seeded shuffle
 * (microBatch) with one image per record, so a mixture's or a length-grouped order (order.ts), or a
 * record's second image, would not be the batches `pipec run` trains on.
 */
function unsupportedData(g: Graph, stage: StagePlan): string | undefined {
  const { mixture } = stageSources(g, stage.data);
  if (mixture) return `it is the mixture "${mixture}"`;
  if (stage.group_by_length) return 'it groups batches by length (`group_by_length: true`)';
  const max = Number(g.datasets.find((d) => d.name === stage.data)?.attrs['max_images'] ?? 1);
  if (max > 1) return `dataset "${stage.data}" has up to ${max} images per record (\`max_images\`)`;
  return undefined;
}

function writeStage(o: PrepareOptions, stage: StagePlan, dir: string, tok: { tokenizer: TextTokenizer; json: string }): PreparedStage {
  const g = o.graph;
  const why = unsupportedData(g, stage);
  if (why) throw runtimeError(M.PrepareUnsupportedData, [stage.name, why], undefined, 'train this stage with `pipec run`; the exported trainer reads one dataset in its seeded order, one image per record');
  const model = g.models.find((m) => m.name === stage.model)!;
  const data = prepareDataset(stage.data, { graph: g, baseDir: o.baseDir, model, tokenizer: tok.tokenizer, maxLength: stage.max_length });
  // With W processes a step consumes accumulate x W micro-batches of pipec's sequence (W = 1: pipec run's steps).
  const world = o.worldSize ?? 1;
  const { microPerEpoch, steps } = stageSteps({ ...stage, accumulate: stage.accumulate * world }, data.train.length);
  if (steps < 1) throw runtimeError(M.DataBadRecord, [0, `dataset "${stage.data}" has ${data.train.length} training records, fewer than one batch of ${stage.batch}`], undefined, 'lower the batch size or add data');
  const padId = tok.tokenizer.padId ?? 0;
  const imageShape = imageShapeOf(model);
  const limit = o.shardBytes ?? 64 * 1024 * 1024;

  const tmp = `${dir.replace(/[\\/]+$/, '')}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const shards: { file: string; bytes: number; sha256: string; batches: number }[] = [];
  const batches: { shard: string; offset: number; batch: number; length: number; pixels: boolean; labelled: number }[] = [];
  let pending: Buffer[] = [], pendingBytes = 0, pendingCount = 0, total = 0;
  const flush = () => {
    if (!pendingCount) return;
    const file = `shard-${String(shards.length).padStart(5, '0')}.bin`;
    const buf = Buffer.concat(pending);
    fs.writeFileSync(path.join(tmp, file), buf);
    shards.push({ file, bytes: buf.length, sha256: createHash('sha256').update(buf).digest('hex'), batches: pendingCount });
    total += buf.length;
    pending = [];
    pendingBytes = pendingCount = 0;
  };
  const count = steps * stage.accumulate * world;
  for (let k = 0; k < count; k++) {
    const b = collate(microBatch(data.train, stage, microPerEpoch, k), padId, imageShape);
    const bytes = encodeBatch(b);
    if (pendingCount && pendingBytes + bytes.length > limit) flush();
    batches.push({ shard: `shard-${String(shards.length).padStart(5, '0')}.bin`, offset: pendingBytes, batch: b.info.batch, length: b.info.length, pixels: !!b.pixels, labelled: b.labelledTokens });
    pending.push(bytes);
    pendingBytes += bytes.length;
    pendingCount++;
  }
  flush();
  fs.writeFileSync(path.join(tmp, 'tokenizer.json'), tok.json);
  if (o.init) {
    const specs = paramSpecs(model.components);
    for (const c of model.components) {
      const cdir = path.join(tmp, 'init', c.name);
      fs.mkdirSync(cdir, { recursive: true });
      const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
      for (const s of specs) if (s.component === c.name) tensors.set(s.name, { shape: s.shape, data: initialValue(s, stage.seed) });
      if (tensors.size) fs.writeFileSync(path.join(cdir, 'model.safetensors'), encodeSafetensors(tensors, { pipec_component: c.name }));
      fs.writeFileSync(path.join(cdir, 'config.json'), JSON.stringify(hfConfig(c), null, 2) + '\n');
    }
    // each LoRA adapter as pipec initialises it (A uniform from the stage seed, B zeros), in PEFT's folder format
    for (const a of model.adapters ?? []) {
      const adir = path.join(tmp, 'init', a.name);
      fs.mkdirSync(adir, { recursive: true });
      const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
      for (const s of adapterSpecs([a])) tensors.set(PEFT_PREFIX + s.name, { shape: s.shape, data: initialValue(s, stage.seed) });
      fs.writeFileSync(path.join(adir, ADAPTER_WEIGHTS), encodeSafetensors(tensors, { pipec_adapter: a.name }));
      const comp = model.components.find((c) => c.name === a.component)!;
      fs.writeFileSync(path.join(adir, ADAPTER_CONFIG), JSON.stringify(adapterConfig(a, comp, path.resolve(dir, 'init', a.component)), null, 2) + '\n');
    }
  }
  const index = {
    format: SHARDS_FORMAT, version: SHARDS_VERSION, graph_hash: graphHash(g), source: g.source,
    stage: stage.name, model: model.name, dataset: stage.data, records: data.train.length, skipped_records: data.skipped,
    batch: stage.batch, accumulate: stage.accumulate, world_size: world, steps, micro_per_epoch: microPerEpoch, micro_batches: count, seed: stage.seed,
    pad_id: padId, image_shape: imageShape, image_tokens: model.image_tokens ?? 0, tokenizer: 'tokenizer.json', init: o.init ? 'init' : null,
    layout: ['input_ids int32 [B, T]', 'labels int32 [B, T]', 'attention_mask int32 [B, T]', 'image_start int32 [B]', 'pixel_values float32 [B, C, H, W] (when pixels)'],
    shards, batches,
  };
  fs.writeFileSync(path.join(tmp, 'index.json'), JSON.stringify(index, null, 1) + '\n');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  return { stage: stage.name, dir, steps, microBatches: count, records: data.train.length, bytes: total };
}

export function prepareStages(o: PrepareOptions): PreparedStage[] {
  const stages = o.stage ? o.graph.stages.filter((s) => s.name === o.stage) : o.graph.stages;
  if (o.stage && !stages.length) throw new Error(`the program has no stage "${o.stage}" (stages: ${o.graph.stages.map((s) => s.name).join(', ')})`);
  const tok = runTokenizer(o.graph, o.baseDir);
  fs.mkdirSync(o.stage ? path.dirname(path.resolve(o.outDir)) : o.outDir, { recursive: true });
  return stages.map((s) => writeStage(o, s, o.stage ? o.outDir : path.join(o.outDir, s.name), tok));
}
