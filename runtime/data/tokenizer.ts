// Hugging Face `tokenizer.json` support for the runtime. The encoding itself is done by
// @huggingface/tokenizers (HF's own pure-JS port of the Rust `tokenizers` crate: BPE byte-level and
// SentencePiece-style with byte_fallback, WordPiece, WordLevel, Unigram, added/special tokens,
// TemplateProcessing, every common decoder). Writing our own would mean re-deriving Oniguruma regex
// semantics and dozens of normalizer/decoder corner cases; test/tokenizer.test.ts instead pins this
// wrapper to ids produced by the Rust library. This file only adapts that library to the runtime's
// `Tokenizer` interface, fixes the few places where its defaults differ from the Rust crate, finds the
// special-token ids, and turns every failure into a PIPE9010 naming the file.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { M, runtimeError } from '../errors.js';

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId?: number;
  readonly unkId?: number;
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[]; // addSpecialTokens default false
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
}

/** Model types whose behaviour the tests compare with the Rust crate; anything else is refused up front. */
const MODEL_TYPES = new Set(['BPE', 'WordPiece', 'WordLevel', 'Unigram']);

/** Reads `file` (a tokenizer.json) and, when present, the tokenizer_config.json beside it (bos/eos/pad names). */
export function loadTokenizer(file: string): Tokenizer {
  const json = readJson(file);
  const configFile = join(dirname(file), 'tokenizer_config.json');
  const config = existsSync(configFile) ? readJson(configFile) : undefined;
  return tokenizerFromJSON(json, file, config);
}

/** Builds a tokenizer from parsed tokenizer.json content; `config` is an optional parsed tokenizer_config.json. */
export function tokenizerFromJSON(json: unknown, file = '<tokenizer.json>', config?: unknown): Tokenizer {
  const fail = (why: string) => runtimeError(M.TokenizerUnreadable, [file, why], { file });
  if (!isObject(json)) throw fail('the file is not a JSON object');
  const model = json.model;
  if (!isObject(model)) throw fail('it has no "model" object');
  const type = model.type;
  if (typeof type !== 'string' || !MODEL_TYPES.has(type)) {
    throw fail(`unsupported model type ${JSON.stringify(type ?? null)} (supported: ${[...MODEL_TYPES].join(', ')})`);
  }
  const cfg = isObject(config) ? config : {};
  // The JS library insists these keys exist (the Rust crate writes them, often as null); hand-written files may omit them.
  const full = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...json };
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(full, {
      // Cleanup is a transformers (Python) decode option, off in the Rust crate; the JS default is on.
      clean_up_tokenization_spaces: false,
      // A WordLevel model is built by the JS library's vocabulary-only fallback, which takes the unknown
      // token from this config instead of the model; Unigram reads eos_token from here.
      unk_token: typeof model.unk_token === 'string' ? model.unk_token : tokenName(cfg.unk_token),
      eos_token: tokenName(cfg.eos_token),
    });
  } catch (e) {
    throw fail(e instanceof Error ? e.message : String(e));
  }
  return new HfBackedTokenizer(hf, json, model, cfg);
}

class HfBackedTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId?: number;
  readonly unkId?: number;

  constructor(
    private readonly hf: HfTokenizer,
    json: Record<string, unknown>,
    model: Record<string, unknown>,
    cfg: Record<string, unknown>,
  ) {
    // Dense size (highest id + 1): what an embedding table needs; equals HF's get_vocab_size(True) for real files.
    this.vocabSize = hf.model?.vocab.length ?? 0;
    const id = (name: string | undefined) => (name === undefined ? undefined : hf.token_to_id(name));
    const first = (names: string[]) => names.map((n) => hf.token_to_id(n)).find((i) => i !== undefined);
    // tokenizer_config.json names win; otherwise the token the post-processor prepends, then common names.
    this.bosId = id(tokenName(cfg.bos_token)) ?? id(templateBos(json.post_processor)) ?? first(['<s>', '<|begin_of_text|>', '<bos>', '[CLS]']);
    this.eosId = id(tokenName(cfg.eos_token)) ?? first(['</s>', '<|end_of_text|>', '<|endoftext|>', '<eos>', '[SEP]']);
    this.padId = id(tokenName(cfg.pad_token)) ?? first(['<pad>', '[PAD]', '<|pad|>']);
    const unk = typeof model.unk_token === 'string' ? model.unk_token : tokenName(cfg.unk_token);
    this.unkId = typeof model.unk_id === 'number' ? model.unk_id : id(unk);
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    // The JS library defaults add_special_tokens to true; the runtime's contract is false.
    const ids = this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? false }).ids as (number | undefined)[];
    // An unknown piece with no unk token maps to undefined there; the Rust crate drops it (BPE), so do the same.
    return ids.filter((i): i is number => i !== undefined);
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    // Like the Rust crate: ids outside the vocabulary are skipped, and no ids decode to '' (the JS library throws).
    const known = ids.filter((i) => this.hf.id_to_token(i) !== undefined);
    if (known.length === 0) return '';
    return this.hf.decode(known, { skip_special_tokens: opts.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw runtimeError(M.TokenizerUnreadable, [file, code === 'ENOENT' ? 'the file does not exist' : `cannot read it (${code ?? String(e)})`], { file });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw runtimeError(M.TokenizerUnreadable, [file, `not valid JSON: ${(e as Error).message}`], { file });
  }
}

/** tokenizer_config.json writes a special token either as a string or as an AddedToken object. */
export function tokenName(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

/** The special token a TemplateProcessing post-processor puts first in a single sequence (Llama's `<s>`). */
function templateBos(pp: unknown): string | undefined {
  if (!isObject(pp)) return undefined;
  if (pp.type === 'Sequence' && Array.isArray(pp.processors)) return pp.processors.map(templateBos).find((t) => t !== undefined);
  if (pp.type !== 'TemplateProcessing' || !Array.isArray(pp.single)) return undefined;
  const head: unknown = pp.single[0];
  return isObject(head) && isObject(head.SpecialToken) && typeof head.SpecialToken.id === 'string' ? head.SpecialToken.id : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
