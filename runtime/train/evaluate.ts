// Held-out evaluation of the generated question-answering data: greedy answers to questions about
// images the run never trained on, compared with the truth (exact match after trimming).
import type { Sample } from '../data/batch.js';
import type { PreparedDataset } from '../data/datasets.js';
import { buildPrompt, type Turn } from '../data/examples.js';
import type { TextTokenizer } from '../data/vocab-tokenizer.js';
import { generate } from '../generate.js';
import type { ModelRunner } from '../model.js';

export interface EvalResult {
  question: string;
  correct: number;
  total: number;
  accuracy: number;
  examples: { question: string; answer: string; expected: string }[];
}

export function evaluateShapes(runner: ModelRunner, data: PreparedDataset, tok: TextTokenizer, imageShape: [number, number, number], imageTokens: number): EvalResult[] {
  const recs = data.heldoutRecords ?? [];
  const byQuestion = new Map<string, { prompt: ReturnType<typeof buildPrompt>; pixels?: Float32Array; expected: string; q: string }[]>();
  recs.forEach((r, i) => {
    if (!r.question) return;
    const sample: Sample = data.heldout[i]!;
    const prompt = buildPrompt(r.turns.slice(0, 1) as Turn[], data.template, tok, '<image>', imageTokens);
    const list = byQuestion.get(r.question) ?? [];
    list.push({ prompt, pixels: sample.pixels, expected: r.answer, q: r.turns[0]!.text.replace('<image>\n', '') });
    byQuestion.set(r.question, list);
  });
  const results: EvalResult[] = [];
  for (const [question, items] of byQuestion) {
    let correct = 0;
    const examples: EvalResult['examples'] = [];
    // equal-length prompts generate together
    const groups = new Map<number, typeof items>();
    for (const it of items) groups.set(it.prompt.ids.length, [...(groups.get(it.prompt.ids.length) ?? []), it]);
    for (const group of groups.values())
      for (let s = 0; s < group.length; s += 32) {
        const chunk = group.slice(s, s + 32);
        const outs = generate(runner, chunk.map((c) => ({ ids: c.prompt.ids, imageStart: c.prompt.imageStart, pixels: c.pixels })), { maxNewTokens: 6, eosId: tok.eosId, imageShape });
        outs.forEach((ids, j) => {
          const answer = tok.decode(ids, { skipSpecialTokens: true }).trim();
          const ok = answer === chunk[j]!.expected;
          if (ok) correct++;
          if (examples.length < 5) examples.push({ question: chunk[j]!.q, answer, expected: chunk[j]!.expected });
        });
      }
    results.push({ question, correct, total: items.length, accuracy: items.length ? correct / items.length : 0, examples });
  }
  return results.sort((a, b) => a.question.localeCompare(b.question));
}
