// From conversation turns to training examples: a template lays the turns out as text segments, each
// marked as trained (the assistant's replies) or not (system, user, role prefixes); the image marker in
// the first user turn becomes `imageTokens` placeholder positions whose labels are -100, like every
// untrained position. A record with several images (an "image" list) has one marker per image, and
// each becomes its own run of `imageTokens` positions, in order. The result is what the LLaVA splice
// and the causal-LM loss expect.
import { M, runtimeError } from '../errors.js';
import { renderChatTemplate } from './chat-template.js';
import type { TextTokenizer } from './vocab-tokenizer.js';

export interface Turn {
  role: 'system' | 'user' | 'assistant';
  text: string;
}

/** A template's fields as the graph carries them (stdlib/data.pipe: plain, chat, or a user's own). */
export interface TemplateSpec {
  name: string;
  /** A Jinja chat template (hf_chat_template: tokenizer_config.json's chat_template); the fields below are unused then. */
  jinja?: { template: string; bosToken?: string; eosToken?: string; file?: string };
  system: string;
  user: string;
  assistant: string;
  separator: string;
  /** Appended to each assistant reply and trained (e.g. "</s>"); default: the tokenizer's EOS. */
  stop?: string;
}

export const PLAIN: TemplateSpec = { name: 'plain', system: '', user: '', assistant: '', separator: '\n' };

export interface Example {
  ids: number[];
  labels: number[];
  /** First image position, or -1. */
  imageStart: number;
  /** Every image's first position, in order, when the example has more than one image. */
  imageStarts?: number[];
}

export const IGNORE = -100;

interface Segment {
  text: string;
  train: boolean;
}

/** Lays turns out as segments. `plain` (LLaVA's pretraining format) keeps only the image and the reply. */
export function layout(turns: readonly Turn[], t: TemplateSpec, marker: string, forGeneration = false, images = 1): Segment[] {
  if (t.jinja) return layoutJinja(turns, t.jinja, forGeneration);
  const segs: Segment[] = [];
  const system = turns.find((x) => x.role === 'system')?.text ?? t.system;
  if (t.name === 'plain') {
    const user = turns.find((x) => x.role === 'user');
    if (images > 1) segs.push({ text: Array.from({ length: images }, () => marker).join('\n'), train: false });
    else if (user?.text.includes(marker)) segs.push({ text: marker, train: false });
    if (forGeneration) return segs;
    const reply = turns.find((x) => x.role === 'assistant');
    if (reply) segs.push({ text: reply.text, train: true }, { text: '\u0000stop', train: true });
    return segs;
  }
  if (system) segs.push({ text: system + t.separator, train: false });
  const body = turns.filter((x) => x.role !== 'system');
  body.forEach((turn, i) => {
    if (turn.role === 'user') segs.push({ text: t.user + turn.text + t.separator, train: false });
    else {
      segs.push({ text: t.assistant, train: false });
      segs.push({ text: turn.text, train: true }, { text: '\u0000stop', train: true });
      if (i < body.length - 1) segs.push({ text: t.separator, train: false });
    }
  });
  if (forGeneration) segs.push({ text: t.assistant, train: false });
  return segs;
}

/**
 * A Jinja chat template renders whole conversations, so the trained spans are found by rendering
 * growing prefixes: what message i adds is the difference between the renders of messages [0, i) and
 * [0, i]; an assistant message's part after the generation prompt is trained. The template's own
 * bos_token text stands for BOS (no second one is added).
 */
function layoutJinja(turns: readonly Turn[], j: NonNullable<TemplateSpec['jinja']>, forGeneration: boolean): Segment[] {
  const msgs = turns.map((x) => ({ role: x.role, content: x.text }));
  const render = (n: number, gen: boolean) => renderChatTemplate(j.template, msgs.slice(0, n), { bosToken: j.bosToken, eosToken: j.eosToken, addGenerationPrompt: gen }, j.file);
  const segs: Segment[] = [{ text: '\u0000nobos', train: false }];
  let prev = '';
  const take = (next: string, train: boolean) => {
    if (!next.startsWith(prev)) throw runtimeError(M.ChatTemplateFailed, ['its output for a longer conversation does not extend the output for a shorter one, so replies cannot be located'], j.file ? { file: j.file } : undefined);
    segs.push({ text: next.slice(prev.length), train });
    prev = next;
  };
  msgs.forEach((m, i) => {
    if (m.role === 'assistant') take(render(i, true), false);
    take(render(i + 1, false), m.role === 'assistant');
  });
  if (forGeneration) take(render(msgs.length, true), false);
  return segs;
}

/**
 * Tokenises segments into ids and labels. The first `images` occurrences of `marker` (one for a plain
 * LLaVA record) each become `imageTokens` positions (id = the tokenizer's marker token, or pad); later
 * occurrences are plain text.
 */
export function tokenize(segs: readonly Segment[], tok: TextTokenizer, marker: string, imageTokens: number, stop?: string, images = 1): Example {
  const ids: number[] = [], labels: number[] = [];
  const starts: number[] = [];
  if (tok.bosId !== undefined && segs[0]?.text !== '\u0000nobos') (ids.push(tok.bosId), labels.push(IGNORE));
  const imageId = tok.tokenToId(marker) ?? tok.padId ?? 0;
  const push = (text: string, train: boolean) => {
    if (!text) return;
    for (const id of tok.encode(text)) (ids.push(id), labels.push(train ? id : IGNORE));
  };
  for (const s of segs) {
    if (s.text === '\u0000nobos') continue;
    if (s.text === '\u0000stop') {
      const stopIds = stop ? tok.encode(stop) : tok.eosId !== undefined ? [tok.eosId] : [];
      for (const id of stopIds) (ids.push(id), labels.push(id));
      continue;
    }
    let text = s.text;
    for (let at; starts.length < images && imageTokens > 0 && (at = text.indexOf(marker)) >= 0; ) {
      push(text.slice(0, at).trimEnd(), s.train);
      starts.push(ids.length);
      for (let i = 0; i < imageTokens; i++) (ids.push(imageId), labels.push(IGNORE));
      text = text.slice(at + marker.length).trimStart();
    }
    push(text, s.train);
  }
  return { ids, labels, imageStart: starts[0] ?? -1, ...(starts.length > 1 ? { imageStarts: starts } : {}) };
}

/** `images`: how many markers stand for images (the record's image count; 1 for a plain LLaVA record). */
export function buildExample(turns: readonly Turn[], t: TemplateSpec, tok: TextTokenizer, marker: string, imageTokens: number, images = 1): Example {
  return tokenize(layout(turns, t, marker, false, images), tok, marker, imageTokens, t.stop, images);
}

/** The prompt for generation: everything up to where the assistant's reply begins. */
export function buildPrompt(turns: readonly Turn[], t: TemplateSpec, tok: TextTokenizer, marker: string, imageTokens: number): Example {
  return tokenize(layout(turns, t, marker, true), tok, marker, imageTokens, t.stop);
}
