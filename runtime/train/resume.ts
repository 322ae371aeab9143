// Where `pipec run --resume` continues: the newest checkpoint of the run folder that is intact. A
// checkpoint is intact when its folder is a real folder (not a link), every file matches its manifest
// (size and SHA-256), trainer_state.json passes schema/trainer-state.schema.json and agrees with the
// program (graph hash, stage, step, name), and every tensor the resume loads is there with its shape:
// each parameter of the stage's model and, mid-stage, each optimizer moment of its trainable
// parameters. Anything else is skipped with a warning naming what was wrong (PIPE9035) and the next
// older one is tried; latest.json is a hint that must name a plain checkpoint of this folder (PIPE9038
// otherwise). Skipped checkpoints newer than the one chosen are renamed `skipped-NAME` (kept for
// inspection, out of the way of pruning and of later resumes), and latest.json is pointed at the one
// chosen.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckpointError, readCheckpointMeta, readSafetensorsHeader, type TensorInfo } from '../../compiler/check/checkpoint-io.js';
import type { Graph } from '../../compiler/ir/graph.js';
import { type MessageDef } from '../../compiler/diagnostics/catalogue.js';
import { M, runtimeError } from '../errors.js';
import { modelParamSpecs } from '../params.js';
import { ADAPTER_WEIGHTS, PEFT_PREFIX } from './adapters.js';
import { writeFileAtomic } from '../weights/atomic.js';
import { CHECKPOINT_NAME, checkpointName, LATEST_FILE, parseTrainerState, readLatestName, type TrainerState } from './checkpoint.js';
import { verifyManifest } from './manifest.js';

export interface ResumePoint {
  dir: string;
  name: string;
  state: TrainerState;
}

/** The newest intact checkpoint, after warnings (`warn`, one line each) for every newer one skipped. */
export function findResumePoint(runDir: string, g: Graph, hash: string, warn: (line: string) => void): ResumePoint {
  const root = path.join(runDir, 'checkpoints');
  const rst = fs.lstatSync(root, { throwIfNoEntry: false });
  if (rst?.isSymbolicLink()) throw runtimeError(M.RunPathIsLink, [root, 'symbolic link'], { file: root });
  const names = rst?.isDirectory() ? fs.readdirSync(root).filter((n) => CHECKPOINT_NAME.test(n)).sort(newestFirst) : [];
  const noneHint = 'nothing was checkpointed: start it again with --overwrite (deletes what the run wrote), or choose another --out folder';
  if (!names.length) throw runtimeError(M.NothingToResume, [runDir], { file: runDir }, noneHint);

  const latestFile = path.join(root, LATEST_FILE);
  const latest = readLatestName(latestFile);
  if (latest === undefined) warn(warning(M.LatestInvalid, ['is missing'], latestFile));
  else if (typeof latest !== 'string') warn(warning(M.LatestInvalid, [latest.why], latestFile));
  else if (!names.includes(latest)) warn(warning(M.LatestInvalid, [`names ${latest}, which does not exist`], latestFile));

  const skipped: { name: string; why: string; otherProgram: boolean }[] = [];
  for (const name of names) {
    const dir = path.join(root, name);
    const r = inspectCheckpoint(dir, name, g, hash);
    if ('why' in r) {
      skipped.push({ name, ...r });
      warn(warning(M.CheckpointSkipped, [name, r.why], dir));
      continue;
    }
    for (const s of skipped) {
      const to = freeName(root, `skipped-${s.name}`);
      fs.renameSync(path.join(root, s.name), path.join(root, to));
      warn(`note: moved the skipped checkpoint ${s.name} to checkpoints/${to}`);
    }
    if (latest !== name) writeFileAtomic(latestFile, JSON.stringify({ checkpoint: name }) + '\n');
    return { dir, name, state: r };
  }
  if (skipped.every((s) => s.otherProgram)) throw runtimeError(M.ResumeMismatch, [skipped[0]!.why], { file: path.join(root, skipped[0]!.name) }, 'resume with the program that wrote the checkpoints, or use a new --out folder');
  const why = skipped.map((s) => `${s.name}: ${s.why}`).slice(0, 3).join('; ') + (skipped.length > 3 ? `; and ${skipped.length - 3} more` : '');
  throw runtimeError(M.NoIntactCheckpoint, [runDir, why], { file: root }, 'start the run again with --overwrite (deletes what the run wrote), or choose another --out folder');
}

/** The trainer state when the checkpoint is intact and fits this program, else what is wrong. */
export function inspectCheckpoint(dir: string, name: string, g: Graph, hash: string): TrainerState | { why: string; otherProgram: boolean } {
  const bad = (why: string, otherProgram = false) => ({ why, otherProgram });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) return bad(st.isSymbolicLink() ? 'it is a symbolic link, not a folder of this run' : 'it is not a folder');
  const damaged = verifyManifest(dir);
  if (damaged) return bad(damaged);
  const state = parseTrainerState(dir);
  if ('why' in state) return bad(state.why);
  if (state.graph_hash !== hash) return bad(`it belongs to a different program (graph ${state.graph_hash}; this program is graph ${hash})`, true);
  const stage = g.stages[state.stage_index];
  if (!stage || stage.name !== state.stage) return bad(`trainer_state.json names stage ${state.stage_index} "${state.stage}", which this program does not have`);
  if (checkpointName(state.stage_index, state.stage, state.step) !== name) return bad(`trainer_state.json says stage ${state.stage} step ${state.step}, which is not the checkpoint's name`);
  if (state.step > state.total_steps || state.final !== (state.step === state.total_steps)) return bad(`trainer_state.json says step ${state.step} of ${state.total_steps}${state.final ? ', final' : ''}, which cannot be`);
  const model = g.models.find((m) => m.name === stage.model)!;
  const specs = modelParamSpecs(model);
  for (const c of model.components) {
    const want = specs.filter((p) => p.component === c.name);
    if (!want.length) continue;
    const why = missingTensor(() => readCheckpointMeta(path.join(dir, c.name)).tensors, want.map((p) => [p.name, p.shape]), `${c.name}/model.safetensors`);
    if (why) return bad(why);
  }
  for (const a of model.adapters ?? []) { // each in PEFT's format and names (adapters.ts)
    const want = specs.filter((p) => p.component === a.name);
    const why = missingTensor(() => readSafetensorsHeader(path.join(dir, a.name, ADAPTER_WEIGHTS)).tensors, want.map((p) => [PEFT_PREFIX + p.name, p.shape]), `${a.name}/${ADAPTER_WEIGHTS}`);
    if (why) return bad(why);
  }
  if (!state.final) {
    const trainable = specs.filter((p) => stage.train.includes(p.component));
    if (trainable.length && state.optimizer?.name !== stage.optimizer.name) return bad(`trainer_state.json records optimizer ${state.optimizer?.name ?? 'none'}, the stage uses ${stage.optimizer.name}`);
    const moments = trainable.flatMap((p): [string, number[]][] => (stage.optimizer.name === 'adamw' ? [[`exp_avg.${p.name}`, p.shape], [`exp_avg_sq.${p.name}`, p.shape]] : [[`exp_avg.${p.name}`, p.shape]]));
    const why = moments.length ? missingTensor(() => readSafetensorsHeader(path.join(dir, 'optimizer.safetensors')).tensors, moments, 'optimizer.safetensors') : null;
    if (why) return bad(why);
  }
  return state;
}

/** The first tensor of `want` absent or of another shape, or an unreadable file, as a sentence; null when all fit. */
function missingTensor(read: () => Map<string, TensorInfo>, want: [string, number[]][], file: string): string | null {
  let got: Map<string, TensorInfo>;
  try {
    got = read();
  } catch (e) {
    if (e instanceof CheckpointError) return `${file}: ${e.why}`;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return `${file} is missing`;
    throw e;
  }
  for (const [name, shape] of want) {
    const t = got.get(name);
    if (!t) return `${file} has no tensor "${name}"`;
    if (t.shape.join(',') !== shape.join(',')) return `${file}: tensor "${name}" is [${t.shape.join(', ')}], expected [${shape.join(', ')}]`;
  }
  return null;
}

/** Newest first: by stage index, then step (names sort that way as strings). */
function newestFirst(a: string, b: string): number {
  return a < b ? 1 : a > b ? -1 : 0;
}

function freeName(root: string, base: string): string {
  let name = base;
  for (let i = 2; fs.existsSync(path.join(root, name)); i++) name = `${base}-${i}`;
  return name;
}

/** `file - warning PIPE9035: ...`, as the CLI prints errors (runtimeError renders errors only). */
function warning<A extends unknown[]>(def: MessageDef<A>, args: A, file: string): string {
  return `${file} - ${def.severity} ${def.code}: ${def.format(...args)}`;
}
