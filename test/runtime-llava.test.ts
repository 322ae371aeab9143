// A llava_json dataset through `pipec run`: PNG/JPEG images resized and normalised for the encoder,
// Japanese roles, a tokenizer.json named by the dataset, the program's chat template, and the
// bad-record catalogue: each bad record stops the run with its file, line and record, or, with
// skip_bad_records, is skipped and counted (PIPE9008 and the run summary). Nothing is dropped silently.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VocabTokenizer } from '../runtime/data/vocab-tokenizer.js';
import { pipec } from './helpers/cli.js';
import { solid, writePng } from './helpers/png.js';
import { tmpDir } from './helpers/tmp.js';

const png = (file: string, rgb: [number, number, number]) => writePng(file, solid(20, 24, rgb));

const program = (skip: boolean) => `import "std/vision"
import "std/projectors"
import "std/llm"
import "std/data"
import "std/train"

model m {
  encoder vision = vit(image: 16, patch: 8, hidden: 16, layers: 1, heads: 2, mlp: 32, select: "patch")
  projector proj = linear(in: vision.hidden, out: lm.hidden)
  llm lm = llama(vocab: 64, hidden: 16, layers: 1, heads: 2, mlp: 32, context: 64)
  flow vision -> proj -> lm at "<image>"
}

template short {
  system: ""
  user: "USER: "
  assistant: "ASSISTANT: "
  separator: " "
}

dataset d = llava_json(file: "data.json", images: "images", template: short, tokenizer: "tokenizer.json", skip_bad_records: ${skip})

stage s {
  model: m
  train: [proj, lm]
  freeze: [vision]
  data: d
  optimizer: adamw(lr: 1e-3)
  batch: 2
  steps: 3
  max_length: 24
  precision: fp32
  devices: cpu
}
`;

describe('runtime: llava_json datasets and bad records', function () {
  this.timeout(120_000);
  let dir: string;

  before(() => {
    dir = tmpDir('llava');
    fs.mkdirSync(path.join(dir, 'images'));
    png(path.join(dir, 'images', 'red.png'), [220, 30, 30]);
    png(path.join(dir, 'images', 'blue.png'), [30, 30, 220]);
    fs.writeFileSync(path.join(dir, 'images', 'broken.png'), Buffer.from('not an image at all'));
    const good = (id: string, img: string, from = ['human', 'gpt']) => ({ id, image: img, conversations: [{ from: from[0], value: '<image>\nwhat colour ?' }, { from: from[1], value: img.replace('.png', '') }] });
    const records = [
      good('a', 'red.png'), good('b', 'blue.png'), good('c', 'red.png', ['ユーザー', 'gpt']), good('d', 'blue.png'),
      good('missing', 'nowhere.png'), // 4: PIPE9004
      { id: 'nomarker', image: 'red.png', conversations: [{ from: 'human', value: 'what colour ?' }, { from: 'gpt', value: 'red' }] }, // 5: PIPE9006
      { id: 'role', image: 'red.png', conversations: [{ from: 'robot', value: '<image>' }, { from: 'gpt', value: 'red' }] }, // 6: PIPE9003
      good('corrupt', 'broken.png'), // 7: PIPE9005
      { id: 'long', image: 'red.png', conversations: [{ from: 'human', value: '<image>\n' + 'red '.repeat(30) }, { from: 'gpt', value: 'red' }] }, // 8: PIPE9007
      good('e', 'red.png'), good('f', 'blue.png'),
    ];
    fs.writeFileSync(path.join(dir, 'data.json'), JSON.stringify(records, null, 1));
    const tok = VocabTokenizer.fromTexts(['USER: ASSISTANT: what colour ? red blue'], 64);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok.toTokenizerJson()));
  });

  it('without skip_bad_records the first bad record stops the run at its file, line and record', () => {
    fs.writeFileSync(path.join(dir, 'strict.pipe'), program(false));
    const r = pipec(['run', path.join(dir, 'strict.pipe'), '--out', path.join(dir, 'run-strict'), '--backend', 'wasm']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /data\.json:\d+:\d+ - error PIPE9004: record 4 \(id "missing"\): image "nowhere\.png" does not exist/);
    assert.doesNotMatch(r.stderr, /\n\s+at /); // no stack trace
  });

  it('with skip_bad_records each bad record is skipped, reported and counted, and the rest trains', () => {
    fs.writeFileSync(path.join(dir, 'skip.pipe'), program(true));
    const out = path.join(dir, 'run-skip');
    const r = pipec(['run', path.join(dir, 'skip.pipe'), '--out', out, '--backend', 'wasm']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning PIPE9008: skipped 5 bad records of "data\.json"/);
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.equal(summary.stages[0].skipped_records, 5);
    assert.match(r.stderr, /stage s: .*6 records/);
  });
});
