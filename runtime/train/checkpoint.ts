// Run checkpoints. Layout of RUN/checkpoints/NAME/:
//   <component>/model.safetensors + config.json   each component in its Hugging Face layout and names
//   <adapter>/adapter_model.safetensors + adapter_config.json   each LoRA adapter in PEFT's format (adapters.ts)
//   <component>/*.py                              a custom class's Python package, named by config.json's
//                                                 auto_map (python-package.ts): loads with trust_remote_code
//   optimizer.safetensors                         AdamW moments of the trainable parameters
//   trainer_state.json                            stage, step, graph hash, finished stages' summaries
//   manifest.json                                 every file above with its size and SHA-256 (manifest.ts)
// A checkpoint is built in a hidden temporary directory (manifest last) and published by one rename,
// then checkpoints/latest.json is replaced atomically. A kill -9 at any moment leaves the previous
// checkpoint and pointer intact. Old periodic checkpoints beyond `keep` are deleted; each stage's final
// checkpoint is kept (the next stage's hand-off reads it). Resume reads them through resume.ts, which
// verifies the manifest, the trainer state (schema/trainer-state.schema.json) and every tensor's shape.
import { Ajv, type ValidateFunction } from 'ajv';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { AdapterDef, ComponentDef } from '../../compiler/ir/graph.js';
import { M, runtimeError } from '../errors.js';
import type { ParamStore } from '../params.js';
import { ensureRealDir, fsyncDir, refuseLink, writeFileAtomic } from '../weights/atomic.js';
import { hfConfig } from '../weights/hf-config.js';
import { readCheckpointMeta } from '../../compiler/check/checkpoint-io.js';
import { describeLayout, detectLayout, elsewhere, familyOfTensors, sliceRange, slicedShape, sourceOf, splitWeightsRef } from '../../compiler/check/hf-layout.js';
import { encodeSafetensors, readWeights, TensorReader } from '../weights/safetensors.js';
import { adapterFiles, isAdapterName, loadAdapterInto } from './adapters.js';
import { ManifestWriter } from './manifest.js';
import type { PackageFile } from './python-package.js';
import type { Optimizer } from './optimizer.js';

export interface StageSummary {
  name: string;
  steps: number;
  final_loss: number;
  seconds: number;
  tokens_per_s: number;
  skipped_records: number;
}

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
  /** Finished stages' summaries (this one's too when final): summary.json covers every stage after a resume. */
  stages_done?: StageSummary[];
  /** Training time and tokens up to this checkpoint, across the processes of the run. */
  elapsed?: { run_seconds: number; stage_seconds: number; stage_tokens: number };
  /** Where the stage's data stands: its samples per epoch and the next micro-batch (step x accumulate). */
  data?: { samples_per_epoch: number; micro_batch: number };
}

export const LATEST_FILE = 'latest.json';
/** A checkpoint's folder name: `NN-stage-stepNNNNNN`, one plain path segment (stage names have no '/'). */
export const CHECKPOINT_NAME = /^(\d{2})-([A-Za-z_][A-Za-z0-9_.]*)-step(\d{6})$/;

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

/** The moments of a checkpoint write, for fault injection (tests kill the process at one of them). */
export type SavePhase = 'components' | 'optimizer' | 'manifest' | 'publish' | 'latest' | 'prune';

export interface SaveArgs {
  runDir: string;
  name: string;
  components: readonly ComponentDef[];
  /** The model's LoRA adapters, each written in PEFT's format in a folder of its name (adapters.ts). */
  adapters?: readonly AdapterDef[];
  params: ParamStore;
  optimizer: Optimizer | null;
  state: TrainerState;
  keep: number;
  /** Custom classes' Python packages by component name (python-package.ts), written beside their weights. */
  packages?: ReadonlyMap<string, readonly PackageFile[]>;
  /** Called between writing the files and publishing them (tests use it to die mid-save). */
  beforePublish?: () => void;
  /** Called as each phase begins: 'components' ... 'prune' (tests use it to die at each). */
  phase?: (p: SavePhase) => void;
}

export function saveCheckpoint(a: SaveArgs): string {
  const root = path.join(a.runDir, 'checkpoints');
  ensureRealDir(root);
  const tmp = path.join(root, `.tmp-${a.name}-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  const files = new ManifestWriter(tmp);
  a.phase?.('components');
  for (const c of a.components) {
    fs.mkdirSync(path.join(tmp, c.name));
    const names = a.params.ofComponent(c.name);
    if (names.length) files.write(path.join(c.name, 'model.safetensors'), encodeSafetensors(tensorsOf(a.params, names), { pipec_component: c.name }));
    files.write(path.join(c.name, 'config.json'), JSON.stringify(hfConfig(c), null, 2) + '\n');
    for (const f of a.packages?.get(c.name) ?? []) {
      const rel = path.join(c.name, ...f.name.split('/'));
      fs.mkdirSync(path.dirname(path.join(tmp, rel)), { recursive: true }); // a package's sub-folder, inside the fresh temporary
      files.write(rel, f.text);
    }
  }
  for (const ad of a.adapters ?? []) {
    fs.mkdirSync(path.join(tmp, ad.name));
    // the component's folder as it will be once published, for PEFT's AutoPeftModel
    const base = path.resolve(root, a.name, ad.component);
    for (const [f, data] of adapterFiles(ad, a.components.find((c) => c.name === ad.component)!, a.params, base)) files.write(path.join(ad.name, f), data);
  }
  a.phase?.('optimizer');
  if (a.optimizer) {
    const slots = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [n, s] of a.optimizer.state.slots) {
      slots.set(`exp_avg.${n}`, { shape: s.m.shape, data: s.m.dataSync() as Float32Array });
      if (s.v) slots.set(`exp_avg_sq.${n}`, { shape: s.v.shape, data: s.v.dataSync() as Float32Array });
    }
    files.write('optimizer.safetensors', encodeSafetensors(slots));
  }
  files.write('trainer_state.json', JSON.stringify(a.state, null, 2) + '\n');
  a.phase?.('manifest');
  files.finish();
  fsyncDir(tmp);
  a.phase?.('publish');
  a.beforePublish?.();
  const final = path.join(root, a.name);
  refuseLink(final);
  fs.rmSync(final, { recursive: true, force: true });
  fs.renameSync(tmp, final);
  fsyncDir(root);
  a.phase?.('latest');
  writeFileAtomic(path.join(root, LATEST_FILE), JSON.stringify({ checkpoint: a.name }) + '\n');
  a.phase?.('prune');
  prune(root, a.keep, a.state);
  return final;
}

/** Keeps the newest `keep` checkpoints plus every stage's final one; removes stray temporaries. */
function prune(root: string, keep: number, state: TrainerState): void {
  const protectedNames = new Set(Object.values(state.stage_checkpoints));
  const all = fs.readdirSync(root).filter((n) => CHECKPOINT_NAME.test(n)).sort();
  const periodic = all.filter((n) => !protectedNames.has(n));
  for (const n of periodic.slice(0, Math.max(0, periodic.length - Math.max(1, keep)))) fs.rmSync(path.join(root, n), { recursive: true, force: true });
  for (const n of fs.readdirSync(root)) if (n.startsWith('.tmp-') && !n.endsWith(`-${process.pid}`)) fs.rmSync(path.join(root, n), { recursive: true, force: true });
}

/**
 * The checkpoint name latest.json holds: a string when it names a plain checkpoint name, `{ why }` when
 * the file is there but unusable (not JSON, not a name, a path out of the folder), undefined when absent.
 */
export function readLatestName(file: string): string | { why: string } | undefined {
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (!st) return undefined;
  if (!st.isFile() || st.size > 4096) return { why: 'is not a small regular file' };
  let name: unknown;
  try {
    name = (JSON.parse(fs.readFileSync(file, 'utf8')) as { checkpoint?: unknown })?.checkpoint;
  } catch (e) {
    return { why: `is not valid JSON (${(e as Error).message})` };
  }
  if (typeof name !== 'string') return { why: 'has no "checkpoint" name' };
  if (!CHECKPOINT_NAME.test(name)) return { why: `names ${JSON.stringify(name)}, which is not a checkpoint name of this folder (NN-stage-stepNNNNNN, no path)` };
  return name;
}

/** The checkpoint latest.json names, when that name is a plain checkpoint name and its folder exists. */
export function latestCheckpoint(runDir: string): string | null {
  const name = readLatestName(path.join(runDir, 'checkpoints', LATEST_FILE));
  if (typeof name !== 'string') return null;
  const dir = path.join(runDir, 'checkpoints', name);
  const st = fs.lstatSync(dir, { throwIfNoEntry: false });
  return st?.isDirectory() && fs.existsSync(path.join(dir, 'trainer_state.json')) ? dir : null;
}

let stateSchema: ValidateFunction | undefined;

/** A checkpoint's trainer state, or what is wrong with it (schema/trainer-state.schema.json). */
export function parseTrainerState(dir: string): TrainerState | { why: string } {
  const file = path.join(dir, 'trainer_state.json');
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (!st) return { why: 'trainer_state.json is missing' };
  if (!st.isFile() || st.size > 16 << 20) return { why: 'trainer_state.json is not a regular file' };
  let state: unknown;
  try {
    state = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    return { why: `trainer_state.json is not valid JSON (${(e as Error).message})` };
  }
  stateSchema ??= new Ajv({ allErrors: true, strict: true, strictRequired: false }).compile(JSON.parse(fs.readFileSync(new URL('../../../schema/trainer-state.schema.json', import.meta.url), 'utf8')) as object);
  if (!stateSchema(state)) return { why: `trainer_state.json: ${(stateSchema.errors ?? []).slice(0, 3).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`).join('; ')}` };
  return state as TrainerState;
}

/** A checkpoint's trainer state; an invalid one is a located error (PIPE9028), never a crash. */
export function readTrainerState(dir: string): TrainerState {
  const s = parseTrainerState(dir);
  if ('why' in s) throw runtimeError(M.RunDirInvalid, [dir, s.why], { file: path.join(dir, 'trainer_state.json') }, 'the checkpoint is damaged; resume from an earlier one (`pipec run --resume` picks the newest intact checkpoint)');
  return s;
}

/** Loads the named components' (and adapters') tensors from a checkpoint (or any folder of per-component HF dirs). */
export function loadComponents(dir: string, components: readonly string[], params: ParamStore): void {
  for (const c of components) (isAdapterName(c) ? loadAdapterInto : loadWeightsInto)(path.join(dir, c), params.ofComponent(c), params);
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

/** Loads the optimizer's moments; every trainable parameter's must be there with its shape (never silent zeros). */
export function loadOptimizer(dir: string, opt: Optimizer, step: number): void {
  const file = path.join(dir, 'optimizer.safetensors');
  const got = readWeights(dir, [...opt.state.slots].flatMap(([n, s]) => (s.v ? [`exp_avg.${n}`, `exp_avg_sq.${n}`] : [`exp_avg.${n}`])));
  const take = (name: string, v: tf.Variable) => {
    const t = got.get(name);
    if (!t) throw runtimeError(M.TensorMissing, [name, file], { file });
    if (t.info.shape.join(',') !== v.shape.join(',')) throw runtimeError(M.WeightShapeMismatch, [name, file, `[${t.info.shape.join(', ')}]`, `[${v.shape.join(', ')}]`], { file });
    assignFrom(v, t.data);
  };
  for (const [n, s] of opt.state.slots) {
    take(`exp_avg.${n}`, s.m);
    if (s.v) take(`exp_avg_sq.${n}`, s.v);
  }
  opt.state.step = step;
}

function assignFrom(v: tf.Variable, data: Float32Array): void {
  const t = tf.tensor(data, v.shape, 'float32');
  v.assign(t);
  t.dispose();
}
