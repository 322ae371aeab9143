// Training behaviour end to end on the tiny program (test/runtime/tiny.pipe): freezing, hand-off,
// checkpoints (HF names, round trip, atomic publish), kill -9 and --resume, NaN stops, generation.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { readSafetensorsHeader } from '../../compiler/check/checkpoint-io.js';
import type { Graph } from '../../compiler/ir/graph.js';
import { compile } from '../../compiler/service/service.js';
import { initBackend } from '../../runtime/backend/backends.js';
import { collate } from '../../runtime/data/batch.js';
import { imageShapeOf, prepareDataset, syntheticTokenizer } from '../../runtime/data/datasets.js';
import { ModelRunner } from '../../runtime/model.js';
import { ParamStore, paramSpecs } from '../../runtime/params.js';
import { checkpointName, latestCheckpoint, loadComponents, readTrainerState, saveCheckpoint } from '../../runtime/train/checkpoint.js';
import { readMetrics } from '../../runtime/train/metrics.js';
import { Progress } from '../../runtime/train/progress.js';
import { runProgram } from '../../runtime/train/run.js';
import { pipec, startPipec } from '../helpers/cli.js';
import { close } from '../helpers/numeric.js';
import { unavailable } from '../helpers/required.js';
import { tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

const TINY = repo('test/runtime/tiny.pipe');
const quiet = new Progress({ write: () => true });

function tinyGraph(sets: string[] = []): Graph {
  const r = compile({ file: TINY, configFiles: [], sets, lower: true });
  assert.ok(r.graph, 'tiny.pipe compiles');
  return r.graph;
}


function tensorsOf(dir: string, component: string): Map<string, Float32Array> {
  const store = new ParamStore(paramSpecs(tinyGraph().models[0]!.components), 0);
  loadComponents(dir, [component], store);
  const out = new Map<string, Float32Array>();
  for (const n of store.ofComponent(component)) out.set(n, store.get(n).dataSync() as Float32Array);
  store.dispose();
  return out;
}

function identical(a: Map<string, Float32Array>, b: Map<string, Float32Array>): boolean {
  return [...a].every(([n, v]) => Buffer.compare(Buffer.from(v.buffer, v.byteOffset, v.byteLength), Buffer.from(b.get(n)!.buffer, b.get(n)!.byteOffset, b.get(n)!.byteLength)) === 0);
}

describe('runtime: training stages', function () {
  this.timeout(300_000);
  let runDir: string;
  let graph: Graph;

  before(async () => {
    await initBackend('wasm');
    graph = tinyGraph();
    runDir = tmpDir('tiny');
    await runProgram({ graph, baseDir: repo('test/runtime'), runDir, backend: 'wasm', out: quiet });
  });

  it('after the align stage the frozen components are bit-identical to their initial values and the trained one changed', () => {
    const model = graph.models[0]!;
    const init = new ParamStore(paramSpecs(model.components), graph.stages[0]!.seed);
    const initial = (c: string) => new Map(init.ofComponent(c).map((n) => [n, init.get(n).dataSync() as Float32Array]));
    const align = path.join(runDir, 'checkpoints', checkpointName(0, 'align', 24));
    assert.ok(identical(tensorsOf(align, 'vision'), initial('vision')), 'vision (frozen) changed during align');
    assert.ok(identical(tensorsOf(align, 'lm'), initial('lm')), 'lm (frozen) changed during align');
    assert.ok(!identical(tensorsOf(align, 'proj'), initial('proj')), 'proj (trained) did not change');
    // the finetune stage starts from align's projector and trains the LM; vision stays frozen
    const fin = path.join(runDir, 'checkpoints', checkpointName(1, 'finetune', 8));
    assert.ok(identical(tensorsOf(fin, 'vision'), initial('vision')));
    assert.ok(!identical(tensorsOf(fin, 'lm'), initial('lm')));
    init.dispose();
  });

  it('keeps the newest `keep` periodic checkpoints plus each stage\'s final one', () => {
    const names = fs.readdirSync(path.join(runDir, 'checkpoints')).filter((n) => !n.endsWith('.json')).sort();
    // every 4 steps, keep 2: align's 4..20 are pruned to 20 (then finetune's 4 counts too); finals stay
    assert.deepEqual(names, ['00-align-step000020', '00-align-step000024', '01-finetune-step000004', '01-finetune-step000008']);
    assert.equal(path.basename(latestCheckpoint(runDir)!), '01-finetune-step000008');
  });

  it('frozen components get no optimizer state', () => {
    const align = path.join(runDir, 'checkpoints', checkpointName(0, 'align', 24));
    const names = [...readSafetensorsHeader(path.join(align, 'optimizer.safetensors')).tensors.keys()];
    assert.ok(names.length > 0 && names.every((n) => n.includes('multi_modal_projector.')), names.join(', '));
  });

  it('writes metrics, the dashboard and TensorBoard files, the resolved graph and a summary; the loss falls', () => {
    const m = readMetrics(runDir);
    assert.equal(m.length, 24 + 8);
    assert.deepEqual(m.slice(0, 3).map((x) => [x.stage, x.step]), [['align', 1], ['align', 2], ['align', 3]]);
    const mean = (xs: typeof m) => xs.reduce((a, x) => a + x.loss, 0) / xs.length;
    assert.ok(mean(m.slice(-4)) < mean(m.slice(0, 4)) - 0.2, `loss ${mean(m.slice(0, 4))} -> ${mean(m.slice(-4))}`);
    assert.ok(fs.readFileSync(path.join(runDir, 'dashboard.html'), 'utf8').includes('"format":"pipec.dashboard"'));
    assert.ok(fs.readdirSync(path.join(runDir, 'tb')).some((n) => n.startsWith('events.out.tfevents.')));
    assert.equal(JSON.parse(fs.readFileSync(path.join(runDir, 'graph.json'), 'utf8')).format, 'pipec.graph');
    const s = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8'));
    assert.deepEqual(s.stages.map((x: { name: string }) => x.name), ['align', 'finetune']);
  });

  it('checkpoints hold each component under its Hugging Face names, with a transformers config.json', () => {
    const fin = path.join(runDir, 'checkpoints', checkpointName(1, 'finetune', 8));
    const names = (c: string) => [...readSafetensorsHeader(path.join(fin, c, 'model.safetensors')).tensors.keys()];
    assert.ok(names('lm').includes('model.layers.0.self_attn.q_proj.weight'));
    assert.ok(names('lm').includes('lm_head.weight') && names('lm').includes('model.embed_tokens.weight'));
    assert.ok(names('vision').includes('vision_model.encoder.layers.0.mlp.fc1.weight'));
    assert.deepEqual(names('proj').sort(), ['multi_modal_projector.linear_1.bias', 'multi_modal_projector.linear_1.weight', 'multi_modal_projector.linear_2.bias', 'multi_modal_projector.linear_2.weight']);
    const cfg = JSON.parse(fs.readFileSync(path.join(fin, 'lm', 'config.json'), 'utf8'));
    assert.deepEqual([cfg.architectures[0], cfg.hidden_size, cfg.num_key_value_heads, cfg.vocab_size], ['LlamaForCausalLM', 32, 1, 128]);
    assert.equal(JSON.parse(fs.readFileSync(path.join(fin, 'vision', 'config.json'), 'utf8')).model_type, 'clip_vision_model');
  });

  it('checkpoint round trip: a fresh model loaded from a checkpoint gives identical outputs', () => {
    const model = graph.models[0]!;
    const a = new ParamStore(paramSpecs(model.components), 11);
    const dir = tmpDir('roundtrip');
    saveCheckpoint({ runDir: dir, name: checkpointName(0, 'x', 1), components: model.components, params: a, optimizer: null, keep: 1,
      state: { format: 'pipec.checkpoint', version: 1, graph_hash: 'h', stage: 'x', stage_index: 0, step: 1, total_steps: 1, final: true, stage_checkpoints: {}, optimizer: null, time: '' } });
    const b = new ParamStore(paramSpecs(model.components), 99);
    loadComponents(latestCheckpoint(dir)!, model.components.map((c) => c.name), b);
    const tok = syntheticTokenizer(graph, 128);
    const data = prepareDataset('shapes', { graph, model, tokenizer: tok, maxLength: 40 });
    const batch = collate(data.train.slice(0, 4), 0, imageShapeOf(model));
    const out = (p: ParamStore) => tf.tidy(() => new ModelRunner(model, p).forward({ pixels: tf.tensor4d(batch.pixels!.data, batch.pixels!.shape), inputIds: batch.inputIds, labels: batch.labels, info: batch.info }).logits.dataSync());
    assert.deepEqual([...out(a)], [...out(b)]);
    a.dispose();
    b.dispose();
  });

  it('`pipec run --backend auto` trains on the native tensorflow backend where it loads, with wasm\'s losses (1e-5)', async function () {
    // (asked of the CLI: importing tfjs-node here would make tensorflow this process's active backend)
    const out = tmpDir('tensorflow');
    const r = pipec(['run', TINY, '--out', out, '--backend', 'auto']);
    assert.equal(r.status, 0, r.stderr);
    const chosen = /backend (\S+) chosen by auto/.exec(r.stderr)?.[1];
    // auto prefers tensorflow to wasm (a GPU's backends before both; none in CI)
    if (chosen === 'wasm') unavailable(this, 'auto chose wasm: the tensorflow backend does not load here', 'npm run setup:tensorflow');
    assert.ok(chosen === 'tensorflow' || chosen === 'tensorflow-gpu', `auto chose ${chosen}`);
    const tfRows = readMetrics(out), wasmRows = readMetrics(runDir);
    assert.deepEqual(tfRows.map((m) => [m.stage, m.step]), wasmRows.map((m) => [m.stage, m.step]), 'both stages, every step');
    // measured: 2.1e-7 relative at worst over the 32 steps (float32, oneDNN's summation order)
    close(tfRows.map((m) => m.loss), wasmRows.map((m) => m.loss), 1e-5, 'loss, tensorflow vs wasm');
    const fin = path.join(out, 'checkpoints', checkpointName(1, 'finetune', 8));
    for (const c of ['vision', 'proj', 'lm']) for (const [n, v] of tensorsOf(fin, c)) assert.ok(v.every(Number.isFinite), `${c}: ${n}`);
  });
});

describe('runtime: interruption and resume (child processes)', function () {
  this.timeout(600_000);
  const LONG = ['--set', 'stage.align.steps=160', '--backend', 'wasm'];
  before(async () => initBackend('wasm')); // tensorsOf reads checkpoints in this process

  it('kill -9 mid-stage, then --resume, gives the same per-step losses as an uninterrupted run (1e-6)', async () => {
    const ref = tmpDir('ref'), cut = tmpDir('cut');
    const r0 = pipec(['run', TINY, '--out', ref, ...LONG]);
    assert.equal(r0.status, 0, r0.stderr);
    // start the same run and SIGKILL it once it is past a checkpoint but before the stage ends
    const child = startPipec(['run', TINY, '--out', cut, ...LONG], { stdio: 'ignore' });
    const killedAt = await new Promise<number>((resolve, reject) => {
      const timer = setInterval(() => {
        const n = fs.existsSync(path.join(cut, 'metrics.jsonl')) ? fs.readFileSync(path.join(cut, 'metrics.jsonl'), 'utf8').split('\n').length - 1 : 0;
        if (n >= 30) {
          child.kill('SIGKILL');
          clearInterval(timer);
          resolve(n);
        }
      }, 2);
      child.on('exit', () => (clearInterval(timer), reject(new Error('the run finished before it could be killed'))));
    });
    await new Promise((r) => child.once('exit', r));
    assert.ok(killedAt < 160, `killed at step ${killedAt}`);
    const before = readTrainerState(latestCheckpoint(cut)!);
    assert.equal(before.stage, 'align');
    assert.ok(before.step > 0 && before.step < 160);
    const r1 = pipec(['run', TINY, '--out', cut, '--resume', ...LONG]);
    assert.equal(r1.status, 0, r1.stderr);
    assert.match(r1.stderr, /resuming from .*stage align, step \d+\/160/);
    const a = readMetrics(ref), b = readMetrics(cut);
    assert.equal(b.length, a.length);
    a.forEach((m, i) => {
      assert.deepEqual([b[i]!.stage, b[i]!.step], [m.stage, m.step]);
      assert.ok(Math.abs(b[i]!.loss - m.loss) <= 1e-6 * Math.max(1, Math.abs(m.loss)), `step ${m.stage}/${m.step}: ${b[i]!.loss} vs ${m.loss}`);
    });
  });

  it('a kill -9 while a checkpoint is being written leaves the previous one published and loadable', () => {
    const dir = tmpDir('torn');
    // fault injection: the 3rd checkpoint save dies (SIGKILL) after writing its files, before the rename
    const r = pipec(['run', TINY, '--out', dir, '--backend', 'wasm'], { env: { PIPEC_FAULT_KILL_AT_CHECKPOINT: '3' } });
    assert.equal(r.signal, 'SIGKILL');
    const latest = latestCheckpoint(dir)!;
    assert.equal(path.basename(latest), checkpointName(0, 'align', 8));
    assert.ok(fs.readdirSync(path.join(dir, 'checkpoints')).some((n) => n.startsWith('.tmp-')), 'the torn checkpoint stays unpublished');
    for (const c of ['vision', 'proj', 'lm']) assert.ok(tensorsOf(latest, c).size > 0);
    const resumed = pipec(['run', TINY, '--out', dir, '--resume', '--backend', 'wasm']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.ok(!fs.readdirSync(path.join(dir, 'checkpoints')).some((n) => n.startsWith('.tmp-')), 'temporaries are cleaned up');
  });

  it('a NaN/Inf loss stops the run naming stage and step, exit 1, last good checkpoint kept', () => {
    const dir = tmpDir('nan');
    const r = pipec(['run', TINY, '--out', dir, '--backend', 'wasm', '--set', 'stage.finetune.optimizer.lr=1e30']);
    assert.equal(r.status, 1, r.stderr);
    const stop = /error PIPE9022: loss is (NaN|Infinity|-Infinity) at stage `finetune`, step (\d+)/.exec(r.stderr);
    assert.ok(stop, r.stderr);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/); // no stack trace
    // the newest published checkpoint is from before the bad step (align's final one, or a finetune one
    // before it), and holds finite weights that load
    const latest = latestCheckpoint(dir)!;
    const st = readTrainerState(latest);
    assert.ok((st.stage === 'align' && st.final && st.step === 24) || (st.stage === 'finetune' && st.step < Number(stop[2])), `latest checkpoint ${path.basename(latest)}: stage ${st.stage} step ${st.step}`);
    for (const c of ['vision', 'proj', 'lm']) for (const [n, v] of tensorsOf(latest, c)) assert.ok(v.every(Number.isFinite), `${c}: ${n} is not finite`);
  });

  it('--resume without a checkpoint, and generate on a directory that is not a run, are located errors', () => {
    const dir = tmpDir('empty');
    const r = pipec(['run', TINY, '--out', dir, '--resume', '--backend', 'wasm']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /PIPE9023/);
    const g = pipec(['generate', dir, '--prompt', 'hi']);
    assert.equal(g.status, 1);
    assert.match(g.stderr, /PIPE9028/);
    assert.equal(pipec(['run', TINY, '--backend', 'nope']).status, 2);
  });
});
