// Loss and exact-match accuracy of a model on samples the data pipeline produced (runtime/data/
// pipeline.ts, the same as training), without training. The loss is the causal-LM cross-entropy over
// every trained token of every record (the mean per token, as transformers computes it over one batch
// holding the whole dataset); the accuracy compares the greedy answer to each record's last reply.
import * as tf from '@tensorflow/tfjs-core';
import { collate, pixelTensor, type Sample } from '../data/batch.js';
import { IGNORE } from '../data/examples.js';
import type { TextTokenizer } from '../data/vocab-tokenizer.js';
import { generate } from '../generate.js';
import type { ModelRunner } from '../model.js';
import { causalLmLoss } from '../ops/loss.js';

export interface EvalOptions {
  batch: number;
  imageShape: [number, number, number];
  /** Greedy answers to each record's last reply, compared with it (exact match after trimming). */
  accuracy: boolean;
  /** Per-record details: tokens, labels, loss, last-position logits (for checks against other frameworks). */
  details: boolean;
  progress?: (done: number, total: number) => void;
}

export interface RecordDetail {
  index: number;
  /** Trained tokens (the loss's denominator for this record). */
  tokens: number;
  loss: number;
  image_start: number;
  input_ids: number[];
  labels: number[];
  /** Logits at the record's last position [vocab]. */
  last_logits: number[];
  answer?: string;
  expected?: string;
  correct?: boolean;
}

export interface DatasetEval {
  records: number;
  /** Trained tokens over all records. */
  tokens: number;
  /** Mean cross-entropy per trained token. */
  loss: number;
  /** The router's load-balancing loss (mixture-of-experts llms), mean over batches; not in `loss`. */
  aux_loss?: number;
  accuracy?: { correct: number; total: number; exact_match: number };
  details?: RecordDetail[];
}

/** The last reply of a record: the last run of trained positions (its text and stop token). */
export function lastReply(s: Sample): { start: number; end: number } | undefined {
  let end = s.labels.length;
  while (end > 0 && s.labels[end - 1] === IGNORE) end--;
  if (end === 0) return undefined;
  let start = end;
  while (start > 0 && s.labels[start - 1] !== IGNORE) start--;
  return { start, end };
}

export function evaluateSamples(runner: ModelRunner, samples: readonly Sample[], tok: TextTokenizer, o: EvalOptions): DatasetEval {
  const padId = tok.padId ?? 0;
  let sum = 0, tokens = 0, auxSum = 0, batches = 0, hasAux = false;
  const details: RecordDetail[] = [];
  for (let s = 0; s < samples.length; s += o.batch) {
    const chunk = samples.slice(s, s + o.batch);
    const batch = collate(chunk, padId, o.imageShape);
    tf.tidy(() => {
      const r = runner.forward({ pixels: pixelTensor(batch), inputIds: batch.inputIds, labels: batch.labels, info: batch.info });
      sum += r.lmLoss!.dataSync()[0]! * batch.labelledTokens;
      tokens += batch.labelledTokens;
      if (r.auxLoss) (auxSum += r.auxLoss.dataSync()[0]!), (hasAux = true);
      batches++;
      if (!o.details) return;
      const [, T, V] = r.logits.shape as [number, number, number];
      chunk.forEach((x, b) => {
        const row = tf.slice(r.logits, [b, 0, 0], [1, T, V]);
        const labels = batch.labels.slice(b * T, (b + 1) * T);
        const trained = x.labels.filter((l) => l !== IGNORE).length;
        details.push({
          index: x.source.index, tokens: trained, loss: causalLmLoss(row, labels).dataSync()[0]!, image_start: x.pixels ? x.imageStart : -1,
          input_ids: x.ids, labels: x.labels, last_logits: Array.from(tf.slice(row, [0, x.ids.length - 1, 0], [1, 1, V]).dataSync()),
        });
      });
    });
    o.progress?.(Math.min(s + o.batch, samples.length), samples.length);
  }
  const out: DatasetEval = { records: samples.length, tokens, loss: tokens ? sum / tokens : NaN };
  if (hasAux) out.aux_loss = auxSum / batches;
  if (o.accuracy) out.accuracy = exactMatch(runner, samples, tok, o, details);
  if (o.details) out.details = details;
  return out;
}

/** Greedy answers to each record's last reply (prompts of equal length generate together). */
function exactMatch(runner: ModelRunner, samples: readonly Sample[], tok: TextTokenizer, o: EvalOptions, details: RecordDetail[]): DatasetEval['accuracy'] {
  const items = samples.flatMap((s, i) => {
    const reply = lastReply(s);
    return reply ? [{ i, s, reply, expected: tok.decode(s.ids.slice(reply.start, reply.end), { skipSpecialTokens: true }).trim() }] : [];
  });
  const byLength = new Map<number, typeof items>();
  for (const it of items) byLength.set(it.reply.start, [...(byLength.get(it.reply.start) ?? []), it]);
  let correct = 0;
  for (const group of byLength.values())
    for (let k = 0; k < group.length; k += 32) {
      const chunk = group.slice(k, k + 32);
      const maxNew = Math.max(...chunk.map((c) => c.reply.end - c.reply.start));
      const outs = generate(runner, chunk.map((c) => ({ ids: c.s.ids.slice(0, c.reply.start), imageStart: c.s.imageStart < c.reply.start ? c.s.imageStart : -1, pixels: c.s.pixels })), {
        maxNewTokens: maxNew, eosId: tok.eosId, imageShape: o.imageShape,
      });
      outs.forEach((ids, j) => {
        const c = chunk[j]!;
        const answer = tok.decode(ids, { skipSpecialTokens: true }).trim();
        if (answer === c.expected) correct++;
        const d = details[c.i];
        if (d) Object.assign(d, { answer, expected: c.expected, correct: answer === c.expected });
      });
    }
  return { correct, total: items.length, exact_match: items.length ? correct / items.length : 0 };
}
