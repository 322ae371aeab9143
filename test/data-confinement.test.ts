// Confinement (runtime/data/confine.ts): a record's image must resolve inside the dataset's images
// folder after symbolic links; an absolute path, a `..` escape or a link out is PIPE9050 at the record
// (file:line:col, index, id) and the file is never opened -- a non-image file outside gives the
// confinement error, not a decode error, and a PNG outside is refused, not trained on.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfinementError, DataRoot } from '../runtime/data/confine.js';
import { prepareDataset } from '../runtime/data/datasets.js';
import { readLlavaJson, type LlavaJsonOptions } from '../runtime/data/llava-json.js';
import { VocabTokenizer } from '../runtime/data/vocab-tokenizer.js';
import { PipeRuntimeError } from '../runtime/errors.js';
import type { Graph } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { pathsOpenedDuring, program, record, tmpDir, withOpenHook, writePng, writeTokenizer } from './data-fixtures.js';
import { pipec } from './helpers/cli.js';

describe('data confinement: paths a data file names stay inside its images folder', function () {
  this.timeout(120_000);
  let dir = '', images = '', secret = '', outsidePng = '';

  before(() => {
    dir = tmpDir('confine');
    images = path.join(dir, 'images');
    secret = path.join(dir, 'secret.txt');
    outsidePng = path.join(dir, 'outside', 'green.png');
    writePng(path.join(images, 'red.png'), [220, 30, 30]);
    writePng(path.join(images, 'blue.png'), [30, 30, 220]);
    writePng(path.join(images, 'sub', 'red.png'), [220, 30, 30]);
    writePng(outsidePng, [30, 220, 30]);
    fs.writeFileSync(secret, 'top secret: not an image');
    fs.symlinkSync(secret, path.join(images, 'to-secret.png')); // a link out
    fs.symlinkSync(path.join(dir, 'outside'), path.join(images, 'linked-dir')); // a folder link out
    fs.symlinkSync(path.join(images, 'red.png'), path.join(images, 'alias.png')); // a link that stays inside
    writeTokenizer(path.join(dir, 'tokenizer.json'));
  });

  it('confine() decides without opening: inside, refused, or missing', () => {
    const root = new DataRoot(images, 'images');
    const opened = pathsOpenedDuring(() => {
      for (const ok of ['red.png', 'sub/red.png', 'sub/../red.png', './blue.png', 'alias.png']) assert.equal(root.confine(ok).kind, 'inside', ok);
      const refused: [string, RegExp][] = [
        ['../secret.txt', /climbs out of the images folder/],
        ['sub/../../secret.txt', /climbs out/],
        ['..\\secret.txt', /climbs out/],
        [secret, /absolute path/],
        ['/etc/passwd', /absolute path/],
        ['C:\\Windows\\win.ini', /absolute path/],
        ['to-secret.png', /through a symbolic link/],
        ['linked-dir/green.png', /through a symbolic link/],
        ['linked-dir/not-there.png', /through a symbolic link/], // missing, but behind a link out: not "does not exist"
        ['', /empty/],
      ];
      for (const [name, why] of refused) {
        const v = root.confine(name);
        assert.equal(v.kind, 'refused', name);
        assert.match((v as { why: string }).why, why, name);
      }
      assert.deepEqual(root.confine('nowhere.png'), { kind: 'missing', why: 'does not exist' });
      assert.deepEqual(root.confine('sub'), { kind: 'missing', why: 'is a folder, not a file' });
    });
    assert.deepEqual(opened, []);
  });

  it('read() refuses outside names and reads inside ones; a file swapped for a link at the open is refused', () => {
    const root = new DataRoot(images, 'images');
    assert.equal(root.read('red.png', 8)[1], 0x50); // "\x89PNG"
    assert.throws(() => root.read('to-secret.png'), (e) => e instanceof ConfinementError && e.verdict.kind === 'refused');
    // The last moment: confine() has approved swap.png, then it becomes a link to the secret just before the open.
    const swap = path.join(images, 'swap.png');
    writePng(swap, [1, 2, 3]);
    const opened = pathsOpenedDuring(() =>
      withOpenHook((file) => {
        if (file === fs.realpathSync(swap)) (fs.rmSync(swap), fs.symlinkSync(secret, swap));
      }, () => assert.throws(() => root.read('swap.png'), (e) => e instanceof ConfinementError && /replaced by a symbolic link/.test(e.message))),
    );
    assert.ok(!opened.includes(secret), opened.join(', '));
    fs.rmSync(swap);
  });

  const opts = (file: string, more: Partial<LlavaJsonOptions> = {}): LlavaJsonOptions => ({ file, images, imagesShown: 'images', marker: '<image>', requireImage: true, skipBadRecords: false, displayFile: 'data.json', ...more });
  const hostile: [string, string, RegExp][] = [
    ['up', '../secret.txt', /image "\.\.\/secret\.txt" climbs out of the images folder with "\.\."; it was not opened/],
    ['abs', '/etc/passwd', /image "\/etc\/passwd" is an absolute path/],
    ['link', 'to-secret.png', /image "to-secret\.png" leads outside the images folder through a symbolic link/],
    ['png-outside', '../outside/green.png', /climbs out of the images folder/],
    ['png-via-link', 'linked-dir/green.png', /leads outside the images folder through a symbolic link/],
  ];
  for (const [id, image, says] of hostile)
    it(`"${image}": PIPE9050 at the record, and nothing outside the folder is opened`, () => {
      const file = path.join(dir, `data-${id}.json`);
      fs.writeFileSync(file, JSON.stringify([record('ok', 'red.png', 'red'), record(id, image, 'red')], null, 2));
      let err: unknown;
      const opened = pathsOpenedDuring(() => {
        try {
          readLlavaJson(opts(file));
        } catch (e) {
          err = e;
        }
      });
      assert.ok(err instanceof PipeRuntimeError, String(err));
      assert.equal(err.code, 'PIPE9050'); // not PIPE9005 (a decode error would mean it was read)
      assert.match(err.message, new RegExp(`^record 1 \\(id "${id}"\\): `));
      assert.match(err.message, says);
      const line = fs.readFileSync(file, 'utf8').split('\n').findIndex((l) => l.includes(`"id": "${id}"`)); // the 1-based line of its `{`
      assert.deepEqual(err.location, { file: 'data.json', line, col: 3 });
      const outside = opened.filter((p) => p !== file && !path.resolve(p).startsWith(fs.realpathSync(images) + path.sep));
      assert.deepEqual(outside, [], `opened outside the images folder: ${outside.join(', ')}`);
    });

  it('a PNG outside the folder is refused, not trained on: with skip_bad_records it is skipped and counted', () => {
    const file = path.join(dir, 'train.json');
    fs.writeFileSync(file, JSON.stringify([record('a', 'red.png', 'red'), record('b', 'blue.png', 'blue'), record('out', '../outside/green.png', 'green'), record('lnk', 'linked-dir/green.png', 'green')], null, 2));
    const pipe = path.join(dir, 'skip.pipe');
    fs.writeFileSync(pipe, program({ datasets: ['dataset d = llava_json(file: "train.json", images: "images", template: short, tokenizer: "tokenizer.json", skip_bad_records: true)'], stages: [['s', 'd']] }));
    const r = compile({ file: pipe, lower: true });
    assert.ok(r.graph, JSON.stringify(r.diagnostics));
    const g = r.graph as Graph;
    const tok = VocabTokenizer.fromTexts(['USER: ASSISTANT: what colour ? red blue green'], 64);
    let data!: ReturnType<typeof prepareDataset>;
    const opened = pathsOpenedDuring(() => (data = prepareDataset('d', { graph: g, baseDir: dir, model: g.models[0]!, tokenizer: tok, maxLength: 24 })));
    assert.deepEqual(data.train.map((s) => s.source.index), [0, 1]);
    assert.equal(data.skipped, 2);
    assert.match(data.skippedDetail!, /PIPE9050 record 2 \(id "out"\)/);
    assert.ok(!opened.some((p) => p.includes('green.png')), opened.join(', '));
  });

  it('pipec check --data and pipec run stop on each hostile record, located, before anything trains', () => {
    fs.writeFileSync(path.join(dir, 'all.json'), JSON.stringify([record('a', 'red.png', 'red'), record('b', 'blue.png', 'blue'), ...hostile.map(([id, image]) => record(id, image, 'red'))], null, 2));
    const pipe = path.join(dir, 'strict.pipe');
    fs.writeFileSync(pipe, program({ datasets: ['dataset d = llava_json(file: "all.json", images: "images", template: short, tokenizer: "tokenizer.json")'], stages: [['s', 'd']] }));
    const c = pipec(['check', '--data', pipe]);
    assert.equal(c.status, 1, c.stderr);
    assert.equal((c.stderr.match(/all\.json:\d+:3 - error PIPE9050: record \d \(id "[a-z-]+"\): image .*; it was not opened/g) ?? []).length, hostile.length, c.stderr);
    assert.doesNotMatch(c.stderr, /PIPE9005|internal error/);
    const out = path.join(dir, 'run');
    const r = pipec(['run', pipe, '--out', out, '--backend', 'cpu']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /error PIPE9054: data pre-flight failed \(stage `s`: 5 of 7 records of "all\.json" fail\); no stage was started/);
    assert.doesNotMatch(r.stderr, /stage s: train/);
    assert.ok(!fs.existsSync(path.join(out, 'metrics.jsonl')) || fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8') === '');
  });
});
