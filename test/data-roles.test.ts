// Conversation roles (runtime/data/roles.ts): LLaVA-JP's システム is the assistant that answers, so its
// turns are trained; `roles:` maps a corpus's own spellings; a record with nothing to train is a located
// PIPE9051 (or a counted skip), and a batch with nothing to train never reaches the loss (PIPE9052) --
// never TensorFlow.js's "Cannot find a connection between any variable and the result of the loss".
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { collate } from '../runtime/data/batch.js';
import { prepareDataset } from '../runtime/data/datasets.js';
import { IGNORE } from '../runtime/data/examples.js';
import { DEFAULT_ROLES, roleTable } from '../runtime/data/roles.js';
import { VocabTokenizer } from '../runtime/data/vocab-tokenizer.js';
import { PipeRuntimeError } from '../runtime/errors.js';
import { program, record, tmpDir, writePng } from './data-fixtures.js';
import { pipec } from './helpers/cli.js';

const WORDS = 'USER: ASSISTANT: what colour ? red blue';
const tok = VocabTokenizer.fromTexts([WORDS], 64);

describe('data roles: LLaVA-JP answers are trained, roles are mappable, nothing trains without a label', function () {
  this.timeout(120_000);
  let dir = '';
  const JP: [string, string] = ['ユーザー', 'システム'];

  before(() => {
    dir = tmpDir('roles');
    writePng(path.join(dir, 'images', 'red.png'), [220, 30, 30]);
    writePng(path.join(dir, 'images', 'blue.png'), [30, 30, 220]);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok.toTokenizerJson()));
    const jp = [record('r1', 'red.png', 'red', JP), record('b1', 'blue.png', 'blue', JP), record('r2', 'red.png', 'red', JP), record('b2', 'blue.png', 'blue', JP)];
    fs.writeFileSync(path.join(dir, 'jp.json'), JSON.stringify(jp, null, 2));
    const qa = [record('q1', 'red.png', 'red', ['Q', 'A']), record('q2', 'blue.png', 'blue', ['Q', 'A'])];
    fs.writeFileSync(path.join(dir, 'qa.json'), JSON.stringify(qa, null, 2));
  });

  function graphOf(datasets: string[], name: string): Graph {
    const file = path.join(dir, `${name}.pipe`);
    fs.writeFileSync(file, program({ datasets, stages: [['s', 'd']] }));
    const r = compile({ file, lower: true });
    assert.ok(r.graph, JSON.stringify(r.diagnostics.map((d) => `${d.code} ${d.message}`)));
    return r.graph;
  }
  const prepare = (g: Graph) => prepareDataset('d', { graph: g, baseDir: dir, model: g.models[0]!, tokenizer: tok, maxLength: 24 });

  it('システム is the assistant by default: every LLaVA-JP record trains its answer', () => {
    assert.equal(DEFAULT_ROLES['システム'], 'assistant');
    assert.equal(DEFAULT_ROLES['ユーザー'], 'user');
    const data = prepare(graphOf(['dataset d = llava_json(file: "jp.json", images: "images", template: short, tokenizer: "tokenizer.json")'], 'jp'));
    assert.equal(data.train.length, 4);
    for (const [i, s] of data.train.entries()) {
      const trained = s.labels.filter((l) => l !== IGNORE);
      assert.deepEqual(trained, [tok.tokenToId(i % 2 ? 'blue' : 'red')!, tok.eosId], `record ${i}`);
    }
  });

  it('pipec run trains a dataset made only of LLaVA-JP records (was: internal error, no loss connection)', () => {
    fs.writeFileSync(path.join(dir, 'run-jp.pipe'), program({ datasets: ['dataset d = llava_json(file: "jp.json", images: "images", template: short, tokenizer: "tokenizer.json")'], stages: [['s', 'd']] }));
    const out = path.join(dir, 'run-jp');
    const r = pipec(['run', path.join(dir, 'run-jp.pipe'), '--out', out, '--backend', 'cpu']);
    assert.equal(r.status, 0, r.stderr);
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as { stages: { final_loss: number; steps: number }[] };
    assert.equal(summary.stages[0]!.steps, 2);
    assert.ok(Number.isFinite(summary.stages[0]!.final_loss) && summary.stages[0]!.final_loss > 0);
  });

  it('roles: maps a corpus\'s own spellings; an unmapped spelling is PIPE9003 naming `roles:`', () => {
    const data = prepare(graphOf(['dataset d = llava_json(file: "qa.json", images: "images", template: short, tokenizer: "tokenizer.json", roles: { user: "Q", assistant: ["A"] })'], 'qa'));
    assert.deepEqual(data.train.map((s) => s.labels.filter((l) => l !== IGNORE)[0]), [tok.tokenToId('red'), tok.tokenToId('blue')]);
    const g = graphOf(['dataset d = llava_json(file: "qa.json", images: "images", template: short, tokenizer: "tokenizer.json", roles: { user: "Q" })'], 'qa-half');
    assert.throws(() => prepare(g), (e) => e instanceof PipeRuntimeError && e.code === 'PIPE9003' && /turn 1 has unknown role "A"/.test(e.message) && /roles: \{ assistant: "A" \}/.test(e.hint ?? ''));
  });

  it('a record with no trained token is PIPE9051 at the record, and pipec run stops before the first step (not an internal error)', () => {
    // mapping システム back to a system prompt leaves these records nothing to learn
    const g = graphOf(['dataset d = llava_json(file: "jp.json", images: "images", template: short, tokenizer: "tokenizer.json", roles: { system: "システム" })'], 'nolabel');
    assert.throws(() => prepare(g), (e) => e instanceof PipeRuntimeError && e.code === 'PIPE9051' && e.message === 'record 0 (id "r1"): no token is trained: it has no assistant turn (its turns are from ユーザー, システム)' && e.location?.line === 2 && e.location.col === 3);
    fs.writeFileSync(path.join(dir, 'run-nolabel.pipe'), program({ datasets: ['dataset d = llava_json(file: "jp.json", images: "images", template: short, tokenizer: "tokenizer.json", roles: { system: "システム" })'], stages: [['s', 'd']] }));
    const r = pipec(['run', path.join(dir, 'run-nolabel.pipe'), '--out', path.join(dir, 'run-nolabel'), '--backend', 'cpu']);
    assert.equal(r.status, 1, r.stderr);
    assert.equal((r.stderr.match(/jp\.json:\d+:3 - error PIPE9051: record \d \(id "[rb]\d"\): no token is trained/g) ?? []).length, 4, r.stderr);
    assert.match(r.stderr, /error PIPE9054: data pre-flight failed/);
    assert.doesNotMatch(r.stderr, /internal error|Cannot find a connection/);
  });

  it('with skip_bad_records such records are counted and skipped, and a stage left with too few is PIPE9055', () => {
    fs.writeFileSync(path.join(dir, 'skip.pipe'), program({ datasets: ['dataset d = llava_json(file: "jp.json", images: "images", template: short, tokenizer: "tokenizer.json", roles: { system: "システム" }, skip_bad_records: true)'], stages: [['s', 'd']] }));
    const r = pipec(['check', '--data', path.join(dir, 'skip.pipe')]);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /4 records: 0 pass, 4 to skip \(4 PIPE9051\)/);
    assert.match(r.stderr, /error PIPE9055: dataset "d" has 0 usable records, fewer than one batch of 2 for stage `s`/);
  });

  it('collate refuses a batch without a trained token (PIPE9052), naming its records', () => {
    const ex = { ids: [1, 5, 6], labels: [IGNORE, IGNORE, IGNORE], imageStart: -1 };
    assert.throws(() => collate([{ ...ex, source: { dataset: 'd', index: 3 } }, { ...ex, source: { dataset: 'd', index: 7 } }], 0, [3, 16, 16]), (e) => e instanceof PipeRuntimeError && e.code === 'PIPE9052' && e.message === 'a batch of dataset "d" (records 3, 7) has no trained token');
  });

  it('a malformed roles attribute in a hand-made graph is PIPE9056', () => {
    assert.throws(() => roleTable({ robot: 'R' }, 'd'), (e) => e instanceof PipeRuntimeError && e.code === 'PIPE9056' && /unknown role `robot`/.test(e.message));
    assert.throws(() => roleTable({ user: 'X', assistant: ['X'] }, 'd'), (e) => e instanceof PipeRuntimeError && e.code === 'PIPE9056' && /"X" for both `user` and `assistant`/.test(e.message));
    assert.equal(roleTable({ system: ['システム'] }, 'd').get('システム'), 'system');
  });
});
