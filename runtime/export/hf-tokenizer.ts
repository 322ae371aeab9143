// The text half of `pipec export --target hf`: tokenizer.json, tokenizer_config.json,
// special_tokens_map.json and the chat template, such that transformers' LlavaProcessor turns a
// conversation into the ids pipec trained on:
// - the image marker is one special token whose id is the config's image_token_index (the processor
//   repeats it image_seq_length times; pipec wrote that id at the image positions too). A tokenizer that
//   has no such token gets it as an added token at a free row of the llm's embedding (the row's values
//   never matter: LLaVA replaces those positions' embeddings with image features);
// - BOS: pipec starts every sequence with the tokenizer's BOS (unless a Jinja template writes it); the
//   exported tokenizer's post-processor does the same, so processor(text=...) adds it as pipec did.
import type { OpenedRun } from '../train/open-run.js';
import { M, runtimeError } from '../errors.js';
import { chatTemplateJinja } from './hf-chat-template.js';

export interface TokenizerExport {
  files: Map<string, string>;
  imageTokenId: number;
  ids: { bos?: number; eos?: number; pad?: number };
  notes: string[];
}

interface AddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The post-processor's TemplateProcessing (itself, or inside a Sequence), if it has one. */
function findTemplate(pp: unknown): Record<string, unknown> | undefined {
  if (!isObject(pp)) return undefined;
  if (pp.type === 'Sequence' && Array.isArray(pp.processors)) return (pp.processors as unknown[]).find((p): p is Record<string, unknown> => isObject(p) && p.type === 'TemplateProcessing');
  return pp.type === 'TemplateProcessing' ? pp : undefined;
}

/** A TemplateProcessing that prepends `bos` to each sequence, as pipec's tokenize() does, and nothing else. */
function bosProcessor(bos: string, bosId: number): Record<string, unknown> {
  const special = { SpecialToken: { id: bos, type_id: 0 } };
  return {
    type: 'TemplateProcessing',
    single: [special, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [special, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
  };
}

function isBosOnly(t: Record<string, unknown>, bos: string): boolean {
  const single = t.single;
  if (!Array.isArray(single) || single.length !== 2) return false;
  const [a, b] = single as unknown[];
  return isObject(a) && isObject(a.SpecialToken) && a.SpecialToken.id === bos && isObject(b) && isObject(b.Sequence) && b.Sequence.id === 'A';
}

function noBosOnly(t: Record<string, unknown>): boolean {
  const single = t.single;
  return Array.isArray(single) && single.length === 1 && isObject(single[0]) && isObject((single[0] as Record<string, unknown>).Sequence);
}

export function exportTokenizer(run: OpenedRun, llmVocab: number, context: number): TokenizerExport {
  const tok = run.tokenizer;
  const json = structuredClone(run.tokenizerJson);
  const notes: string[] = [];
  const added = (Array.isArray(json.added_tokens) ? json.added_tokens : []) as AddedToken[];
  json.added_tokens = added;
  const marker = run.marker;

  // ---- the image token ----
  let imageTokenId = tok.tokenToId(marker);
  if (imageTokenId !== undefined && tok.encode(marker).length === 1 && tok.encode(marker)[0] === imageTokenId) {
    const entry = added.find((t) => t.id === imageTokenId);
    if (entry) entry.special = true;
    else added.push({ id: imageTokenId, content: marker, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  } else if (imageTokenId !== undefined) {
    // in the vocabulary but the tokenizer splits the text: make it an added token so the processor's text keeps it whole
    added.push({ id: imageTokenId, content: marker, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  } else {
    const free = tok.vocabSize;
    if (free >= llmVocab)
      throw runtimeError(M.HfNoImageToken, [marker, `the tokenizer has no such token and its ${tok.vocabSize} ids fill the llm's vocab of ${llmVocab}, so no id is free for one`], { file: run.graph.source },
        `raise the llm's vocab to ${tok.vocabSize + 1} or more (then train again), or use a tokenizer that has "${marker}" as a token`);
    imageTokenId = free;
    added.push({ id: imageTokenId, content: marker, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    notes.push(`the tokenizer had no "${marker}" token: it is added with id ${imageTokenId} (a free row of the llm's ${llmVocab}); pipec had put the pad id (or 0) at the image positions, whose embeddings LLaVA replaces either way`);
  }
  added.sort((a, b) => a.id - b.id);

  // ---- BOS, as pipec's tokenize() puts it ----
  const name = (id?: number) => (id === undefined ? undefined : tok.idToToken(id));
  const bos = name(tok.bosId), eos = name(tok.eosId), pad = name(tok.padId), unk = name(tok.unkId);
  const pipecAddsBos = !run.template.jinja && tok.bosId !== undefined;
  if (pipecAddsBos) {
    const template = findTemplate(json.post_processor);
    if (!template || !isBosOnly(template, bos!)) {
      const mine = bosProcessor(bos!, tok.bosId!);
      const pp = json.post_processor;
      if (isObject(pp) && pp.type === 'Sequence' && Array.isArray(pp.processors))
        json.post_processor = { ...pp, processors: (pp.processors as unknown[]).map((p) => (isObject(p) && p.type === 'TemplateProcessing' ? mine : p)).concat(template ? [] : [mine]) };
      else if (isObject(pp) && pp.type !== 'TemplateProcessing') json.post_processor = { type: 'Sequence', processors: [pp, mine] };
      else json.post_processor = mine;
      if (template) notes.push(`the tokenizer's post-processor is replaced by one that adds only ${bos} in front, as pipec did when it trained`);
    }
  } else if (run.template.jinja && findTemplate(json.post_processor) && bos && run.template.jinja.template.includes('bos_token')) {
    notes.push(`the chat template writes ${bos} itself and the tokenizer's post-processor adds one too: tokenize its output with add_special_tokens=False (processor.apply_chat_template(..., tokenize=True) does), as pipec did`);
  } else if (!run.template.jinja) {
    const template = findTemplate(json.post_processor);
    if (template && !noBosOnly(template)) notes.push('the tokenizer has no BOS token but its post-processor adds tokens; the processor\'s ids may differ from what pipec trained on');
  }

  // ---- the files ----
  const chatTemplate = chatTemplateJinja(run.template, marker);
  const specials = Object.fromEntries(Object.entries({ bos_token: bos, eos_token: eos, pad_token: pad, unk_token: unk }).filter(([, v]) => v !== undefined));
  const tokenizerConfig = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    ...specials,
    clean_up_tokenization_spaces: false,
    model_max_length: context || 1e30,
    extra_special_tokens: { image_token: marker },
    processor_class: 'LlavaProcessor',
    chat_template: chatTemplate,
  };
  const specialMap = { ...specials, additional_special_tokens: [marker] };
  const files = new Map<string, string>([
    ['tokenizer.json', JSON.stringify(json, null, 2) + '\n'],
    ['tokenizer_config.json', JSON.stringify(tokenizerConfig, null, 2) + '\n'],
    ['special_tokens_map.json', JSON.stringify(specialMap, null, 2) + '\n'],
    ['chat_template.jinja', chatTemplate],
  ]);
  return { files, imageTokenId, ids: { bos: tok.bosId, eos: tok.eosId, pad: tok.padId }, notes };
}
