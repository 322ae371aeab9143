// What a tokenized record must satisfy before it may be trained on, checked in one place for the
// trainer and the pre-flight alike:
//   - at least one trained token (a label that is not -100): a batch without one has no loss to
//     differentiate, which TensorFlow.js reports as "Cannot find a connection between any variable and
//     the result of the loss function" (PIPE9051);
//   - every id inside the llm's vocab: an embedding lookup past the table is an unlocated GatherV2 crash
//     (PIPE9053);
//   - no longer than the stage's max_length, image tokens included: truncating would cut the answer,
//     the only trained tokens (PIPE9007, too-long.ts).
import type { ErrorLocation, PipeRuntimeError } from '../errors.js';
import { M } from '../errors.js';
import { IGNORE, type Example, type Turn } from './examples.js';
import { recordError } from './llava-json.js';
import { tooLongError } from './too-long.js';
import type { TextTokenizer } from './vocab-tokenizer.js';

export interface ExampleContext {
  index: number;
  /** The record's own id, when it has one (named in messages after the index). */
  id?: string;
  location: ErrorLocation;
  maxLength: number;
  /** The llm's vocab: ids must be below it. */
  vocab: number;
  tokenizer: TextTokenizer;
  turns: readonly Turn[];
  /** The record's `from` spellings, when it has them (llava_json), for the no-answer message. */
  spellings?: readonly string[];
}

/** The first problem of the example, as the located error to report (or skip), or undefined when it may be trained on. */
export function exampleProblem(ex: Example, c: ExampleContext): PipeRuntimeError | undefined {
  if (!ex.labels.some((l) => l !== IGNORE)) {
    const answers = c.turns.some((t) => t.role === 'assistant');
    const roles = c.spellings?.length ? [...new Set(c.spellings)].join(', ') : [...new Set(c.turns.map((t) => t.role))].join(', ');
    return answers
      ? recordError(M.DataNoLabels, [c.index, 'the template leaves none of its assistant turns to train on'], c.id, c.location, 'check the template: only assistant replies (and the stop token) are trained')
      : recordError(M.DataNoLabels, [c.index, `it has no assistant turn (its turns are from ${roles})`], c.id, c.location, 'the answering role must map to `assistant` (LLaVA: gpt, LLaVA-JP: システム); the dataset\'s `roles:` maps other spellings, e.g. `roles: { assistant: "A" }`; or set `skip_bad_records: true`');
  }
  const bad = ex.ids.find((id) => !(id >= 0 && id < c.vocab));
  if (bad !== undefined) {
    const piece = c.tokenizer.idToToken(bad);
    return recordError(M.TokenOutOfVocab, [`record ${c.index}`, bad, c.vocab], c.id, c.location, `the tokenizer (${c.tokenizer.vocabSize} ids) gives ${piece === undefined ? 'this id' : JSON.stringify(piece)}, past the llm's embedding table; raise the llm's \`vocab\` to at least ${c.tokenizer.vocabSize}, or use the tokenizer the llm was trained with`);
  }
  if (ex.ids.length > c.maxLength) return tooLongError(c.index, ex.ids.length, c.maxLength, c.location, c.id);
  return undefined;
}
