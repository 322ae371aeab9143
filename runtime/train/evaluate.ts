// Held-out evaluation of the generated question-answering data: greedy answers to questions about
// images the run never trained on, compared with the truth (exact match after trimming). Every held-out
// image is asked both kinds of question (colour, shape) in both languages, with the first phrasing of
// each (synthetic-shapes.ts QUESTIONS), so each kind and language is measured on the same images.
import type { PreparedDataset } from '../data/datasets.js';
import { buildPrompt, type TemplateSpec } from '../data/examples.js';
import { answerFor, type Language, QUESTIONS, type QuestionKind } from '../data/synthetic-shapes.js';
import type { TextTokenizer } from '../data/vocab-tokenizer.js';
import { generate } from '../generate.js';
import type { ModelRunner } from '../model.js';

export interface EvalResult {
  question: QuestionKind;
  language: Language;
  correct: number;
  total: number;
  accuracy: number;
  examples: { question: string; answer: string; expected: string }[];
}

/** One question about one image: its normalised pixels [C, H, W] and what a right answer is. */
export interface ShapeQuestion {
  kind: QuestionKind;
  language: Language;
  pixels: Float32Array;
  expected: string;
}

/** What the model needs to answer questions: as the last stage trained it. */
export interface AskContext {
  runner: ModelRunner;
  tokenizer: TextTokenizer;
  template: TemplateSpec;
  imageShape: [number, number, number];
  imageTokens: number;
}

/** The four questions (colour and shape, English and Japanese) about an image of `colour` `shape`. */
export function questionsAbout(pixels: Float32Array, colour: number, shape: number): ShapeQuestion[] {
  return (['en', 'ja'] as const).flatMap((language) => (['colour', 'shape'] as const).map((kind) => ({ kind, language, pixels, expected: answerFor(kind, language, colour, shape) })));
}

/** Greedy answers to `questions`, scored per kind and language (sorted: colour en, colour ja, shape en, shape ja). */
export function askShapeQuestions(ctx: AskContext, questions: readonly ShapeQuestion[]): EvalResult[] {
  const results: EvalResult[] = [];
  // one prompt per kind and language: every question of a group has the same length and generates together
  const groups = new Map<string, ShapeQuestion[]>();
  for (const q of questions) {
    const key = `${q.kind}/${q.language}`;
    const group = groups.get(key);
    if (group) group.push(q);
    else groups.set(key, [q]);
  }
  for (const [, group] of [...groups].sort(([a], [b]) => a.localeCompare(b))) {
    const { kind, language } = group[0]!;
    const text = QUESTIONS[language][kind][0]!;
    const prompt = buildPrompt([{ role: 'user', text: `<image>\n${text}` }], ctx.template, ctx.tokenizer, '<image>', ctx.imageTokens);
    const r: EvalResult = { question: kind, language, correct: 0, total: group.length, accuracy: 0, examples: [] };
    for (let s = 0; s < group.length; s += 32) {
      const chunk = group.slice(s, s + 32);
      const outs = generate(ctx.runner, chunk.map((q) => ({ ids: prompt.ids, imageStart: prompt.imageStart, pixels: q.pixels })), { maxNewTokens: 6, eosId: ctx.tokenizer.eosId, imageShape: ctx.imageShape });
      outs.forEach((ids, j) => {
        const answer = ctx.tokenizer.decode(ids, { skipSpecialTokens: true }).trim();
        if (answer === chunk[j]!.expected) r.correct++;
        else if (r.examples.length < 5) r.examples.push({ question: text, answer, expected: chunk[j]!.expected }); // the misses say most
      });
    }
    r.accuracy = r.total ? r.correct / r.total : 0;
    results.push(r);
  }
  return results;
}

/** The held-out images of a generated question-answering dataset, each asked the four questions. */
export function evaluateShapes(ctx: AskContext, data: PreparedDataset): EvalResult[] {
  const recs = data.heldoutRecords ?? [];
  if (!recs.some((r) => r.question)) return []; // captions: no questions to ask
  return askShapeQuestions(ctx, recs.flatMap((r, i) => questionsAbout(data.heldout[i]!.pixels!, r.colour, r.shape)));
}
