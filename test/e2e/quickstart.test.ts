// The README's main job, as a user runs it: `pipec run pipelines/quickstart.pipe` on the default
// backend trains both stages, reports held-out colour accuracy >= 90%, and `pipec generate` then
// answers the colour question about a newly drawn image, in English and Japanese. (Minutes, not seconds.)
import { strict as assert } from 'node:assert';
import type { SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COLOURS, drawShape } from '../../runtime/data/synthetic-shapes.js';
import { Rng } from '../../runtime/random.js';
import { pipec } from '../helpers/cli.js';
import { writePng } from '../helpers/png.js';
import { tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

describe('quickstart (the README main job)', function () {
  this.timeout(20 * 60_000);
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

  it('trains both stages on the fresh-clone default backend (wasm) and reaches >= 90% held-out colour accuracy', () => {
    const { runDir, r } = quickstartRun();
    assert.match(r.stderr, /backend wasm/);
    assert.match(r.stderr, /stage pretrain done/);
    assert.match(r.stderr, /stage instruct done/);
    const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8'));
    const colour = summary.evaluation.find((e: { question: string }) => e.question === 'colour');
    assert.ok(colour.accuracy >= 0.9, `colour accuracy ${colour.accuracy}`);
    for (const f of ['metrics.jsonl', 'eval.jsonl', 'dashboard.html', 'tb', 'graph.json', 'tokenizer.json']) assert.ok(fs.existsSync(path.join(runDir, f)), f);
  });

  it('pipec generate answers the colour question for new images', () => {
    const { runDir } = quickstartRun();
    const images = tmpDir('quickstart-images');
    let right = 0;
    const cases = [0, 1, 2, 3].map((k) => ({ colour: (k * 2 + 1) % COLOURS.length, shape: k % 4, seed: 777_000 + k }));
    for (const c of cases) {
      const file = path.join(images, `new-${c.seed}.png`);
      writePng(file, { width: 32, height: 32, rgb: drawShape(new Rng(c.seed), 32, c.colour, c.shape) });
      const en = pipec(['generate', runDir, '--image', file, '--prompt', 'what colour is the shape ?']);
      assert.equal(en.status, 0, en.stderr);
      const ja = pipec(['generate', runDir, '--image', file, '--prompt', 'この図形は何色ですか？']);
      assert.equal(ja.status, 0, ja.stderr);
      if (en.stdout.trim() === COLOURS[c.colour]!.en) right++;
      if (ja.stdout.trim() === COLOURS[c.colour]!.ja) right++;
    }
    assert.ok(right >= 7, `${right}/8 answers right`);
  });
});
