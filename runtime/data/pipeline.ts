// The data pipeline of one dataset, record by record, in named stages that training and the data
// pre-flight share, so what the pre-flight passes is exactly what the trainer reads:
//   1. read      records from the data file (by its index: json-index.ts), or generated    llava-json.ts, synthetic-shapes.ts
//   2. confine   every file a record names stays inside its root                           confine.ts (in 1 and 5)
//   3. template  the turns laid out by the template and tokenized                          examples.ts
//   4. check     a trained token, ids inside the vocab, max_length                         example-checks.ts
//   5. image     decoded (both modes), resized and normalised (train)                      images.ts
// Stages 1-4 are `RecordReader.example`; stage 5 is `imagePixels`, which the streaming trainer runs in
// worker threads (feed.ts, image-workers.ts) and `runDataPass` runs in line. A record that fails a
// stage becomes a failure located at its file:line:col. Whether failures stop the run or are skipped
// (skip_bad_records) is the caller's decision; training with failures and without skip_bad_records
// stops at the first, as it always did.
import { M, PipeRuntimeError } from '../errors.js';
import type { Sample } from './batch.js';
import { exampleProblem } from './example-checks.js';
import { buildExample, type Example, type TemplateSpec } from './examples.js';
import { preprocessImage, type PreprocessOptions } from './images.js';
import { imageJobs, loadImage, LlavaSource, type ImageJob, type LlavaJsonOptions, type SkippedRecord } from './llava-json.js';
import type { FileStamp } from './json-index.js';
import { type DrawJob, generateShapes, type ShapeRecord, type SyntheticOptions } from './synthetic-shapes.js';
import type { TextTokenizer } from './vocab-tokenizer.js';

/** A dataset with every argument interpreted (datasets.ts: datasetSpec), ready to be passed over. */
export interface DatasetSpec {
  name: string;
  template: TemplateSpec;
  skipBadRecords: boolean;
  marker: string;
  /** Image positions per image; 0 when the model has no encoder. */
  imageTokens: number;
  /** The encoder's preprocessing (with the dataset's `image_aspect`), when the model has an encoder. */
  preprocess?: PreprocessOptions;
  tokenizer: TextTokenizer;
  /** The llm's vocab: every id must be below it. */
  vocab: number;
  maxLength: number;
  source:
    | { kind: 'synthetic'; options: SyntheticOptions; holdout: number; display: string; normalise?: (r: ShapeRecord) => Float32Array; stats?: { mean: number[]; std: number[] } }
    | { kind: 'llava'; read: LlavaJsonOptions };
}

/** train: samples with pixels, stopping at the first failure unless skip_bad_records. check: every record, nothing kept. */
export type PassMode = 'train' | 'check';

export interface DataPass {
  spec: DatasetSpec;
  /** Records seen, bad ones included. */
  records: number;
  /** Tokens of each record that passed, image tokens included, in record order. */
  lengths: number[];
  /**
   * Per record: its tokens when it passed, negative for a text-only record (LLaVA's convention for
   * length grouping), 0 when it failed. The trainer takes the records to train on from here.
   */
  recordLengths: Int32Array;
  /** The records that failed, in record order. */
  failures: SkippedRecord[];
  /** train mode only: */
  train: Sample[];
  heldout: Sample[];
  heldoutRecords?: ShapeRecord[];
  /** The images the records name (root folder, name), for the pre-flight's cache. */
  images: { root: string; name: string }[];
  /** The data file's size, mtime and SHA-256 when the pass indexed it (llava_json). */
  stamp?: FileStamp;
}

/** Stages 1-4 of one record: its example, and the images stage 5 turns into pixels. */
export interface RecordExample {
  example: Example;
  /** Images to decode (through their DataRoot), in marker order; empty for a text-only record or a model without an encoder. */
  jobs: ImageJob[];
  /** A generated record's pixels, already normalised (synthetic datasets: no file to read). */
  pixels?: () => Float32Array;
  /** The same pixels as a job for the data workers (the streaming trainer draws them off the main thread). */
  draw?: DrawJob;
  /** Every file the record names, for the pre-flight's cache (with or without an encoder). */
  files: { root: string; name: string }[];
}

/** One dataset's records by index, through stages 1-4: what the data pass and the streaming trainer share. */
export interface RecordReader {
  readonly spec: DatasetSpec;
  /** Records in the dataset, bad ones and (synthetic) held-out ones included. */
  readonly count: number;
  /** Records a stage trains on are [0, trainable) (synthetic: the held-out tail is never trained on). */
  readonly trainable: number;
  /** The data file as the program names it, or `<synthetic_shapes NAME>`. */
  readonly display: string;
  /** The data file's size, mtime and SHA-256 as indexed (llava_json). */
  readonly stamp?: FileStamp;
  /** Record i through stages 1-4; throws its failure as a located PipeRuntimeError. */
  example(i: number): RecordExample;
  close(): void;
}

export function openReader(spec: DatasetSpec, cacheDir?: string): RecordReader {
  return spec.source.kind === 'synthetic' ? new SyntheticReader(spec) : new LlavaReader(spec, cacheDir);
}

class SyntheticReader implements RecordReader {
  readonly records: ShapeRecord[];
  readonly count: number;
  readonly trainable: number;
  readonly display: string;

  constructor(readonly spec: DatasetSpec) {
    const src = spec.source as Extract<DatasetSpec['source'], { kind: 'synthetic' }>;
    this.records = generateShapes(src.options);
    this.count = this.records.length;
    this.trainable = this.count - Math.floor(this.count * src.holdout);
    this.display = src.display;
  }

  example(i: number): RecordExample {
    const spec = this.spec;
    const src = spec.source as Extract<DatasetSpec['source'], { kind: 'synthetic' }>;
    const r = this.records[i]!;
    const ex = buildExample(r.turns, spec.template, spec.tokenizer, spec.marker, spec.imageTokens);
    const problem = exampleProblem(ex, { index: r.index, location: { file: this.display }, maxLength: spec.maxLength, vocab: spec.vocab, tokenizer: spec.tokenizer, turns: r.turns });
    if (problem) throw problem;
    const normalise = src.normalise;
    const draw = src.stats ? { ...r.drawing, ...src.stats } : undefined;
    return { example: ex, jobs: [], pixels: normalise ? () => normalise(r) : undefined, ...(draw ? { draw } : {}), files: [] };
  }

  close(): void {}
}

class LlavaReader implements RecordReader {
  private readonly source: LlavaSource;
  readonly count: number;
  readonly trainable: number;
  readonly display: string;

  constructor(readonly spec: DatasetSpec, cacheDir?: string) {
    const read = (spec.source as Extract<DatasetSpec['source'], { kind: 'llava' }>).read;
    this.source = new LlavaSource(read, cacheDir);
    this.count = this.trainable = this.source.count;
    this.display = this.source.shown;
  }

  get stamp(): FileStamp {
    return this.source.index.stamp;
  }

  example(index: number): RecordExample {
    const spec = this.spec;
    const r = this.source.record(index);
    const id = r.id === String(r.index) ? undefined : r.id;
    const location = r.location ?? this.source.location(index);
    const images = r.images ?? (r.image ? [r.image] : []);
    const withImage = images.length > 0 && spec.imageTokens > 0;
    let ex: Example;
    try {
      ex = buildExample(r.turns, spec.template, spec.tokenizer, spec.marker, withImage ? spec.imageTokens : 0, images.length || 1);
    } catch (e) {
      // A Jinja template may reject one conversation (raise_exception): that record fails, located.
      if (!(e instanceof PipeRuntimeError)) throw e;
      throw new PipeRuntimeError(e.code, `record ${index}${id === undefined ? '' : ` (id ${JSON.stringify(id)})`}: ${e.message}`, location, e.hint);
    }
    const problem = exampleProblem(ex, { index, id, location, maxLength: spec.maxLength, vocab: spec.vocab, tokenizer: spec.tokenizer, turns: r.turns, spellings: r.spellings });
    if (problem) throw problem;
    return { example: ex, jobs: withImage && spec.preprocess ? imageJobs(r) : [], files: images.map((x) => ({ root: x.root.dir, name: x.name })) };
  }

  close(): void {
    this.source.close();
  }
}

/**
 * Stage 5 for one image: read through its DataRoot (confined at the open), decoded, and for training
 * resized and normalised. A failure is PIPE9050 / 9004 / 9005 at the record.
 */
export function imagePixels(job: ImageJob, preprocess: PreprocessOptions | undefined, mode: PassMode): Float32Array | undefined {
  const rgb = loadImage(job);
  return mode === 'train' && preprocess ? preprocessImage(rgb, preprocess) : undefined;
}

export function runDataPass(spec: DatasetSpec, mode: PassMode, opts: { cacheDir?: string } = {}): DataPass {
  const reader = openReader(spec, opts.cacheDir);
  try {
    return passOver(reader, mode);
  } finally {
    reader.close();
  }
}

function passOver(reader: RecordReader, mode: PassMode): DataPass {
  const spec = reader.spec;
  const pass: DataPass = { spec, records: reader.count, lengths: [], recordLengths: new Int32Array(reader.count), failures: [], train: [], heldout: [], images: [], ...(reader.stamp ? { stamp: reader.stamp } : {}) };
  const stopAtFirst = mode === 'train' && !spec.skipBadRecords;
  // check mode: a file that opened and decoded once in this pass is not decoded again for the next
  // record naming it (LLaVA's mixes name one image from several records); one that failed is tried again
  const checked = new Set<string>();
  for (let index = 0; index < reader.count; index++) {
    let rec: RecordExample;
    const pixels: Float32Array[] = [];
    try {
      rec = reader.example(index);
      for (const f of rec.files) pass.images.push(f);
      for (const job of rec.jobs) {
        const key = `${job.root.dir}\0${job.name}`;
        if (mode === 'check' && checked.has(key)) continue;
        const p = imagePixels(job, spec.preprocess, mode);
        if (mode === 'check') checked.add(key);
        if (p) pixels.push(p);
      }
    } catch (e) {
      if (!(e instanceof PipeRuntimeError)) throw e;
      if (stopAtFirst) throw e;
      pass.failures.push({ index, code: e.code, message: e.message, location: e.location, error: e });
      continue;
    }
    const ex = rec.example;
    const withPixels = rec.jobs.length > 0 || !!rec.pixels;
    pass.lengths.push(ex.ids.length);
    pass.recordLengths[index] = withPixels ? ex.ids.length : -ex.ids.length;
    if (mode !== 'train') continue;
    const first = rec.pixels ? rec.pixels() : pixels[0];
    const sample: Sample = { ...ex, pixels: first, ...(pixels.length > 1 ? { extraPixels: pixels.slice(1) } : {}), source: { dataset: spec.name, index } };
    (index < reader.trainable ? pass.train : pass.heldout).push(sample);
  }
  if (mode === 'train' && reader instanceof SyntheticReader) pass.heldoutRecords = reader.records.slice(reader.trainable);
  return pass;
}

/** The PIPE9008 warning text for skipped records, or undefined when none were skipped. */
export function skippedDetail(failures: readonly SkippedRecord[], file: string): string | undefined {
  if (!failures.length) return undefined;
  const detail = failures.slice(0, 3).map((x) => `${x.code} ${x.message}`).join('; ') + (failures.length > 3 ? '; ...' : '');
  return M.DataSkipped.format(failures.length, file, detail);
}
