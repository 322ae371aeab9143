// What the checker needs from a Hugging Face tokenizer.json, read as plain JSON (no tokenizer library):
// how many token ids it can produce (the model's vocabulary and the added tokens: the highest id + 1)
// and the id of a given token, e.g. the image marker. The runtime encodes with the same file, so an id
// the llm's embedding table has no row for is found here before any weights load.
import * as fs from 'node:fs';

export interface TokenizerSummary {
  /** Highest id + 1 over the model's vocabulary and the added tokens. */
  size: number;
  modelTokens: number;
  /** Highest id of the model's vocabulary, -1 when empty. */
  modelMax: number;
  addedTokens: number;
  addedMax: number;
  /** The id of `token` as an added token or a vocabulary entry. */
  idOf(token: string): number | undefined;
  /** The highest id other than `id` (+ 1): the size the tokenizer would have without that token. */
  sizeWithout(id: number): number;
}

export class TokenizerJsonError extends Error {}

/** Parsed summaries by path, kept while the file's size and mtime stay the same (the language server re-checks on every edit). */
const cache = new Map<string, { size: number; mtimeMs: number; summary: TokenizerSummary }>();

export function readTokenizerSummary(file: string): TokenizerSummary {
  const st = fs.statSync(file);
  const hit = cache.get(file);
  if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit.summary;
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new TokenizerJsonError(`it is not valid JSON (${(e as Error).message})`);
  }
  const summary = summarise(json);
  cache.set(file, { size: st.size, mtimeMs: st.mtimeMs, summary });
  return summary;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

export function summarise(json: unknown): TokenizerSummary {
  if (!isObject(json)) throw new TokenizerJsonError('it is not a JSON object');
  const model = json.model;
  if (!isObject(model)) throw new TokenizerJsonError('it has no "model" object');
  const ids = new Map<string, number>();
  let modelTokens = 0, modelMax = -1;
  const vocab = model.vocab;
  if (Array.isArray(vocab)) {
    // Unigram: [[piece, score], ...], the id is the position
    modelTokens = vocab.length;
    modelMax = vocab.length - 1;
    vocab.forEach((entry, i) => Array.isArray(entry) && typeof entry[0] === 'string' && !ids.has(entry[0]) && ids.set(entry[0], i));
  } else if (isObject(vocab)) {
    // BPE, WordPiece, WordLevel: { piece: id }
    for (const [piece, id] of Object.entries(vocab)) {
      if (!Number.isSafeInteger(id) || (id as number) < 0) throw new TokenizerJsonError(`model.vocab gives "${piece}" the id ${JSON.stringify(id)}, not a non-negative integer`);
      modelTokens++;
      modelMax = Math.max(modelMax, id as number);
      ids.set(piece, id as number);
    }
  } else throw new TokenizerJsonError('its "model" has no "vocab"');
  let addedTokens = 0, addedMax = -1;
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw new TokenizerJsonError('"added_tokens" is not a list');
  const addedIds = new Map<string, number>();
  for (const t of added) {
    if (!isObject(t) || !Number.isSafeInteger(t.id) || (t.id as number) < 0 || typeof t.content !== 'string') throw new TokenizerJsonError('an entry of "added_tokens" is not { "id": integer, "content": string }');
    addedTokens++;
    addedMax = Math.max(addedMax, t.id as number);
    addedIds.set(t.content, t.id as number);
  }
  const all = [...ids.values(), ...addedIds.values()].sort((a, b) => b - a);
  const size = Math.max(modelMax, addedMax) + 1;
  return {
    size, modelTokens, modelMax, addedTokens, addedMax,
    idOf: (token) => addedIds.get(token) ?? ids.get(token),
    sizeWithout: (id) => (all.find((x) => x !== id) ?? -1) + 1,
  };
}
