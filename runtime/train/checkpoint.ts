// Run checkpoints. Layout of RUN/checkpoints/NAME/:
//   <component>/model.safetensors + config.json   each component in its Hugging Face layout and names
//   optimizer.safetensors                         AdamW moments of the trainable parameters
//   trainer_state.json                            stage, step, graph hash, RNG and data position
// A checkpoint is built in a hidden temporary directory and published by one rename, then
// checkpoints/latest.json is replaced atomically. A kill -9 at any moment leaves the previous
// checkpoint and pointer intact. Old periodic checkpoints beyond `keep` are deleted; each stage's final
// checkpoint is kept (the next stage's hand-off reads it).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { ComponentDef } from '../../compiler/ir/graph.js';
import { M, runtimeError } from '../errors.js';
import type { ParamStore } from '../params.js';
import { fsyncDir, writeFileAtomic, writeFileSynced } from '../weights/atomic.js';
import { hfConfig } from '../weights/hf-config.js';
import { encodeSafetensors, readWeights } from '../weights/safetensors.js';
import type { Optimizer } from './optimizer.js';

export interface TrainerState {
  format: 'pipec.checkpoint';
  version: 1;
  graph_hash: string;
  stage: string;
  stage_index: number;
  /** Optimizer steps completed in this stage. */
  step: number;
  total_steps: number;
  final: boolean;
  /** Completed stages' final checkpoints, by stage name (for hand-off after a resume). */
  stage_checkpoints: Record<string, string>;
  optimizer: { name: string; step: number } | null;
  time: string;
}

export function checkpointName(stageIndex: number, stage: string, step: number): string {
  return `${String(stageIndex).padStart(2, '0')}-${stage}-step${String(step).padStart(6, '0')}`;
}

function tensorsOf(params: ParamStore, names: readonly string[]): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const n of names) {
    const v = params.get(n);
    out.set(n, { shape: v.shape, data: v.dataSync() as Float32Array });
  }
  return out;
}

export interface SaveArgs {
  runDir: string;
  name: string;
  components: readonly ComponentDef[];
  params: ParamStore;
  optimizer: Optimizer | null;
  state: TrainerState;
  keep: number;
  /** Called between writing the files and publishing them (tests use it to die mid-save). */
  beforePublish?: () => void;
}

export function saveCheckpoint(a: SaveArgs): string {
  const root = path.join(a.runDir, 'checkpoints');
  fs.mkdirSync(root, { recursive: true });
  const tmp = path.join(root, `.tmp-${a.name}-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  for (const c of a.components) {
    const dir = path.join(tmp, c.name);
    fs.mkdirSync(dir);
    const names = a.params.ofComponent(c.name);
    if (names.length) writeFileSynced(path.join(dir, 'model.safetensors'), encodeSafetensors(tensorsOf(a.params, names), { pipec_component: c.name }));
    writeFileSynced(path.join(dir, 'config.json'), JSON.stringify(hfConfig(c), null, 2) + '\n');
  }
  if (a.optimizer) {
    const slots = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [n, s] of a.optimizer.state.slots) {
      slots.set(`exp_avg.${n}`, { shape: s.m.shape, data: s.m.dataSync() as Float32Array });
      if (s.v) slots.set(`exp_avg_sq.${n}`, { shape: s.v.shape, data: s.v.dataSync() as Float32Array });
    }
    writeFileSynced(path.join(tmp, 'optimizer.safetensors'), encodeSafetensors(slots));
  }
  writeFileSynced(path.join(tmp, 'trainer_state.json'), JSON.stringify(a.state, null, 2) + '\n');
  fsyncDir(tmp);
  a.beforePublish?.();
  const final = path.join(root, a.name);
  fs.rmSync(final, { recursive: true, force: true });
  fs.renameSync(tmp, final);
  fsyncDir(root);
  writeFileAtomic(path.join(root, 'latest.json'), JSON.stringify({ checkpoint: a.name }) + '\n');
  prune(root, a.keep, a.state);
  return final;
}

/** Keeps the newest `keep` checkpoints plus every stage's final one; removes stray temporaries. */
function prune(root: string, keep: number, state: TrainerState): void {
  const protectedNames = new Set(Object.values(state.stage_checkpoints));
  const all = fs.readdirSync(root).filter((n) => /^\d{2}-.+-step\d{6}$/.test(n)).sort();
  const periodic = all.filter((n) => !protectedNames.has(n));
  for (const n of periodic.slice(0, Math.max(0, periodic.length - Math.max(1, keep)))) fs.rmSync(path.join(root, n), { recursive: true, force: true });
  for (const n of fs.readdirSync(root)) if (n.startsWith('.tmp-') && !n.endsWith(`-${process.pid}`)) fs.rmSync(path.join(root, n), { recursive: true, force: true });
}

export function latestCheckpoint(runDir: string): string | null {
  const file = path.join(runDir, 'checkpoints', 'latest.json');
  if (!fs.existsSync(file)) return null;
  try {
    const name = (JSON.parse(fs.readFileSync(file, 'utf8')) as { checkpoint: string }).checkpoint;
    const dir = path.join(runDir, 'checkpoints', name);
    return fs.existsSync(path.join(dir, 'trainer_state.json')) ? dir : null;
  } catch {
    return null;
  }
}

export function readTrainerState(dir: string): TrainerState {
  return JSON.parse(fs.readFileSync(path.join(dir, 'trainer_state.json'), 'utf8')) as TrainerState;
}

/** Loads the named components' tensors from a checkpoint (or any folder of per-component HF dirs). */
export function loadComponents(dir: string, components: readonly string[], params: ParamStore): void {
  for (const c of components) loadWeightsInto(path.join(dir, c), params.ofComponent(c), params);
}

/** Loads tensors by name from one HF weights folder; every name must be there with the right shape. */
export function loadWeightsInto(dir: string, names: readonly string[], params: ParamStore, display = dir): void {
  if (names.length === 0) return;
  const got = readWeights(dir, names);
  for (const n of names) {
    const t = got.get(n);
    if (!t) throw runtimeError(M.TensorMissing, [n, display], { file: display });
    const want = params.get(n).shape;
    if (t.info.shape.join(',') !== want.join(','))
      throw runtimeError(M.WeightShapeMismatch, [n, display, `[${t.info.shape.join(', ')}]`, `[${want.join(', ')}]`], { file: display });
    params.assign(n, t.data);
  }
}

export function loadOptimizer(dir: string, opt: Optimizer, step: number): void {
  const got = readWeights(dir);
  for (const [n, s] of opt.state.slots) {
    const m = got.get(`exp_avg.${n}`);
    if (m) assignFrom(s.m, m.data);
    const v = got.get(`exp_avg_sq.${n}`);
    if (v && s.v) assignFrom(s.v, v.data);
  }
  opt.state.step = step;
}

function assignFrom(v: tf.Variable, data: Float32Array): void {
  const t = tf.tensor(data, v.shape, 'float32');
  v.assign(t);
  t.dispose();
}
