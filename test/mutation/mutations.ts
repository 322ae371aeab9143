// The bugs the numerical tests must catch, planted one at a time into a copy of the compiled runtime
// (test/mutation/harness.ts). Each edit replaces text that must occur exactly once in the compiled file:
// when the source changes so that it no longer does, the harness fails and the edit is updated here.
// `caughtBy` lists test runs, cheapest first: the harness stops at the first that fails.

export interface Mutation {
  name: string;
  /** The bug, in words. */
  what: string;
  /** The compiled file, relative to dist/. */
  file: string;
  edits: { find: string; replace: string }[];
  caughtBy: { file: string; grep?: string }[];
}

// Value-preserving gradient surgery, as compiled-JS expressions over `tf` (every op module imports it):
/** x with no gradient (its value as a constant). */
const detach = (x: string) => `((v) => tf.tensor(v.dataSync(), v.shape))(${x})`;
/** x whose gradient is multiplied by a: a * x + (1 - a) * detach(x). */
const scaleGrad = (x: string, a: number) => `((v) => tf.add(tf.mul(v, ${a}), tf.mul(tf.tensor(v.dataSync(), v.shape), ${1 - a})))(${x})`;

const OPS = 'test/runtime-ops.test.js';
const OPTIM = 'test/reference-optim.test.js';
const COMPONENTS = 'test/reference-components.test.js';
const CHECKPOINTING = 'test/runtime-checkpointing.test.js';

export const MUTATIONS: Mutation[] = [
  {
    name: 'mixtral-aux-gradient-dropped',
    what: 'the load-balancing loss keeps its value but passes no gradient to the router',
    file: 'runtime/ops/mixtral.js',
    edits: [{ find: 'tf.mul(s.probs, tf.tensor2d(s.tokenMask', replace: `tf.mul(${detach('s.probs')}, tf.tensor2d(s.tokenMask` }],
    caughtBy: [{ file: OPS, grep: 'auxiliary \\(load-balancing\\) loss alone' }, { file: COMPONENTS, grep: 'siglip-mixtral: the language model' }],
  },
  {
    name: 'mixtral-aux-gradient-sign-flipped',
    what: 'the load-balancing loss keeps its value but its gradient has the wrong sign',
    file: 'runtime/ops/mixtral.js',
    edits: [{ find: 'tf.mul(s.probs, tf.tensor2d(s.tokenMask', replace: `tf.mul(${scaleGrad('s.probs', -1)}, tf.tensor2d(s.tokenMask` }],
    caughtBy: [{ file: OPS, grep: 'auxiliary \\(load-balancing\\) loss alone' }, { file: COMPONENTS, grep: 'siglip-mixtral: the language model' }],
  },
  {
    name: 'checkpointed-layer-weights-get-no-gradient',
    what: 'a layer recomputed under gradient checkpointing passes gradients to its input but not to its weights',
    file: 'runtime/ops/checkpoint.js',
    edits: [{ find: 'const ws = [...weights.values()];', replace: 'const ws = [];' }],
    caughtBy: [{ file: CHECKPOINTING, grep: "llama: every weight's gradient.*on cpu|gradients on cpu llama" }],
  },
  {
    name: 'checkpointed-layer-reads-outer-tape-cleared',
    what: 'the recompute in backward leaves the engine without the outer tape (the nested gradients() clears it)',
    file: 'runtime/ops/checkpoint.js',
    edits: [{ find: 'engine.state.activeTape = outer;', replace: 'void outer;' }],
    caughtBy: [{ file: CHECKPOINTING, grep: "llama: every weight's gradient.*on cpu|gradients on cpu llama" }],
  },
  {
    name: 'llama-q-proj-gradient-x0.6',
    what: "llama's q_proj weight gradient is scaled by 0.6",
    file: 'runtime/ops/decoder.js',
    // q_proj is read through adaptedLinear (ops/lora.ts): the mutant hands it a context whose q_proj weight is scaled
    edits: [{ find: "adaptedLinear(ctx, x, p('q_proj'))", replace: `adaptedLinear({ ...ctx, param: (n) => (n.endsWith('q_proj.weight') ? ${scaleGrad('ctx.param(n)', 0.6)} : ctx.param(n)) }, x, p('q_proj'))` }],
    caughtBy: [{ file: OPS, grep: 'llama \\(GQA' }, { file: COMPONENTS, grep: 'clip-llama: the language model' }],
  },
  {
    name: 'attention-scale-removed',
    what: 'attention scores are not divided by sqrt(head size)',
    file: 'runtime/ops/nn.js',
    edits: [{ find: 'tf.mul(bmm(q, k, false, true), 1 / Math.sqrt(d))', replace: 'tf.mul(bmm(q, k, false, true), 1)' }],
    caughtBy: [{ file: OPS, grep: 'scales scores by 1/sqrt' }, { file: COMPONENTS, grep: 'clip-llama: the language model' }],
  },
  {
    name: 'heads-merged-out-of-order',
    what: 'mergeHeads concatenates the heads in the wrong layout (no transpose back)',
    file: 'runtime/ops/nn.js',
    edits: [{ find: 'tf.transpose(tf.reshape(x, [batch, H, T, d]), [0, 2, 1, 3])', replace: 'tf.reshape(x, [batch, H, T, d])' }],
    caughtBy: [{ file: OPS, grep: 'splitHeads puts head' }, { file: COMPONENTS, grep: 'clip-llama: the language model' }],
  },
  {
    name: 'kv-heads-interleaved',
    what: 'grouped-query attention gives query head h the kv head h mod Hk instead of floor(h / n)',
    file: 'runtime/ops/nn.js',
    edits: [
      { find: 'tf.reshape(x, [batch, Hk, 1, T * d])', replace: 'tf.reshape(x, [batch, 1, Hk, T * d])' },
      { find: 'tf.concat(new Array(n).fill(x4), 2)', replace: 'tf.concat(new Array(n).fill(x4), 1)' },
    ],
    caughtBy: [{ file: OPS, grep: 'repeatKv gives' }, { file: COMPONENTS, grep: 'clip-llama: the language model' }],
  },
  {
    name: 'layer-norm-weight-gradient-dropped',
    what: "layer norm's weight gets no gradient",
    file: 'runtime/ops/nn.js',
    edits: [{ find: 'tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), w)', replace: `tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), ${detach('w')})` }],
    caughtBy: [{ file: OPS, grep: 'layerNorm and rmsNorm' }, { file: COMPONENTS, grep: 'clip-llama: the encoder' }],
  },
  {
    name: 'loss-gradient-not-averaged',
    what: "the fused cross-entropy's gradient is not divided by the number of labelled tokens",
    file: 'runtime/ops/loss.js',
    edits: [{ find: 'tf.div(dy, count)', replace: 'dy' }],
    caughtBy: [{ file: OPS, grep: 'causal_lm_loss' }, { file: COMPONENTS, grep: 'clip-llama: the language model' }],
  },
  {
    name: 'rope-rotation-reversed',
    what: 'rotary embedding rotates the other way (rotate_half with the signs swapped)',
    file: 'runtime/ops/nn.js',
    edits: [{ find: 'tf.concat([tf.neg(x2), x1], 2)', replace: 'tf.concat([x2, tf.neg(x1)], 2)' }],
    caughtBy: [{ file: OPS, grep: 'rope rotates' }, { file: COMPONENTS, grep: 'clip-llama: the language model' }],
  },
  {
    name: 'select-layer-off-by-one',
    what: 'the encoder returns hidden_states[select_layer - 1] (one layer too few)',
    file: 'runtime/ops/vit.js',
    edits: [{ find: 'const upTo = sel < 0 ? layers + 1 + sel : sel;', replace: 'const upTo = sel < 0 ? layers + sel : sel;' }],
    caughtBy: [{ file: COMPONENTS, grep: 'clip-llama: the encoder' }],
  },
  {
    name: 'cls-token-always-dropped',
    what: 'select: "cls_patch" drops the class token as "patch" does',
    file: 'runtime/ops/vit.js',
    edits: [{ find: "if (cls && a['select'] !== 'cls_patch')", replace: 'if (cls)' }],
    caughtBy: [{ file: COMPONENTS, grep: 'clip-cls-llama-tied: the encoder' }],
  },
  {
    name: 'warmup-off-by-one',
    what: 'warmup starts at 1 / warmup instead of 0 (step + 1)',
    file: 'runtime/train/schedule.js',
    edits: [{ find: 'return step / Math.max(1, warm);', replace: 'return (step + 1) / Math.max(1, warm);' }],
    caughtBy: [{ file: OPTIM, grep: 'warmup is step / warmup' }, { file: OPTIM, grep: 'every schedule' }],
  },
  {
    name: 'adamw-bias-correction-removed',
    what: "AdamW's moments are not bias-corrected",
    file: 'runtime/train/optimizer.js',
    edits: [{ find: 'const bc1 = 1 - Math.pow(b1, t), bc2 = 1 - Math.pow(b2, t);', replace: 'const bc1 = 1, bc2 = 1;' }],
    caughtBy: [{ file: OPTIM, grep: "AdamW's first step.*on cpu" }, { file: OPTIM, grep: 'adamw-constant:' }],
  },
  {
    name: 'no-decay-rule-ignored',
    what: 'weight decay is applied to biases and norm weights too',
    file: 'runtime/train/optimizer.js',
    edits: [{ find: 'return decays(name) ? wd : 0;', replace: 'return wd;' }],
    caughtBy: [{ file: OPTIM, grep: "AdamW's first step.*on cpu" }, { file: OPTIM, grep: 'adamw-cosine-ratio:' }],
  },
];
