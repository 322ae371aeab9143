// Sampling in `pipec generate`: nucleus (top-p) sampling with a temperature on hand-made logits
// (pickToken), then the CLI's --temperature, --top-p, --seed and --max-tokens on a finished run of
// tiny.pipe trained for 3 steps (near-random weights: many tokens are likely, so seeds differ); and its
// usage errors: a missing --prompt or --image, words the run's vocabulary lacks.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph } from '../../compiler/ir/graph.js';
import { initBackend } from '../../runtime/backend/backends.js';
import { encoderOf, imageShapeOf, preprocessFor } from '../../runtime/data/datasets.js';
import { buildPrompt } from '../../runtime/data/examples.js';
import { loadImageFile, preprocessImage } from '../../runtime/data/images.js';
import { drawShape } from '../../runtime/data/synthetic-shapes.js';
import { generate, pickToken } from '../../runtime/generate.js';
import { ModelRunner } from '../../runtime/model.js';
import { ParamStore, paramSpecs } from '../../runtime/params.js';
import { Rng } from '../../runtime/random.js';
import { latestCheckpoint, loadComponents } from '../../runtime/train/checkpoint.js';
import { readRunTokenizer, runTemplate } from '../../runtime/train/generate-run.js';
import { pipec } from '../helpers/cli.js';
import { writePng } from '../helpers/png.js';
import { tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

/** How often each token is drawn in `n` draws from `logits`, as fractions. */
function frequencies(logits: number[], temperature: number, topP: number, n = 4000, seed = 7): number[] {
  const rng = new Rng(seed);
  const counts = logits.map(() => 0);
  for (let i = 0; i < n; i++) counts[pickToken(Float32Array.from(logits), temperature, topP, rng)]!++;
  return counts.map((c) => c / n);
}

const softmax = (xs: number[], t = 1) => {
  const e = xs.map((x) => Math.exp(x / t));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
};

/** Each fraction within `tol` of the expected one (4000 draws: one standard deviation is under 0.008). */
function near(got: number[], want: number[], tol: number, what: string): void {
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]!) <= tol, `${what}: token ${i} drawn ${g.toFixed(3)}, expected ${want[i]!.toFixed(3)}`));
}

describe('generate: sampling a token (pickToken)', () => {
  const logits = [3, 2, 1, 0]; // softmax: 0.644, 0.237, 0.087, 0.032

  it('temperature 0 is the argmax, whatever the draw', () => {
    const rng = new Rng(1);
    for (let i = 0; i < 50; i++) assert.equal(pickToken(Float32Array.from([0.5, 2, -1, 1.9]), 0, 1, rng), 1);
  });

  it('top-p 1 samples every token in proportion to softmax(logits / temperature)', () => {
    near(frequencies(logits, 1, 1), softmax(logits), 0.03, 'T = 1');
    near(frequencies(logits, 0.5, 1), softmax(logits, 0.5), 0.03, 'T = 0.5'); // sharper: 0.865 for the first
    near(frequencies(logits, 2, 1), softmax(logits, 2), 0.03, 'T = 2'); // flatter: 0.455 for the first
  });

  it('top-p keeps the fewest most likely tokens whose mass reaches p, renormalised', () => {
    const p = softmax(logits);
    // 0.8: the first alone (0.644) is short of it, the first two (0.881) reach it
    near(frequencies(logits, 1, 0.8), [p[0]! / (p[0]! + p[1]!), p[1]! / (p[0]! + p[1]!), 0, 0], 0.03, 'top-p 0.8');
    assert.deepEqual(frequencies(logits, 1, 0.5), [1, 0, 0, 0], 'top-p 0.5: the first token alone reaches it');
    assert.deepEqual(frequencies(logits, 5, 1e-6), [1, 0, 0, 0], 'a tiny top-p is greedy at any temperature');
  });

  it('the same seed draws the same tokens; another seed others', () => {
    const draws = (seed: number) => Array.from({ length: 20 }, ((rng) => () => pickToken(Float32Array.from(logits), 1, 1, rng))(new Rng(seed)));
    assert.deepEqual(draws(3), draws(3));
    assert.notDeepEqual(draws(3), draws(4));
  });
});

describe('pipec generate: --temperature, --top-p, --seed, --max-tokens', function () {
  this.timeout(300_000);
  const PROMPT = 'what colour is the shape ?';
  let run: string, image: string;

  before(() => {
    run = path.join(tmpDir('generate'), 'run');
    image = path.join(tmpDir('generate-image'), 'shape.png');
    writePng(image, { width: 16, height: 16, rgb: drawShape(new Rng(5), 16, 0, 1) });
    const r = pipec(['run', repo('test/runtime/tiny.pipe'), '--out', run, '--backend', 'wasm', '--set', 'stage.align.steps=2', '--set', 'stage.finetune.steps=1']);
    assert.equal(r.status, 0, r.stderr);
  });

  /** stdout of `pipec generate RUN --prompt PROMPT ...args` (wasm), which must exit 0. */
  const gen = (...args: string[]) => {
    const r = pipec(['generate', run, '--image', image, '--prompt', PROMPT, '--backend', 'wasm', ...args]);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.replace(/\n$/, '');
  };

  it('under one --seed the sampled text is the same twice; other seeds give other texts', () => {
    const sampled = (seed: number) => gen('--temperature', '1', '--seed', String(seed), '--max-tokens', '12');
    const first = sampled(1);
    assert.equal(sampled(1), first);
    const texts = new Set([first, sampled(2), sampled(3)]);
    assert.equal(texts.size, 3, `seeds 1, 2, 3 gave ${JSON.stringify([...texts])}`);
  });

  it('a tiny --top-p keeps only the most likely token: the greedy text, whatever the seed and temperature', () => {
    const greedy = gen();
    assert.notEqual(greedy, '', 'the greedy text is not empty (else this compares nothing)');
    for (const seed of ['1', '2']) assert.equal(gen('--temperature', '1.5', '--top-p', '1e-6', '--seed', seed), greedy, `seed ${seed}`);
  });

  it('--max-tokens N stops after N new tokens, exactly', async () => {
    // the greedy tokens, from the run's own model and tokenizer in this process
    await initBackend('wasm');
    const graph = JSON.parse(fs.readFileSync(path.join(run, 'graph.json'), 'utf8')) as Graph;
    const model = graph.models[0]!;
    const params = new ParamStore(paramSpecs(model.components), 0);
    loadComponents(latestCheckpoint(run)!, model.components.map((c) => c.name), params);
    const tok = readRunTokenizer(run);
    const pixels = preprocessImage(loadImageFile(image), preprocessFor(encoderOf(model)!));
    const prompt = buildPrompt([{ role: 'user', text: `<image>\n${PROMPT}` }], runTemplate(graph), tok, '<image>', model.image_tokens ?? 0);
    const [ids] = generate(new ModelRunner(model, params), [{ ids: prompt.ids, imageStart: prompt.imageStart, pixels }], { maxNewTokens: 16, eosId: tok.eosId, imageShape: imageShapeOf(model) });
    params.dispose();
    assert.equal(ids!.length, 16, 'no end of text within 16 tokens');
    // some tokens print nothing (ids past the small vocabulary): check the caps N where token N and the
    // one after it both print, so N - 1 or N + 1 tokens would print differently
    const text = (n: number) => tok.decode(ids!.slice(0, n), { skipSpecialTokens: true });
    const caps = [...Array(15).keys()].filter((n) => n > 0 && text(n) !== text(n - 1) && text(n + 1) !== text(n)).slice(0, 2);
    assert.ok(caps.length > 0, `no cap to check in ${JSON.stringify(ids)}`);
    for (const n of caps) assert.equal(gen('--max-tokens', String(n)), text(n), `--max-tokens ${n}`);
  });

  it('a value that is not a number is a usage error (exit 2)', () => {
    for (const args of [['--max-tokens', '1.5'], ['--top-p', 'most']]) { // a whole number, a number
      const r = pipec(['generate', run, '--image', image, '--prompt', PROMPT, ...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^pipec: ${args[0]}`), r.stderr);
    }
  });

  it('no --prompt, or no --image for a model that always trained with one, is a usage error (exit 2) saying what to add', () => {
    const noPrompt = pipec(['generate', run, '--image', image]);
    assert.equal(noPrompt.status, 2, noPrompt.stderr);
    assert.match(noPrompt.stderr, /^pipec: generate needs --prompt/, noPrompt.stderr);
    assert.equal(noPrompt.stdout, '');
    const noImage = pipec(['generate', run, '--prompt', PROMPT]);
    assert.equal(noImage.status, 2, noImage.stderr);
    assert.match(noImage.stderr, /reads an image with every prompt .*--image FILE/, noImage.stderr);
    assert.equal(noImage.stdout, '');
  });

  it('words the run\'s vocabulary lacks are a usage error naming them; case does not matter', () => {
    const unknown = pipec(['generate', run, '--image', image, '--prompt', 'What hue is the shape?']);
    assert.equal(unknown.status, 2, unknown.stderr);
    assert.match(unknown.stderr, /vocabulary does not have: "hue" \(read as <unk>/, unknown.stderr);
    assert.match(unknown.stderr, /hint: rephrase with the \d+ words it knows \(any case\): .*colour/, unknown.stderr);
    assert.equal(unknown.stdout, '');
    // the data's own question, as a person types it: capitals, no space before the mark
    const typed = pipec(['generate', run, '--image', image, '--prompt', 'What colour is the shape?', '--backend', 'wasm']);
    assert.equal(typed.status, 0, typed.stderr);
    assert.equal(typed.stdout, pipec(['generate', run, '--image', image, '--prompt', PROMPT, '--backend', 'wasm']).stdout, 'read as the data\'s lowercase words');
  });
});
