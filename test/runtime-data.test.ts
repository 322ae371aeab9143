// Templates and batching on hand-built cases: which positions carry labels (-100 elsewhere), where the
// image placeholder run goes, BOS/EOS, right padding with masks, and a Jinja chat template whose replies
// are located by rendering growing prefixes.
import { strict as assert } from 'node:assert';
import { collate } from '../runtime/data/batch.js';
import { buildExample, buildPrompt, IGNORE, PLAIN, type TemplateSpec } from '../runtime/data/examples.js';
import { VocabTokenizer } from '../runtime/data/vocab-tokenizer.js';

const tok = VocabTokenizer.fromTexts(['USER: ASSISTANT: what colour ? red <|im_start|> <|im_end|> user assistant'], 64);
const id = (w: string) => tok.tokenToId(w)!;
const CHAT: TemplateSpec = { name: 'chat', system: '', user: 'USER: ', assistant: 'ASSISTANT: ', separator: ' ' };
const turns = [{ role: 'user' as const, text: '<image>\nwhat colour ?' }, { role: 'assistant' as const, text: 'red' }];
const X = IGNORE;

describe('runtime data: templates, labels and batches', () => {
  it('plain: BOS, the image run, then the trained caption and EOS', () => {
    const ex = buildExample(turns, PLAIN, tok, '<image>', 3);
    const img = id('<image>');
    assert.deepEqual(ex.ids, [tok.bosId, img, img, img, id('red'), tok.eosId]);
    assert.deepEqual(ex.labels, [X, X, X, X, id('red'), tok.eosId]);
    assert.equal(ex.imageStart, 1);
  });

  it('chat: role prefixes and the question untrained, the reply and EOS trained', () => {
    const ex = buildExample(turns, CHAT, tok, '<image>', 2);
    const img = id('<image>');
    assert.deepEqual(ex.ids, [tok.bosId, id('USER'), id(':'), img, img, id('what'), id('colour'), id('?'), id('ASSISTANT'), id(':'), id('red'), tok.eosId]);
    assert.deepEqual(ex.labels, [X, X, X, X, X, X, X, X, X, X, id('red'), tok.eosId]);
    assert.equal(ex.imageStart, 3);
    // the generation prompt ends where the reply starts
    assert.deepEqual(buildPrompt(turns.slice(0, 1), CHAT, tok, '<image>', 2).ids, ex.ids.slice(0, 10));
  });

  it('a Jinja chat template: only the assistant content and its end token are trained; no second BOS', () => {
    const chatml = "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}";
    const t: TemplateSpec = { ...PLAIN, name: 'chatml', jinja: { template: chatml } };
    const ex = buildExample(turns, t, tok, '<image>', 1);
    const s = id('<|im_start|>'), e = id('<|im_end|>');
    assert.deepEqual(ex.ids, [s, id('user'), id('<image>'), id('what'), id('colour'), id('?'), e, s, id('assistant'), id('red'), e]);
    assert.deepEqual(ex.labels, [X, X, X, X, X, X, X, X, X, id('red'), e]);
    assert.equal(ex.imageStart, 2);
  });

  it('collate right-pads with the pad id, -100 labels and a 0 mask, and stacks images', () => {
    const a = { ...buildExample(turns, PLAIN, tok, '<image>', 2), pixels: new Float32Array(3 * 2 * 2).fill(1), source: { dataset: 'd', index: 0 } };
    const b = { ...buildExample([{ role: 'user' as const, text: 'what' }, { role: 'assistant' as const, text: 'red' }], CHAT, tok, '<image>', 2), source: { dataset: 'd', index: 1 } };
    const batch = collate([a, b], tok.padId, [3, 2, 2]);
    const T = Math.max(a.ids.length, b.ids.length);
    assert.equal(batch.info.length, T);
    assert.deepEqual([...batch.inputIds.slice(0, T)], [...a.ids, ...new Array(T - a.ids.length).fill(tok.padId)]);
    assert.deepEqual([...batch.labels.slice(0, T)], [...a.labels, ...new Array(T - a.labels.length).fill(X)]);
    assert.deepEqual([...batch.info.attentionMask.slice(0, T)], [...new Array(a.ids.length).fill(1), ...new Array(T - a.ids.length).fill(0)]);
    assert.deepEqual(batch.info.imageStart, [1, -1]);
    assert.deepEqual(batch.pixels!.shape, [2, 3, 2, 2]);
    assert.deepEqual([...batch.pixels!.data.slice(12)], new Array(12).fill(0));
    assert.equal(batch.labelledTokens, 2 + 2);
  });
});
