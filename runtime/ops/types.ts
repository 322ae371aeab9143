// What every op implementation receives. Ops are pure functions of (context, inputs) dispatched from
// the table in ops/registry.ts by the graph node's `op`; parameters are looked up by HF name.
import type * as tf from '@tensorflow/tfjs-core';
import type { AttrValue } from '../../compiler/ir/graph.js';
import type { DropoutStream, LoraUse } from './lora.js';
import type { Checkpointing } from './checkpoint.js';

export interface BatchInfo {
  /** [B, T] 1 for real tokens, 0 for padding. */
  attentionMask: Int32Array;
  batch: number;
  length: number;
  /** Per sample, the first position of its image tokens, or -1 (text only). */
  imageStart: number[];
  /**
   * When a batch holds multi-image records: for each image of the pixel batch, in order, the row and
   * first position its features replace. Absent: image b belongs to row b at imageStart[b].
   */
  imageSlots?: { row: number; start: number }[];
}

/** Per-layer key/value cache for generation: [B*Hk, T, d] each. */
export interface KvCache {
  layers: { k: tf.Tensor3D; v: tf.Tensor3D }[];
  /** Positions already in the cache. */
  length: number;
}

export interface OpContext {
  param(name: string): tf.Tensor;
  hasParam(name: string): boolean;
  /** The component's attributes (from the graph), or the node's own for component-less ops. */
  attrs: Record<string, AttrValue>;
  batch: BatchInfo;
  /** Auxiliary losses (already multiplied by their coefficients), added to the training loss. */
  auxLosses: tf.Scalar[];
  cache?: KvCache;
  /** The model's LoRA-adapted linear layers by module name (ops/lora.ts); absent: none. */
  lora?: ReadonlyMap<string, LoraUse>;
  /** Where adaptedLinear records the adapted modules it computed (the run notes targets never reached). */
  loraUsed?: Set<string>;
  /** Set in a training forward only: where LoRA dropout draws its masks. */
  dropout?: DropoutStream;
  /**
   * Set in a training pass of a stage with `gradient_checkpointing: true`: the ops that support it
   * (the decoder and ViT layers) run each layer through recomputed() (checkpoint.ts).
   */
  checkpoint?: Checkpointing;
}

export type OpImpl = (ctx: OpContext, inputs: tf.Tensor[]) => tf.Tensor;

export function num(attrs: Record<string, AttrValue>, key: string, fallback?: number): number {
  const v = attrs[key];
  if (typeof v === 'number') return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`attribute "${key}" is missing or not a number`);
}
