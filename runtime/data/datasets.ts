// Datasets of a run, from the graph's dataset declarations: the samples each stage trains on, the
// held-out part for evaluation, and the tokenizer they share.
import * as path from 'node:path';
import type { ComponentDef, Graph, MixtureSource, ModelDef } from '../../compiler/ir/graph.js';
import { M, runtimeError } from '../errors.js';
import type { Sample } from './batch.js';
import { PLAIN, type TemplateSpec } from './examples.js';
import { loadChatTemplate } from './chat-template.js';
import type { PreprocessOptions } from './images.js';
import { runDataPass, skippedDetail, type DatasetSpec } from './pipeline.js';
import { roleTable } from './roles.js';
import { generateShapes, normalisePixels, type ShapeRecord } from './synthetic-shapes.js';

export { normalisePixels };
import { type TextTokenizer, VocabTokenizer } from './vocab-tokenizer.js';

/** The conversation format of generated question answering: a short v1-style chat without a system prompt. */
export const SHAPES_CHAT: TemplateSpec = { name: 'chat', system: '', user: 'USER: ', assistant: 'ASSISTANT: ', separator: ' ' };

export interface PreparedDataset {
  name: string;
  template: TemplateSpec;
  train: Sample[];
  heldout: Sample[];
  /** Generated records behind the held-out samples (for evaluation), when the data is synthetic. */
  heldoutRecords?: ShapeRecord[];
  skipped: number;
  /** The PIPE9008 warning text when records were skipped. */
  skippedDetail?: string;
}

export function encoderOf(model: ModelDef): ComponentDef | undefined {
  return model.components.find((c) => c.role === 'encoder');
}

/**
 * How the encoder takes images: its size, mean and std; SigLIP resizes to a square, CLIP crops. With
 * `aspect` "pad" (a dataset's `image_aspect: "pad"`, LLaVA-1.5's image_aspect_ratio) the image is first
 * padded to a square of the mean colour, so nothing of it is cropped.
 */
export function preprocessFor(enc: ComponentDef, aspect: string = 'processor'): PreprocessOptions {
  return {
    size: Number(enc.attrs['image']), mean: enc.attrs['image_mean'] as number[], std: enc.attrs['image_std'] as number[],
    mode: enc.op === 'siglip_vit' ? 'squash' : 'shortest_edge_center_crop',
    ...(aspect === 'pad' ? { pad: true } : {}),
  };
}

export function imageShapeOf(model: ModelDef): [number, number, number] {
  const enc = encoderOf(model);
  const size = Number(enc?.attrs['image'] ?? 0);
  return [Number(enc?.attrs['channels'] ?? 3), size, size];
}

function synthOptions(attrs: Record<string, unknown>) {
  return {
    count: Number(attrs['count'] ?? 2000),
    image: Number(attrs['image'] ?? 32),
    seed: Number(attrs['seed'] ?? 0),
    languages: (attrs['languages'] ?? 'en+ja') as 'en' | 'ja' | 'en+ja',
    task: (attrs['task'] ?? 'qa') as 'caption' | 'qa',
  };
}

/** The word vocabulary every synthetic dataset of the graph can produce, with the templates' words. */
export function syntheticTokenizer(graph: Graph, vocabSize: number): VocabTokenizer {
  const texts: string[] = [SHAPES_CHAT.user, SHAPES_CHAT.assistant];
  for (const d of graph.datasets) {
    if (d.constructor !== 'synthetic_shapes') continue;
    for (const task of ['caption', 'qa'] as const)
      for (const r of generateShapes({ ...synthOptions(d.attrs), task, count: Math.min(400, Number(d.attrs['count'] ?? 2000)) })) for (const t of r.turns) texts.push(t.text);
  }
  // every colour/shape word in both languages, whatever the sample happened to draw
  // lowercased: users type "What color ...", the generator writes "what color ..."
  return VocabTokenizer.fromTexts(texts.concat(allShapeWords()), vocabSize, { lowercase: true });
}

function allShapeWords(): string[] {
  const out: string[] = [];
  for (const task of ['caption', 'qa'] as const) for (const languages of ['en', 'ja'] as const) for (const r of generateShapes({ count: 300, image: 8, seed: 7, languages, task })) out.push(...r.turns.map((t) => t.text));
  return out;
}

export interface DatasetContext {
  graph: Graph;
  /** Where relative paths of the program resolve (the .pipe file's folder). */
  baseDir?: string;
  model: ModelDef;
  tokenizer: TextTokenizer;
  maxLength: number;
}

/** The llm's vocab: the size of its embedding table, so every token id must be below it. */
export function vocabOf(model: ModelDef): number {
  return Number(model.components.find((c) => c.role === 'llm')?.attrs['vocab'] ?? Infinity);
}

/** The datasets a stage's `data` reads: the mixture's sources with their shares, or the one dataset. */
export function stageSources(graph: Graph, data: string): { mixture?: string; sources: MixtureSource[] } {
  const d = graph.datasets.find((x) => x.name === data);
  if (d?.constructor === 'mixture' && d.sources) return { mixture: d.name, sources: d.sources };
  return { sources: [{ dataset: data }] };
}

/** The dataset that stands for a stage's data in generation: the dataset, or a mixture's first source (its template, its image_aspect). */
export function primaryDataset(graph: Graph, data: string): Graph['datasets'][number] | undefined {
  const { sources } = stageSources(graph, data);
  return graph.datasets.find((x) => x.name === sources[0]!.dataset);
}

/** Interprets a dataset's arguments for the data pipeline (pipeline.ts), in the one place that reads them. */
export function datasetSpec(name: string, ctx: DatasetContext): DatasetSpec {
  const d = ctx.graph.datasets.find((x) => x.name === name);
  if (!d) throw new Error(`the graph has no dataset "${name}"`);
  const enc = encoderOf(ctx.model);
  const common = {
    name, tokenizer: ctx.tokenizer, vocab: vocabOf(ctx.model), maxLength: ctx.maxLength,
    imageTokens: enc ? (ctx.model.image_tokens ?? 0) : 0, preprocess: enc ? preprocessFor(enc, String(d.attrs['image_aspect'] ?? 'processor')) : undefined,
  };
  if (d.constructor === 'synthetic_shapes') {
    const o = synthOptions(d.attrs);
    const size = Number(enc?.attrs['image'] ?? o.image);
    if (enc && size !== o.image)
      throw runtimeError(M.DataBadRecord, [0, `synthetic_shapes draws ${o.image}x${o.image} images but the encoder takes ${size}x${size}`], undefined, `set image: ${size} on the dataset`);
    const mean = (enc?.attrs['image_mean'] as number[] | undefined) ?? [0.5, 0.5, 0.5];
    const std = (enc?.attrs['image_std'] as number[] | undefined) ?? [0.5, 0.5, 0.5];
    return {
      ...common, template: o.task === 'caption' ? PLAIN : SHAPES_CHAT, skipBadRecords: false, marker: '<image>',
      source: { kind: 'synthetic', options: o, holdout: Number(d.attrs['holdout'] ?? 0.1), display: `<synthetic_shapes ${name}>`, normalise: enc ? (r) => normalisePixels(r.rgb, r.size, mean, std) : undefined, ...(enc ? { stats: { mean, std } } : {}) },
    };
  }
  if (d.constructor === 'llava_json') {
    const attrs = d.attrs;
    const base = ctx.baseDir ?? '.';
    const display = String(attrs['file']);
    const marker = String(attrs['image_marker'] ?? '<image>');
    const skip = attrs['skip_bad_records'] === true;
    const tokFile = attrs['tokenizer'] ? path.resolve(base, String(attrs['tokenizer'])) : undefined;
    const imagesShown = String(attrs['images'] ?? '.');
    return {
      ...common, template: templateFor(ctx.graph, String(attrs['template'] ?? 'plain'), tokFile), skipBadRecords: skip, marker,
      source: {
        kind: 'llava',
        read: {
          file: path.resolve(base, display), images: path.resolve(base, imagesShown), imagesShown, marker, requireImage: attrs['require_image'] !== false,
          skipBadRecords: skip, displayFile: display, roles: roleTable(attrs['roles'], name), maxImages: Number(attrs['max_images'] ?? 1),
        },
      },
    };
  }
  throw runtimeError(M.UnknownOp, [`dataset ${d.constructor}`], undefined, 'this build reads synthetic_shapes and llava_json datasets');
}

/** A dataset ready to train on: the data pipeline in training mode (pipeline.ts). */
export function prepareDataset(name: string, ctx: DatasetContext): PreparedDataset {
  const spec = datasetSpec(name, ctx);
  const pass = runDataPass(spec, 'train');
  const file = spec.source.kind === 'llava' ? (spec.source.read.displayFile ?? spec.source.read.file) : spec.source.display;
  return { name, template: spec.template, train: pass.train, heldout: pass.heldout, heldoutRecords: pass.heldoutRecords, skipped: pass.failures.length, skippedDetail: skippedDetail(pass.failures, file) };
}

/** The template a llava_json dataset names: a template declared in the program, or a Jinja chat template. */
export function templateFor(graph: Graph, name: string, tokenizerFile: string | undefined): TemplateSpec {
  const t = graph.templates.find((x) => x.name === name);
  const f = (t?.fields ?? {}) as Record<string, unknown>;
  if (typeof f['source'] === 'string') {
    if (!tokenizerFile) throw runtimeError(M.ChatTemplateFailed, [`template \`${name}\` reads ${f['source']} beside the tokenizer, but the dataset names no tokenizer`]);
    const j = loadChatTemplate(path.join(path.dirname(tokenizerFile), f['source']));
    return { ...PLAIN, name, jinja: { ...j, file: path.join(path.dirname(tokenizerFile), f['source']) } };
  }
  if (!t) return name === 'chat' ? { name, system: '', user: 'USER: ', assistant: 'ASSISTANT: ', separator: ' ' } : PLAIN;
  const str = (k: string, dflt = '') => (typeof f[k] === 'string' ? (f[k] as string) : dflt);
  return { name, system: str('system'), user: str('user'), assistant: str('assistant'), separator: str('separator', ' '), stop: typeof f['stop'] === 'string' ? (f['stop'] as string) : undefined };
}
