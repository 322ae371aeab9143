// Verified resume: each fault found on main (a missing or partial optimizer file, a garbage or mistyped
// trainer_state.json, latest.json naming a missing folder or a folder of another run, a checkpoint of
// another program mixed in, killed processes' temporaries, summary.json after a resume) gives a warning
// naming what was wrong, the newest intact checkpoint is used, and the run still ends bit-identical to
// an uninterrupted one. Runs are in-process on the tiny program (short stages, see run-fixtures.ts).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../runtime/backend/backends.js';
import { checkpointName, loadOptimizer } from '../runtime/train/checkpoint.js';
import { Optimizer } from '../runtime/train/optimizer.js';
import { encodeSafetensors, readWeights } from '../runtime/weights/safetensors.js';
import { pipec } from './helpers/cli.js';
import { lossRows, reseal, runIn, SHORT, snapshot, tensorFiles, TINY, tinyGraph, tmpDir } from './run-fixtures.js';

const ALIGN2 = checkpointName(0, 'align', 2), ALIGN4 = checkpointName(0, 'align', 4);
const FINAL = checkpointName(1, 'finetune', 2);

describe('verified resume', function () {
  this.timeout(300_000);
  let ref: string;

  before(async () => {
    await initBackend('wasm');
    ref = tmpDir('ref');
    const r = await runIn(ref);
    assert.equal(r.error, undefined, r.error?.render());
  });

  /** A run stopped after 5 steps: checkpoints at align steps 2 and 4, latest.json naming step 4. */
  async function interrupted(name: string, stopAfterSteps = 5): Promise<string> {
    const dir = tmpDir(name);
    const r = await runIn(dir, { stopAfterSteps });
    assert.equal(r.error, undefined, r.error?.render());
    return dir;
  }
  const ck = (dir: string, name: string) => path.join(dir, 'checkpoints', name);

  /** Resumes; the run must finish with the reference's per-step losses and final tensors, bit for bit. */
  async function resumeToEnd(dir: string): Promise<string> {
    const r = await runIn(dir, { resume: true });
    assert.equal(r.error, undefined, `${r.error?.render()}\n${r.log}`);
    assert.deepEqual(lossRows(dir), lossRows(ref), 'per-step losses differ from the uninterrupted run');
    assert.deepEqual(tensorFiles(ck(dir, FINAL)), tensorFiles(ck(ref, FINAL)), 'final weights or optimizer state differ');
    return r.log;
  }

  /** The damaged step-4 checkpoint is skipped with PIPE9035 naming why, kept as skipped-..., and step 2 is used. */
  async function fallsBack(dir: string, why: RegExp): Promise<void> {
    const log = await resumeToEnd(dir);
    assert.match(log, new RegExp(`warning PIPE9035: checkpoint "${ALIGN4}" cannot be resumed from: ${why.source}`));
    assert.match(log, /resuming from .*00-align-step000002 \(stage align, step 2\/6\)/);
    assert.ok(fs.existsSync(path.join(dir, 'checkpoints', `skipped-${ALIGN4}`)), 'the skipped checkpoint is kept for inspection');
  }

  it('a missing optimizer file is refused (never zero moments) and the previous checkpoint is used', async () => {
    const dir = await interrupted('no-opt');
    fs.rmSync(path.join(ck(dir, ALIGN4), 'optimizer.safetensors'));
    await fallsBack(dir, /optimizer\.safetensors is missing/);
  });

  it('a partial (truncated) optimizer file is refused by its manifest size', async () => {
    const dir = await interrupted('part-opt');
    const f = path.join(ck(dir, ALIGN4), 'optimizer.safetensors');
    fs.truncateSync(f, Math.floor(fs.statSync(f).size / 2));
    await fallsBack(dir, /optimizer\.safetensors is \d+ bytes, the manifest says \d+/);
  });

  it('an optimizer file sealed without one moment is refused by the tensor check, naming the tensor', async () => {
    const dir = await interrupted('slot-opt');
    const c = ck(dir, ALIGN4);
    const all = readWeights(c);
    const dropped = [...all.keys()].find((n) => n.startsWith('exp_avg_sq.'))!;
    const kept = new Map([...all].filter(([n]) => n !== dropped).map(([n, t]) => [n, { shape: t.info.shape, data: t.data }]));
    fs.writeFileSync(path.join(c, 'optimizer.safetensors'), encodeSafetensors(kept));
    reseal(c); // the manifest agrees: only the tensor check can notice
    await fallsBack(dir, new RegExp(`optimizer\\.safetensors has no tensor "${dropped.replace(/\./g, '\\.')}"`));
  });

  it('a garbage trainer_state.json is a warning and a fallback, not an internal error', async () => {
    const dir = await interrupted('garbage-state');
    fs.writeFileSync(path.join(ck(dir, ALIGN4), 'trainer_state.json'), '{"format": "pipec.checkpoint", garbage');
    reseal(ck(dir, ALIGN4));
    await fallsBack(dir, /trainer_state\.json is not valid JSON/);
  });

  it('"step": "3" fails the trainer-state schema instead of resuming at the wrong step', async () => {
    const dir = await interrupted('string-step');
    const f = path.join(ck(dir, ALIGN4), 'trainer_state.json');
    fs.writeFileSync(f, fs.readFileSync(f, 'utf8').replace('"step": 4', '"step": "3"'));
    reseal(ck(dir, ALIGN4));
    await fallsBack(dir, /trainer_state\.json: \/step must be integer/);
  });

  it('an edited file of an otherwise valid checkpoint fails its SHA-256', async () => {
    const dir = await interrupted('flipped');
    const f = path.join(ck(dir, ALIGN4), 'proj', 'model.safetensors');
    const b = fs.readFileSync(f);
    b[b.length - 1] ^= 0x40; // one bit of the last weight
    fs.writeFileSync(f, b);
    await fallsBack(dir, /proj\/model\.safetensors does not match its SHA-256 in the manifest/);
  });

  it('latest.json naming a missing folder: the newest intact checkpoint is used, not "no checkpoint"', async () => {
    const dir = await interrupted('latest-missing');
    fs.writeFileSync(path.join(dir, 'checkpoints', 'latest.json'), JSON.stringify({ checkpoint: checkpointName(0, 'align', 99) }));
    const log = await resumeToEnd(dir);
    assert.match(log, /warning PIPE9038: checkpoints\/latest\.json names 00-align-step000099, which does not exist; the newest intact checkpoint is used instead/);
    assert.match(log, /resuming from .*00-align-step000004 /);
  });

  it('latest.json pointing into another run\'s folder is refused and that folder is left alone', async () => {
    const other = await interrupted('other-run');
    const before = snapshot(other);
    const dir = await interrupted('latest-escape');
    const rel = path.relative(path.join(dir, 'checkpoints'), path.join(other, 'checkpoints', ALIGN2));
    fs.writeFileSync(path.join(dir, 'checkpoints', 'latest.json'), JSON.stringify({ checkpoint: rel }));
    const log = await resumeToEnd(dir);
    assert.match(log, /warning PIPE9038: checkpoints\/latest\.json names ".*", which is not a checkpoint name of this folder/);
    assert.match(log, /resuming from .*latest-escape.*00-align-step000004 /);
    assert.deepEqual(snapshot(other), before);
  });

  it('a checkpoint of a different program mixed in is skipped; if all are, PIPE9024', async () => {
    const foreign = tmpDir('foreign');
    assert.equal((await runIn(foreign, { stopAfterSteps: 5, graph: tinyGraph([...SHORT, 'stage.align.optimizer.lr=2e-2']) })).error, undefined);
    const dir = await interrupted('mixed');
    fs.rmSync(ck(dir, ALIGN4), { recursive: true });
    fs.cpSync(ck(foreign, ALIGN4), ck(dir, ALIGN4), { recursive: true });
    await fallsBack(dir, /it belongs to a different program \(graph [0-9a-f]{16}; this program is graph [0-9a-f]{16}\)/);
    // every checkpoint of another program: the resume is refused as a mismatch
    const all = await interrupted('all-foreign');
    for (const n of [ALIGN2, ALIGN4]) (fs.rmSync(ck(all, n), { recursive: true }), fs.cpSync(ck(foreign, n), ck(all, n), { recursive: true }));
    const r = await runIn(all, { resume: true });
    assert.equal(r.error?.code, 'PIPE9024', r.log);
  });

  it('no intact checkpoint: PIPE9036 naming each one and why, exit 1, nothing deleted', async () => {
    const dir = await interrupted('none-intact');
    for (const n of [ALIGN2, ALIGN4]) fs.rmSync(path.join(ck(dir, n), 'optimizer.safetensors'));
    const before = snapshot(dir);
    const r = pipec(['run', TINY, '--out', dir, '--resume', '--backend', 'wasm', ...SHORT.flatMap((s) => ['--set', s])]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /error PIPE9036: --resume: no checkpoint in ".*none-intact.*" can be resumed from \(00-align-step000004: optimizer\.safetensors is missing; 00-align-step000002: optimizer\.safetensors is missing\)/);
    assert.match(r.stderr, /hint: start the run again with --overwrite/);
    assert.deepEqual(snapshot(dir), before);
  });

  it('temporaries of killed processes are removed under the lock when a run starts', async () => {
    const dir = await interrupted('temps');
    const planted = [path.join(dir, 'checkpoints', '.latest.json.tmp-999999'), path.join(dir, '.metrics.jsonl.tmp-999999'), path.join(dir, '.run.lock.999999-abc')];
    for (const f of planted) fs.writeFileSync(f, 'x');
    fs.mkdirSync(path.join(dir, 'checkpoints', `.tmp-${ALIGN4}-999999`, 'proj'), { recursive: true });
    const log = await resumeToEnd(dir);
    assert.match(log, /note: removed 4 temporaries left by a killed run/);
    for (const f of planted) assert.ok(!fs.existsSync(f), f);
    assert.ok(!fs.readdirSync(path.join(dir, 'checkpoints')).some((n) => n.startsWith('.')));
  });

  it('summary.json after a resume covers every stage, with the earlier process\'s figures', async () => {
    const dir = await interrupted('summary', 7); // align done (step 6) and finetune's step 1 checkpointed
    await resumeToEnd(dir);
    const s = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8')), r = JSON.parse(fs.readFileSync(path.join(ref, 'summary.json'), 'utf8'));
    assert.deepEqual(s.stages.map((x: { name: string; steps: number; final_loss: number }) => [x.name, x.steps, x.final_loss]), r.stages.map((x: { name: string; steps: number; final_loss: number }) => [x.name, x.steps, x.final_loss]));
    assert.ok(s.stages.every((x: { seconds: number }) => x.seconds > 0));
  });

  it('generate on a run whose final trainer_state.json is garbage: PIPE9028 at that file, exit 1', () => {
    const dir = tmpDir('gen-garbage');
    fs.cpSync(ref, dir, { recursive: true });
    fs.writeFileSync(path.join(ck(dir, FINAL), 'trainer_state.json'), '[1, 2');
    const r = pipec(['generate', dir, '--prompt', 'hi']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /01-finetune-step000002\/trainer_state\.json - error PIPE9028: .* is not a usable run directory: trainer_state\.json is not valid JSON/);
  });

  it('loadOptimizer refuses a missing moment (PIPE6009) instead of leaving zeros', () => {
    const dir = tmpDir('opt-unit');
    const w = tf.variable(tf.ones([2, 2]));
    const opt = new Optimizer('adamw', { lr: 0.1 }, new Map([['w.weight', w]]));
    fs.writeFileSync(path.join(dir, 'optimizer.safetensors'), encodeSafetensors(new Map([['exp_avg.w.weight', { shape: [2, 2], data: new Float32Array(4).fill(1) }]])));
    assert.throws(() => loadOptimizer(dir, opt, 3), (e: Error & { code?: string }) => e.code === 'PIPE6009' && /exp_avg_sq\.w\.weight/.test(e.message));
    fs.writeFileSync(path.join(dir, 'optimizer.safetensors'), encodeSafetensors(new Map([['exp_avg.w.weight', { shape: [4], data: new Float32Array(4) }], ['exp_avg_sq.w.weight', { shape: [2, 2], data: new Float32Array(4) }]])));
    assert.throws(() => loadOptimizer(dir, opt, 3), (e: Error & { code?: string }) => e.code === 'PIPE9025');
    opt.dispose();
    w.dispose();
  });
});
