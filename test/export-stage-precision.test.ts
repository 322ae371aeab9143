// The exported PyTorch program honours a stage's gradient_checkpointing and precision: STAGES carries
// both; with gradient checkpointing the layers run under torch.utils.checkpoint and the gradients equal
// those without it (mixtral: the router's aux-loss gradient included); bf16 and fp16 autocast on CUDA,
// fp16 with loss scaling (LossScaler, GradScaler's rule). Autocast itself needs CUDA and is checked as
// program text here; the scaler's rule and the checkpointed gradients run on CPU, under torch 1 and 2.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runPython, torch1Python, torch2Python, TORCH1_FIX, TORCH2_FIX } from './helpers/python.js';
import { unavailable } from './helpers/required.js';
import { tmpDir } from './helpers/tmp.js';
import { graphOf, writeExport } from './export/helpers.js';

const CHECK = `
import json, sys, torch, torch.utils.checkpoint
sys.path.insert(0, ".")
import model as M
import train as T

calls = [0]
original = torch.utils.checkpoint.checkpoint
def counting(*a, **k):
    calls[0] += 1
    return original(*a, **k)
torch.utils.checkpoint.checkpoint = counting

def grads(gc):
    torch.manual_seed(0)
    m = M.MODELS["tiny_moe"]()
    m.init_fresh(3)
    m.gradient_checkpointing_enable(gc)
    m.train()
    g = torch.Generator().manual_seed(1)
    B, L = 2, 12
    ids = torch.randint(0, 128, (B, L), generator=g, dtype=torch.int64).to(torch.int32)
    mask = torch.ones(B, L, dtype=torch.int32); mask[1, -3:] = 0
    labels = ids.clone(); labels[:, :3] = -100; labels[mask == 0] = -100
    pixels = torch.randn(B, 3, 16, 16, generator=g)
    out = m(pixels, ids, mask, [1, 1], labels)
    out["loss"].backward()
    return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}, float(out["aux_loss"].detach())

calls[0] = 0
plain, aux_plain = grads(False)
plain_calls = calls[0]
calls[0] = 0
ckpt, aux_ckpt = grads(True)
diff = max(float((plain[n] - ckpt[n]).abs().max()) for n in plain)

s = T.LossScaler()
scales = [s.scale]
s.update(False); scales.append(s.scale)
for _ in range(2000): s.update(True)
scales.append(s.scale)
print(json.dumps({"plain_calls": plain_calls, "ckpt_calls": calls[0], "same_keys": sorted(plain) == sorted(ckpt),
                  "max_diff": diff, "aux": [aux_plain, aux_ckpt], "router_grad": float(next(g for n, g in ckpt.items() if n.endswith("model.layers.1.block_sparse_moe.gate.weight")).abs().sum()),
                  "scales": scales}))
`;

describe('export: a stage\'s gradient_checkpointing and precision in the PyTorch program', function () {
  this.timeout(300_000);
  let dir = '';
  before(() => {
    dir = writeExport(graphOf('test/export/tiny-moe.pipe', ['stage.joint.gradient_checkpointing=true', 'stage.joint.precision=fp16', 'stage.tune.precision=bf16']), tmpDir('export-gc'));
  });

  it('STAGES carries gradient_checkpointing and precision; train.py autocasts bf16 and fp16 on CUDA, scales fp16 losses, and turns checkpointing on per stage', () => {
    const train = fs.readFileSync(path.join(dir, 'train.py'), 'utf8');
    assert.match(train, /"name": "joint",[\s\S]*?"precision": "fp16",\s*"gradient_checkpointing": True/);
    assert.match(train, /"name": "tune",[\s\S]*?"precision": "bf16",\s*"gradient_checkpointing": False/); // a --set names one stage
    assert.match(train, /\{"bf16": torch\.bfloat16, "fp16": torch\.float16\}\.get\(stage\["precision"\]\) if device\.type == "cuda" else None/);
    assert.match(train, /with torch\.autocast\(device_type="cuda", dtype=autocast_dtype\)/);
    assert.match(train, /scaler = LossScaler\(\) if autocast_dtype == torch\.float16 and not ds else None/);
    assert.match(train, /\(loss \* scaler\.scale if scaler else loss\)\.backward\(\)/);
    assert.match(train, /model\.gradient_checkpointing_enable\(bool\(stage\.get\("gradient_checkpointing"\)\)\)/);
  });

  for (const [label, find, fix] of [['torch 1', torch1Python, TORCH1_FIX], ['torch 2', torch2Python, TORCH2_FIX]] as const) {
    it(`${label} on CPU: checkpointed layers (torch.utils.checkpoint) give the gradients of the plain pass (1e-6, mixtral with its aux loss); the loss scaler halves on overflow and doubles after 2000 good steps`, function () {
      const py = find();
      if (!py) unavailable(this, `${label} in a Python here`, fix);
      fs.writeFileSync(path.join(dir, 'check_gc.py'), CHECK);
      const r = JSON.parse(runPython(py.python, ['check_gc.py'], { cwd: dir }).trim().split('\n').pop()!) as {
        plain_calls: number; ckpt_calls: number; same_keys: boolean; max_diff: number; aux: [number, number]; router_grad: number; scales: number[];
      };
      assert.equal(r.plain_calls, 0, 'no checkpoint without gradient_checkpointing');
      assert.equal(r.ckpt_calls, 1 + 2, 'one checkpoint per layer: 1 siglip layer, 2 mixtral layers');
      assert.ok(r.same_keys, 'the same parameters get a gradient');
      assert.ok(r.max_diff <= 1e-6, `gradients differ by ${r.max_diff}`);
      assert.ok(r.aux[0] > 0 && r.aux[0] === r.aux[1], `aux loss ${r.aux}`);
      assert.ok(r.router_grad > 0);
      assert.deepEqual(r.scales, [65536, 32768, 65536]);
    });
  }
});
