// LLaVA-1.5's `pad` aspect mode (images.ts: expand2square, then the encoder's processor), by hand and
// against LLaVA's own expand2square with transformers' PIL-based CLIP processor; and multi-image
// records (an "image" list): one run of image tokens per marker, each image's features spliced in at
// its own marker, labels -100 there, through the pipeline, the batch and the model.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { compile } from '../compiler/service/service.js';
import { collate } from '../runtime/data/batch.js';
import { datasetSpec, imageShapeOf, preprocessFor } from '../runtime/data/datasets.js';
import { IGNORE, PLAIN, tokenize } from '../runtime/data/examples.js';
import { expandToSquare, loadImageFile, padColour, preprocessImage, type RgbImage } from '../runtime/data/images.js';
import { runDataPass } from '../runtime/data/pipeline.js';
import { loadTokenizer } from '../runtime/data/tokenizer.js';
import { VocabTokenizer } from '../runtime/data/vocab-tokenizer.js';
import { ModelRunner } from '../runtime/model.js';
import { llavaSplice } from '../runtime/ops/splice.js';
import { ParamStore, paramSpecs } from '../runtime/params.js';
import { writeTokenizer } from './data-fixtures.js';
import { useBackend } from './helpers/numeric.js';
import { runPython, torch2Python, TORCH2_FIX } from './helpers/python.js';
import { unavailable } from './helpers/required.js';
import { tmpDir } from './helpers/tmp.js';
import { repo } from './paths.js';
import { streamProgram, WORDS, writeGradient, writeJson } from './stream-fixtures.js';

const rgb = (w: number, h: number, px: number[][]): RgbImage => ({ width: w, height: h, data: Uint8Array.from(px.flat()) });
const HALF = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
const norm = (v: number) => Math.fround((v / 255 - 0.5) / 0.5);

describe('image_aspect "pad" (LLaVA-1.5 expand2square)', function () {
  this.timeout(120_000);

  it('pads with the mean as integer RGB, centred along the short side with the offset rounded down, by hand', () => {
    assert.deepEqual(padColour([0.48145466, 0.4578275, 0.40821073]), [122, 116, 104]); // CLIP: int(x * 255) truncates
    assert.deepEqual(padColour([0.5, 0.5, 0.5]), [127, 127, 127]);
    // 2 x 1, wider: pasted at (0, (2 - 1) // 2 = 0), the background row below
    const wide = preprocessImage(rgb(2, 1, [[10, 20, 30], [200, 100, 0]]), { size: 2, ...HALF, mode: 'squash', pad: true });
    assert.deepEqual([...wide.subarray(0, 4)], [10, 200, 127, 127].map(norm)); // channel 0, row by row
    assert.deepEqual([...wide.subarray(8, 12)], [30, 0, 127, 127].map(norm)); // channel 2
    // 1 x 3, taller: pasted at ((3 - 1) // 2 = 1, 0), background columns either side
    const tall = expandToSquare(rgb(1, 3, [[1, 1, 1], [2, 2, 2], [3, 3, 3]]), [9, 9, 9]);
    assert.deepEqual([tall.width, tall.height], [3, 3]);
    assert.deepEqual([...tall.data].filter((_, i) => i % 3 === 0), [9, 1, 9, 9, 2, 9, 9, 3, 9]);
    // a square image is not touched; CLIP's crop then keeps all of a padded image (nothing cut off)
    const sq = rgb(2, 2, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]);
    assert.equal(expandToSquare(sq, [0, 0, 0]), sq);
    const cropped = preprocessImage(rgb(4, 2, Array.from({ length: 8 }, (_, i) => [i * 30, i * 30, i * 30])), { size: 2, ...HALF, mode: 'shortest_edge_center_crop' });
    const padded = preprocessImage(rgb(4, 2, Array.from({ length: 8 }, (_, i) => [i * 30, i * 30, i * 30])), { size: 2, ...HALF, mode: 'shortest_edge_center_crop', pad: true });
    assert.notDeepEqual([...padded], [...cropped]);
  });

  it('matches LLaVA\'s expand2square + transformers\' PIL CLIP processor to one pixel level (336 px, several aspect ratios), and the plain crop too', function () {
    const py = torch2Python();
    if (!py) return unavailable(this, 'Python with transformers (.venv-torch)', TORCH2_FIX);
    const probe = runPython(py.python, ['-c', 'import importlib.util as u; print(u.find_spec("PIL") is not None)']).trim();
    if (probe !== 'True') return unavailable(this, 'Pillow in .venv-torch', 'npm run setup:torch installs it (or .venv-torch/bin/pip install pillow)');
    const dir = tmpDir('pad-pil');
    const sizes: [number, number][] = [[37, 20], [20, 37], [50, 50], [301, 157], [9, 1], [64, 200]];
    const files = sizes.map(([w, h], i) => {
      const f = path.join(dir, `g${i}.png`);
      writeGradient(f, w, h, i + 3);
      return f;
    });
    const mean = [0.48145466, 0.4578275, 0.40821073], std = [0.26862954, 0.26130258, 0.27577711], size = 336;
    const cases = files.flatMap((file) => [{ file, pad: true }, { file, pad: false }]);
    const spec = path.join(dir, 'spec.json');
    fs.writeFileSync(spec, JSON.stringify({ size, mean, std, images: cases }));
    const ref = JSON.parse(runPython(py.python, [repo('test/reference/pad_images.py'), spec])) as string[];
    cases.forEach((c, i) => {
      const b = Buffer.from(ref[i]!, 'base64');
      const want = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      const got = preprocessImage(loadImageFile(c.file), { size, mean, std, mode: 'shortest_edge_center_crop', ...(c.pad ? { pad: true } : {}) });
      assert.equal(got.length, want.length);
      let worst = 0;
      for (let k = 0; k < got.length; k++) worst = Math.max(worst, Math.abs(got[k]! - want[k]!) * std[Math.floor(k / (size * size))]! * 255);
      assert.ok(worst <= 1 + 1e-3, `${path.basename(c.file)} ${sizes[Math.floor(i / 2)]!.join('x')} pad ${c.pad}: off by ${worst.toFixed(3)} pixel levels`);
    });
  });
});

describe('multi-image records', function () {
  this.timeout(120_000);
  let dir = '';
  before(() => {
    dir = tmpDir('multi');
    for (let i = 0; i < 3; i++) writeGradient(path.join(dir, 'images', `m${i}.png`), 12 + 5 * i, 16, i);
    writeTokenizer(path.join(dir, 'tokenizer.json'), WORDS);
  });

  it('tokenize: each of the first `images` markers becomes its own run of image tokens; later ones stay text', () => {
    const tok = VocabTokenizer.fromTexts([WORDS, '<image>'], 64);
    const segs = [{ text: 'first <image> second <image> a <image>', train: false }, { text: 'red', train: true }];
    const ex = tokenize(segs, tok, '<image>', 3, undefined, 2);
    assert.deepEqual(ex.imageStarts, [2, 6]); // BOS, "first", 3 image tokens, "second", 3 image tokens
    assert.equal(ex.imageStart, 2);
    for (const s of ex.imageStarts!) for (let t = s; t < s + 3; t++) assert.equal(ex.labels[t], IGNORE);
    assert.ok(ex.ids.includes(tok.tokenToId('<image>')!)); // the third marker is text
    assert.equal(tokenize(segs, tok, '<image>', 3).imageStarts, undefined); // one image: as before
  });

  it('through the pipeline and the model: images in marker order, each spliced at its marker; PIPE9090 / PIPE9091 located', async () => {
    const recs = [
      { id: 'two', image: ['m0.png', 'm1.png'], conversations: [{ from: 'human', value: 'first <image> second <image>\nwhat colour ?' }, { from: 'gpt', value: 'red blue' }] },
      { id: 'one', image: 'm2.png', conversations: [{ from: 'human', value: '<image>\nwhat colour ?' }, { from: 'gpt', value: 'green' }] },
      { id: 'turns', image: ['m2.png', 'm0.png'], conversations: [{ from: 'human', value: '<image> what colour ?' }, { from: 'gpt', value: 'green' }, { from: 'human', value: 'and <image> ?' }, { from: 'gpt', value: 'red' }] },
      { id: 'miscount', image: ['m0.png', 'm1.png'], conversations: [{ from: 'human', value: '<image>\nwhat colour ?' }, { from: 'gpt', value: 'red' }] },
      { id: 'answer', image: ['m0.png', 'm1.png'], conversations: [{ from: 'human', value: '<image> what colour ?' }, { from: 'gpt', value: '<image> red' }] },
      { id: 'many', image: ['m0.png', 'm1.png', 'm2.png'], conversations: [{ from: 'human', value: '<image> <image> <image>' }, { from: 'gpt', value: 'red' }] },
    ];
    writeJson(path.join(dir, 'multi.json'), recs);
    fs.writeFileSync(path.join(dir, 'p.pipe'), streamProgram({
      datasets: ['dataset d = llava_json(file: "multi.json", images: "images", template: short, tokenizer: "tokenizer.json", max_images: 2, skip_bad_records: true)'],
      stages: [['s', 'd']],
      maxLength: 40,
    }));
    const r = compile({ file: path.join(dir, 'p.pipe'), lower: true });
    assert.ok(r.graph, JSON.stringify(r.diagnostics.map((d) => d.message)));
    const g = r.graph;
    const model = g.models[0]!;
    const tokenizer = loadTokenizer(path.join(dir, 'tokenizer.json'));
    const pass = runDataPass(datasetSpec('d', { graph: g, baseDir: dir, model, tokenizer, maxLength: 40 }), 'train');
    assert.deepEqual(pass.failures.map((f) => [f.index, f.code]), [[3, 'PIPE9090'], [4, 'PIPE9090'], [5, 'PIPE9091']]);
    assert.match(pass.failures[0]!.message, /^record 3 \(id "miscount"\): has 2 images but 1 "<image>" marker$/);
    assert.match(pass.failures[1]!.message, /has 2 images but 2 \(1 outside the user turns\) "<image>" markers/);
    assert.match(pass.failures[2]!.message, /has 3 images, more than the dataset's max_images 2/);
    assert.equal(pass.failures[0]!.location?.file, 'multi.json');
    const [two, one, turns] = pass.train;
    const N = model.image_tokens!;
    assert.equal(N, 4);
    assert.equal(two!.imageStarts!.length, 2);
    assert.equal(two!.extraPixels!.length, 1);
    assert.equal(one!.imageStarts, undefined);
    assert.equal(turns!.imageStarts!.length, 2);
    // the images in marker order: pixels are each file's, preprocessed
    const pre = preprocessFor(model.components.find((c) => c.role === 'encoder')!);
    assert.deepEqual([...two!.pixels!], [...preprocessImage(loadImageFile(path.join(dir, 'images', 'm0.png')), pre)]);
    assert.deepEqual([...two!.extraPixels![0]!], [...preprocessImage(loadImageFile(path.join(dir, 'images', 'm1.png')), pre)]);
    assert.deepEqual([...turns!.pixels!], [...preprocessImage(loadImageFile(path.join(dir, 'images', 'm2.png')), pre)]);

    const batch = collate([two!, one!, turns!], 0, imageShapeOf(model));
    assert.deepEqual(batch.pixels!.shape.slice(0, 1), [5]); // every image of every row
    assert.deepEqual(batch.info.imageSlots, [
      { row: 0, start: two!.imageStarts![0]! }, { row: 0, start: two!.imageStarts![1]! },
      { row: 1, start: one!.imageStart },
      { row: 2, start: turns!.imageStarts![0]! }, { row: 2, start: turns!.imageStarts![1]! },
    ]);
    for (const s of batch.info.imageSlots!) for (let t = 0; t < N; t++) assert.equal(batch.labels[s.row * batch.info.length + s.start + t], IGNORE);

    // the splice: image m's features at its slot, everything else the text embeddings
    await useBackend('cpu');
    const B = 3, T = batch.info.length, D = 2;
    const embeds = tf.zeros([B, T, D]) as tf.Tensor3D;
    const features = tf.tensor3d(Array.from({ length: 5 * N * D }, (_, i) => 1 + i), [5, N, D]);
    const out = llavaSplice({ attrs: { image_tokens: N }, batch: batch.info, param: () => { throw new Error('no params'); }, hasParam: () => false, auxLosses: [] }, [embeds, features]).arraySync() as number[][][];
    const expected = Array.from({ length: B }, () => Array.from({ length: T }, () => [0, 0]));
    batch.info.imageSlots!.forEach((s, m) => {
      for (let t = 0; t < N; t++) expected[s.row]![s.start + t] = [1 + (m * N + t) * D, 2 + (m * N + t) * D];
    });
    assert.deepEqual(out, expected);

    // and the whole model trains on the batch: the encoder sees 5 images, the loss is finite
    const params = new ParamStore(paramSpecs(model.components), 1);
    const runner = new ModelRunner(model, params);
    const loss = tf.tidy(() => runner.forward({ pixels: tf.tensor4d(batch.pixels!.data, batch.pixels!.shape), inputIds: batch.inputIds, labels: batch.labels, info: batch.info }).loss!.dataSync()[0]!);
    assert.ok(Number.isFinite(loss), String(loss));
    params.dispose();
  });

  it('the checker counts max_images x image tokens against max_length (PIPE5014) and in the memory estimate', () => {
    const file = path.join(dir, 'tight.pipe');
    const text = (k: number, ml: number) => streamProgram({ datasets: [`dataset d = llava_json(file: "multi.json", images: "images", template: short, tokenizer: "tokenizer.json", max_images: ${k})`], stages: [['s', 'd']], maxLength: ml });
    fs.writeFileSync(file, text(3, 12));
    const bad = compile({ file, lower: true });
    assert.deepEqual(bad.diagnostics.filter((d) => d.severity === 'error').map((d) => d.code), ['PIPE5014']);
    const est = (k: number) => {
      fs.writeFileSync(file, text(k, 40));
      const r = compile({ file, lower: true });
      assert.ok(r.graph, JSON.stringify(r.diagnostics.map((d) => d.message)));
      return r.graph.stages[0]!.memory.per_device.activations;
    };
    assert.ok(est(3) > est(1), 'three images per sample store more encoder activations');
  });
});

// PLAIN is the pretraining layout; a multi-image record there keeps one marker per image.
describe('multi-image records in the plain template', () => {
  it('keeps one marker per image', () => {
    const tok = VocabTokenizer.fromTexts([WORDS], 64);
    const ex = tokenize([{ text: '<image>\n<image>', train: false }, { text: 'red', train: true }], tok, '<image>', 2, undefined, 2);
    assert.deepEqual(ex.imageStarts, [1, 3]);
    void PLAIN;
  });
});
