// Streaming data (issue 17): the record index (json-index.ts), the streaming feed with its image
// workers (feed.ts, image-workers.ts) against the in-memory path, mixtures and length grouping
// (order.ts). The kill -9 / --resume acceptance is in data-resume.test.ts; pad and multi-image records
// in data-images.test.ts.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { collate } from '../runtime/data/batch.js';
import { imageShapeOf, prepareDataset, syntheticTokenizer } from '../runtime/data/datasets.js';
import { StageFeed } from '../runtime/data/feed.js';
import { ImagePool, workerExecArgv } from '../runtime/data/image-workers.js';
import { buildIndex, INDEX_DIR, loadIndex } from '../runtime/data/json-index.js';
import { lineColsAt, scanJson } from '../runtime/data/llava-json.js';
import { EpochOrders, sharesPerEpoch, shuffledRange } from '../runtime/data/order.js';
import { preflightStages } from '../runtime/data/preflight.js';
import { openStageData } from '../runtime/data/stage-data.js';
import { loadTokenizer } from '../runtime/data/tokenizer.js';
import { PipeRuntimeError } from '../runtime/errors.js';
import { prepareStages } from '../runtime/export/prepare.js';
import { Rng } from '../runtime/random.js';
import { epochOrder, microBatch, stageSteps } from '../runtime/train/run.js';
import { pathsOpenedDuring, writeTokenizer } from './data-fixtures.js';
import { tmpDir } from './helpers/tmp.js';
import { repo } from './paths.js';
import { records, streamProgram, WORDS, writeImages, writeJson } from './stream-fixtures.js';

describe('the record index of a data file', function () {
  this.timeout(60_000);
  let dir = '';
  before(() => (dir = tmpDir('index')));

  const recs = Array.from({ length: 3000 }, (_, i) => ({
    id: `r${i}`,
    image: 'img0.png',
    // multi-byte text, so code points, bytes and UTF-16 units differ, and records straddle the 4 MiB chunks
    conversations: [{ from: 'human', value: '<image>\n' + 'ユーザー😀'.repeat(i % 40) }, { from: 'gpt', value: `answer ${i} `.repeat(200 + (i % 97)) }],
  }));

  for (const [name, indent] of [['one line, as LLaVA writes it', 0], ['pretty-printed', 1]] as const)
    it(`finds every record of a ${name} array across 4 MiB chunks: its bytes parse to the element, at the line:col the scanner gives`, () => {
      const file = path.join(dir, `big-${indent}.json`);
      writeJson(file, recs, indent > 0);
      const bytes = fs.readFileSync(file);
      assert.ok(bytes.length > 8 << 20, `${bytes.length} bytes: more than two chunks`);
      const ix = buildIndex(file, 'array', 'big.json');
      assert.equal(ix.count, recs.length);
      const text = bytes.toString('utf8');
      const scanned = scanJson(text);
      assert.ok(scanned.ok);
      const places = lineColsAt(text, scanned.elementStarts);
      for (let i = 0; i < ix.count; i++) {
        assert.deepEqual(JSON.parse(bytes.toString('utf8', ix.offset[i], ix.offset[i]! + ix.length[i]!)), recs[i]);
        assert.deepEqual({ line: ix.line[i], col: ix.col[i] }, places[i], `record ${i}`);
      }
    });

  it('is cached in the run folder by size and SHA-256: untouched, a hit without reading the file; touched, a hit after hashing it; edited, rebuilt', () => {
    const file = path.join(dir, 'small.json');
    const cache = path.join(dir, 'run');
    fs.mkdirSync(cache);
    writeJson(file, recs.slice(0, 20));
    const first = loadIndex(file, 'small.json', cache);
    assert.equal(fs.readdirSync(path.join(cache, INDEX_DIR)).length, 1);
    let again = first;
    assert.deepEqual(pathsOpenedDuring(() => (again = loadIndex(file, 'small.json', cache))).filter((p) => p === file), []);
    assert.deepEqual(again.offset, first.offset);
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(file, later, later);
    assert.deepEqual(pathsOpenedDuring(() => (again = loadIndex(file, 'small.json', cache))).filter((p) => p === file), [file]); // hashed once
    assert.deepEqual(again.line, first.line);
    assert.deepEqual(pathsOpenedDuring(() => loadIndex(file, 'small.json', cache)).filter((p) => p === file), []); // the new mtime was kept
    // The same size, other bytes: rebuilt (its hash differs)
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('answer 3 ', 'answer 4 '));
    const edited = loadIndex(file, 'small.json', cache);
    assert.notEqual(edited.stamp.sha256, first.stamp.sha256);
    writeJson(file, recs.slice(0, 21));
    assert.equal(loadIndex(file, 'small.json', cache).count, 21);
  });
});

describe('streaming data against the in-memory path', function () {
  this.timeout(120_000);
  let dir = '', g: Graph;
  const run = () => path.join(dir, 'run');

  before(() => {
    dir = tmpDir('stream');
    const images = writeImages(dir);
    writeTokenizer(path.join(dir, 'tokenizer.json'), WORDS);
    // d1: a bad record (skipped), text-only records, LLaVA-1.5's pad; d2: the encoder's own processor
    writeJson(path.join(dir, 'd1.json'), records(13, images, { textEvery: 4, badAt: 5 }));
    fs.writeFileSync(path.join(dir, 'd2.jsonl'), records(9, images, { prefix: 's' }).map((r) => JSON.stringify(r)).join('\n') + '\n');
    fs.writeFileSync(path.join(dir, 'p.pipe'), streamProgram({
      datasets: [
        'dataset d1 = llava_json(file: "d1.json", images: "images", template: short, tokenizer: "tokenizer.json", skip_bad_records: true, require_image: false, image_aspect: "pad")',
        'dataset d2 = llava_json(file: "d2.jsonl", images: "images", template: short, tokenizer: "tokenizer.json")',
      ],
      stages: [['one', 'd1'], ['two', 'd2']],
    }).replace('batch: 2', 'batch: 3'));
    const r = compile({ file: path.join(dir, 'p.pipe'), lower: true });
    assert.ok(r.graph, JSON.stringify(r.diagnostics.map((d) => d.message)));
    g = r.graph;
    fs.mkdirSync(run());
  });

  it('the same seed gives the same batches: records by index, images in a worker, against prepareDataset + microBatch, across epochs and from a resume point', async () => {
    const tokenizer = loadTokenizer(path.join(dir, 'tokenizer.json'));
    const checks = preflightStages({ graph: g, baseDir: dir, tokenizer, cacheDir: run() });
    const pool = new ImagePool(1);
    try {
      for (const stage of g.stages) {
        const model = g.models[0]!;
        const imageShape = imageShapeOf(model);
        const mem = prepareDataset(stage.data, { graph: g, baseDir: dir, model, tokenizer, maxLength: stage.max_length });
        const { microPerEpoch } = stageSteps(stage, mem.train.length);
        const data = openStageData({ graph: g, stage, model, tokenizer, baseDir: dir, cacheDir: run(), checks });
        assert.equal(data.orders.samplesPerEpoch, mem.train.length);
        assert.equal(data.skipped, stage.data === 'd1' ? 1 : 0);
        const K = 3 * microPerEpoch + 1; // into a fourth epoch
        const want = Array.from({ length: K }, (_, k) => collate(microBatch(mem.train, stage, microPerEpoch, k), 0, imageShape));
        for (const from of [0, microPerEpoch + 1]) {
          const feed = new StageFeed({ sources: data.sources, orders: data.orders, imageShape, padId: 0, pool, ahead: 3, end: K });
          feed.start(from);
          for (let k = from; k < K; k++) assert.deepStrictEqual(await feed.take(), want[k], `stage ${stage.name}, micro-batch ${k} (from ${from})`);
        }
        data.close();
      }
    } finally {
      await pool.close();
    }
  });

  it('workers start in a process run as `node --input-type=module -e CODE` (a library user\'s), without its eval options', () => {
    assert.deepEqual(workerExecArgv(['--input-type=module', '-e', 'code', '--max-old-space-size=512', '--print', 'x', '--eval=y', '--input-type', 'module']), ['--max-old-space-size=512']);
    const code = `import { ImagePool } from ${JSON.stringify(repo('dist/runtime/data/image-workers.js'))}; const p = new ImagePool(1); const px = await p.draw({ seed: 1, index: 2, size: 8, colour: 0, shape: 1, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }); console.log(px.length); await p.close();`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '192');
  });

  it('a synthetic dataset\'s images, drawn in a worker, are the in-memory path\'s', async () => {
    const sg = compile({ file: repo('test/runtime/tiny.pipe'), lower: true }).graph!;
    const stage = sg.stages[0]!, model = sg.models[0]!;
    const tokenizer = syntheticTokenizer(sg, 128);
    const cacheDir = tmpDir('synthetic-stream');
    const checks = preflightStages({ graph: sg, baseDir: repo('test/runtime'), tokenizer, cacheDir });
    const mem = prepareDataset(stage.data, { graph: sg, baseDir: repo('test/runtime'), model, tokenizer, maxLength: stage.max_length });
    const { microPerEpoch } = stageSteps(stage, mem.train.length);
    const data = openStageData({ graph: sg, stage, model, tokenizer, baseDir: repo('test/runtime'), cacheDir, checks });
    assert.ok(data.sources[0]!.reader.example(0).draw, 'synthetic records carry a draw job');
    const pool = new ImagePool(1);
    try {
      const feed = new StageFeed({ sources: data.sources, orders: data.orders, imageShape: imageShapeOf(model), padId: 0, pool, ahead: 3, end: 4 });
      feed.start(0);
      for (let k = 0; k < 4; k++) assert.deepStrictEqual(await feed.take(), collate(microBatch(mem.train, stage, microPerEpoch, k), 0, imageShapeOf(model)), `micro-batch ${k}`);
    } finally {
      data.close();
      await pool.close();
    }
  });

  it('a worker opens images through its DataRoot: a name leading out of the folder is PIPE9050 at its record, never read', async () => {
    fs.symlinkSync(path.join(dir, 'tokenizer.json'), path.join(dir, 'images', 'link-out.png'));
    const pool = new ImagePool(1);
    try {
      const job = { root: { dir: path.join(dir, 'images'), shown: 'images' }, name: 'link-out.png', index: 7, id: 'x', location: { file: 'd1.json', line: 9, col: 3 } };
      await assert.rejects(pool.run(job, { size: 16, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], mode: 'squash' }), (e) => {
        assert.ok(e instanceof PipeRuntimeError);
        assert.equal(e.code, 'PIPE9050');
        assert.match(e.render(), /^d1\.json:9:3 - error PIPE9050: record 7 \(id "x"\): image "link-out\.png" leads outside the images folder through a symbolic link/);
        return true;
      });
    } finally {
      await pool.close();
      fs.rmSync(path.join(dir, 'images', 'link-out.png'));
    }
  });
});

describe('epoch orders: one dataset, mixtures, length grouping', () => {
  it('one dataset: the order pipec has always used (epochOrder)', () => {
    const o = new EpochOrders([{ name: 'd', count: 37 }], { seed: 5, batch: 4 });
    for (const e of [0, 1, 7]) assert.deepEqual([...o.epoch(e)], epochOrder(37, 5, e));
    assert.deepEqual([...shuffledRange(10, Rng.derive(3, 'x'))], Rng.derive(3, 'x').shuffle([...Array(10).keys()]));
  });

  it('ratios: each source its share of every epoch (largest remainders), every record before any repeats, the same for the same seed', () => {
    const sources = [{ name: 'big', count: 50 }, { name: 'small', count: 20 }];
    const plan = { seed: 11, batch: 4, shares: [{ ratio: 0.7 }, { ratio: 0.3 }], mixture: 'm' };
    const o = new EpochOrders(sources, plan);
    assert.deepEqual(o.perEpoch, [49, 21]);
    assert.equal(o.samplesPerEpoch, 70);
    const seen = [new Array(50).fill(0), new Array(20).fill(0)];
    for (let e = 0; e < 12; e++) {
      const order = o.epoch(e);
      assert.equal(order.length, 70);
      const per = [0, 0];
      for (const x of order) {
        const { source, position } = o.locate(x);
        per[source]!++;
        seen[source]![position]++;
      }
      assert.deepEqual(per, [49, 21], `epoch ${e}`);
      // drawn from a series of whole shuffles: no record is drawn twice more than another
      for (const s of seen) assert.ok(Math.max(...s) - Math.min(...s) <= 1, `epoch ${e}: ${s.join(',')}`);
    }
    const again = new EpochOrders(sources, plan);
    assert.deepEqual([...again.epoch(3)], [...o.epoch(3)]);
    assert.notDeepEqual([...new EpochOrders(sources, { ...plan, seed: 12 }).epoch(3)], [...o.epoch(3)]);
    assert.notDeepEqual([...o.epoch(4)], [...o.epoch(3)]);
    assert.deepEqual(sharesPerEpoch([3, 3, 3], [{ ratio: 1 / 3 }, { ratio: 1 / 3 }, { ratio: 1 / 3 }]), [3, 3, 3]);
    assert.deepEqual(sharesPerEpoch([5, 5], [{ ratio: 0.55 }, { ratio: 0.45 }]), [6, 4]);
  });

  it('counts: records per epoch as given, a source smaller than its count repeated evenly', () => {
    const o = new EpochOrders([{ name: 'a', count: 50 }, { name: 'b', count: 20 }], { seed: 2, batch: 5, shares: [{ count: 10 }, { count: 45 }], mixture: 'm' });
    assert.equal(o.samplesPerEpoch, 55);
    assert.equal(o.microPerEpoch, 11);
    const times = new Array(20).fill(0);
    for (const x of o.epoch(0)) {
      const { source, position } = o.locate(x);
      if (source === 1) times[position]++;
    }
    assert.ok(times.every((t) => t === 2 || t === 3), times.join(','));
    assert.equal(times.reduce((a, b) => a + b, 0), 45);
  });

  it('group_by_length: images and text-only apart, batches of similar length, one mixed batch at the end; each sample once per epoch', () => {
    const rng = new Rng(4);
    const n = 403, b = 4;
    const lengths = Int32Array.from({ length: n }, () => (rng.next() < 0.3 ? -1 : 1) * (5 + rng.int(200)));
    const plain = new EpochOrders([{ name: 'd', count: n, lengths }], { seed: 9, batch: b });
    const grouped = new EpochOrders([{ name: 'd', count: n, lengths }], { seed: 9, batch: b, groupByLength: true });
    const spread = (order: Uint32Array) => {
      let sum = 0, k = 0;
      for (let i = 0; i + b <= order.length - 2 * b; i += b, k++) {
        const ls = [...order.subarray(i, i + b)].map((x) => Math.abs(lengths[x]!));
        sum += Math.max(...ls) - Math.min(...ls);
      }
      return sum / k;
    };
    for (const e of [0, 1]) {
      const order = grouped.epoch(e);
      assert.deepEqual([...order].sort((x, y) => x - y), [...Array(n).keys()], 'a permutation');
      // every batch but the mixed ones at the end holds one modality
      for (let i = 0; i + b <= order.length - 2 * b; i += b) {
        const kinds = new Set([...order.subarray(i, i + b)].map((x) => lengths[x]! > 0));
        assert.equal(kinds.size, 1, `epoch ${e}, batch ${i / b}`);
      }
      assert.ok(spread(order) * 4 < spread(plain.epoch(e)), `grouped spread ${spread(order)} vs shuffled ${spread(plain.epoch(e))}`);
    }
    assert.notDeepEqual([...grouped.epoch(0)], [...grouped.epoch(1)]);
    assert.deepEqual([...new EpochOrders([{ name: 'd', count: n, lengths }], { seed: 9, batch: b, groupByLength: true }).epoch(1)], [...grouped.epoch(1)]);
    // one modality: megabatches (batch x min(50, n / 4 batch)) sorted longest first
    const all = Int32Array.from(lengths, (l) => Math.abs(l));
    const single = new EpochOrders([{ name: 'd', count: n, lengths: all }], { seed: 9, batch: b, groupByLength: true }).epoch(0);
    const mega = b * Math.min(Math.floor(n / (4 * b)), 50);
    for (let i = 0; i < n; i += mega) {
      const ls = [...single.subarray(i, i + mega)].map((x) => all[x]!);
      assert.deepEqual(ls, [...ls].sort((x, y) => y - x));
    }
  });
});

describe('mixtures through the compiler and the pre-flight', function () {
  this.timeout(60_000);
  it('lowers to datasets[].sources and stages[].group_by_length; the pre-flight checks each source and refuses one without a usable record (PIPE9092)', () => {
    const dir = tmpDir('mixture');
    const images = writeImages(dir, 2);
    writeTokenizer(path.join(dir, 'tokenizer.json'), WORDS);
    writeJson(path.join(dir, 'a.json'), records(6, images));
    writeJson(path.join(dir, 'b.json'), records(2, images, { badAt: 0 }).slice(0, 1));
    fs.writeFileSync(path.join(dir, 'm.pipe'), streamProgram({
      datasets: [
        'dataset a = llava_json(file: "a.json", images: "images", template: short, tokenizer: "tokenizer.json")',
        'dataset b = llava_json(file: "b.json", images: "images", template: short, tokenizer: "tokenizer.json", skip_bad_records: true)',
        'dataset mix = mixture(ratios: { a: 0.75, b: 0.25 })',
      ],
      stages: [['s', 'mix']],
      stageExtra: 'group_by_length: true',
    }));
    const r = compile({ file: path.join(dir, 'm.pipe'), lower: true });
    assert.ok(r.graph, JSON.stringify(r.diagnostics.map((d) => d.message)));
    assert.deepEqual(r.graph.datasets.find((d) => d.name === 'mix'), { name: 'mix', constructor: 'mixture', attrs: { ratios: { a: 0.75, b: 0.25 }, counts: {} }, sources: [{ dataset: 'a', ratio: 0.75 }, { dataset: 'b', ratio: 0.25 }] });
    assert.equal(r.graph.stages[0]!.group_by_length, true);
    const checks = preflightStages({ graph: r.graph, baseDir: dir, tokenizer: loadTokenizer(path.join(dir, 'tokenizer.json')) });
    assert.deepEqual(checks.map((c) => [c.dataset, c.mixture?.name, c.mixture?.ratio, c.problem?.code]), [['a', 'mix', 0.75, undefined], ['b', 'mix', 0.25, 'PIPE9092']]);
    assert.match(checks[1]!.problem!.message, /mixture "mix" of stage `s` draws from "b", which has no usable record/);
    // the exported trainer's shards hold one dataset's seeded order: prepare refuses, before reading any record
    assert.throws(() => prepareStages({ graph: r.graph!, baseDir: dir, outDir: path.join(dir, 'shards') }), (e: PipeRuntimeError) =>
      e.code === 'PIPE9095' && /the data of stage `s` cannot be written for the exported trainer: it is the mixture "mix"/.test(e.message));
    const grouped = { ...r.graph, stages: [{ ...r.graph.stages[0]!, data: 'a' }] };
    assert.throws(() => prepareStages({ graph: grouped, baseDir: dir, outDir: path.join(dir, 'shards') }), (e: PipeRuntimeError) =>
      e.code === 'PIPE9095' && /groups batches by length/.test(e.message));
    const multi = { ...grouped, stages: [{ ...grouped.stages[0]!, group_by_length: false }], datasets: r.graph.datasets.map((d) => (d.name === 'a' ? { ...d, attrs: { ...d.attrs, max_images: 2 } } : d)) };
    assert.throws(() => prepareStages({ graph: multi, baseDir: dir, outDir: path.join(dir, 'shards') }), (e: PipeRuntimeError) =>
      e.code === 'PIPE9095' && /dataset "a" has up to 2 images per record/.test(e.message));
    assert.ok(!fs.existsSync(path.join(dir, 'shards', 's')), 'nothing written');
  });
});
