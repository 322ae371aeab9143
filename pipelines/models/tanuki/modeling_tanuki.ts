// TanukiForCausalLM, the TypeScript half (what `pipec run` runs): a Mixtral-style sparse MoE decoder
// whose router is tempered: each MoE block routes with softmax(gate(x) / router_temperature) instead of
// Mixtral's softmax(gate(x)), then takes the top-k experts and renormalises their weights as Mixtral
// does. The same probabilities feed the load-balancing loss. Everything else (attention, RoPE, norms,
// the experts, the LM head) is Mixtral's, reused from pipec's building blocks (ctx.blocks), under
// Mixtral's tensor names. modeling_tanuki.py is the same class for PyTorch / transformers; the two
// compute the same numbers (test/e2e/custom-moe.test.ts).
import { readTanukiConfig, type TanukiConfig } from './configuration_tanuki.js';

// The tensors and kernels come from pipec's runtime (docs/runtime.md, "Custom components"); only the
// shapes of what this file uses are spelled out here.
type Tensor = { shape: number[]; rank: number; dataSync(): ArrayLike<number> };
interface Tf {
  reshape(x: Tensor, shape: number[]): Tensor;
  div(a: Tensor, b: Tensor | number): Tensor;
  mul(a: Tensor, b: Tensor | number): Tensor;
  add(a: Tensor, b: Tensor): Tensor;
  sum(x: Tensor, axis: number, keepDims: boolean): Tensor;
  softmax(x: Tensor): Tensor;
  zerosLike(x: Tensor): Tensor;
  tensor1d(values: number[], dtype: 'int32'): Tensor;
  tensor2d(values: Float32Array, shape: [number, number]): Tensor;
  gather(x: Tensor, idx: Tensor): Tensor;
  slice(x: Tensor, begin: number[], size: number[]): Tensor;
  unsortedSegmentSum(x: Tensor, idx: Tensor, n: number): Tensor;
}
interface RouterStats { probs: Tensor; chosen: Float32Array; tokenMask: Float32Array }
interface Ctx {
  tf: Tf;
  param(name: string): Tensor;
  batch: { attentionMask: Int32Array };
  auxLosses: Tensor[];
  cache?: unknown;
  blocks: {
    decoder(ctx: Ctx, x: Tensor, ff: (ctx: Ctx, h: Tensor, layer: number) => Tensor): Tensor;
    topKIndices(probs: Float32Array, n: number, e: number, k: number): Int32Array;
    loadBalancingLoss(stats: RouterStats[], experts: number): Tensor;
    linear(x: Tensor, w: Tensor): Tensor;
    silu(x: Tensor): Tensor;
  };
}

export class TanukiForCausalLM {
  readonly config: TanukiConfig;

  constructor(configJson: Record<string, unknown>) {
    this.config = readTanukiConfig(configJson);
  }

  /** inputs: [embeddings [B, T, D], attention mask] -> logits [B, T, V]; the router's aux loss goes to ctx.auxLosses. */
  forward(ctx: Ctx, inputs: Tensor[]): Tensor {
    const stats: RouterStats[] = [];
    const logits = ctx.blocks.decoder(ctx, inputs[0]!, (c, h, layer) => this.sparseMoe(c, h, layer, stats));
    const coef = this.config.router_aux_loss_coef;
    if (!ctx.cache && coef > 0) ctx.auxLosses.push(ctx.tf.mul(ctx.blocks.loadBalancingLoss(stats, this.config.num_local_experts), coef));
    return logits;
  }

  /** One MoE block with the tempered router. x: [B, T, D] -> [B, T, D]. */
  private sparseMoe(ctx: Ctx, x: Tensor, layer: number, stats: RouterStats[]): Tensor {
    const { tf, blocks } = ctx;
    const E = this.config.num_local_experts, k = this.config.num_experts_per_tok;
    const p = (n: string) => ctx.param(`model.layers.${layer}.block_sparse_moe.${n}`);
    const D = x.shape[x.rank - 1]!;
    const x2 = tf.reshape(x, [-1, D]); // [N, D]
    const N = x2.shape[0]!;
    const probs = tf.softmax(tf.div(blocks.linear(x2, p('gate.weight')), this.config.router_temperature)); // [N, E]
    const top = blocks.topKIndices(probs.dataSync() as Float32Array, N, E, k);
    const chosen = new Float32Array(N * E);
    for (let r = 0; r < N; r++) for (let j = 0; j < k; j++) chosen[r * E + top[r * k + j]!] = 1;
    const picked = tf.mul(probs, tf.tensor2d(chosen, [N, E]));
    const weights = tf.div(picked, tf.sum(picked, 1, true)); // [N, E], zero off the top-k
    let out = tf.zerosLike(x2);
    for (let e = 0; e < E; e++) {
      const rows: number[] = [];
      for (let r = 0; r < N; r++) if (chosen[r * E + e]) rows.push(r);
      if (!rows.length) continue; // an expert without tokens does not run
      const idx = tf.tensor1d(rows, 'int32');
      const xe = tf.gather(x2, idx); // [n_e, D]
      const w = (n: string) => p(`experts.${e}.${n}.weight`);
      const ye = blocks.linear(tf.mul(blocks.silu(blocks.linear(xe, w('w1'))), blocks.linear(xe, w('w3'))), w('w2')); // [n_e, D]
      out = tf.add(out, tf.unsortedSegmentSum(tf.mul(ye, tf.gather(tf.slice(weights, [0, e], [N, 1]), idx)), idx, N));
    }
    const mask = ctx.cache ? undefined : ctx.batch.attentionMask;
    const tokenMask = new Float32Array(N);
    for (let r = 0; r < N; r++) tokenMask[r] = mask ? mask[r]! : 1;
    stats.push({ probs, chosen, tokenMask });
    return tf.reshape(out, x.shape);
  }
}

export { readTanukiConfig };
