// `pipec eval`: the loss of a program before training is the loss training's first step reports on the
// same records (one batch holding the whole dataset: the same pipeline, tokenizer, initialisation and
// loss); a finished run evaluates from its final checkpoint; bad arguments are located errors.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { main } from '../cli/main.js';
import { readMetrics } from '../runtime/train/metrics.js';
import { tmpDir } from './helpers/tmp.js';

const PROGRAM = `import "std/vision"
import "std/projectors"
import "std/llm"
import "std/data"
import "std/train"

model tiny {
  encoder vision = vit(image: 16, patch: 8, hidden: 16, layers: 1, heads: 2, mlp: 32, select: "patch")
  projector proj = mlp_gelu(depth: 2, in: vision.hidden, out: lm.hidden)
  llm lm = llama(vocab: 128, hidden: 32, layers: 1, heads: 2, kv_heads: 1, mlp: 64, context: 64)
  flow vision -> proj -> lm at "<image>"
}

dataset shapes = synthetic_shapes(count: 24, image: 16, task: "qa", seed: 3, holdout: 0.0)
dataset captions = synthetic_shapes(count: 8, image: 16, task: "caption", seed: 5, holdout: 0.0)
dataset both = mixture(ratios: { shapes: 0.75, captions: 0.25 })

stage train_all {
  model: tiny
  train: [proj, lm]
  freeze: [vision]
  data: shapes
  optimizer: adamw(lr: 1e-2)
  batch: 24
  steps: 2
  max_length: 40
  precision: fp32
  devices: cpu
  seed: 7
}
`;

interface Result { loss: number; tokens: number; records: number; weights: { kind: string }; accuracy?: { correct: number; total: number }; details?: { loss: number; tokens: number }[] }

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(args, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { code, out, err };
}

describe('pipec eval', function () {
  this.timeout(300_000);
  let dir = '';
  let file = '';

  before(() => {
    dir = tmpDir('eval');
    file = path.join(dir, 'tiny.pipe');
    fs.writeFileSync(file, PROGRAM);
  });

  it("a program's loss before training is the loss of training's first step on the same records", async () => {
    const before = await cli(['eval', file, '--backend', 'cpu', '--records', '-o', path.join(dir, 'before.json')]);
    assert.equal(before.code, 0, before.err);
    assert.match(before.out, /^loss \d+\.\d{6} \(perplexity [\d.]+\) over \d+ tokens of 24 records\nexact match \d+\/24/);
    const r = JSON.parse(fs.readFileSync(path.join(dir, 'before.json'), 'utf8')) as Result;
    assert.equal(r.weights.kind, 'program');
    // the per-record losses, weighted by their tokens, make up the whole
    const weighted = r.details!.reduce((a, d) => a + d.loss * d.tokens, 0) / r.details!.reduce((a, d) => a + d.tokens, 0);
    assert.ok(Math.abs(weighted - r.loss) < 1e-5, `${weighted} vs ${r.loss}`);

    const run = await cli(['run', file, '--out', path.join(dir, 'run'), '--backend', 'cpu']);
    assert.equal(run.code, 0, run.err);
    const first = readMetrics(path.join(dir, 'run'))[0]!;
    assert.equal(first.step, 1);
    assert.ok(Math.abs(first.loss - r.loss) < 1e-5, `first step's loss ${first.loss}, eval ${r.loss}`);
  });

  it('evaluates a finished run from its final checkpoint, on another dataset of its graph too', async () => {
    const runDir = path.join(dir, 'run');
    const a = await cli(['eval', runDir, '--backend', 'cpu', '-o', path.join(dir, 'after.json')]);
    assert.equal(a.code, 0, a.err);
    const after = JSON.parse(fs.readFileSync(path.join(dir, 'after.json'), 'utf8')) as Result & { weights: { checkpoint: string } };
    assert.equal(after.weights.kind, 'run');
    assert.match(after.weights.checkpoint, /checkpoints[\\/]00-train_all-step000002/);
    const before = JSON.parse(fs.readFileSync(path.join(dir, 'before.json'), 'utf8')) as Result;
    assert.ok(after.loss < before.loss, `two steps at lr 1e-2 lower the loss: ${before.loss} -> ${after.loss}`);
    assert.equal(after.accuracy!.total, 24);
    // captions: a `plain` template has no question to answer, so no accuracy
    const c = await cli(['eval', runDir, '--data', 'captions', '--backend', 'cpu']);
    assert.equal(c.code, 0, c.err);
    assert.match(c.out, /of 8 records\n$/);
    assert.doesNotMatch(c.out, /exact match/);
  });

  it('names what is wrong: an unknown stage or dataset, a folder that is not a run', async () => {
    const s = await cli(['eval', file, '--stage', 'nope', '--backend', 'cpu']);
    assert.equal(s.code, 1);
    assert.match(s.err, /PIPE9070.*there is no stage `nope`[\s\S]*stages: train_all/);
    const d = await cli(['eval', file, '--data', 'nope', '--backend', 'cpu']);
    assert.equal(d.code, 1);
    assert.match(d.err, /PIPE9070.*there is no dataset `nope`[\s\S]*datasets: shapes, captions, both/);
    // a mixture has no records of its own: eval names its sources
    const m = await cli(['eval', file, '--data', 'both', '--backend', 'cpu']);
    assert.equal(m.code, 1);
    assert.match(m.err, /PIPE9070.*`both` is a mixture[\s\S]*--data: shapes, captions/);
    const empty = fs.mkdtempSync(path.join(dir, 'empty-'));
    const e = await cli(['eval', empty, '--backend', 'cpu']);
    assert.equal(e.code, 1);
    assert.match(e.err, /PIPE9028.*it has no graph\.json/);
    const u = await cli(['eval', path.join(dir, 'missing.pipe')]);
    assert.equal(u.code, 2);
  });
});
