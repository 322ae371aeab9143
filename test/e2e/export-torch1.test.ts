// The exported PyTorch trainer (pipec export --target torch) against pipec itself, on the oldest torch the
// export supports: Debian 12's python3-torch 1.13 for /usr/bin/python3 (PIPEC_TEST_PYTHON names another
// 1.x). That Python has torch alone, no safetensors package, so the program's own safetensors reader and
// writer run here (torch >= 2 with safetensors runs in test/e2e/export-torch2.test.ts). Per-step losses to
// 1e-4 (wasm, fp32), also data-parallel under the real torchrun (2 gloo processes; the generated launch.sh
// trains the quickstart's two stages), checkpoints that load back into pipec with the same logits,
// resume, and the refusals 1.13 needs. Without torch 1.x the suite is skipped locally and fails in CI.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../../runtime/backend/backends.js';
import { prepareStages } from '../../runtime/export/prepare.js';
import { readMetrics } from '../../runtime/train/metrics.js';
import { graphHash } from '../../runtime/train/run.js';
import { compareLosses, freePort, graphOf, maxRelDiff, meanLoss, pipecLogits, pipecReference, readF32, rel, tinyAccumulate2, TORCHRUN_FIX, torchrun, writeExport } from '../export/helpers.js';
import { runPython, spawnPython, TORCH1_FIX, TORCH1_PYTHON, torch1Python } from '../helpers/python.js';
import { unavailable } from '../helpers/required.js';
import { childEnv, tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

describe('export: the exported trainer reproduces pipec on torch 1.x (Debian 12: torch 1.13, torch alone)', function () {
  this.timeout(600_000);
  let PY: string;
  const python = (args: string[], cwd?: string) => runPython(PY, args, { cwd });

  before(async function () {
    const found = torch1Python();
    if (!found) unavailable(this, `${TORCH1_PYTHON} cannot import torch 1.x`, TORCH1_FIX);
    PY = found.python;
    console.log(`      ${PY}: torch ${found.torch}`);
    await initBackend('wasm');
  });

  /** pipec run (wasm) and the exported trainer from the same prepared shards; returns both metrics and folders. */
  async function both(rel: string, o: { stopAfter?: number; stage?: string; init: boolean; sets?: string[] }) {
    const g = graphOf(rel, o.sets);
    const base = repo(path.dirname(rel));
    const work = tmpDir(`torch1-${path.basename(rel, '.pipe')}`);
    const ref = await pipecReference(rel, { stopAfter: o.stopAfter, sets: o.sets });
    const data = path.join(work, 'data');
    prepareStages({ graph: g, baseDir: base, outDir: o.stage ? path.join(data, o.stage) : data, stage: o.stage, init: o.init });
    writeExport(g, path.join(work, 'torch'));
    const first = o.stage ?? g.stages[0]!.name;
    const t1 = performance.now();
    python([path.join(work, 'torch', 'train.py'), '--data', data, '--out', path.join(work, 'torch-run'),
      ...(o.init ? ['--init', path.join(data, first, 'init')] : []), ...(o.stopAfter ? ['--stop-after', String(o.stopAfter)] : [])]);
    const tTorch = (performance.now() - t1) / 1000;
    return { g, work, data, pipecDir: ref.dir, pipec: ref.metrics, torch: readMetrics(path.join(work, 'torch-run')), tPipec: ref.seconds, tTorch };
  }

  it('tiny.pipe (vit, mlp_gelu, llama; two stages with hand-off): every step\'s loss to 1e-4, the checkpoint loads into pipec with the same logits', async () => {
    const r = await both('test/runtime/tiny.pipe', { init: true });
    console.log(`      times: pipec run ${r.tPipec.toFixed(1)} s, exported trainer ${r.tTorch.toFixed(1)} s (incl. python start)`);
    compareLosses('tiny', r.pipec, r.torch, 32);
    // the exported program's final checkpoint, loaded by pipec, gives the logits the exported program computes
    const ckpt = path.join(r.work, 'torch-run', 'checkpoints', '01-finetune-step000008');
    const out = path.join(r.work, 'logits.bin');
    python([path.join(r.work, 'torch', 'train.py'), '--data', r.data, '--eval-logits', out, '--checkpoint', ckpt, '--stage', 'finetune', '--micro', '3']);
    const mine = pipecLogits(r.g, 'finetune', ckpt, 3);
    const d = maxRelDiff(mine.data, readF32(out));
    console.log(`      logits of a torch-trained checkpoint, pipec vs torch: max difference ${d.toExponential(2)} of the largest logit`);
    assert.ok(d < 1e-4, `logits differ by ${d}`);
    // and the trainer's own bookkeeping is pipec's: same checkpoint names, trainer state, optimizer tensor names
    const names = (run: string) => fs.readdirSync(path.join(run, 'checkpoints')).sort();
    assert.deepEqual(names(path.join(r.work, 'torch-run')), names(r.pipecDir));
    const st = JSON.parse(fs.readFileSync(path.join(ckpt, 'trainer_state.json'), 'utf8'));
    assert.deepEqual([st.graph_hash, st.stage, st.step, st.final, st.stage_checkpoints], [graphHash(r.g), 'finetune', 8, true, { align: '00-align-step000024', finetune: '01-finetune-step000008' }]);
  });

  it('without --init the trainer draws pipec\'s own initial weights (its seeded streams, ported)', async function () {
    const g = graphOf('test/runtime/tiny.pipe', ['stage.align.steps=3', 'stage.finetune.steps=1']);
    const work = tmpDir('torch1-init');
    const data = path.join(work, 'data');
    prepareStages({ graph: g, baseDir: repo('test/runtime'), outDir: data, init: true });
    writeExport(g, path.join(work, 'torch'));
    python([path.join(work, 'torch', 'train.py'), '--data', data, '--out', path.join(work, 'run')]);
    const init = path.join(work, 'run', 'checkpoints', '00-align-step000003');
    // frozen components after align are untouched fresh weights: compare with pipec's init/ bit for bit
    for (const c of ['vision', 'lm']) {
      const a = fs.readFileSync(path.join(init, c, 'model.safetensors')), b = fs.readFileSync(path.join(data, 'align', 'init', c, 'model.safetensors'));
      const body = (x: Buffer) => x.subarray(8 + Number(x.readBigUInt64LE(0)));
      assert.ok(body(a).equals(body(b)), `${c}: fresh weights differ from pipec's`);
    }
  });

  it('tiny-moe (siglip_vit, linear, mixtral top-2 + aux loss, accumulate 2, clipping, AdamW then SGD): every step to 1e-4', async () => {
    const r = await both('test/export/tiny-moe.pipe', { init: false });
    assert.ok(r.pipec.every((m) => (m.aux_loss ?? 0) > 0), 'the load-balancing loss is part of the loss');
    compareLosses('tiny-moe', r.pipec, r.torch, 20);
    for (let i = 0; i < 20; i++) assert.ok(rel(r.pipec[i]!.aux_loss!, r.torch[i]!.aux_loss!) < 1e-4, `aux loss at ${i + 1}`);
  });

  it('tiny-moe with gradient_checkpointing in both stages: pipec (recomputing its layers) and the exported trainer (torch.utils.checkpoint) every step to 1e-4', async () => {
    const r = await both('test/export/tiny-moe.pipe', { init: false, sets: ['stage.joint.gradient_checkpointing=true', 'stage.tune.gradient_checkpointing=true'] });
    assert.ok(r.g.stages.every((s) => s.gradient_checkpointing));
    compareLosses('tiny-moe, checkpointed', r.pipec, r.torch, 20);
    for (let i = 0; i < 20; i++) assert.ok(rel(r.pipec[i]!.aux_loss!, r.torch[i]!.aux_loss!) < 1e-4, `aux loss at ${i + 1}`);
  });

  it('--stop-after then --resume gives the same losses as an uninterrupted exported run', () => {
    const g = graphOf('test/runtime/tiny.pipe');
    const work = tmpDir('torch1-resume');
    const data = path.join(work, 'data');
    prepareStages({ graph: g, baseDir: repo('test/runtime'), outDir: data });
    writeExport(g, path.join(work, 'torch'));
    const train = (out: string, extra: string[]) => python([path.join(work, 'torch', 'train.py'), '--data', data, '--out', path.join(work, out), ...extra]);
    train('ref', []);
    train('cut', ['--stop-after', '22']); // last periodic checkpoint: align step 20
    train('cut', ['--resume']);
    const a = readMetrics(path.join(work, 'ref')), b = readMetrics(path.join(work, 'cut'));
    assert.equal(b.length, 32);
    for (let i = 0; i < 32; i++) assert.ok(rel(a[i]!.loss, b[i]!.loss) < 1e-6, `step ${i + 1}: ${a[i]!.loss} vs ${b[i]!.loss}`);
  });

  it('data parallel under torchrun: 2 processes (gloo) x accumulate 1 give the losses of pipec with accumulate 2', async () => {
    const g = graphOf('test/runtime/tiny.pipe');
    const work = tmpDir('torch1-ddp');
    const data = path.join(work, 'data');
    prepareStages({ graph: g, baseDir: repo('test/runtime'), outDir: data, worldSize: 2 });
    writeExport(g, path.join(work, 'torch'));
    const log = await torchrun(PY, 2, path.join(work, 'torch', 'train.py'), ['--data', data, '--out', path.join(work, 'ddp')], work);
    assert.match(log, /stage align: .*16 samples \(batch 8 x accumulate 1 x 2 process\(es\)\)/, 'train.py saw WORLD_SIZE 2 from torchrun');
    const a = (await tinyAccumulate2()).metrics, b = readMetrics(path.join(work, 'ddp'));
    compareLosses('data parallel (torchrun, 2 processes)', a, b, 32);
    assert.deepEqual(b.map((m) => m.tokens), a.map((m) => m.tokens));
  });

  it('quickstart under torchrun --nproc_per_node 2 via the generated launch.sh: both stages train, the loss falls, the DDP checkpoint loads into pipec', async () => {
    // Two processes per stage (devices: 2 x cpu, so global batch = 16 per process x 2), half an epoch each to keep it short.
    const sets = ['stage.pretrain.devices.count=2', 'stage.instruct.devices.count=2', 'stage.pretrain.epochs=0.5', 'stage.instruct.epochs=0.5'];
    const g = graphOf('pipelines/quickstart.pipe', sets);
    for (const s of g.stages) assert.deepEqual([s.devices.nodes * s.devices.per_node, s.global_batch], [2, s.batch * s.accumulate * 2], `stage ${s.name}: 2 processes, global batch = batch x accumulate x 2`);
    const work = tmpDir('torch1-quickstart-ddp');
    const out = writeExport(g, path.join(work, 'export'));
    const prepared = prepareStages({ graph: g, baseDir: repo('pipelines'), outDir: path.join(out, 'data'), worldSize: 2 });
    // launch.sh calls `torchrun`: make it this interpreter's (PIPEC_TEST_PYTHON), with the flags Debian's 1.13 needs
    const bin = path.join(work, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'torchrun'), `#!/bin/sh\nexec '${PY}' -m torch.distributed.run "$@"\n`, { mode: 0o755 });
    const r = spawnSync('bash', [path.join(out, 'launch', 'launch.sh')], {
      encoding: 'utf8', maxBuffer: 64 * 1024 * 1024,
      env: childEnv({ PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}`, TORCHRUN_ARGS: [...TORCHRUN_FIX, '--log_dir', path.join(work, 'torchrun-logs')].join(' '), MASTER_PORT: String(await freePort()) }),
    });
    const log = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.status, 0, `launch.sh failed:\n${log.slice(-4000)}`);
    // both ranks ran (torchrun --tee prefixes each process's lines), and each stage ran with 2 processes
    assert.match(log, /\[default0\]:resuming from/);
    assert.match(log, /\[default1\]:resuming from/);
    for (const s of g.stages) assert.match(log, new RegExp(`stage ${s.name}: .* of ${s.batch * 2} samples \\(batch ${s.batch} x accumulate 1 x 2 process\\(es\\)\\)`));
    const metrics = readMetrics(path.join(out, 'run'));
    for (const p of prepared) {
      const rows = metrics.filter((m) => m.stage === p.stage);
      assert.deepEqual(rows.map((m) => m.step), Array.from({ length: p.steps }, (_, i) => i + 1), `stage ${p.stage}: every step once`);
      assert.ok(p.steps >= 20, `stage ${p.stage}: ${p.steps} steps`);
      const first = meanLoss(rows.slice(0, 5)), last = meanLoss(rows.slice(-5));
      console.log(`      quickstart ${p.stage} under torchrun (2 processes, ${p.steps} steps): mean loss of the first 5 steps ${first.toFixed(3)}, of the last 5 ${last.toFixed(3)}`);
      assert.ok(last < 0.8 * first, `stage ${p.stage}: the loss did not fall (first 5 steps ${first}, last 5 ${last})`);
    }
    // the final checkpoint, written by process 0 under DDP, is pipec's layout and loads into pipec with the exported program's logits
    const [pre, ins] = prepared.map((p, i) => `${String(i).padStart(2, '0')}-${p.stage}-step${String(p.steps).padStart(6, '0')}`);
    const ckpt = path.join(out, 'run', 'checkpoints', ins!);
    const st = JSON.parse(fs.readFileSync(path.join(ckpt, 'trainer_state.json'), 'utf8'));
    assert.deepEqual([st.graph_hash, st.stage, st.step, st.final, st.stage_checkpoints], [graphHash(g), 'instruct', prepared[1]!.steps, true, { pretrain: pre, instruct: ins }]);
    const logits = path.join(work, 'logits.bin');
    python([path.join(out, 'train.py'), '--data', path.join(out, 'data'), '--eval-logits', logits, '--checkpoint', ckpt, '--stage', 'instruct', '--micro', '5']);
    const mine = pipecLogits(g, 'instruct', ckpt, 5);
    const d = maxRelDiff(mine.data, readF32(logits));
    console.log(`      logits of the DDP-trained checkpoint, pipec vs torch: max difference ${d.toExponential(2)} of the largest logit`);
    assert.ok(d < 1e-4, `logits differ by ${d}`);
  });

  it('pipelines/quickstart.pipe: the first 20 steps match pipec to 1e-4', async () => {
    const r = await both('pipelines/quickstart.pipe', { stopAfter: 20, stage: 'pretrain', init: true });
    console.log(`      times (20 steps): pipec run ${r.tPipec.toFixed(1)} s, exported trainer ${r.tTorch.toFixed(1)} s (incl. python start)`);
    compareLosses('quickstart', r.pipec, r.torch, 20);
  });

  it('--fsdp stops with what it needs (PyTorch 2.0), and shards prepared for 2 processes refuse a run of 1', () => {
    const g = graphOf('test/runtime/tiny.pipe');
    const work = tmpDir('torch1-refusals');
    const data = path.join(work, 'data');
    prepareStages({ graph: g, baseDir: repo('test/runtime'), outDir: data, worldSize: 2 });
    const train = path.join(writeExport(g, path.join(work, 'torch')), 'train.py');
    let r = spawnPython(PY, [train, '--data', data, '--out', path.join(work, 'fsdp'), '--fsdp', 'full']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /--fsdp needs PyTorch 2\.0 or newer .*this is torch 1\./);
    r = spawnPython(PY, [train, '--data', data, '--out', path.join(work, 'one')]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /was prepared for 2 process\(es\), this run has 1: pipec prepare \.\.\. --world-size 1/);
  });
});
