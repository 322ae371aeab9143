// The data pipeline of one dataset, record by record, in named stages that training and the data
// pre-flight share, so what the pre-flight passes is exactly what the trainer reads:
//   1. read      records from the data file, or generated                llava-json.ts, synthetic-shapes.ts
//   2. confine   every file a record names stays inside its root          confine.ts (in 1 and 5)
//   3. template  the turns laid out by the template and tokenized        examples.ts
//   4. check     a trained token, ids inside the vocab, max_length       example-checks.ts
//   5. image     decoded (both modes), resized and normalised (train)    images.ts
// A record that fails a stage becomes a failure located at its file:line:col. Whether failures stop the
// run or are skipped (skip_bad_records) is the caller's decision; training with failures and without
// skip_bad_records stops at the first, as it always did.
import { M, PipeRuntimeError } from '../errors.js';
import type { Sample } from './batch.js';
import { exampleProblem } from './example-checks.js';
import { buildExample, type TemplateSpec } from './examples.js';
import { preprocessImage, type PreprocessOptions } from './images.js';
import { loadRecordImage, readLlavaJson, type LlavaJsonOptions, type SkippedRecord } from './llava-json.js';
import { generateShapes, type ShapeRecord, type SyntheticOptions } from './synthetic-shapes.js';
import type { TextTokenizer } from './vocab-tokenizer.js';

/** A dataset with every argument interpreted (datasets.ts: datasetSpec), ready to be passed over. */
export interface DatasetSpec {
  name: string;
  template: TemplateSpec;
  skipBadRecords: boolean;
  marker: string;
  /** Image positions per record with an image; 0 when the model has no encoder. */
  imageTokens: number;
  /** The encoder's preprocessing, when the model has an encoder. */
  preprocess?: PreprocessOptions;
  tokenizer: TextTokenizer;
  /** The llm's vocab: every id must be below it. */
  vocab: number;
  maxLength: number;
  source:
    | { kind: 'synthetic'; options: SyntheticOptions; holdout: number; display: string; normalise?: (r: ShapeRecord) => Float32Array }
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
  /** The records that failed, in record order. */
  failures: SkippedRecord[];
  /** train mode only: */
  train: Sample[];
  heldout: Sample[];
  heldoutRecords?: ShapeRecord[];
  /** The images the records name (root folder, name), for the pre-flight's cache. */
  images: { root: string; name: string }[];
}

export function runDataPass(spec: DatasetSpec, mode: PassMode): DataPass {
  const pass: DataPass = { spec, records: 0, lengths: [], failures: [], train: [], heldout: [], images: [] };
  const stopAtFirst = mode === 'train' && !spec.skipBadRecords;
  const fail = (f: SkippedRecord) => {
    if (stopAtFirst) throw f.error ?? new PipeRuntimeError(f.code, f.message, f.location);
    pass.failures.push(f);
  };
  const failure = (index: number, e: PipeRuntimeError): SkippedRecord => ({ index, code: e.code, message: e.message, location: e.location, error: e });

  if (spec.source.kind === 'synthetic') {
    const src = spec.source;
    const records = generateShapes(src.options);
    const nHeld = Math.floor(records.length * src.holdout);
    pass.records = records.length;
    records.forEach((r, i) => {
      const ex = buildExample(r.turns, spec.template, spec.tokenizer, spec.marker, spec.imageTokens);
      const problem = exampleProblem(ex, { index: r.index, location: { file: src.display }, maxLength: spec.maxLength, vocab: spec.vocab, tokenizer: spec.tokenizer, turns: r.turns });
      if (problem) return fail(failure(r.index, problem));
      pass.lengths.push(ex.ids.length);
      if (mode !== 'train') return;
      const sample: Sample = { ...ex, pixels: src.normalise?.(r), source: { dataset: spec.name, index: r.index } };
      (i < records.length - nHeld ? pass.train : pass.heldout).push(sample);
    });
    if (mode === 'train') pass.heldoutRecords = records.slice(records.length - nHeld);
    return pass;
  }

  // Read with every bad record collected, except when training stops at the first one anyway.
  const read = readLlavaJson({ ...spec.source.read, skipBadRecords: !stopAtFirst });
  const byIndex = new Map(read.records.map((r) => [r.index, r]));
  const badRead = new Map(read.skipped.map((s) => [s.index, s]));
  pass.records = read.records.length + read.skipped.length;
  // Records in file order, the ones that failed reading in their places.
  for (let index = 0; index < pass.records; index++) {
    const r = byIndex.get(index);
    if (!r) {
      const s = badRead.get(index);
      if (s) fail(s);
      continue;
    }
    const id = r.id === String(r.index) ? undefined : r.id;
    const location = r.location ?? { file: spec.source.read.displayFile ?? spec.source.read.file };
    const withImage = r.image !== undefined && spec.imageTokens > 0;
    let ex;
    try {
      ex = buildExample(r.turns, spec.template, spec.tokenizer, spec.marker, withImage ? spec.imageTokens : 0);
    } catch (e) {
      // A Jinja template may reject one conversation (raise_exception): that record fails, located.
      if (!(e instanceof PipeRuntimeError)) throw e;
      fail(failure(index, new PipeRuntimeError(e.code, `record ${index}${id === undefined ? '' : ` (id ${JSON.stringify(id)})`}: ${e.message}`, location, e.hint)));
      continue;
    }
    const problem = exampleProblem(ex, { index, id, location, maxLength: spec.maxLength, vocab: spec.vocab, tokenizer: spec.tokenizer, turns: r.turns, spellings: r.spellings });
    if (problem) {
      fail(failure(index, problem));
      continue;
    }
    if (r.image) pass.images.push({ root: r.image.root.dir, name: r.image.name });
    let pixels: Float32Array | undefined;
    if (withImage && spec.preprocess) {
      try {
        const rgb = loadRecordImage(r);
        if (mode === 'train') pixels = preprocessImage(rgb, spec.preprocess);
      } catch (e) {
        if (!(e instanceof PipeRuntimeError)) throw e;
        fail(failure(index, e));
        continue;
      }
    }
    pass.lengths.push(ex.ids.length);
    if (mode === 'train') pass.train.push({ ...ex, pixels, source: { dataset: spec.name, index } });
  }
  return pass;
}

/** The PIPE9008 warning text for skipped records, or undefined when none were skipped. */
export function skippedDetail(failures: readonly SkippedRecord[], file: string): string | undefined {
  if (!failures.length) return undefined;
  const detail = failures.slice(0, 3).map((x) => `${x.code} ${x.message}`).join('; ') + (failures.length > 3 ? '; ...' : '');
  return M.DataSkipped.format(failures.length, file, detail);
}
