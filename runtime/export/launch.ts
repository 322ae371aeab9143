// Launch configurations for the exported PyTorch program, one set per stage (docs/export.md):
//   launch/<stage>.deepspeed.json    DeepSpeed config: ZeRO stage from the stage's `sharding`, batch sizes,
//                                    clipping, precision; no optimizer or scheduler block (the trainer's own).
//                                    No zero_optimization.leaf_module: DeepSpeed before 0.18 rejects the key;
//                                    train.py --deepspeed sets the leaf modules with set_z3_leaf_modules
//   launch/<stage>.accelerate.yaml   an accelerate config (DEEPSPEED, FSDP, MULTI_GPU or NO)
//   launch/launch.sh                 the torchrun commands, stage by stage (--until / --resume); a zero1/2/3
//                                    stage runs train.py --deepspeed where DeepSpeed imports, --fsdp otherwise;
//                                    extra torchrun flags from $TORCHRUN_ARGS
//   launch/<stage>.launch.json       what the files above were derived from, incl. the MoE blocks and the
//                                    classes a ZeRO-3 trainer keeps whole (leaf modules)
// Every stage must satisfy batch (per device) x accumulate x world size = global batch.
import type { Graph, ModelDef, StagePlan } from '../../compiler/ir/graph.js';
import { exportsPython } from './custom-python.js';
import { ExportError } from './export-error.js';

const ZERO_STAGE: Record<StagePlan['sharding'], number> = { none: 0, ddp: 0, zero1: 1, zero2: 2, zero3: 3, fsdp: 3 };
/** train.py's --fsdp for a sharding: ZeRO-3 is FSDP's FULL_SHARD; ZeRO-1/2 are closest to SHARD_GRAD_OP. */
export const FSDP_MODE: Record<StagePlan['sharding'], 'full' | 'grad_op' | undefined> = { none: undefined, ddp: undefined, zero1: 'grad_op', zero2: 'grad_op', zero3: 'full', fsdp: 'full' };

export function worldSize(s: StagePlan): number {
  return s.devices.nodes * s.devices.per_node;
}

export function checkGlobalBatch(s: StagePlan): void {
  const w = worldSize(s);
  if (s.batch * s.accumulate * w !== s.global_batch)
    throw new ExportError(`stage ${s.name}: batch ${s.batch} x accumulate ${s.accumulate} x world size ${w} = ${s.batch * s.accumulate * w}, but the stage's global batch is ${s.global_batch}`);
}

/** The model's Mixtral components (a custom component counts by its base). */
function moeComponents(model: ModelDef | undefined): ModelDef['components'] {
  return (model?.components ?? []).filter((c) => (c.custom?.base ?? c.op) === 'mixtral');
}

/** The module name of every layer's MoE block, in Hugging Face's Mixtral and in the exported model.py (whose
 *  named_modules() are `components.<component>.model.layers.<i>.block_sparse_moe`). */
export const MOE_BLOCK_SUFFIX = 'block_sparse_moe';
/** transformers' class of that block (DeepSpeed matches a class by its __name__ or its qualified name). */
export const MOE_BLOCK_CLASS = 'MixtralSparseMoeBlock';

/**
 * The module classes a ZeRO-3 trainer keeps whole (DeepSpeed's leaf modules), for train.py --deepspeed and
 * for a trainer of one's own: the exported model.py's layers (they read their parameters by name), and for
 * each Mixtral component its MoE block class: the user's class's (read from its PyTorch half) when the
 * export carries it, model.py's layer holds the block otherwise, and transformers' MixtralSparseMoeBlock for
 * a trainer built on transformers.
 */
export function zero3LeafClasses(model: ModelDef | undefined, o: { customAsBase?: boolean } = {}): string[] {
  const out = new Set<string>();
  for (const c of model?.components ?? []) {
    if (c.role === 'encoder' && !(c.custom && exportsPython(c, o))) out.add('VisionLayer');
    if (c.role === 'llm' && !(c.custom && exportsPython(c, o))) out.add('DecoderLayer');
  }
  for (const c of moeComponents(model)) out.add(c.custom && exportsPython(c, o) ? (c.custom.python?.moe_block ?? MOE_BLOCK_CLASS) : MOE_BLOCK_CLASS);
  return [...out].sort();
}

/** DeepSpeed's config for a stage (`model`: the stage's model; its optimizer decides whether ZeRO must accept an optimizer it has not tested). */
export function deepspeedConfig(s: StagePlan, _model?: ModelDef): Record<string, unknown> {
  checkGlobalBatch(s);
  const stage = ZERO_STAGE[s.sharding];
  const zero: Record<string, unknown> = { stage };
  if (stage >= 1) Object.assign(zero, { overlap_comm: true, contiguous_gradients: true, reduce_bucket_size: 5e8 });
  if (stage === 3) Object.assign(zero, { stage3_prefetch_bucket_size: 5e8, stage3_param_persistence_threshold: 1e6, stage3_gather_16bit_weights_on_model_save: true });
  // ZeRO-3 hooks every sub-module to gather its parameters in the order modules ran before; an MoE block runs
  // a different subset of experts each step, so it is gathered whole as a leaf. That is set by the trainer
  // (train.py: deepspeed.utils.set_z3_leaf_modules, DeepSpeed >= 0.13), not here: zero_optimization.leaf_module
  // exists only from DeepSpeed 0.18, and 0.13-0.17 refuse the whole config over it (extra_forbidden).
  return {
    train_batch_size: s.global_batch,
    train_micro_batch_size_per_gpu: s.batch,
    gradient_accumulation_steps: s.accumulate,
    gradient_clipping: s.clip_grad,
    bf16: { enabled: s.precision === 'bf16' },
    fp16: { enabled: s.precision === 'fp16' },
    zero_optimization: zero,
    steps_per_print: 10,
    wall_clock_breakdown: false,
    // ZeRO lists the optimizers it has tested; torch's SGD (the trainer's, for an `sgd` stage) is not among them
    ...(stage >= 1 && s.optimizer.name === 'sgd' ? { zero_allow_untested_optimizer: true } : {}),
  };
}

function distributedType(s: StagePlan): string {
  if (s.sharding === 'fsdp') return 'FSDP';
  if (s.sharding.startsWith('zero')) return 'DEEPSPEED';
  return worldSize(s) > 1 ? 'MULTI_GPU' : 'NO';
}

export function accelerateConfig(s: StagePlan): string {
  checkGlobalBatch(s);
  const type = distributedType(s);
  const lines = [
    `# accelerate config for stage ${s.name} (pipec export): ${s.devices.nodes} node(s) x ${s.devices.per_node} ${s.devices.kind}, sharding ${s.sharding}`,
    'compute_environment: LOCAL_MACHINE',
    `distributed_type: ${type}`,
  ];
  if (type === 'DEEPSPEED')
    lines.push('deepspeed_config:', `  deepspeed_config_file: launch/${s.name}.deepspeed.json`, `  zero3_init_flag: ${s.sharding === 'zero3'}`);
  if (type === 'FSDP')
    lines.push(
      'fsdp_config:', '  fsdp_sharding_strategy: FULL_SHARD', '  fsdp_auto_wrap_policy: SIZE_BASED_WRAP', '  fsdp_min_num_params: 100000000',
      '  fsdp_state_dict_type: FULL_STATE_DICT', '  fsdp_use_orig_params: true', `  fsdp_activation_checkpointing: ${s.gradient_checkpointing}`,
    );
  lines.push(
    'machine_rank: 0',
    `mixed_precision: ${s.precision === 'fp32' ? 'no' : s.precision}`,
    `num_machines: ${s.devices.nodes}`,
    `num_processes: ${worldSize(s)}`,
    'rdzv_backend: static',
    'same_network: true',
    `use_cpu: ${s.devices.kind === 'cpu'}`,
    '',
  );
  return lines.join('\n');
}

export function launchFiles(g: Graph, o: { customAsBase?: boolean } = {}): Map<string, string> {
  const files = new Map<string, string>();
  const zeroStages = g.stages.some((s) => s.sharding.startsWith('zero'));
  const sh = [
    '#!/usr/bin/env bash',
    `# Launches the exported program of ${g.source}, stage by stage, with torchrun (generated by pipec export).`,
    '# A stage with sharding none or ddp runs data-parallel (each process holds the whole model, gradients are',
    '# all-reduced); fsdp runs under FSDP FULL_SHARD (--fsdp full). zero1, zero2 and zero3 run under DeepSpeed',
    '# (train.py --deepspeed launch/<stage>.deepspeed.json) where it is installed (DeepSpeed >= 0.13), otherwise',
    '# under FSDP: zero3 FULL_SHARD, zero1 and zero2 SHARD_GRAD_OP (--fsdp grad_op); FSDP needs PyTorch >= 2.0.',
    '# PIPEC_SHARDING=deepspeed or fsdp forces one; PYTHON names the Python that is asked for DeepSpeed.',
    '# The accelerate files beside this are for trainers that launch through accelerate.',
    '# Multi-node: set NODE_RANK and MASTER_ADDR on every node. TORCHRUN_ARGS (split on spaces) adds flags to every',
    '# torchrun command. Debian\'s torch 1.13 under Python 3.11 needs TORCHRUN_ARGS="--redirects 1 --tee 1" (without',
    '# them its torchrun fails in to_map: AttributeError: \'NoneType\' object has no attribute \'get\').',
    '# Prepare each stage\'s data for its world size first:',
    ...g.stages.map((s) => `#   pipec prepare ${g.source} --stage ${s.name} --world-size ${worldSize(s)} -o data/${s.name}`),
    'set -euo pipefail',
    'cd "$(dirname "$0")/.."',
    ': "${NODE_RANK:=0}" "${MASTER_ADDR:=127.0.0.1}" "${MASTER_PORT:=29500}"',
    ...(zeroStages ? [
      '# shard STAGE FSDP_MODE: how a ZeRO stage is sharded here',
      'shard() {',
      '  case "${PIPEC_SHARDING:-auto}" in',
      '    deepspeed) echo "--deepspeed launch/$1.deepspeed.json" ;;',
      '    fsdp) echo "--fsdp $2" ;;',
      '    *) if "${PYTHON:-python3}" -c "import deepspeed" >/dev/null 2>&1; then echo "--deepspeed launch/$1.deepspeed.json"; else echo "--fsdp $2"; fi ;;',
      '  esac',
      '}',
    ] : []),
  ];
  g.stages.forEach((s, i) => {
    checkGlobalBatch(s);
    const w = worldSize(s);
    const model = g.models.find((m) => m.name === s.model)!;
    files.set(`launch/${s.name}.deepspeed.json`, JSON.stringify(deepspeedConfig(s, model), null, 2) + '\n');
    files.set(`launch/${s.name}.accelerate.yaml`, accelerateConfig(s));
    const moe = moeComponents(model).map((c) => ({ component: c.name, modules: `model.layers.{i}.${MOE_BLOCK_SUFFIX}`, repeat: { i: Number(c.attrs['layers']) } }));
    files.set(`launch/${s.name}.launch.json`, JSON.stringify({
      stage: s.name, world_size: w, nodes: s.devices.nodes, per_node: s.devices.per_node, device: s.devices.kind,
      batch_per_device: s.batch, accumulate: s.accumulate, global_batch: s.global_batch, sharding: s.sharding, zero_stage: ZERO_STAGE[s.sharding],
      precision: s.precision, gradient_checkpointing: s.gradient_checkpointing, zero3_leaf_modules: ZERO_STAGE[s.sharding] === 3 ? moe : [],
      zero3_leaf_classes: ZERO_STAGE[s.sharding] === 3 ? zero3LeafClasses(model, o) : [],
    }, null, 2) + '\n');
    sh.push(
      '',
      `# stage ${s.name}: ${s.devices.nodes} x ${s.devices.per_node} ${s.devices.kind}, sharding ${s.sharding}; global batch ${s.global_batch} = ${s.batch} per device x accumulate ${s.accumulate} x ${w} processes`,
      `torchrun \${TORCHRUN_ARGS:-} --nnodes ${s.devices.nodes} --nproc_per_node ${s.devices.per_node} --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \\`,
      `  train.py --data data --out run${i > 0 ? ' --resume' : ''} --until ${s.name}${s.sharding.startsWith('zero') ? ` $(shard ${s.name} ${FSDP_MODE[s.sharding]})` : FSDP_MODE[s.sharding] ? ` --fsdp ${FSDP_MODE[s.sharding]}` : ''}`,
    );
  });
  files.set('launch/launch.sh', sh.join('\n') + '\n');
  return files;
}
