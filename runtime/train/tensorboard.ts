// RUN/tb/: TensorBoard event files, written by pipec itself (the bytes: tfrecord.ts), so that
// `tensorboard --logdir RUN/tb` (or a folder of runs) shows a run like any other framework's.
//   one file per process: events.out.tfevents.<seconds, 10 digits>.<host>.<pid>, as TensorFlow names them;
//   step = the run's global step (a metrics.jsonl line's position); one event per optimizer step, appended
//   and handed to the OS at once (TensorBoard reads a live file), tags:
//     train/loss  train/lm_loss  train/aux_loss (MoE)  train/lr  train/grad_norm  train/tokens_per_s
//     train/stage (the stage's index: its steps mark the stage boundaries)  eval/<name> (eval.jsonl's figures)
// Resume: a resumed run starts a new file (TensorBoard merges a folder's files in name order) and
// first rewrites the earlier files without the events after the resume point, as truncateMetrics
// does for metrics.jsonl, so no step appears twice for any reader; its file also opens with
// SessionLog START at the first redone step, TensorBoard's own signal of a restarted run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { M, runtimeError } from '../errors.js';
import { appendNoFollow, ensureRealDir, writeFileAtomic, writeFileSynced } from '../weights/atomic.js';
import type { EvalPoint, StepMetrics } from './metrics.js';
import { decodeEvent, fileVersionEvent, readRecords, scalarsEvent, sessionStartEvent, tfRecord, type Scalar } from './tfrecord.js';

export const TB_DIR = 'tb';
const EVENTS_FILE = /^events\.out\.tfevents\.(\d+)\./;

export function stepScalars(m: StepMetrics): Scalar[] {
  return [
    { tag: 'train/loss', value: m.loss },
    { tag: 'train/lm_loss', value: m.lm_loss },
    ...(m.aux_loss !== undefined ? [{ tag: 'train/aux_loss', value: m.aux_loss }] : []),
    { tag: 'train/lr', value: m.lr },
    { tag: 'train/grad_norm', value: m.grad_norm },
    { tag: 'train/tokens_per_s', value: m.tokens_per_s },
    ...(m.data_wait_s !== undefined ? [{ tag: 'train/data_wait_s', value: m.data_wait_s }] : []),
    { tag: 'train/stage', value: m.stage_index },
  ].map((s) => ({ tag: s.tag, value: s.value ?? NaN })); // null: a NaN that metrics.jsonl's JSON could not hold
}

export function evalTag(name: string): string {
  return `eval/${name}`;
}

export class TensorBoardWriter {
  private constructor(readonly file: string) {}

  /** A new events file in RUN/tb; `resumedAt`: the global step the resumed run continues after. */
  static create(runDir: string, resumedAt?: number): TensorBoardWriter {
    const dir = path.join(runDir, TB_DIR);
    ensureRealDir(dir);
    // Seconds in the name order the files: a name must sort after every earlier file's
    const earlier = fs.readdirSync(dir).map((n) => EVENTS_FILE.exec(n)).filter((m) => m).map((m) => Number(m![1]));
    const seconds = Math.max(Math.floor(Date.now() / 1000), ...earlier.map((s) => s + 1));
    const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, '_') || 'localhost';
    const file = path.join(dir, `events.out.tfevents.${String(seconds).padStart(10, '0')}.${host}.${process.pid}`);
    const now = Date.now() / 1000;
    const head = [tfRecord(fileVersionEvent(now))];
    if (resumedAt !== undefined) head.push(tfRecord(sessionStartEvent(now, resumedAt + 1)));
    writeFileSynced(file, Buffer.concat(head)); // O_EXCL: never through a link, never into another file
    return new TensorBoardWriter(file);
  }

  scalars(step: number, scalars: readonly Scalar[], wallTime = Date.now() / 1000): void {
    appendNoFollow(this.file, tfRecord(scalarsEvent(wallTime, step, scalars)));
  }

  step(globalStep: number, m: StepMetrics): void {
    this.scalars(globalStep, stepScalars(m));
  }

  evaluation(globalStep: number, points: readonly EvalPoint[]): void {
    if (points.length) this.scalars(globalStep, points.map((p) => ({ tag: evalTag(p.name), value: p.value })));
  }
}

/**
 * On resume: rewrites (atomically) each earlier events file without the events after global step
 * `keepThrough` (and, with `dropEvalAt`, the eval/ events at that step, which the resumed run
 * measures again) and without a torn last record. A file that loses nothing is left alone.
 */
export function truncateTensorBoard(runDir: string, keepThrough: number, dropEvalAt = false): void {
  const dir = path.join(runDir, TB_DIR);
  const st = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (!st) return;
  if (st.isSymbolicLink()) throw runtimeError(M.RunPathIsLink, [dir, 'symbolic link'], { file: dir });
  for (const name of fs.readdirSync(dir).filter((n) => EVENTS_FILE.test(n)).sort()) {
    const file = path.join(dir, name);
    const fst = fs.lstatSync(file);
    if (fst.isSymbolicLink()) throw runtimeError(M.RunPathIsLink, [file, 'symbolic link'], { file });
    if (!fst.isFile()) continue;
    const bytes = fs.readFileSync(file);
    const { records, end } = readRecords(bytes);
    const kept = records.filter((r) => {
      const { step, scalars } = decodeEvent(r);
      const isEval = scalars.length > 0 && scalars.every((s) => s.tag.startsWith('eval/'));
      return step < keepThrough || (step === keepThrough && !(dropEvalAt && isEval));
    });
    if (kept.length === records.length && end === bytes.length) continue;
    writeFileAtomic(file, Buffer.concat(kept.map((r) => tfRecord(r))));
  }
}

/**
 * RUN/tb's scalars as TensorBoard shows them, by tag: [step, value] in order. Files are read in name
 * order; a SessionLog START drops the events read before it at its step or later (TensorBoard's
 * purge of a restarted run), and a torn last record ends its file. The tests' pure-TS read-back.
 */
export function readTensorBoardScalars(runDir: string): Map<string, [number, number][]> {
  const dir = path.join(runDir, TB_DIR);
  const byTag = new Map<string, [number, number][]>();
  if (!fs.existsSync(dir)) return byTag;
  for (const name of fs.readdirSync(dir).filter((n) => EVENTS_FILE.test(n)).sort()) {
    for (const r of readRecords(fs.readFileSync(path.join(dir, name))).records) {
      const e = decodeEvent(r);
      if (e.sessionStatus === 1) for (const [tag, points] of byTag) byTag.set(tag, points.filter(([step]) => step < e.step));
      for (const s of e.scalars) {
        if (!byTag.has(s.tag)) byTag.set(s.tag, []);
        byTag.get(s.tag)!.push([e.step, s.value]);
      }
    }
  }
  return byTag;
}
