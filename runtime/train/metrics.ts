// The run's measurements, the source every view is made from (dashboard.ts, tensorboard.ts):
//   RUN/metrics.jsonl  one JSON object per optimizer step, in order; a stage's steps count from 1
//   RUN/eval.jsonl     one JSON object per evaluation figure (the held-out accuracy at the end of a run;
//                      a periodic evaluation appends its figures at the step it measured)
// The run's global step -- the axis of the dashboard and TensorBoard -- is a line's position in
// metrics.jsonl (1-based): every stage logs each of its steps once, and a resume first drops the lines
// it will redo (truncateMetrics).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { appendNoFollow, refuseLink, writeFileAtomic } from '../weights/atomic.js';

export interface StepMetrics {
  stage: string;
  stage_index: number;
  step: number;
  loss: number;
  lm_loss: number;
  aux_loss?: number;
  lr: number;
  grad_norm: number;
  tokens: number;
  tokens_per_s: number;
  elapsed_s: number;
  /** Seconds the step waited for its micro-batches (0 when the data feed kept ahead). */
  data_wait_s?: number;
}

/** One figure of an evaluation, e.g. name "accuracy/shape_en", measured after `step` of `stage`. */
export interface EvalPoint {
  stage: string;
  stage_index: number;
  step: number;
  name: string;
  value: number;
  correct?: number;
  total?: number;
}

/** Where a resumed run continues: after `step` of stage `stage_index`; `final` when that step ended the stage. */
export interface ResumeAt {
  stage_index: number;
  step: number;
  final?: boolean;
}

export function metricsFile(runDir: string): string {
  return path.join(runDir, 'metrics.jsonl');
}

export function evalFile(runDir: string): string {
  return path.join(runDir, 'eval.jsonl');
}

export function appendMetrics(runDir: string, m: StepMetrics): void {
  appendNoFollow(metricsFile(runDir), JSON.stringify(m) + '\n'); // never through a planted link
}

export function appendEval(runDir: string, points: readonly EvalPoint[]): void {
  if (points.length) appendNoFollow(evalFile(runDir), points.map((p) => JSON.stringify(p) + '\n').join(''));
}

function readJsonLines<T>(file: string): T[] {
  refuseLink(file);
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).flatMap((l) => {
    try {
      return [JSON.parse(l) as T];
    } catch {
      return []; // a line torn by a kill; the resumed run rewrites it
    }
  });
}

export function readMetrics(runDir: string): StepMetrics[] {
  return readJsonLines<StepMetrics>(metricsFile(runDir));
}

export function readEval(runDir: string): EvalPoint[] {
  return readJsonLines<EvalPoint>(evalFile(runDir));
}

/** Is (stage_index, step) after the resume point? */
function after(p: { stage_index: number; step: number }, at: ResumeAt): boolean {
  return p.stage_index > at.stage_index || (p.stage_index === at.stage_index && p.step > at.step);
}

/**
 * On resume: drops the steps after the checkpoint, which the resumed run will redo, and the evaluation
 * figures measured after it. A resume from the last stage's final checkpoint redoes the final
 * evaluation (run.ts evaluates after the last stage), so `redoesFinalEvaluation` drops the figures at
 * that step too. Returns the run's global step at the resume point (the lines kept).
 */
export function truncateMetrics(runDir: string, at: ResumeAt, redoesFinalEvaluation = false): number {
  const kept = readMetrics(runDir).filter((m) => !after(m, at));
  writeFileAtomic(metricsFile(runDir), kept.map((m) => JSON.stringify(m) + '\n').join(''));
  const evals = readEval(runDir);
  const keptEvals = evals.filter((p) => !after(p, at) && !(redoesFinalEvaluation && p.stage_index === at.stage_index && p.step === at.step));
  if (evals.length || fs.existsSync(evalFile(runDir))) writeFileAtomic(evalFile(runDir), keptEvals.map((p) => JSON.stringify(p) + '\n').join(''));
  return kept.length;
}
