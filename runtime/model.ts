// Executes one model of the graph: nodes in order, each dispatched through the op table, parameters
// by HF name from the store. The runtime reads only the graph (never the AST).
import * as tf from '@tensorflow/tfjs-core';
import type { ComponentDef, ModelDef } from '../compiler/ir/graph.js';
import { M, runtimeError } from './errors.js';
import type { Checkpointing } from './ops/checkpoint.js';
import { batchTensor } from './ops/batch-feeds.js';
import { causalLmLoss } from './ops/loss.js';
import { checkAdapters, loraModules, type DropoutStream, type LoraUse } from './ops/lora.js';
import { OPS } from './ops/registry.js';
import type { BatchInfo, KvCache, OpContext, OpImpl } from './ops/types.js';
import type { ParamStore } from './params.js';

export interface ModelInputs {
  /** [B, C, H, W] normalised pixels, or null for a text-only batch. */
  pixels: tf.Tensor4D | null;
  inputIds: Int32Array;
  labels?: Int32Array;
  info: BatchInfo;
  /** A training forward: LoRA dropout draws its masks from this stream (absent: no dropout). */
  dropout?: DropoutStream;
}

export interface ForwardResult {
  logits: tf.Tensor; // [B, T, V]
  /** Language-model loss plus auxiliary losses; present when labels were given. */
  loss?: tf.Scalar;
  lmLoss?: tf.Scalar;
  auxLoss?: tf.Scalar;
}

export class ModelRunner {
  private readonly components: Map<string, ComponentDef>;
  /** LoRA-adapted linear layers by module name (ops/lora.ts). */
  private readonly lora: ReadonlyMap<string, LoraUse>;
  /** Adapted modules some forward computed with their adapter (a custom class's own layers may not). */
  readonly loraUsed = new Set<string>();

  constructor(
    readonly def: ModelDef,
    readonly params: ParamStore,
    /** Custom components' implementations by component name (runtime/custom.ts). */
    private readonly custom: ReadonlyMap<string, OpImpl> = new Map(),
    private readonly ops: ReadonlyMap<string, OpImpl> = OPS,
  ) {
    this.components = new Map(def.components.map((c) => [c.name, c]));
    checkAdapters(def);
    this.lora = loraModules(def);
    for (const n of def.nodes) if (n.op !== 'causal_lm_loss' && !this.impl(n.op, n.component)) throw runtimeError(M.UnknownOp, [n.op], undefined, `node "${n.id}"`);
  }

  private impl(op: string, component?: string): OpImpl | undefined {
    return op === 'custom' ? this.custom.get(component ?? '') : this.ops.get(op);
  }

  get imageTokens(): number {
    return this.def.image_tokens ?? 0;
  }

  /**
   * Runs the graph. Call inside tf.tidy (or a gradient function); tensors it returns are tidy-owned.
   * `checkpoint`: a training pass of a stage with gradient checkpointing (ops/checkpoint.ts).
   */
  forward(inputs: ModelInputs, cache?: KvCache, checkpoint?: Checkpointing): ForwardResult {
    const { info } = inputs;
    const values = new Map<string, tf.Tensor | null>();
    values.set('pixel_values', inputs.pixels);
    values.set('input_ids', batchTensor('input_ids', inputs, (s) => tf.tensor2d(s.inputIds, [s.info.batch, s.info.length], 'int32')));
    values.set('attention_mask', batchTensor('attention_mask', info, (s) => tf.tensor2d(s.attentionMask, [s.batch, s.length], 'int32')));
    const auxLosses: tf.Scalar[] = [];
    let loss: tf.Scalar | undefined, lmLoss: tf.Scalar | undefined;
    for (const node of this.def.nodes) {
      if (node.op === 'causal_lm_loss') {
        if (!inputs.labels) continue;
        lmLoss = causalLmLoss(values.get(node.inputs[0]!)!, inputs.labels, typeof node.attrs['ignore_index'] === 'number' ? node.attrs['ignore_index'] : -100, inputs);
        continue;
      }
      const ins = node.inputs.map((i) => values.get(i) ?? null);
      // No image in this batch (text-only, or a generation step after the prompt): the image branch is
      // skipped and the splice passes the text embeddings through.
      if (node.op === 'llava_splice' && ins[1] === null) {
        values.set(node.id, ins[0]!);
        continue;
      }
      if (ins.some((t) => t === null)) {
        values.set(node.id, null);
        continue;
      }
      const comp = node.component ? this.components.get(node.component) : undefined;
      const ctx: OpContext = {
        param: (name) => this.params.get(name),
        hasParam: (name) => this.params.has(name),
        attrs: comp ? comp.attrs : node.attrs,
        batch: info,
        auxLosses,
        cache,
        ...(this.lora.size ? { lora: this.lora, loraUsed: this.loraUsed, dropout: inputs.dropout } : {}),
        checkpoint,
      };
      if (node.op === 'llava_splice') ctx.attrs = node.attrs;
      values.set(node.id, this.impl(node.op, node.component)!(ctx, ins as tf.Tensor[]));
    }
    const logits = values.get(this.def.outputs.logits);
    if (!logits) throw new Error('the model produced no logits');
    const auxLoss = auxLosses.length ? (tf.addN(auxLosses) as tf.Scalar) : undefined;
    if (lmLoss) loss = auxLoss ? (tf.add(lmLoss, auxLoss) as tf.Scalar) : lmLoss;
    return { logits, loss, lmLoss, auxLoss };
  }
}
