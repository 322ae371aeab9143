// The llava_json reader, image decoding and preprocessing. Fixtures (real PNG/JPEG files, corrupt and
// missing images, bad records) are written to a temp dir at test time; expected numbers are worked out
// by hand in the comments.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';
import { PipeRuntimeError } from '../runtime/errors.js';
import { decodeImage, loadImageFile, preprocessImage, resizeRgb, sniffImage, type RgbImage } from '../runtime/data/images.js';
import { lineColAt, lineColsAt, lineStartsOf, loadRecordImage, readLlavaJson, scanJson, validateImages, type LlavaJsonOptions } from '../runtime/data/llava-json.js';
import { checkLength } from '../runtime/data/too-long.js';
import { pngBytes } from './helpers/png.js';
import { tmpDir } from './helpers/tmp.js';

let dir = '';
let imagesDir = '';
before(() => {
  dir = tmpDir('llava');
  imagesDir = path.join(dir, 'images');
  fs.mkdirSync(imagesDir);
  fs.writeFileSync(path.join(imagesDir, 'good.png'), pngOf(PNG_PIXELS));
  fs.writeFileSync(path.join(imagesDir, 'photo.jpg'), jpegOf(QUADRANTS));
  // Random bytes (a fixed LCG, so the test is repeatable), forced not to start with a PNG/JPEG signature.
  const junk = new Uint8Array(300);
  for (let i = 0, s = 12345; i < junk.length; i++) junk[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  junk[0] = 0x00;
  fs.writeFileSync(path.join(imagesDir, 'corrupt.png'), junk);
  // A real PNG cut short: passes the header check, fails when decoded.
  const whole = pngOf(PNG_PIXELS);
  fs.writeFileSync(path.join(imagesDir, 'truncated.png'), whole.subarray(0, whole.length - 20));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

// ---- fixtures ----

/** 3x2 RGBA: each pixel distinct, alphas varied (alpha is dropped, RGB kept as is). */
const PNG_PIXELS = {
  width: 3,
  height: 2,
  rgba: [
    [255, 0, 0, 255], [0, 255, 0, 128], [0, 0, 255, 0],
    [10, 20, 30, 255], [200, 100, 50, 255], [7, 8, 9, 1],
  ],
};
function pngOf(p: { width: number; height: number; rgba: number[][] }, options?: pngjs.PackerOptions): Buffer {
  return pngBytes({ width: p.width, height: p.height, rgba: p.rgba.flat() }, options);
}

/** 16x16 with four flat 8x8 quadrants (one per JPEG block), so JPEG at quality 100 is near-lossless. */
const QUADRANT_COLOURS = [[220, 40, 40], [40, 190, 60], [50, 80, 230], [240, 240, 240]];
const QUADRANTS = { width: 16, height: 16, colourAt: (x: number, y: number) => QUADRANT_COLOURS[(y < 8 ? 0 : 2) + (x < 8 ? 0 : 1)]! };
function jpegOf(q: typeof QUADRANTS): Buffer {
  const data = Buffer.alloc(q.width * q.height * 4);
  for (let y = 0; y < q.height; y++)
    for (let x = 0; x < q.width; x++) data.set([...q.colourAt(x, y), 255], (y * q.width + x) * 4);
  return jpeg.encode({ width: q.width, height: q.height, data }, 100).data;
}

/** A 2x2 palette PNG (colour type 3) built by hand, since pngjs cannot write one. */
function palettePng(): Buffer {
  const chunk = (type: string, body: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(body.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), body])) >>> 0, 0);
    return Buffer.concat([head, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(2, 0); // width
  ihdr.writeUInt32BE(2, 4); // height
  ihdr.set([8, 3, 0, 0, 0], 8); // bit depth 8, colour type 3 (palette), deflate, no filter, no interlace
  const plte = Buffer.from([255, 0, 0, 0, 0, 255, 12, 34, 56]); // entries 0, 1, 2
  const rows = Buffer.from([0, 0, 1, 0, 2, 0]); // each row: filter byte 0, then two palette indices
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('PLTE', plte), chunk('IDAT', zlib.deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

const rgb = (width: number, height: number, px: number[][]): RgbImage => ({ width, height, data: Uint8Array.from(px.flat()) });

// ---- images ----

describe('image decoding', () => {
  it('recognises PNG and JPEG by their first bytes, not the file name', () => {
    assert.equal(sniffImage(pngOf(PNG_PIXELS)), 'png');
    assert.equal(sniffImage(jpegOf(QUADRANTS)), 'jpeg');
    assert.equal(sniffImage(Buffer.from('GIF89a')), undefined);
    // A JPEG saved as .png decodes as a JPEG.
    const misnamed = path.join(dir, 'really-a-jpeg.png');
    fs.writeFileSync(misnamed, jpegOf(QUADRANTS));
    assert.equal(loadImageFile(misnamed).width, 16);
  });

  it('decodes RGBA PNG to RGB by dropping alpha (as PIL convert("RGB"))', () => {
    const img = decodeImage(pngOf(PNG_PIXELS));
    assert.equal(img.width, 3);
    assert.equal(img.height, 2);
    assert.deepEqual([...img.data], PNG_PIXELS.rgba.flatMap((p) => p.slice(0, 3)));
  });

  it('decodes greyscale and palette PNGs to RGB', () => {
    const grey = { width: 2, height: 1, rgba: [[0, 0, 0, 255], [77, 77, 77, 255]] };
    assert.deepEqual([...decodeImage(pngOf(grey, { colorType: 0 })).data], [0, 0, 0, 77, 77, 77]);
    assert.deepEqual([...decodeImage(palettePng()).data], [255, 0, 0, 0, 0, 255, 12, 34, 56, 255, 0, 0]);
  });

  it('decodes JPEG to the encoded colours within a tolerance', () => {
    const img = loadImageFile(path.join(imagesDir, 'photo.jpg'));
    assert.equal(img.width, 16);
    assert.equal(img.height, 16);
    let worst = 0;
    for (let y = 0; y < 16; y++)
      for (let x = 0; x < 16; x++)
        for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(img.data[(y * 16 + x) * 3 + c]! - QUADRANTS.colourAt(x, y)[c]!));
    assert.ok(worst <= 4, `max JPEG error ${worst}`);
  });

  it('throws a plain Error with the reason for missing, random and truncated files', () => {
    assert.throws(() => loadImageFile(path.join(imagesDir, 'nope.png')), /does not exist/);
    assert.throws(() => loadImageFile(path.join(imagesDir, 'corrupt.png')), /not a PNG or JPEG/);
    assert.throws(() => loadImageFile(path.join(imagesDir, 'truncated.png')), /PNG decoding failed/);
    const jpg = jpegOf(QUADRANTS);
    assert.throws(() => decodeImage(jpg.subarray(0, jpg.length >> 1)), /JPEG decoding failed/);
  });
});

describe('resizing (PIL semantics: half-pixel centres, renormalised edge windows)', () => {
  it('bilinear 2x2 -> 4x4, by hand', () => {
    // Horizontally, output centres sit at 0.25, 0.75, 1.25, 1.75 input pixels; with input pixel centres at
    // 0.5 and 1.5 the weights are [1,0], [.75,.25], [.25,.75], [0,1] (the edge windows are cut and
    // renormalised, giving the edge pixel). Row [0, 64] -> [0, 16, 48, 64], row [128, 192] -> [128, 144,
    // 176, 192]; then the same weights down each column.
    const img = rgb(2, 2, [[0, 0, 0], [64, 64, 64], [128, 128, 128], [192, 192, 192]]);
    const out = resizeRgb(img, 4, 4, 'bilinear');
    const expected = [
      [0, 16, 48, 64],
      [32, 48, 80, 96], // .75 * row0 + .25 * row1
      [96, 112, 144, 160], // .25 * row0 + .75 * row1
      [128, 144, 176, 192],
    ];
    assert.deepEqual([...out.data], expected.flat().flatMap((v) => [v, v, v]));
  });

  it('bicubic (a = -0.5): 2 -> 4 and 4 -> 2 (antialiased) on one row, by hand', () => {
    // Keys kernel: k(.25) = .8671875, k(.75) = .2265625, k(1.25) = -.0703125.
    // Up, output 1 (centre .75): weights k(.25) on pixel 0 and k(.75) on pixel 1 -> 255 * .2265625 /
    // 1.09375 = 52.82 -> 53. Output 0 (centre .25): k(.25), k(1.25) -> -22.5, clipped to 0.
    assert.deepEqual([...resizeRgb(rgb(2, 1, [[0, 0, 0], [255, 255, 255]]), 4, 1, 'bicubic').data], [0, 53, 202, 255].flatMap((v) => [v, v, v]));
    // Down by 2 the kernel is stretched 2x: output 0 (centre 1) weighs pixels 0..3 by k(-.25), k(.25),
    // k(.75), k(1.25) -> 255 * (.2265625 - .0703125) / 1.890625 = 21.07 -> 21; output 1 mirrors it.
    assert.deepEqual([...resizeRgb(rgb(4, 1, [[0, 0, 0], [0, 0, 0], [255, 255, 255], [255, 255, 255]]), 2, 1, 'bicubic').data], [21, 234].flatMap((v) => [v, v, v]));
  });

  it('leaves pixels unchanged when the size does not change, and a flat image flat', () => {
    const img = rgb(3, 2, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [13, 14, 15], [16, 17, 18]]);
    for (const f of ['bilinear', 'bicubic'] as const) assert.deepEqual([...resizeRgb(img, 3, 2, f).data], [...img.data]);
    const flat = rgb(5, 3, Array.from({ length: 15 }, () => [90, 140, 200]));
    for (const [w, h] of [[7, 11], [2, 2], [1, 1]] as const)
      assert.deepEqual([...resizeRgb(flat, w, h, 'bicubic').data], Array.from({ length: w * h }, () => [90, 140, 200]).flat());
  });
});

describe('preprocessImage', () => {
  const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
  const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];
  const norm = (v: number, c: number) => Math.fround((v / 255 - CLIP_MEAN[c]!) / CLIP_STD[c]!);

  it('size = image size: no resize, exact (x/255 - mean)/std in CHW order, in both modes', () => {
    const px = [[0, 128, 255], [10, 20, 30], [255, 255, 255], [1, 2, 3]]; // (0,0) (1,0) (0,1) (1,1)
    const expected = [0, 1, 2].flatMap((c) => px.map((p) => norm(p[c]!, c)));
    assert.equal(norm(0, 0), Math.fround(-0.48145466 / 0.26862954)); // -1.7923...
    for (const mode of ['shortest_edge_center_crop', 'squash'] as const)
      assert.deepEqual([...preprocessImage(rgb(2, 2, px), { size: 2, mean: CLIP_MEAN, std: CLIP_STD, mode })], expected);
  });

  it('shortest_edge_center_crop crops the middle of the longer side', () => {
    // 4x2 with size 2: no resize needed (shorter side is 2, longer becomes int(2*4/2) = 4), then
    // left = (4 - 2) // 2 = 1, so columns 1 and 2 are kept.
    const px = [0, 50, 100, 150, 200, 250, 30, 60].map((v) => [v, v, v]);
    const out = preprocessImage(rgb(4, 2, px), { size: 2, mean: [0, 0, 0], std: [1, 1, 1], mode: 'shortest_edge_center_crop' });
    assert.deepEqual([...out.subarray(0, 4)], [50, 100, 250, 30].map((v) => Math.fround(v / 255)));
  });

  it('shortest_edge_center_crop resizes with bicubic, then crops', () => {
    // 2x1 [0, 255] with size 4: height 1 -> 4 (a single row, copied), width 2 -> int(4*2/1) = 8 bicubic:
    // centres .625 and .875 give 255 * k(.875)/(k(.125)+k(.875)) = 21.96 -> 22 and 88.94 -> 89, the
    // other half mirrors: row [0, 0, 22, 89, 166, 233, 255, 255]; crop left = (8-4)//2 = 2.
    const out = preprocessImage(rgb(2, 1, [[0, 0, 0], [255, 255, 255]]), { size: 4, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], mode: 'shortest_edge_center_crop' });
    const row = [22, 89, 166, 233].map((v) => Math.fround((v / 255 - 0.5) / 0.5));
    assert.deepEqual([...out.subarray(0, 16)], [...row, ...row, ...row, ...row]);
    assert.deepEqual([...out.subarray(32, 48)], [...row, ...row, ...row, ...row]); // channel 2 the same
  });

  it('squash resizes both sides (SigLIP), ignoring aspect ratio', () => {
    const out = preprocessImage(rgb(2, 1, [[0, 0, 0], [255, 255, 255]]), { size: 4, mean: [0, 0, 0], std: [1, 1, 1], mode: 'squash' });
    const row = [0, 53, 202, 255].map((v) => Math.fround(v / 255));
    assert.deepEqual([...out.subarray(0, 16)], [...row, ...row, ...row, ...row]);
  });

  it('rejects bad options', () => {
    const img = rgb(1, 1, [[0, 0, 0]]);
    assert.throws(() => preprocessImage(img, { size: 0, mean: [0, 0, 0], std: [1, 1, 1], mode: 'squash' }), /positive integer/);
    assert.throws(() => preprocessImage(img, { size: 1, mean: [0, 0], std: [1, 1, 1], mode: 'squash' }), /3 values/);
  });
});

// ---- the JSON scanner ----

describe('scanJson / lineColAt', () => {
  it('finds where each top-level element starts, skipping strings with brackets, commas and escapes', () => {
    const text = '[ "a\\"],[", {"k": "[,]", "u": "\\u00e9"},\n  [1, [2, {}]], -1.5e3 ,true, null ]';
    assert.ok(JSON.parse(text));
    const r = scanJson(text);
    assert.ok(r.ok);
    assert.deepEqual(r.elementStarts, [2, text.indexOf('{"k"'), text.indexOf('[1,'), text.indexOf('-1.5'), text.indexOf('true'), text.indexOf('null')]);
  });

  it('reports the offset of the first bad character', () => {
    const cases = [['[1,,2]', 3], ['[01]', 2], ['{"a" 1}', 5], ['["a\\x"]', 4], ['["\\u12g4"]', 6], ['[tru]', 1], ['[1] x', 4], ['["abc', 5], ['[1,', 3]] as const;
    for (const [text, offset] of cases) {
      assert.deepEqual(scanJson(text), { ok: false, offset }, text);
      // Where V8 states a position, it agrees with the scanner's.
      const v8 = /at position (\d+)/.exec(String((() => { try { JSON.parse(text); } catch (e) { return (e as Error).message; } })()));
      if (v8) assert.equal(Number(v8[1]), offset, text);
    }
  });

  it('maps offsets to 1-based line:col, counting code points', () => {
    const text = 'ab\nユーザー😀x\r\nz';
    const starts = lineStartsOf(text);
    assert.deepEqual(lineColAt(text, starts, 0), { line: 1, col: 1 });
    assert.deepEqual(lineColAt(text, starts, text.indexOf('x')), { line: 2, col: 6 }); // 4 kana + 1 emoji
    assert.deepEqual(lineColAt(text, starts, text.indexOf('z')), { line: 3, col: 1 });
    // The one-pass version agrees at every offset.
    const all = Array.from({ length: text.length + 1 }, (_, i) => i);
    assert.deepEqual(lineColsAt(text, all), all.map((i) => lineColAt(text, starts, i)));
  });
});

// ---- llava_json ----

interface Rec { id?: string; image?: string; conversations?: unknown }
const GOOD: Rec = { id: 'ok-0', image: 'good.png', conversations: [{ from: 'human', value: '<image>\nWhat is this?' }, { from: 'gpt', value: 'A square.' }] };
const BAD: Record<string, { rec: Rec; code: string; says: RegExp }> = {
  missingImage: { rec: { id: 'missing', image: 'gone.png', conversations: [{ from: 'human', value: '<image>' }, { from: 'gpt', value: 'x' }] }, code: 'PIPE9004', says: /image "gone\.png" does not exist/ },
  corruptImage: { rec: { id: 'corrupt', image: 'corrupt.png', conversations: [{ from: 'human', value: '<image>' }, { from: 'gpt', value: 'x' }] }, code: 'PIPE9005', says: /"corrupt\.png" cannot be decoded: it is not a PNG or JPEG/ },
  noMarker: { rec: { id: 'nomarker', image: 'good.png', conversations: [{ from: 'human', value: 'Describe it.' }, { from: 'gpt', value: 'x' }] }, code: 'PIPE9006', says: /no "<image>" in its first user turn/ },
  unknownRole: { rec: { id: 'role', image: 'good.png', conversations: [{ from: 'human', value: '<image>' }, { from: 'bot', value: 'x' }] }, code: 'PIPE9003', says: /turn 1 has unknown role "bot"/ },
  noConversations: { rec: { id: 'noconv', image: 'good.png' }, code: 'PIPE9003', says: /has no "conversations"/ },
  turnNotText: { rec: { id: 'nottext', image: 'good.png', conversations: [{ from: 'human', value: ['<image>'] }] }, code: 'PIPE9003', says: /turn 0 is not/ },
  noImage: { rec: { id: 'noimage', conversations: [{ from: 'human', value: 'hi' }, { from: 'gpt', value: 'x' }] }, code: 'PIPE9003', says: /has no "image"/ },
};
const JAPANESE: Rec = {
  id: 'ja',
  image: 'photo.jpg',
  // LLaVA-JP's roles: ユーザー asks, システム answers (its template's roles=("ユーザー", "システム")).
  conversations: [{ from: 'system', value: 'あなたは役に立つアシスタントです。' }, { from: 'ユーザー', value: '<image>\nこれは何色？' }, { from: 'システム', value: '赤です。' }, { from: 'アシスタント', value: '以上です。' }],
};

/** Writes records as pretty JSON (each element's `{` on its own line, at column 3). */
function writeJson(name: string, records: unknown[]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, JSON.stringify(records, null, 2));
  return file;
}
/** The line of a record in a writeJson file, found from its "id" line (independent of the scanner). */
function lineOfId(file: string, id: string): number {
  return fs.readFileSync(file, 'utf8').split('\n').findIndex((l) => l.includes(`"id": ${JSON.stringify(id)}`)); // 0-based id line = 1-based `{` line
}
const opts = (file: string, more: Partial<LlavaJsonOptions> = {}): LlavaJsonOptions => ({ file, images: imagesDir, marker: '<image>', requireImage: true, skipBadRecords: false, displayFile: 'data/train.json', ...more });

function throwsPipe(fn: () => unknown): PipeRuntimeError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PipeRuntimeError) return e;
    throw e;
  }
  assert.fail('expected a PipeRuntimeError');
}

describe('readLlavaJson', () => {
  it('reads good records: roles mapped, image resolved, id kept', () => {
    const file = writeJson('good.json', [GOOD, JAPANESE]);
    const { records, skipped } = readLlavaJson(opts(file));
    assert.deepEqual(skipped, []);
    assert.equal(records.length, 2);
    assert.deepEqual(records[0]!.turns, [{ role: 'user', text: '<image>\nWhat is this?' }, { role: 'assistant', text: 'A square.' }]);
    assert.equal(records[0]!.imagePath, path.join(imagesDir, 'good.png'));
    assert.equal(records[0]!.id, 'ok-0');
    assert.deepEqual(records[0]!.location, { file: 'data/train.json', line: 2, col: 3 });
    // system -> system, ユーザー -> user, システム -> assistant (LLaVA-JP's answering role), アシスタント -> assistant.
    assert.deepEqual(records[1]!.turns.map((t) => t.role), ['system', 'user', 'assistant', 'assistant']);
    assert.deepEqual(loadRecordImage(records[0]!).data.subarray(0, 3), Uint8Array.from([255, 0, 0]));
  });

  for (const [name, { rec, code, says }] of Object.entries(BAD))
    it(`${name}: ${code} naming the file, the record index and id, and its line`, () => {
      const file = writeJson(`bad-${name}.json`, [GOOD, rec]);
      const err = throwsPipe(() => readLlavaJson(opts(file)));
      assert.equal(err.code, code);
      assert.match(err.message, says);
      assert.ok(err.message.startsWith(`record 1 (id "${rec.id}"): `), err.message);
      const line = lineOfId(file, rec.id!);
      assert.ok(line > 2);
      assert.deepEqual(err.location, { file: 'data/train.json', line, col: 3 });
      assert.ok(err.render().startsWith(`data/train.json:${line}:3 - error ${code}: record 1 (id "${rec.id}")`), err.render());
    });

  it('names a record without an id by index alone', () => {
    const file = writeJson('noid.json', [GOOD, { image: 'good.png', conversations: [] }]);
    const err = throwsPipe(() => readLlavaJson(opts(file)));
    assert.equal(err.code, 'PIPE9003');
    assert.equal(err.message, 'record 1: "conversations" is empty');
  });

  it('without skip_bad_records the first bad record throws', () => {
    const file = writeJson('two-bad.json', [GOOD, BAD.noMarker!.rec, BAD.missingImage!.rec]);
    assert.equal(throwsPipe(() => readLlavaJson(opts(file))).code, 'PIPE9006');
  });

  it('with skip_bad_records skips exactly the bad records and reports each', () => {
    const all = [GOOD, ...Object.values(BAD).map((b) => b.rec), JAPANESE];
    const file = writeJson('mixed.json', all);
    const { records, skipped } = readLlavaJson(opts(file, { skipBadRecords: true }));
    assert.deepEqual(records.map((r) => r.index), [0, all.length - 1]);
    assert.deepEqual(records.map((r) => r.id), ['ok-0', 'ja']);
    assert.deepEqual(skipped.map((s) => [s.index, s.code]), Object.values(BAD).map((b, i) => [i + 1, b.code]));
    for (const s of skipped) {
      assert.ok(s.message.startsWith(`record ${s.index} (id "${all[s.index]!.id}")`), s.message);
      assert.deepEqual(s.location, { file: 'data/train.json', line: lineOfId(file, all[s.index]!.id!), col: 3 });
    }
  });

  it('require_image: false allows text-only records, but not a marker with no image', () => {
    const file = writeJson('text-only.json', [BAD.noImage!.rec, { id: 't', conversations: [{ from: 'human', value: '<image> hi' }] }]);
    const { records, skipped } = readLlavaJson(opts(file, { requireImage: false, skipBadRecords: true }));
    assert.deepEqual(records.map((r) => [r.id, r.imagePath]), [['noimage', undefined]]);
    assert.deepEqual(skipped.map((s) => [s.index, s.code]), [[1, 'PIPE9003']]);
    assert.match(skipped[0]!.message, /has "<image>" in a turn but no "image"/);
  });

  it('uses the configured marker', () => {
    const file = writeJson('marker.json', [{ id: 'm', image: 'good.png', conversations: [{ from: 'human', value: '<画像>説明して' }] }]);
    assert.equal(readLlavaJson(opts(file, { marker: '<画像>' })).records.length, 1);
    assert.equal(throwsPipe(() => readLlavaJson(opts(file))).code, 'PIPE9006');
  });

  it('missing file: PIPE9001', () => {
    const err = throwsPipe(() => readLlavaJson(opts(path.join(dir, 'absent.json'))));
    assert.equal(err.code, 'PIPE9001');
    assert.equal(err.message, 'data file "data/train.json" does not exist');
  });

  it('malformed JSON: PIPE9002 at the line and column of the error, even with skip_bad_records', () => {
    const file = path.join(dir, 'broken.json');
    // Line 3: four spaces + `{"from": "human" ` is 21 characters, so the stray `"value"` is at col 22.
    fs.writeFileSync(file, '[\n  {"id": "a", "conversations": [\n    {"from": "human" "value": "x"}\n  ]}\n]\n');
    const err = throwsPipe(() => readLlavaJson(opts(file, { skipBadRecords: true })));
    assert.equal(err.code, 'PIPE9002');
    assert.deepEqual(err.location, { file: 'data/train.json', line: 3, col: 22 });
    assert.match(err.message, /^"data\/train\.json" is not valid JSON: Expected ','/);
    assert.doesNotMatch(err.message, /position/);
  });

  it('malformed JSON where V8 gives no position: located by the scanner', () => {
    const file = path.join(dir, 'broken2.json');
    fs.writeFileSync(file, '[\n  {"id": xyz}\n]');
    const err = throwsPipe(() => readLlavaJson(opts(file)));
    assert.equal(err.code, 'PIPE9002');
    assert.deepEqual(err.location, { file: 'data/train.json', line: 2, col: 10 });
    assert.match(err.message, /Unexpected token 'x'$/);
  });

  it('a top level that is not an array: PIPE9002', () => {
    const file = path.join(dir, 'object.json');
    fs.writeFileSync(file, '\n  {"conversations": []}');
    const err = throwsPipe(() => readLlavaJson(opts(file)));
    assert.equal(err.code, 'PIPE9002');
    assert.match(err.message, /array of records, found an object/);
    assert.deepEqual(err.location, { file: 'data/train.json', line: 2, col: 3 });
  });

  it('reads JSON Lines: blank lines ignored, a bad line is a bad record at its line', () => {
    const file = path.join(dir, 'data.jsonl');
    // Line 3 is cut off after 32 characters: the error is at its end, col 33.
    const lines = [JSON.stringify(GOOD), '', '{"id": "cut", "conversations": [', '  ' + JSON.stringify(BAD.unknownRole!.rec), JSON.stringify(JAPANESE)];
    fs.writeFileSync(file, lines.join('\r\n') + '\n');
    const { records, skipped } = readLlavaJson(opts(file, { skipBadRecords: true, displayFile: 'd.jsonl' }));
    assert.deepEqual(records.map((r) => [r.index, r.id, r.location?.line]), [[0, 'ok-0', 1], [3, 'ja', 5]]);
    assert.deepEqual(skipped.map((s) => [s.index, s.code, s.location?.line, s.location?.col]), [[1, 'PIPE9002', 3, 33], [2, 'PIPE9003', 4, 3]]);
    assert.match(skipped[0]!.message, /record 1 \(line 3\)/);
    const err = throwsPipe(() => readLlavaJson(opts(file, { displayFile: 'd.jsonl' })));
    assert.equal(err.code, 'PIPE9002');
    assert.ok(err.render().startsWith('d.jsonl:3:33 - error PIPE9002'), err.render());
  });

  it('validateImages decodes up-front: a truncated PNG is PIPE9005 at its record', () => {
    const file = writeJson('truncated.json', [GOOD, { id: 'trunc', image: 'truncated.png', conversations: [{ from: 'human', value: '<image>' }] }]);
    const read = readLlavaJson(opts(file)); // the header is fine, so reading accepts it
    assert.equal(read.records.length, 2);
    const err = throwsPipe(() => validateImages(read.records, false));
    assert.equal(err.code, 'PIPE9005');
    assert.match(err.message, /^record 1 \(id "trunc"\): image ".*truncated\.png" cannot be decoded: PNG decoding failed/);
    assert.deepEqual(err.location, { file: 'data/train.json', line: lineOfId(file, 'trunc'), col: 3 });
    const v = validateImages(read.records, true);
    assert.deepEqual(v.records.map((r) => r.id), ['ok-0']);
    assert.deepEqual(v.skipped.map((s) => [s.index, s.code]), [[1, 'PIPE9005']]);
  });
});

describe('checkLength (PIPE9007)', () => {
  const loc = { file: 'data/train.json', line: 7, col: 3 };
  it('passes records within max_length', () => {
    assert.equal(checkLength(3, 20, 20, loc, false), undefined);
  });
  it('throws, or returns the skipped entry with skip_bad_records', () => {
    const err = throwsPipe(() => checkLength(3, 700, 512, loc, false, 'abc'));
    assert.equal(err.code, 'PIPE9007');
    assert.equal(err.message, 'record 3 (id "abc"): 700 tokens (image tokens included) exceed max_length 512');
    assert.equal(err.render().split('\n')[0], 'data/train.json:7:3 - error PIPE9007: record 3 (id "abc"): 700 tokens (image tokens included) exceed max_length 512');
    assert.deepEqual(checkLength(3, 700, 512, loc, true), { index: 3, code: 'PIPE9007', message: 'record 3: 700 tokens (image tokens included) exceed max_length 512', location: loc });
  });
});
