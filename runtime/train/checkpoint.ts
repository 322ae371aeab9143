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
import { readCheckpointMeta } from '../../compiler/check/checkpoint-io.js';
import { describeLayout, detectLayout, elsewhere, familyOfTensors, sliceRange, slicedShape, sourceOf, splitWeightsRef } from '../../compiler/check/hf-layout.js';
import { encodeSafetensors, readWeights, TensorReader } from '../weights/safetensors.js';
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

/**
 * Loads a component's tensors (by pipec's names) from one Hugging Face checkpoint: a folder or one
 * .safetensors file, `#ROOT` picking a part (`weights "DIR#ROOT"`). The checkpoint's layout -- which names
 * it uses -- is detected by the same module the checker uses (compiler/check/hf-layout.ts); every tensor
 * must be there with the right shape. F32, F16 and BF16 load as float32.
 */
export function loadWeightsInto(ref: string, names: readonly string[], params: ParamStore, display = ref): void {
  if (names.length === 0) return;
  const { path: where, part } = splitWeightsRef(ref);
  const meta = readCheckpointMeta(where);
  const family = familyOfTensors(names);
  const has = (n: string) => meta.tensors.has(n);
  const det = detectLayout(family, names, has, part);
  if (det.alsoComplete.length) {
    const choices = [det.layout, ...det.alsoComplete];
    throw runtimeError(M.AmbiguousLayout, [params.specs.get(names[0]!)?.component ?? family, display, choices.map((l) => describeLayout(l, meta.config)).join('; or ')], { file: display },
      `pick the part with ${choices.map((l) => `"${splitWeightsRef(display).path}#${l.root}"`).join(' or ')}`);
  }
  const reader = new TensorReader(meta);
  const whole = new Map<string, Float32Array>(); // a fused expert tensor is read once for all its slices
  try {
    for (const n of names) {
      const src = sourceOf(det.layout, n, has);
      const info = src && meta.tensors.get(src.name);
      if (!src || !info) {
        const moved = elsewhere(family, n, meta.tensors.keys());
        throw runtimeError(M.TensorMissing, [src?.name ?? n, display], { file: display },
          moved ? `the checkpoint has "${moved.found}": its tensors are under \`${moved.root}.\`; use "${splitWeightsRef(display).path}#${moved.root}"` : det.found ? `read as ${describeLayout(det.layout, meta.config)}` : undefined);
      }
      const want = params.get(n).shape;
      const got = slicedShape(info.shape, src);
      if (!got || got.join(',') !== want.join(','))
        throw runtimeError(M.WeightShapeMismatch, [src.name, display, `[${(got ?? info.shape).join(', ')}]`, `[${want.join(', ')}]`], { file: display });
      if (src.expert === undefined) {
        params.assign(n, reader.read(info));
        continue;
      }
      let data = whole.get(src.name);
      if (!data) whole.set(src.name, (data = reader.read(info)));
      const [begin, end] = sliceRange(info.shape, src);
      params.assign(n, data.slice(begin, end));
    }
  } finally {
    reader.close();
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
