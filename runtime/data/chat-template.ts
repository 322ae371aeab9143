// Chat templates: the Jinja `chat_template` a model ships in tokenizer_config.json, rendered the way
// transformers' `apply_chat_template(..., tokenize=False)` does. @huggingface/jinja is HF's JS Jinja
// subset written for exactly these templates; like transformers it strips block whitespace
// (trim_blocks/lstrip_blocks) and defines `raise_exception` (Llama-2/Mistral templates call it to reject
// role orders) and `strftime_now`. Tokenize the result with `encode(text)` and addSpecialTokens left
// false: the template already wrote BOS, as transformers assumes.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { M, runtimeError } from '../errors.js';
import { tokenName } from './tokenizer.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatTemplateOptions {
  bosToken?: string;
  eosToken?: string;
  addGenerationPrompt?: boolean;
}

/** Renders `template` for `messages`; template errors, raise_exception included, become PIPE9011. */
export function renderChatTemplate(template: string, messages: ChatMessage[], opts: ChatTemplateOptions = {}, file?: string): string {
  const where = file ? { file } : undefined;
  let parsed: Template;
  try {
    parsed = new Template(template);
  } catch (e) {
    throw runtimeError(M.ChatTemplateFailed, [`cannot parse the template: ${message(e)}`], where);
  }
  // Same variables transformers passes; a token left undefined stays undefined, so a template that needs it fails loudly.
  const vars: Record<string, unknown> = { messages, add_generation_prompt: opts.addGenerationPrompt ?? false };
  if (opts.bosToken !== undefined) vars.bos_token = opts.bosToken;
  if (opts.eosToken !== undefined) vars.eos_token = opts.eosToken;
  try {
    return parsed.render(vars);
  } catch (e) {
    throw runtimeError(M.ChatTemplateFailed, [message(e)], where);
  }
}

/**
 * The chat template of a tokenizer_config.json plus its bos/eos token strings. `chat_template` may be a
 * string or a list of {name, template} (the "default" one is used). Newer checkpoints keep it beside the
 * config instead, as chat_template.jinja or (LLaVA processors) chat_template.json; those are read too.
 */
export function loadChatTemplate(tokenizerConfigFile: string): { template: string; bosToken?: string; eosToken?: string } {
  const file = tokenizerConfigFile;
  const fail = (why: string, at = file) => runtimeError(M.ChatTemplateFailed, [why], { file: at });
  const config = readJson(file, fail);
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw fail(`${file} is not a JSON object`);
  const cfg = config as Record<string, unknown>;
  const tokens = { bosToken: tokenName(cfg.bos_token), eosToken: tokenName(cfg.eos_token) };
  const pick = (value: unknown, at: string): string => {
    if (typeof value === 'string') return value;
    if (Array.isArray(value)) {
      const named = value.find((t): t is { name: string; template: string } => typeof t?.template === 'string' && t?.name === 'default');
      if (named) return named.template;
      throw fail(`${at} lists chat templates but none is named "default"`, at);
    }
    throw fail(`${at} has a chat_template that is neither a string nor a list of {name, template}`, at);
  };
  if (cfg.chat_template !== undefined && cfg.chat_template !== null) return { template: pick(cfg.chat_template, file), ...tokens };
  const jinjaFile = join(dirname(file), 'chat_template.jinja');
  if (existsSync(jinjaFile)) return { template: readFileSync(jinjaFile, 'utf8'), ...tokens };
  const jsonFile = join(dirname(file), 'chat_template.json');
  if (existsSync(jsonFile)) {
    const j = readJson(jsonFile, (why) => fail(why, jsonFile)) as { chat_template?: unknown } | null;
    return { template: pick(j?.chat_template, jsonFile), ...tokens };
  }
  throw fail(`${file} has no chat_template (and there is no chat_template.jinja or chat_template.json beside it)`);
}

function readJson(file: string, fail: (why: string) => Error): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw fail(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'the file does not exist' : message(e)}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw fail(`${file} is not valid JSON: ${message(e)}`);
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
