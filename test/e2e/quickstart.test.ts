// The README's main job, as a user runs it: `pipec run pipelines/quickstart.pipe` on the fresh-clone
// default backend trains both stages and answers >= 90% of colour AND shape questions, in English and
// Japanese, about held-out images of its own generator and about shapes drawn by other code
// (helpers/other-drawer.ts: other sizes, positions, line widths, palette, backgrounds and noise); then
// `pipec generate` answers a newly drawn image as a user types the question. (Minutes, not seconds.)
import { strict as assert } from 'node:assert';
import type { SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../../runtime/backend/backends.js';
import { encoderOf, preprocessFor } from '../../runtime/data/datasets.js';
import { preprocessImage } from '../../runtime/data/images.js';
import { COLOURS, SHAPES } from '../../runtime/data/synthetic-shapes.js';
import { askShapeQuestions, type EvalResult, questionsAbout } from '../../runtime/train/evaluate.js';
import { loadRunForQuestions } from '../../runtime/train/generate-run.js';
import { pipec } from '../helpers/cli.js';
import { drawOtherShapes } from '../helpers/other-drawer.js';
import { writePng } from '../helpers/png.js';
import { tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

const show = (rs: EvalResult[]) => rs.map((e) => `${e.question}/${e.language} ${(e.accuracy * 100).toFixed(1)}% (${e.correct}/${e.total}) misses: ${JSON.stringify(e.examples)}`).join('\n');

/** Each of colour/shape x en/ja is there and reaches 90%. */
function assertAllAbove90(rs: EvalResult[], what: string) {
  assert.deepEqual(rs.map((e) => `${e.question}/${e.language}`), ['colour/en', 'colour/ja', 'shape/en', 'shape/ja'], show(rs));
  assert.ok(rs.every((e) => e.total >= 40), `${what}: too few questions to measure 90%\n${show(rs)}`);
  assert.ok(rs.every((e) => e.accuracy >= 0.9), `${what}: below 90%\n${show(rs)}`);
}

describe('quickstart (the README main job)', function () {
  this.timeout(30 * 60_000);
  let trained: { runDir: string; r: SpawnSyncReturns<string> } | undefined;
  /** The README's run, made by whichever test needs it first (each test also runs alone, e.g. with --grep). */
  function quickstartRun() {
    if (!trained) {
      // A fresh clone has no native TensorFlow (`npm run setup:tensorflow` adds it, CI does), so the
      // README's default there is wasm; run on it explicitly so CI checks what a new user gets.
      const runDir = tmpDir('quickstart');
      trained = { runDir, r: pipec(['run', repo('pipelines/quickstart.pipe'), '--out', runDir, '--backend', 'wasm']) };
    }
    assert.equal(trained.r.status, 0, trained.r.stderr.slice(-2000));
    return trained;
  }

  it('trains both stages on the fresh-clone default backend (wasm): >= 90% on held-out colour and shape questions, English and Japanese', () => {
    const { runDir, r } = quickstartRun();
    assert.match(r.stderr, /backend wasm/);
    assert.match(r.stderr, /stage pretrain done/);
    assert.match(r.stderr, /stage instruct done/);
    const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8'));
    assertAllAbove90(summary.evaluation, 'held-out images of the generator');
    for (const e of summary.evaluation) assert.match(r.stderr, new RegExp(`held-out accuracy on "${e.question}" questions \\(${e.language}\\): `));
    for (const f of ['metrics.jsonl', 'eval.jsonl', 'dashboard.html', 'tb', 'graph.json', 'tokenizer.json']) assert.ok(fs.existsSync(path.join(runDir, f)), f);
  });

  it('answers >= 90% of colour and shape questions, English and Japanese, about shapes drawn by other code', async () => {
    const { runDir } = quickstartRun();
    await initBackend('wasm');
    const ctx = await loadRunForQuestions(runDir);
    // 48-96 px drawings, resized to the encoder's 32 as `pipec generate` resizes a user's file
    const prep = preprocessFor(encoderOf(ctx.model)!);
    const drawings = drawOtherShapes(96, 20261130);
    const results = askShapeQuestions(ctx, drawings.flatMap((d) => questionsAbout(preprocessImage({ width: d.width, height: d.height, data: d.rgb }, prep), d.colour, d.shape)));
    ctx.params.dispose();
    console.log(`      other drawer: ${results.map((e) => `${e.question}/${e.language} ${(e.accuracy * 100).toFixed(1)}%`).join(', ')}`);
    assertAllAbove90(results, 'shapes drawn by other code');
  });

  it('pipec generate answers a question as a user types it about a shape drawn by other code, in English and Japanese', () => {
    const { runDir } = quickstartRun();
    const images = tmpDir('quickstart-images');
    const cases = drawOtherShapes(8, 4242);
    let right = 0;
    const wrong: string[] = [];
    cases.forEach((d, k) => {
      const file = path.join(images, `other-${k}.png`);
      writePng(file, { width: d.width, height: d.height, rgb: d.rgb });
      const ask = (prompt: string, expected: string) => {
        const r = pipec(['generate', runDir, '--image', file, '--prompt', prompt, '--backend', 'wasm']);
        assert.equal(r.status, 0, r.stderr);
        if (r.stdout.trim() === expected) right++;
        else wrong.push(`${prompt} -> ${r.stdout.trim()} (expected ${expected})`);
      };
      // capitals, American spelling, no space before the mark: the tokenizer reads them as the data's words
      if (k % 2) ask('What color is the shape?', COLOURS[d.colour]!.en);
      else ask('What shape is it?', SHAPES[d.shape]!.en);
      if (k % 2) ask('この図形は何色ですか？', COLOURS[d.colour]!.ja);
      else ask('これは何の形ですか？', SHAPES[d.shape]!.ja);
    });
    assert.ok(right >= 14, `${right}/16 answers right:\n${wrong.join('\n')}`);
  });
});
