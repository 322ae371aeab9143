// Pass 8: memory per device for each stage, from the declared precision, devices and sharding.
//
// Per parameter, in bytes (mixed precision keeps an fp32 master copy of what it trains, as DeepSpeed and
// FSDP do; fp32 training needs none):
//                 weights   gradients   optimizer state (AdamW: m, v)
//   bf16 / fp16      2          2           4 (master) + 4 * states
//   fp32             4          4           4 * states
// Frozen parameters hold weights only. Sharding divides across all devices: zero1 the optimizer state,
// zero2 also the gradients, zero3 / fsdp also the weights.
// Activations are stored only where backward must pass: in trainable components and in every component
// downstream of one (a frozen llm after a trained projector still stores its activations). They scale
// with the micro-batch (and, for the encoder and projector, with the images per sample: a dataset's
// `max_images`) and are not sharded. Framework workspace and fragmentation are not included.
// Adapters (LoRA) are parameters like any other: trained, they hold weights, gradients and optimizer
// state; and the component they adapt stores its activations (backward passes through it), frozen or
// not. A QLoRA adapter (`quantize: nf4 | int8`) holds the linear layers of its component quantized, as
// bitsandbytes does: NF4 with double quantization 4.127 bits a parameter (Dettmers et al.), int8 one
// byte (its per-row scales left out); embeddings, norms and the LM head (transformers keeps it out of
// bitsandbytes) stay at the precision's width.
import { M } from '../diagnostics/catalogue.js';
import { linearLayers } from './adapters.js';
import type { ComponentInfo, Program, Reporter, StageInfo } from './program.js';
import { dataSources, maxImagesOf } from './stages.js';
import { formatBytes } from './values.js';

export interface ComponentEstimate {
  name: string;
  role: string;
  params: number;
  trainable: boolean;
  storesActivations: boolean;
  tokens: number;
  activationBytes: number; // per device, for the micro-batch
}

export interface StageEstimate {
  stage: string;
  devices: number;
  nodes: number;
  deviceKind?: string;
  deviceMemory?: number;
  precision: string;
  sharding: string;
  batch: number;
  maxLength: number;
  totalParams: number;
  trainableParams: number;
  components: ComponentEstimate[];
  perDevice: { weights: number; gradients: number; optimizer: number; activations: number; total: number };
  fits?: boolean;
}

/** Per program, optimizer name -> its `states` field: read once, not once per stage (thousands of stages). */
const statesByProgram = new WeakMap<Program, Map<string, number>>();

/** States per parameter kept by each optimizer (AdamW: first and second moment). */
function optimizerStates(stage: StageInfo, program: Program): number {
  const name = stage.optimizer?.name;
  if (!name) return 2;
  let states = statesByProgram.get(program);
  if (!states) {
    states = new Map();
    for (const f of program.files)
      for (const d of f.ast.decls)
        if (d.kind === 'Signature' && d.sigKind === 'optimizer' && !states.has(d.name.name)) {
          const field = d.items.find((i) => i.kind === 'Field' && i.name.name === 'states');
          if (field && field.kind === 'Field' && field.value.kind === 'Number') states.set(d.name.name, field.value.value);
        }
    statesByProgram.set(program, states);
  }
  return states.get(name) ?? 2;
}

function tokensThrough(c: ComponentInfo, stage: StageInfo): number {
  if (c.role === 'llm') return stage.maxLength ?? 0;
  const out = c.resolvedOutput ?? c.output;
  return typeof out?.[0] === 'number' ? out[0] : 0;
}

export function estimateStage(stage: StageInfo, program: Program): StageEstimate | undefined {
  const model = stage.model;
  if (!model) return undefined;
  const comps = [...model.components.values()];
  if (comps.some((c) => !c.ok)) return undefined;
  const trainable = new Set(stage.train);
  const adapters = [...model.adapters.values()];
  if (adapters.some((a) => !a.ok)) return undefined;
  // Walk the flow edges: anything downstream of a trainable component (or of one with a trained adapter)
  // must keep its activations.
  const stores = new Set<ComponentInfo>([...trainable, ...stage.trainAdapters.map((a) => a.component)]);
  const next = new Map<ComponentInfo, ComponentInfo[]>();
  for (const e of model.edges) {
    const tos = next.get(e.from) ?? [];
    tos.push(e.to);
    next.set(e.from, tos);
  }
  for (const c of stores) for (const to of next.get(c) ?? []) stores.add(to); // a Set visits what is added while iterating
  const devices = stage.devices ? stage.devices.nodes * stage.devices.perNode : 1;
  const mixed = stage.precision !== 'fp32';
  const w = mixed ? 2 : 4;
  const states = optimizerStates(stage, program);
  const shard = stage.sharding;
  const div = (bytes: number, sharded: boolean) => (sharded ? bytes / devices : bytes);

  let weights = 0;
  let gradients = 0;
  let optimizer = 0;
  let activations = 0;
  let total = 0;
  let trainableParams = 0;
  const components: ComponentEstimate[] = [];
  const images = Math.max(1, ...dataSources(stage.data).map(maxImagesOf));
  /** Bytes a parameter of the component's linear layers takes when an adapter holds them quantized. */
  const quantizedWidth = new Map<ComponentInfo, { params: number; bytes: number }>();
  for (const a of adapters) {
    if (a.quantize === 'none') continue;
    // transformers keeps the output layer (lm_head) out of bitsandbytes' quantization
    const params = [...linearLayers(a.component)].filter(([m]) => m !== 'lm_head').flatMap(([, ts]) => ts).reduce((n, t) => n + t.shape[0]! * t.shape[1]! * t.loops.reduce((k, l) => k * l.count, 1), 0);
    quantizedWidth.set(a.component, { params, bytes: a.quantize === 'nf4' ? 4.127 / 8 : 1 });
  }
  for (const c of comps) {
    const isTrain = trainable.has(c);
    total += c.paramCount;
    if (isTrain) trainableParams += c.paramCount;
    const q = quantizedWidth.get(c);
    weights += q ? (c.paramCount - q.params) * w + q.params * q.bytes : c.paramCount * w;
    if (isTrain) {
      gradients += c.paramCount * w;
      optimizer += c.paramCount * (4 * states + (mixed ? 4 : 0));
    }
    const tokens = tokensThrough(c, stage);
    let act = 0;
    // the encoder and projector run once per image: a multi-image dataset's `max_images` times per sample
    const runs = c.role === 'llm' ? 1 : images;
    if (stores.has(c) && c.activations) act = (c.activations(tokens, stage.gradientCheckpointing) ?? 0) * stage.batch * runs * w;
    activations += act;
    components.push({ name: c.name, role: c.role, params: c.paramCount, trainable: isTrain, storesActivations: stores.has(c), tokens, activationBytes: act });
  }
  for (const a of adapters) {
    const isTrain = stage.trainAdapters.includes(a);
    total += a.paramCount;
    weights += a.paramCount * w;
    if (isTrain) {
      trainableParams += a.paramCount;
      gradients += a.paramCount * w;
      optimizer += a.paramCount * (4 * states + (mixed ? 4 : 0));
    }
    components.push({ name: a.name, role: 'adapter', params: a.paramCount, trainable: isTrain, storesActivations: false, tokens: 0, activationBytes: 0 });
  }
  const perDevice = {
    weights: div(weights, shard === 'zero3' || shard === 'fsdp'),
    gradients: div(gradients, shard === 'zero2' || shard === 'zero3' || shard === 'fsdp'),
    optimizer: div(optimizer, shard !== 'none' && shard !== 'ddp'),
    activations,
    total: 0,
  };
  perDevice.total = perDevice.weights + perDevice.gradients + perDevice.optimizer + perDevice.activations;
  const mem = stage.devices?.memory;
  return {
    stage: stage.name,
    devices,
    nodes: stage.devices?.nodes ?? 1,
    deviceKind: stage.devices?.device,
    deviceMemory: mem,
    precision: stage.precision,
    sharding: shard,
    batch: stage.batch,
    maxLength: stage.maxLength ?? 0,
    totalParams: total,
    trainableParams,
    components,
    perDevice,
    fits: mem === undefined ? undefined : perDevice.total <= mem,
  };
}

export function checkMemory(program: Program, reporter: Reporter): Map<string, StageEstimate> {
  const out = new Map<string, StageEstimate>();
  for (const stage of program.stages) {
    const est = estimateStage(stage, program);
    if (!est) continue;
    out.set(stage.name, est);
    const dev = stage.devices;
    if (!dev || dev.memory === undefined) continue;
    const p = est.perDevice;
    const breakdown = `weights ${formatBytes(p.weights)}, gradients ${formatBytes(p.gradients)}, optimizer ${formatBytes(p.optimizer)}, activations ${formatBytes(p.activations)}`;
    if (p.total > dev.memory) {
      const d = reporter.report(M.DoesNotFit, dev.range, stage.name, formatBytes(p.total), formatBytes(dev.memory), breakdown);
      const hints: string[] = [];
      if (stage.sharding !== 'zero3' && stage.sharding !== 'fsdp') hints.push('shard with `sharding: zero3`');
      if (!stage.gradientCheckpointing && p.activations > 0) hints.push('set `gradient_checkpointing: true`');
      if (stage.batch > 1) hints.push('lower `batch` and raise `accumulate`');
      hints.push('declare more devices');
      d.hint = hints.join(', or ');
    } else if (p.total > 0.9 * dev.memory) {
      reporter.report(M.TightFit, dev.range, stage.name, formatBytes(p.total), formatBytes(dev.memory));
    }
  }
  return out;
}
