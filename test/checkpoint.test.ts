// Checkpoint cross-checks read config.json and safetensors headers only, never tensor data.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckpointError, readCheckpointMeta, readSafetensorsHeader } from '../compiler/check/checkpoint-io.js';
import { compile } from '../compiler/service/service.js';
import { tinyVitTensors } from './golden/fixtures.js';
import { writeConfig, writeSafetensors } from './helpers/safetensors-writer.js';
import { tmpDir } from './helpers/tmp.js';

// (malformed headers: test/checkpoint-io.test.ts, every case)
const tmp = () => tmpDir('checkpoint');

const PROGRAM = `import "std/vision"
import "std/llm"
model m {
  encoder vision = vit(image: 32, patch: 8, hidden: 64, layers: 2, heads: 4, mlp: 128)
                   weights "ckpt"
  llm lm = llama(vocab: 512, hidden: 64, layers: 2, heads: 4, mlp: 256, context: 128)
  flow vision -> lm at "<image>"
}
`;

/** The problems found (notes such as the detected layout, PIPE6013, left out). */
function check(dir: string) {
  fs.writeFileSync(path.join(dir, 'main.pipe'), PROGRAM);
  return compile({ file: path.join(dir, 'main.pipe'), cwd: dir, lower: false }).diagnostics.filter((d) => d.severity !== 'info');
}

describe('checkpoint headers', () => {
  it('reads names, dtypes and shapes of a single file', () => {
    const dir = tmp();
    writeSafetensors(path.join(dir, 'model.safetensors'), { a: { shape: [2, 3], data: new Float32Array(6).fill(1) }, b: { dtype: 'BF16', shape: [4] } });
    const h = readSafetensorsHeader(path.join(dir, 'model.safetensors'));
    assert.deepEqual([...h.tensors.values()].map((t) => [t.name, t.dtype, t.shape]), [['a', 'F32', [2, 3]], ['b', 'BF16', [4]]]);
    assert.deepEqual(h.metadata, { format: 'pt' });
    assert.equal(h.dataBytes, 24 + 8);
  });

  it('reads the header of a > 2 GB checkpoint without touching its tensor data', () => {
    const dir = tmp();
    const file = path.join(dir, 'model.safetensors');
    writeSafetensors(file, { 'model.embed_tokens.weight': { shape: [128256, 4096] }, 'lm_head.weight': { dtype: 'BF16', shape: [65536, 8192] } }, { sparse: true });
    const size = fs.statSync(file).size;
    const h = readSafetensorsHeader(file);
    assert.ok(h.dataBytes > 2 ** 31, `declares ${h.dataBytes} bytes`);
    // Only the 8-byte prefix and the JSON header were read: far less than one tensor row of data.
    assert.ok(h.bytesRead < 1024, `read ${h.bytesRead} bytes`);
    assert.equal(size, h.bytesRead + h.dataBytes);
  });

  it('reports a located error naming both values when config.json disagrees with the declaration', () => {
    const dir = tmp();
    writeConfig(path.join(dir, 'ckpt'), { hidden_size: 96, num_hidden_layers: 2 });
    writeSafetensors(path.join(dir, 'ckpt/model.safetensors'), tinyVitTensors());
    const diags = check(dir);
    assert.equal(diags.length, 1, diags.map((d) => d.message).join('\n'));
    assert.equal(diags[0].code, 'PIPE6006');
    assert.match(diags[0].message, /declared `vision.hidden` = 64 but config.json has hidden_size = 96/);
    assert.equal(diags[0].range.start.line, 4);
    assert.equal(diags[0].range.start.column, 53); // `64` in `hidden: 64`
  });

  it('reports tensor shapes that differ from the declaration, and missing tensors', () => {
    const dir = tmp();
    const t = tinyVitTensors();
    t['vision_model.encoder.layers.0.self_attn.q_proj.weight'] = { shape: [64, 32] };
    delete t['vision_model.post_layernorm.bias'];
    writeSafetensors(path.join(dir, 'ckpt/model.safetensors'), t);
    const diags = check(dir);
    assert.deepEqual(diags.map((d) => d.code).sort(), ['PIPE6007', 'PIPE6009']);
    const shape = diags.find((d) => d.code === 'PIPE6007')!;
    assert.match(shape.message, /"vision_model.encoder.layers.0.self_attn.q_proj.weight" should be \[64, 64\] but model.safetensors has \[64, 32\]/);
    assert.equal(shape.range.start.line, 5); // the weights "ckpt" string
  });

  it('follows a sharded index and rejects a missing shard', () => {
    const dir = tmp();
    const ck = path.join(dir, 'ckpt');
    writeSafetensors(path.join(ck, 'a.safetensors'), { x: { shape: [2] } });
    fs.writeFileSync(path.join(ck, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'a.safetensors', y: 'b.safetensors' } }));
    assert.throws(() => readCheckpointMeta(ck), (e: unknown) => e instanceof CheckpointError && e.kind === 'shard-missing' && e.file === 'b.safetensors');
    writeSafetensors(path.join(ck, 'b.safetensors'), { y: { shape: [3, 4] } });
    const meta = readCheckpointMeta(ck);
    assert.deepEqual(meta.files, ['a.safetensors', 'b.safetensors']);
    assert.deepEqual(meta.tensors.get('y')?.shape, [3, 4]);
  });
});
