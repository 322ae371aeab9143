// A word-level tokenizer for generated datasets: the vocabulary is every word the generator can emit
// plus specials, so the quickstart needs no tokenizer download. Latin text splits on spaces and
// punctuation; CJK text splits per character. With `lowercase` (the generated datasets' tokenizer) every
// word but the specials is lowercased first, so "What color is the shape?" reads as the data's "what color
// is the shape ?". It can be written as a Hugging Face WordLevel tokenizer.json (a Lowercase normalizer
// then), so a run directory always carries the tokenizer it was trained with. A word outside the
// vocabulary becomes <unk>; `unknownWords` names them, so a caller can refuse such a prompt.
import { M, runtimeError } from '../errors.js';

export interface TextTokenizer {
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId?: number;
  readonly unkId?: number;
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
}

export const SPECIALS = ['<pad>', '<s>', '</s>', '<unk>', '<image>'] as const;
const CJK = /[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]/;

export function splitWords(text: string): string[] {
  const out: string[] = [];
  for (const piece of text.split(/(<[^<>\s]+>)|\s+/).filter((p): p is string => !!p)) {
    if (/^<[^<>\s]+>$/.test(piece)) {
      out.push(piece);
      continue;
    }
    let word = '';
    for (const ch of piece) {
      if (CJK.test(ch) || /[.,!?:;'"()]/.test(ch)) {
        if (word) out.push(word);
        word = '';
        out.push(ch);
      } else word += ch;
    }
    if (word) out.push(word);
  }
  return out;
}

export interface VocabOptions {
  /** Lowercase every word but the specials before looking it up (HF's Lowercase normalizer). */
  lowercase?: boolean;
}

export class VocabTokenizer implements TextTokenizer {
  private readonly ids = new Map<string, number>();
  readonly bosId = 1;
  readonly eosId = 2;
  readonly padId = 0;
  readonly unkId = 3;
  readonly lowercase: boolean;

  constructor(readonly vocab: readonly string[], o: VocabOptions = {}) {
    vocab.forEach((w, i) => this.ids.set(w, i));
    this.lowercase = o.lowercase ?? false;
  }

  /** Specials first (fixed ids), then the words of `texts` in first-seen order. */
  static fromTexts(texts: Iterable<string>, maxSize: number, o: VocabOptions = {}): VocabTokenizer {
    const vocab: string[] = [...SPECIALS];
    const seen = new Set(vocab);
    const norm = new VocabTokenizer([], o);
    for (const t of texts) for (const w of norm.words(t)) if (!seen.has(w)) (seen.add(w), vocab.push(w));
    if (vocab.length > maxSize)
      throw runtimeError(M.TokenOutOfVocab, ['the word vocabulary generated for the synthetic datasets', vocab.length - 1, maxSize], undefined, `it has ${vocab.length} words; raise the llm's \`vocab\` to at least ${vocab.length}`);
    return new VocabTokenizer(vocab, o);
  }

  /** The words of `text` as the vocabulary spells them (lowercased when the tokenizer lowercases). */
  private words(text: string): string[] {
    const ws = splitWords(text);
    return this.lowercase ? ws.map((w) => ((SPECIALS as readonly string[]).includes(w) ? w : w.toLowerCase())) : ws;
  }

  /** The words of `text` (as written, each once) that are not in the vocabulary, so would be read as <unk>. */
  unknownWords(text: string): string[] {
    const raw = splitWords(text), norm = this.words(text);
    return [...new Set(raw.filter((_, i) => !this.ids.has(norm[i]!)))];
  }

  get vocabSize(): number {
    return this.vocab.length;
  }
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    const ids = this.words(text).map((w) => this.ids.get(w) ?? this.unkId);
    return opts.addSpecialTokens ? [this.bosId, ...ids] : ids;
  }
  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    let out = '';
    for (const id of ids) {
      const w = this.vocab[id] ?? '<unk>';
      if (opts.skipSpecialTokens && (SPECIALS as readonly string[]).includes(w)) continue;
      const cjk = CJK.test(w);
      out += out && !cjk && !CJK.test(out[out.length - 1]!) ? ` ${w}` : w;
    }
    return out;
  }
  tokenToId(token: string): number | undefined {
    return this.ids.get(token);
  }
  idToToken(id: number): string | undefined {
    return this.vocab[id];
  }

  /** A Hugging Face tokenizer.json (WordLevel model) with the same vocabulary. */
  toTokenizerJson(): unknown {
    return {
      version: '1.0',
      added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
      normalizer: this.lowercase ? { type: 'Lowercase' } : null,
      pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, { type: 'Split', pattern: { Regex: '[\\u3000-\\u30ff\\u3400-\\u9fff\\uff00-\\uffef.,!?:;\'"()]' }, behavior: 'Isolated', invert: false }] },
      post_processor: null,
      decoder: null,
      model: { type: 'WordLevel', vocab: Object.fromEntries(this.vocab.map((w, i) => [w, i])), unk_token: '<unk>' },
    };
  }
}

/** Reads back a tokenizer.json written by toTokenizerJson (a WordLevel model with our specials); else undefined. */
export function vocabTokenizerFromJson(json: unknown): VocabTokenizer | undefined {
  const { model, normalizer } = json as { model?: { type?: string; vocab?: Record<string, number> }; normalizer?: { type?: string } | null };
  if (model?.type !== 'WordLevel' || !model.vocab) return undefined;
  if (normalizer && normalizer.type !== 'Lowercase') return undefined;
  const vocab: string[] = [];
  for (const [w, id] of Object.entries(model.vocab)) vocab[id] = w;
  if (SPECIALS.some((s, i) => vocab[i] !== s)) return undefined;
  return new VocabTokenizer(vocab, { lowercase: normalizer?.type === 'Lowercase' });
}
