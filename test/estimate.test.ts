// Memory estimates: the parameter count of the 47B-class pipeline against a count derived by hand from
// the declared dimensions, and a located error when a stage cannot fit its devices.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { compile } from '../compiler/service/service.js';
import { main } from '../cli/main.js';
import { REPO_ROOT, repo } from './paths.js';

/** SigLIP so400m/14 at 384 px without the pooling head, as transformers' SiglipVisionModel lays it out. */
function siglipSo400m(): number {
  const d = 1152, f = 4304, L = 27, p = 14, c = 3, n = 27 * 27;
  const embeddings = d * c * p * p + d + n * d;
  const layer = 2 * d + 4 * (d * d + d) + 2 * d + (f * d + f) + (d * f + d);
  return embeddings + L * layer + 2 * d;
}

/** Mixtral-style 8x8B: vocab 65536, d 4096, 32 layers, 32 heads / 8 kv heads of 128, 8 experts of 14336. */
function tanuki8x8b(): number {
  const V = 65536, d = 4096, L = 32, kv = 8 * 128, f = 14336, E = 8;
  const attention = d * d + 2 * kv * d + d * d;
  const moe = E * d + E * 3 * f * d;
  return V * d + L * (2 * d + attention + moe) + d + V * d;
}

describe('memory estimate', () => {
  it('counts tanuki-8x8b-vision parameters within 2% of the hand count (here: exactly)', () => {
    const r = compile({ file: 'pipelines/tanuki-8x8b-vision.pipe', cwd: REPO_ROOT, lower: false });
    const est = r.check!.estimates.get('align')!;
    const projector = 1152 * 4096 + 4096 + 4096 * 4096 + 4096;
    const byHand = siglipSo400m() + projector + tanuki8x8b();
    assert.ok(Math.abs(est.totalParams - byHand) / byHand < 0.02, `${est.totalParams} vs ${byHand}`);
    assert.equal(est.totalParams, byHand);
    assert.ok(byHand > 46e9 && byHand < 48e9, 'a 47B-class model');
    assert.equal(est.trainableParams, projector);
    // align trains only the projector, but the frozen llm sits downstream of it and keeps activations
    assert.ok(est.components.find((c) => c.name === 'lm')!.storesActivations);
    assert.ok(!est.components.find((c) => c.name === 'vision')!.storesActivations);
    const ft = r.check!.estimates.get('finetune')!;
    assert.equal(ft.trainableParams, projector + tanuki8x8b());
    // zero3 over 16 devices, bf16 mixed precision: 2 + 2 + 12 bytes per trained parameter, sharded
    assert.ok(Math.abs(ft.perDevice.optimizer - (ft.trainableParams * 12) / 16) < 1);
    assert.ok(Math.abs(ft.perDevice.weights - (ft.totalParams * 2) / 16) < 1);
  });

  it('reports per-device memory for each stage on the CLI', async () => {
    let out = '';
    const code = await main(['estimate', 'pipelines/tanuki-8x8b-vision.pipe', '--no-color'], { out: (s) => (out += s), err: () => undefined });
    assert.equal(code, 0);
    assert.match(out, /stage align: 2 nodes x 8 x gpu \(80\.00 GB\)/);
    assert.match(out, /stage finetune:/);
    assert.match(out, /total per device: [\d.]+ GB of 80\.00 GB: fits/);
  });

  it('gives a located error when align runs on a single 80GB GPU', () => {
    const text = fs.readFileSync(repo('pipelines/tanuki-8x8b-vision.pipe'), 'utf8').replace('devices: 2 x 8 x gpu(memory: 80GB), sharding: zero3', 'devices: gpu(memory: 80GB)');
    const r = compile({ file: 'pipelines/tanuki-8x8b-vision.pipe', text, cwd: REPO_ROOT, lower: false });
    const errors = r.diagnostics.filter((d) => d.severity === 'error');
    assert.equal(errors.length, 2, errors.map((e) => e.message).join('\n')); // align, and finetune which inherits the devices
    const line = text.split('\n').findIndex((l) => l.includes('devices: gpu(memory: 80GB)')) + 1;
    assert.equal(errors[0].code, 'PIPE7001');
    assert.equal(errors[0].range.start.line, line);
    assert.match(errors[0].message, /stage `align` needs [\d.]+ GB per device but each device has 80\.00 GB/);
  });

  it('LoRA and QLoRA of the 47B model: adapter parameters by hand, NF4 base, fits where full fine-tuning does not', () => {
    const r = compile({ file: 'pipelines/tanuki-8x8b-vision-lora.pipe', cwd: REPO_ROOT, lower: false });
    assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error'), []);
    // rank 64 on q, k, v, o and the 8 experts' w1, w2, w3 of 32 layers: r * (in + out) per layer
    const d = 4096, kv = 8 * 128, f = 14336, E = 8, L = 32, rank = 64;
    const lora = L * rank * ((d + d) + 2 * (d + kv) + (d + d) + E * 3 * (d + f));
    const projector = 1152 * 4096 + 4096 + 4096 * 4096 + 4096;
    const lo = r.check!.estimates.get('finetune_lora')!;
    assert.equal(lo.components.find((c) => c.name === 'lm.lora')!.params, lora);
    assert.equal(lo.trainableParams, projector + lora);
    assert.equal(lo.totalParams, siglipSo400m() + projector + tanuki8x8b() + lora);
    // bf16 with fp32 master copies: 2 + 2 + 12 bytes per trained parameter; zero3 over 8 devices
    assert.ok(Math.abs(lo.perDevice.optimizer - ((projector + lora) * 12) / 8) < 1);
    assert.ok(lo.fits);
    const q = r.check!.estimates.get('finetune_qlora')!;
    assert.equal(q.devices, 1);
    // the llm's linear layers (attention, router, experts) at 4.127 bits; embeddings, norms, head at 2 bytes
    const linear = L * (2 * d * d + 2 * kv * d + E * d + E * 3 * f * d);
    const rest = siglipSo400m() + projector + tanuki8x8b() - linear + lora;
    assert.ok(Math.abs(q.perDevice.weights - (linear * 4.127) / 8 - rest * 2) < 1, `${q.perDevice.weights}`);
    assert.ok(q.fits, `${q.perDevice.total}`);
    assert.ok(q.perDevice.total < 50e9 && q.perDevice.total > 40e9);
    // the frozen llm keeps its activations: the trained adapter inside it needs backward through it
    assert.ok(q.components.find((c) => c.name === 'lm')!.storesActivations);
  });
});
