// A pipec template (system / user / assistant / separator / stop, or `plain`) as a Jinja chat_template,
// so that transformers' apply_chat_template lays a conversation out as pipec's data pipeline does
// (runtime/data/examples.ts `layout`): the same text, segment for segment. A template that already is a
// Jinja chat template (hf_chat_template) is passed through unchanged.
//
// Literal text is written as Jinja string expressions, never as template text, because transformers
// renders with trim_blocks / lstrip_blocks, which would eat newlines and spaces around block tags.
// Message content may be a string (pipec's records, with the image marker in the text) or a list of
// {type: "image"} / {type: "text", text} parts (transformers' processors): an image part renders as the
// marker and a newline, which is what `pipec generate --image` puts before the prompt.
import type { TemplateSpec } from '../data/examples.js';

/** A Jinja string literal: JSON's escapes (\n, \", \\, \uXXXX) mean the same in Jinja2 and in @huggingface/jinja. */
const lit = (s: string) => JSON.stringify(s);

function contentOf(v: string, marker: string): string {
  return `{%- if ${v}['content'] is string -%}{{ ${v}['content'] }}{%- else -%}{%- for part in ${v}['content'] -%}{%- if part['type'] == 'image' -%}{{ ${lit(marker + '\n')} }}{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}{%- endfor -%}{%- endif -%}`;
}

function hasImage(v: string, marker: string): string {
  return `(${v}['content'] is string and ${lit(marker)} in ${v}['content']) or (${v}['content'] is not string and (${v}['content'] | selectattr('type', 'equalto', 'image') | list | length) > 0)`;
}

/** The reply's end: the template's `stop` text, else the tokenizer's EOS (pipec's default). */
const stop = (t: TemplateSpec) => (t.stop !== undefined ? `{{ ${lit(t.stop)} }}` : '{{ eos_token }}');

export function chatTemplateJinja(t: TemplateSpec, marker: string): string {
  if (t.jinja) return t.jinja.template;
  if (t.name === 'plain') {
    // LLaVA's pretraining format: the image of the first user turn, then the first reply, nothing else
    return [
      '{%- set ns = namespace(user=false, reply=false) -%}',
      '{%- for m in messages -%}',
      `{%- if m['role'] == 'user' and not ns.user -%}{%- set ns.user = true -%}{%- if ${hasImage('m', marker)} -%}{{ ${lit(marker)} }}{%- endif -%}`,
      `{%- elif m['role'] == 'assistant' and not ns.reply -%}{%- set ns.reply = true -%}${contentOf('m', marker)}${stop(t)}`,
      '{%- endif -%}',
      '{%- endfor -%}',
    ].join('');
  }
  return [
    // the first system message, else the template's own system text; then each turn
    `{%- set ns = namespace(system=${lit(t.system)}) -%}`,
    `{%- for m in messages | selectattr('role', 'equalto', 'system') -%}{%- if loop.first -%}{%- set ns.system = m['content'] -%}{%- endif -%}{%- endfor -%}`,
    `{%- if ns.system -%}{{ ns.system + ${lit(t.separator)} }}{%- endif -%}`,
    "{%- set body = messages | rejectattr('role', 'equalto', 'system') | list -%}",
    '{%- for m in body -%}',
    `{%- if m['role'] == 'user' -%}{{ ${lit(t.user)} }}${contentOf('m', marker)}{{ ${lit(t.separator)} }}`,
    `{%- else -%}{{ ${lit(t.assistant)} }}${contentOf('m', marker)}${stop(t)}{%- if not loop.last -%}{{ ${lit(t.separator)} }}{%- endif -%}`,
    '{%- endif -%}',
    '{%- endfor -%}',
    `{%- if add_generation_prompt -%}{{ ${lit(t.assistant)} }}{%- endif -%}`,
  ].join('');
}
