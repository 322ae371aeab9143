// A stage's data for the streaming trainer, put together from the data pre-flight's outcome: a reader
// per source (its record index, no records held), the records each source trains on (those the
// pre-flight passed: their signed lengths, pipeline.ts), and the stage's epoch orders (order.ts: one
// dataset, or a mixture's shares; length grouping). The trainer then makes a StageFeed over them.
import type { Graph, ModelDef, StagePlan } from '../../compiler/ir/graph.js';
import { M, runtimeError } from '../errors.js';
import { datasetSpec, stageSources } from './datasets.js';
import type { StageSource } from './feed.js';
import { EpochOrders } from './order.js';
import { openReader, skippedDetail } from './pipeline.js';
import type { StageCheck } from './preflight.js';
import type { TextTokenizer } from './vocab-tokenizer.js';

export interface StageData {
  sources: StageSource[];
  orders: EpochOrders;
  /** Records skipped (skip_bad_records), over all sources. */
  skipped: number;
  /** One PIPE9008 warning text per source with skipped records. */
  warnings: string[];
  close(): void;
}

export interface StageDataOptions {
  graph: Graph;
  stage: StagePlan;
  model: ModelDef;
  tokenizer: TextTokenizer;
  baseDir: string;
  /** The run folder, where the data files' record indexes are cached (json-index.ts). */
  cacheDir?: string;
  /** The data pre-flight's checks (preflight.ts); this stage's carry each source's per-record lengths. */
  checks: readonly StageCheck[];
}

export function openStageData(o: StageDataOptions): StageData {
  const { mixture, sources } = stageSources(o.graph, o.stage.data);
  const opened: StageSource[] = [];
  const close = () => opened.splice(0).forEach((s) => s.reader.close()); // once: the trainer closes at the stage's end and again on the way out
  try {
    const lengths: Int32Array[] = [];
    let skipped = 0;
    const warnings: string[] = [];
    for (const src of sources) {
      const check = o.checks.find((c) => c.stage === o.stage.name && c.dataset === src.dataset);
      if (!check?.recordLengths) throw new Error(`the data pre-flight gave no record lengths for dataset "${src.dataset}" of stage ${o.stage.name}`);
      const spec = datasetSpec(src.dataset, { graph: o.graph, baseDir: o.baseDir, model: o.model, tokenizer: o.tokenizer, maxLength: o.stage.max_length });
      const reader = openReader(spec, o.cacheDir);
      const all = check.recordLengths;
      if (all.length !== reader.count) {
        reader.close();
        throw runtimeError(M.DataChanged, [reader.display, `since the data pre-flight read it (${all.length} records then, ${reader.count} now)`], { file: reader.display }, 'a dataset must not change while a run reads it; start the run again');
      }
      const usable: number[] = [], own: number[] = [];
      for (let i = 0; i < reader.trainable; i++) if (all[i] !== 0) (usable.push(i), own.push(all[i]!));
      opened.push({ reader, usable: Uint32Array.from(usable) });
      lengths.push(Int32Array.from(own));
      if (spec.skipBadRecords && check.failures.length) {
        skipped += check.failures.length;
        warnings.push(skippedDetail(check.failures.map((f) => ({ ...f })), reader.display)!);
      }
      if (mixture && !usable.length) throw runtimeError(M.MixtureSourceEmpty, [mixture, src.dataset, o.stage.name], { file: reader.display });
    }
    const orders = new EpochOrders(
      opened.map((s, i) => ({ name: s.reader.spec.name, count: s.usable.length, lengths: lengths[i] })),
      { seed: o.stage.seed, batch: o.stage.batch, groupByLength: o.stage.group_by_length === true, ...(mixture ? { shares: sources, mixture } : {}) },
    );
    return { sources: [...opened], orders, skipped, warnings, close };
  } catch (e) {
    close();
    throw e;
  }
}
