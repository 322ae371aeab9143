// A custom class end to end, both halves: test/custom-moe/tiny-tanuki.pipe uses pipelines/models/tanuki's
// TanukiForCausalLM (a Mixtral whose router is tempered) through its TypeScript half in `pipec run` and
// through its PyTorch half in the exported program, trained under `torchrun --nproc_per_node 2` with FSDP
// (gloo, CPU). The two give the same losses over 20 steps; plain Mixtral gives others, so the class's own
// code is what ran on both sides. The exported program carries the class's package and imports it
// relatively (the seed story's failure).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readMetrics, type StepMetrics } from '../runtime/train/metrics.js';
import { compareLosses, rel, torchrun } from './export/helpers.js';
import { pipec } from './helpers/cli.js';
import { runPython, TORCH2_FIX, torch2Python } from './helpers/python.js';
import { unavailable } from './helpers/required.js';
import { tmpDir } from './helpers/tmp.js';
import { repo } from './paths.js';

/** The tiny program beside a copy of the shipped class (custom code lives in the program's folder). */
export function tinyTanukiFolder(name: string): string {
  const dir = tmpDir(name);
  fs.copyFileSync(repo('test/custom-moe/tiny-tanuki.pipe'), path.join(dir, 'tiny-tanuki.pipe'));
  fs.cpSync(repo('pipelines/models/tanuki'), path.join(dir, 'models', 'tanuki'), { recursive: true });
  return dir;
}

/** `pipec ARGS` that must succeed; returns stderr. */
function ok(args: string[]): string {
  const r = pipec(args);
  assert.equal(r.status, 0, `pipec ${args.join(' ')}:\n${r.stderr}`);
  return r.stderr;
}

describe('a custom MoE class in both halves: pipec run and the exported program under torchrun FSDP', function () {
  this.timeout(300_000);
  let PY: string, dir: string, pipe: string, tanuki: StepMetrics[];

  before(function () {
    const found = torch2Python();
    if (!found) unavailable(this, 'no Python with torch >= 2', TORCH2_FIX);
    PY = found.python;
    dir = tinyTanukiFolder('tiny-tanuki');
    pipe = path.join(dir, 'tiny-tanuki.pipe');
    ok(['trust', pipe]);
    ok(['run', pipe, '--out', path.join(dir, 'pipec'), '--backend', 'wasm']);
    tanuki = readMetrics(path.join(dir, 'pipec'));
    assert.equal(tanuki.length, 20);
  });

  it('the export carries the class\'s package and imports it relatively; Python byte-compiles it', () => {
    const out = path.join(dir, 'compiled');
    ok(['export', pipe, '--target', 'torch', '-o', out]);
    assert.deepEqual(fs.readdirSync(path.join(out, 'custom_lm')).sort(), ['__init__.py', 'configuration_tanuki.py', 'modeling_tanuki.py']);
    assert.equal(fs.readFileSync(path.join(out, 'custom_lm', 'modeling_tanuki.py'), 'utf8'), fs.readFileSync(repo('pipelines/models/tanuki/modeling_tanuki.py'), 'utf8'));
    assert.match(fs.readFileSync(path.join(out, 'custom_lm', 'modeling_tanuki.py'), 'utf8'), /^from \.configuration_tanuki import TanukiConfig$/m);
    runPython(PY, ['-W', 'error', '-m', 'py_compile', ...['model.py', 'train.py', 'custom_lm/__init__.py', 'custom_lm/modeling_tanuki.py', 'custom_lm/configuration_tanuki.py'].map((f) => path.join(out, f))]);
  });

  it('20 steps: pipec\'s TypeScript class and the exported PyTorch class under FSDP (2 processes) give the same losses; plain Mixtral does not', async () => {
    // 2 processes x accumulate 1 take the micro-batches pipec's accumulate 2 takes, in the same order
    const sets = ['--set', 'stage.joint.accumulate=1'];
    const out = path.join(dir, 'torch');
    ok(['export', pipe, '--target', 'torch', '-o', out, ...sets]);
    ok(['prepare', pipe, '--world-size', '2', '-o', path.join(out, 'data'), ...sets]);
    const log = await torchrun(PY, 2, path.join(out, 'train.py'), ['--data', path.join(out, 'data'), '--out', path.join(out, 'run'), '--fsdp', 'full'], out);
    assert.match(log, /stage joint: .*sharded by FSDP \(FULL_SHARD\)/);
    assert.match(log, /component lm: TanukiForCausalLM from custom_lm\.modeling_tanuki/, 'model.py builds the user\'s class from the carried package');
    const worst = compareLosses('TanukiForCausalLM: pipec vs exported under FSDP', tanuki, readMetrics(path.join(out, 'run')), 20, 1e-4);

    // the same program with plain Mixtral (no tempered router), from the same weights and data
    const text = fs.readFileSync(pipe, 'utf8').replace(/custom\("TanukiForCausalLM"[^]*?base: mixtral,\s*/, 'mixtral(');
    assert.notEqual(text, fs.readFileSync(pipe, 'utf8'));
    fs.writeFileSync(path.join(dir, 'tiny-mixtral.pipe'), text);
    ok(['run', path.join(dir, 'tiny-mixtral.pipe'), '--out', path.join(dir, 'mixtral'), '--backend', 'wasm']);
    const mixtral = readMetrics(path.join(dir, 'mixtral'));
    // at initialisation the router's logits are small and both routers nearly uniform; training moves them apart
    const apart = Math.max(...mixtral.map((m, i) => rel(tanuki[i]!.loss, m.loss)));
    const auxApart = rel(tanuki[0]!.aux_loss!, mixtral[0]!.aux_loss!);
    console.log(`      plain Mixtral vs TanukiForCausalLM over 20 steps: losses apart by up to ${apart.toExponential(2)} (aux loss at step 1: ${auxApart.toExponential(2)}); the class's two halves agree to ${worst.toExponential(2)}`);
    assert.ok(apart > 1e-3 && apart > 1000 * worst, `the tempered router must change the loss: Mixtral and Tanuki differ by only ${apart}`);
    assert.ok(auxApart > 1e-4, `the tempered router must change the load-balancing loss: ${auxApart}`);
  });
});
