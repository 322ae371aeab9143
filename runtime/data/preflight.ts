// The data pre-flight: every record of every stage's dataset through the same pipeline training uses
// (pipeline.ts, in check mode), with the run's real tokenizer and template, before any stage trains:
// files exist and decode, images stay inside their folder, roles are known, ids fit the llm's vocab,
// text + image tokens fit max_length with the answer intact, and each record trains at least one
// token; then each stage has at least one batch of usable records. `pipec run` calls it for all stages
// before its first step, so a bad record in stage 3 is found before stage 1 trains for hours;
// `pipec check --data` prints it with a length histogram (preflight-report.ts).
//
// Results are cached in the run folder (preflight-cache.ts), so a `--resume` does not pay again.
import * as path from 'node:path';
import type { Graph } from '../../compiler/ir/graph.js';
import { M, PipeRuntimeError, runtimeError, type ErrorLocation } from '../errors.js';
import { datasetSpec, stageSources } from './datasets.js';
import { sharesPerEpoch } from './order.js';
import { runDataPass, type DatasetSpec } from './pipeline.js';
import { PreflightCache, specKey, type CachedPass } from './preflight-cache.js';
import { namedTokenizerFile } from './run-tokenizer.js';
import type { TextTokenizer } from './vocab-tokenizer.js';

/** A record that would fail, as plain data (it is cached and printed). */
export interface Failure {
  index: number;
  code: string;
  message: string;
  location?: ErrorLocation;
  hint?: string;
}

export interface StageCheck {
  stage: string;
  /** The dataset checked: the stage's data, or one source of its mixture. */
  dataset: string;
  /** The stage's data when it is a mixture, with this source's share of every epoch. */
  mixture?: { name: string; ratio?: number; count?: number };
  /** The data file as the program names it, or `<synthetic_shapes NAME>`. */
  file: string;
  maxLength: number;
  batch: number;
  skipBadRecords: boolean;
  records: number;
  /** [tokens, records with that many tokens], ascending, for the records that pass. */
  lengthCounts: [number, number][];
  failures: Failure[];
  /** A problem of the stage as a whole (fewer usable records than one batch). */
  problem?: Failure;
  /** The same dataset pass as an earlier stage (same data, template, max_length, model). */
  sameAs?: string;
  cached: boolean;
  seconds: number;
  /** Per record its signed length, 0 when it fails: the records the trainer reads (not in `--format json`). */
  recordLengths?: Int32Array;
}

export interface PreflightOptions {
  graph: Graph;
  /** Where the program's relative paths resolve (the .pipe file's folder). */
  baseDir: string;
  /** The run's tokenizer (run-tokenizer.ts). */
  tokenizer: TextTokenizer;
  /** A folder for the cache and the data files' record indexes (the run folder); without it nothing is cached. */
  cacheDir?: string;
}

/** Checks the data of every stage; reports what it finds, never throws for bad records. */
export function preflightStages(o: PreflightOptions): StageCheck[] {
  const cache = o.cacheDir ? PreflightCache.open(path.join(o.cacheDir, 'preflight.json')) : undefined;
  const tokenizerFile = namedTokenizerFile(o.graph, o.baseDir);
  const done = new Map<string, { stage: string; pass: CachedPass }>();
  const out: StageCheck[] = [];
  for (const stage of o.graph.stages) {
    const model = o.graph.models.find((m) => m.name === stage.model)!;
    const { mixture, sources } = stageSources(o.graph, stage.data);
    const checks: StageCheck[] = [];
    for (const source of sources) {
      const t0 = performance.now();
      const spec = datasetSpec(source.dataset, { graph: o.graph, baseDir: o.baseDir, model, tokenizer: o.tokenizer, maxLength: stage.max_length });
      const key = specKey(o.graph, spec, tokenizerFile, o.tokenizer);
      const earlier = done.get(key);
      let pass = earlier?.pass;
      let cached = !!earlier;
      if (!pass) {
        pass = cache?.lookup(key);
        cached = !!pass;
        if (!pass) pass = checkPass(spec, key, cache, o.cacheDir);
        done.set(key, { stage: stage.name, pass });
      }
      checks.push({
        stage: stage.name, dataset: source.dataset, ...(mixture ? { mixture: { name: mixture, ...(source.ratio !== undefined ? { ratio: source.ratio } : { count: source.count }) } } : {}),
        file: fileOf(spec), maxLength: stage.max_length, batch: stage.batch, skipBadRecords: spec.skipBadRecords, records: pass.records, lengthCounts: pass.lengthCounts,
        failures: pass.failures, sameAs: earlier?.stage, cached, seconds: (performance.now() - t0) / 1000, recordLengths: pass.recordLengths,
      });
    }
    const usable = checks.map((c) => c.lengthCounts.reduce((n, [, k]) => n + k, 0));
    if (mixture) {
      checks.forEach((c, i) => {
        if (usable[i]) return;
        const e = runtimeError(M.MixtureSourceEmpty, [mixture, c.dataset, stage.name], { file: c.file }, c.failures.length ? 'fix its failing records, or leave it out of the mixture' : 'give it records, or leave it out of the mixture');
        c.problem = { index: -1, code: e.code, message: e.message, location: e.location, hint: e.hint };
      });
    }
    const epoch = mixture ? sharesPerEpoch(usable, sources).reduce((a, b) => a + b, 0) : usable[0]!;
    const last = checks[checks.length - 1]!;
    if (epoch < stage.batch && !last.problem) {
      const failing = checks.some((c) => c.failures.length);
      const e = runtimeError(M.TooFewRecords, [stage.data, epoch, stage.name, stage.batch], { file: mixture ? stage.data : last.file }, failing ? 'fix or remove the failing records, add data, or lower `batch`' : 'add data or lower `batch`');
      last.problem = { index: -1, code: e.code, message: e.message, location: e.location, hint: e.hint };
    }
    out.push(...checks);
  }
  cache?.save();
  return out;
}

/** True when the stage cannot train as its data stands: failing records without skip_bad_records, or too few records. */
export function stageFails(c: StageCheck): boolean {
  return (!c.skipBadRecords && c.failures.length > 0) || c.problem !== undefined;
}

/**
 * `pipec run`'s pre-flight: checks every stage, prints one line per stage and every record that would
 * fail (located), and throws PIPE9054 when a stage could not train, before anything has trained.
 */
export function preflightRun(o: PreflightOptions & { log: (line: string) => void }): StageCheck[] {
  const checks = preflightStages(o);
  for (const c of checks) o.log(stageLine(c));
  const failing = checks.filter(stageFails);
  if (!failing.length) return checks;
  for (const c of failing) {
    if (c.sameAs === undefined) for (const f of c.failures.slice(0, SHOWN)) o.log(renderFailure(f));
    if (c.sameAs === undefined && c.failures.length > SHOWN) o.log(`... and ${c.failures.length - SHOWN} more records of "${c.file}" would fail (\`pipec check --data\` lists them all)`);
    if (c.problem) o.log(renderFailure(c.problem));
  }
  throw runtimeError(M.PreflightFailed, [failing.map(failureSummary).join('; ')], undefined, '`pipec check --data FILE.pipe` lists every record with a length histogram; fix them, or set `skip_bad_records: true` on the dataset to skip bad records');
}

/** "stage `s`: 3 of 40 records fail, too few records for a batch" */
export function failureSummary(c: StageCheck): string {
  const bits: string[] = [];
  if (!c.skipBadRecords && c.failures.length) bits.push(`${c.failures.length} of ${c.records} records of "${c.file}" fail`);
  if (c.problem) bits.push(c.mixture ? c.problem.message : `${c.lengthCounts.reduce((n, [, k]) => n + k, 0)} usable records, fewer than one batch of ${c.batch}`);
  return `stage \`${c.stage}\`: ${bits.join(', ')}`;
}

/** How many failing records are listed per dataset in `pipec run`'s output. */
const SHOWN = 20;

export function renderFailure(f: Failure): string {
  return new PipeRuntimeError(f.code, f.message, f.location, f.hint).render();
}

/** One line per stage: records, token range, and whether it passes. */
export function stageLine(c: StageCheck): string {
  const passed = c.lengthCounts.reduce((n, [, k]) => n + k, 0);
  const [lo, hi] = [c.lengthCounts[0]?.[0], c.lengthCounts[c.lengthCounts.length - 1]?.[0]];
  const range = lo === undefined ? 'no usable record' : lo === hi ? `${lo} tokens` : `${lo}-${hi} tokens`;
  const bad = c.failures.length ? (c.skipBadRecords ? `, ${c.failures.length} to skip (skip_bad_records)` : `, ${c.failures.length} would fail`) : '';
  const verdict = stageFails(c) ? 'FAILS' : 'ok';
  const share = c.mixture ? ` (mixture ${c.mixture.name}: ${c.mixture.ratio !== undefined ? `ratio ${c.mixture.ratio}` : `${c.mixture.count} per epoch`})` : '';
  return `data pre-flight: stage ${c.stage}: ${passed} of ${c.records} records of "${c.file}"${share} pass${bad}; ${range} (max_length ${c.maxLength}): ${verdict}${c.cached ? ' (cached)' : ''}`;
}

function fileOf(spec: DatasetSpec): string {
  return spec.source.kind === 'llava' ? (spec.source.read.displayFile ?? spec.source.read.file) : spec.source.display;
}

/** Runs the pipeline in check mode and stores the outcome in the cache (when its files held still). */
function checkPass(spec: DatasetSpec, key: string, cache: PreflightCache | undefined, cacheDir: string | undefined): CachedPass {
  const dataFile = spec.source.kind === 'llava' ? spec.source.read.file : undefined;
  const pass = runDataPass(spec, 'check', { cacheDir });
  // The file as it was indexed at the start of the pass (json-index.ts hashed it then).
  const before = dataFile && pass.stamp ? { path: dataFile, ...pass.stamp } : undefined;
  const counts = new Map<number, number>();
  for (const n of pass.lengths) counts.set(n, (counts.get(n) ?? 0) + 1);
  const result: CachedPass = {
    records: pass.records,
    lengthCounts: [...counts].sort((a, b) => a[0] - b[0]),
    failures: pass.failures.map((f) => ({ index: f.index, code: f.code, message: f.message, location: f.location, hint: f.error?.hint })),
    recordLengths: pass.recordLengths,
  };
  if (cache) cache.store(key, result, dataFile, before, pass.images);
  return result;
}
