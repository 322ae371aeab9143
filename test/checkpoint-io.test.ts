// checkpoint-io reads config.json and safetensors headers (8-byte length + JSON), never tensor data.
import { strict as assert } from 'node:assert';
import fsModule from 'node:fs';
import * as fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import * as path from 'node:path';
import { CheckpointError, configLookup, readCheckpointMeta, readSafetensorsHeader } from '../compiler/check/checkpoint-io.js';
import { writeConfig, writeRawSafetensors as rawFile, writeSafetensors } from './helpers/safetensors-writer.js';
import { tmpDir } from './helpers/tmp.js';

const tmp = () => tmpDir('checkpoint-io');

/** The header length N from a file's 8-byte prefix. */
function headerLength(file: string): number {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(8);
    fs.readSync(fd, b, 0, 8, 0);
    return Number(b.readBigUInt64LE(0));
  } finally {
    fs.closeSync(fd);
  }
}

/** Records every fs.readSync call (fd, length, position) made while `fn` runs. */
function spyReads<T>(fn: () => T): { result: T; reads: { length: number; position: number; got: number }[] } {
  const original = fsModule.readSync;
  const reads: { length: number; position: number; got: number }[] = [];
  const spy = ((...args: Parameters<typeof fs.readSync>) => {
    const got = (original as (...a: unknown[]) => number)(...args);
    const [, , , length, position] = args as unknown as [number, unknown, number, number, number];
    reads.push({ length, position, got });
    return got;
  }) as typeof fs.readSync;
  fsModule.readSync = spy;
  syncBuiltinESMExports();
  try {
    return { result: fn(), reads };
  } finally {
    fsModule.readSync = original;
    syncBuiltinESMExports();
  }
}

function throwsCheckpoint(fn: () => unknown, kind: CheckpointError['kind'], why: RegExp, file?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `expected a CheckpointError, got ${String(e)}`);
    assert.equal(e.kind, kind, `kind (why: ${e.why})`);
    assert.match(e.why, why);
    if (file !== undefined) assert.equal(e.file, file);
    return true;
  });
}

describe('checkpoint-io: safetensors headers', () => {
  it('round-trips names, dtypes, shapes and metadata of a single file', () => {
    const dir = tmp();
    const file = path.join(dir, 'model.safetensors');
    writeSafetensors(
      file,
      {
        'model.embed_tokens.weight': { shape: [10, 4], data: new Float32Array(40).fill(0.5) },
        'model.norm.weight': { dtype: 'BF16', shape: [4] },
        'model.position_ids': { dtype: 'I64', shape: [1, 7] },
        'model.scalar': { dtype: 'F16', shape: [] },
        'model.empty': { shape: [0, 3] },
      },
      { metadata: { format: 'pt', producer: 'pipec-test' } },
    );
    const h = readSafetensorsHeader(file);
    assert.deepEqual(
      [...h.tensors.values()].map((t) => [t.name, t.dtype, t.shape, t.file]),
      [
        ['model.embed_tokens.weight', 'F32', [10, 4], 'model.safetensors'],
        ['model.norm.weight', 'BF16', [4], 'model.safetensors'],
        ['model.position_ids', 'I64', [1, 7], 'model.safetensors'],
        ['model.scalar', 'F16', [], 'model.safetensors'],
        ['model.empty', 'F32', [0, 3], 'model.safetensors'],
      ],
    );
    assert.deepEqual(h.metadata, { format: 'pt', producer: 'pipec-test' });
    assert.equal(h.dataBytes, 160 + 8 + 56 + 2 + 0);
    assert.equal(h.bytesRead, 8 + headerLength(file));
    assert.equal(fs.statSync(file).size, h.bytesRead + h.dataBytes);
  });

  it('writes given F32 data where the header says it is (test helper)', () => {
    const file = path.join(tmp(), 'x.safetensors');
    writeSafetensors(file, { a: { dtype: 'BF16', shape: [3] }, b: { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) } });
    const n = headerLength(file);
    const bytes = fs.readFileSync(file);
    assert.equal((8 + n) % 8, 0, 'data starts 8-byte aligned');
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
    const [b0, b1] = header.b.data_offsets;
    const data = bytes.subarray(8 + n + b0, 8 + n + b1);
    assert.deepEqual([...new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength))], [1, 2, 3, 4]);
    assert.ok(bytes.subarray(8 + n, 8 + n + 6).every((x) => x === 0), 'tensors without data are zeros');
  });

  it('reads a sparse header declaring > 2 GB (and > 4 GB) of tensors without reading tensor data', () => {
    const file = path.join(tmp(), 'model.safetensors');
    writeSafetensors(
      file,
      {
        'model.embed_tokens.weight': { shape: [32000, 4096] }, // F32, 500 MiB
        'lm_head.weight': { dtype: 'BF16', shape: [65536, 8192] }, // 1 GiB
        'model.layers.0.mlp.up_proj.weight': { shape: [65536, 16384] }, // F32, 4 GiB: offsets beyond 2^32
      },
      { sparse: true },
    );
    const st = fs.statSync(file);
    const n = headerLength(file);
    const { result: h, reads } = spyReads(() => readSafetensorsHeader(file));
    assert.equal(h.bytesRead, 8 + n);
    assert.ok(h.dataBytes > 2 ** 31, `declares ${h.dataBytes} bytes`);
    assert.equal(h.dataBytes, 32000 * 4096 * 4 + 65536 * 8192 * 2 + 65536 * 16384 * 4);
    assert.equal(st.size, h.bytesRead + h.dataBytes);
    assert.deepEqual(h.tensors.get('model.layers.0.mlp.up_proj.weight')?.shape, [65536, 16384]);
    // Every read stayed inside the prefix and header, and they add up to bytesRead.
    assert.ok(reads.length > 0, 'reads were observed');
    for (const r of reads) assert.ok(r.position + r.length <= 8 + n, `a read at ${r.position} of ${r.length} bytes reaches past the header`);
    assert.equal(reads.reduce((a, r) => a + r.got, 0), h.bytesRead);
    // The helper really wrote a sparse file: far less disk than the declared size.
    if (typeof st.blocks === 'number' && st.blocks > 0) assert.ok(st.blocks * 512 < 64 * 1024 * 1024, `${st.blocks} blocks allocated`);
  });

  const t1 = (extra: object = {}) => ({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, ...extra });
  const badHeaders: [string, (f: string) => void, RegExp][] = [
    ['a file shorter than 8 bytes', (f) => fs.writeFileSync(f, Buffer.alloc(5)), /5 bytes, fewer than the 8-byte header length/],
    ['an empty file', (f) => fs.writeFileSync(f, ''), /0 bytes, fewer than the 8-byte/],
    ['a header length of 0', (f) => rawFile(f, '', 16, 0n), /header length is 0/],
    ['a header length over 100 MB', (f) => rawFile(f, '{}', 0, 200n * 1024n * 1024n), /header length 209715200 exceeds the 104857600-byte limit/],
    ['a header length beyond Number.MAX_SAFE_INTEGER', (f) => rawFile(f, '{}', 0, 2n ** 64n - 1n), /18446744073709551615 exceeds the largest exact integer/],
    ['a header length larger than the file', (f) => rawFile(f, '{}', 4, 99n), /header length 99 runs past the end of the 14-byte file/],
    ['invalid JSON', (f) => rawFile(f, '{nope'), /not valid JSON/],
    ['a header that is not UTF-8', (f) => rawFile(f, Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])), /not valid UTF-8/],
    ['a header that is an array', (f) => rawFile(f, [1, 2]), /not a JSON object but an array/],
    ['a header that is null', (f) => rawFile(f, 'null'), /not a JSON object but null/],
    ['a header that is a string', (f) => rawFile(f, '"hi"'), /not a JSON object but string/],
    ['__metadata__ that is not an object', (f) => rawFile(f, { __metadata__: 3 }), /__metadata__ is not an object/],
    ['__metadata__ with a non-string value', (f) => rawFile(f, { __metadata__: { n: 1 } }), /__metadata__ value "n" is not a string/],
    ['an entry that is not an object', (f) => rawFile(f, { t: [1] }), /entry "t" is not an object/],
    ['an entry missing dtype', (f) => rawFile(f, { t: { shape: [2], data_offsets: [0, 8] } }, 8), /tensor "t" is missing dtype/],
    ['an entry missing shape', (f) => rawFile(f, { t: { dtype: 'F32', data_offsets: [0, 8] } }, 8), /tensor "t" is missing shape/],
    ['an entry missing data_offsets', (f) => rawFile(f, { t: { dtype: 'F32', shape: [2] } }, 8), /tensor "t" is missing data_offsets/],
    ['a dtype that is not a string', (f) => rawFile(f, { t: { dtype: 4, shape: [1], data_offsets: [0, 4] } }, 4), /dtype that is not a string/],
    ['an unknown dtype', (f) => rawFile(f, { t: { dtype: 'Q7', shape: [1], data_offsets: [0, 1] } }, 1), /unknown dtype Q7/],
    ['a dtype named like an Object property', (f) => rawFile(f, { t: { dtype: 'constructor', shape: [1], data_offsets: [0, 1] } }, 1), /unknown dtype constructor/],
    ['a negative dimension', (f) => rawFile(f, { t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8), /shape that is not a list of non-negative integers: \[-2\]/],
    ['a fractional dimension', (f) => rawFile(f, { t: { dtype: 'F32', shape: [1.5], data_offsets: [0, 6] } }, 8), /shape that is not a list of non-negative integers/],
    ['a shape that is not an array', (f) => rawFile(f, { t: { dtype: 'F32', shape: '2', data_offsets: [0, 8] } }, 8), /shape that is not a list/],
    ['a shape with a string dimension', (f) => rawFile(f, { t: { dtype: 'F32', shape: ['2'], data_offsets: [0, 8] } }, 8), /shape that is not a list/],
    ['data_offsets of the wrong length', (f) => rawFile(f, { t: { dtype: 'F32', shape: [2], data_offsets: [8] } }, 8), /data_offsets that are not two non-negative integers/],
    ['negative data_offsets', (f) => rawFile(f, { t: { dtype: 'F32', shape: [2], data_offsets: [-8, 0] } }, 8), /data_offsets that are not two non-negative integers/],
    ['data_offsets that end before they begin', (f) => rawFile(f, { t: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, 8), /end before they begin/],
    ['offsets that disagree with dtype and shape', (f) => rawFile(f, { t: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 8), /spans 4 bytes but F32\[2\] needs 8/],
    ['offsets that disagree with a BF16 shape', (f) => rawFile(f, { t: { dtype: 'BF16', shape: [3, 2], data_offsets: [0, 24] } }, 24), /spans 24 bytes but BF16\[3,2\] needs 12/],
    ['a shape whose size overflows a double', (f) => rawFile(f, { t: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, 8), /needs 4835703278458516698824704/],
    ['a sub-byte dtype with an odd count', (f) => rawFile(f, { t: { dtype: 'F4', shape: [3], data_offsets: [0, 2] } }, 2), /F4\[3\], which is not a whole number of bytes/],
    [
      'overlapping tensors',
      (f) => rawFile(f, { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12),
      /tensors "a" and "b" overlap/,
    ],
    ['a truncated file', (f) => rawFile(f, { t: { dtype: 'F32', shape: [100], data_offsets: [0, 400] } }, 10), /file is truncated: header declares 400 bytes of data but only 10 follow/],
    ['a header with no data after it', (f) => rawFile(f, t1()), /file is truncated: header declares 8 bytes of data but only 0 follow/],
  ];
  for (const [what, make, why] of badHeaders) {
    it(`rejects ${what} as bad-header with a reason`, () => {
      const f = path.join(tmp(), 'x.safetensors');
      make(f);
      throwsCheckpoint(() => readSafetensorsHeader(f), 'bad-header', why, 'x.safetensors');
    });
  }

  it('accepts an empty header object, zero-size tensors sharing an offset, and trailing bytes', () => {
    const f = path.join(tmp(), 'x.safetensors');
    rawFile(f, {});
    assert.equal(readSafetensorsHeader(f).tensors.size, 0);
    rawFile(f, { a: { dtype: 'F32', shape: [0], data_offsets: [0, 0] }, b: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, c: { dtype: 'I8', shape: [0, 9], data_offsets: [4, 4] } }, 16);
    const h = readSafetensorsHeader(f);
    assert.deepEqual([...h.tensors.keys()], ['a', 'b', 'c']);
    assert.equal(h.dataBytes, 4);
  });

  it('reports a file that does not exist as not-found', () => {
    throwsCheckpoint(() => readSafetensorsHeader(path.join(tmp(), 'nope.safetensors')), 'not-found', /no such file/, 'nope.safetensors');
  });
});

describe('checkpoint-io: checkpoint folders', () => {
  it('reads every *.safetensors in a folder, sorted, with config.json', () => {
    const dir = tmp();
    writeConfig(dir, { model_type: 'llava', vision_config: { hidden_size: 1024 } });
    writeSafetensors(path.join(dir, 'b.safetensors'), { y: { shape: [3] } });
    writeSafetensors(path.join(dir, 'a.safetensors'), { x: { dtype: 'F16', shape: [2, 2] } });
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not a checkpoint');
    const meta = readCheckpointMeta(dir);
    assert.deepEqual(meta.files, ['a.safetensors', 'b.safetensors']);
    assert.deepEqual([...meta.tensors.values()].map((t) => [t.name, t.dtype, t.shape, t.file]), [['x', 'F16', [2, 2], 'a.safetensors'], ['y', 'F32', [3], 'b.safetensors']]);
    assert.equal(meta.bytesRead, 16 + headerLength(path.join(dir, 'a.safetensors')) + headerLength(path.join(dir, 'b.safetensors')));
    assert.equal(meta.configFile, path.join(dir, 'config.json'));
    assert.equal(configLookup(meta.config!, 'vision_config.hidden_size'), 1024);
    assert.equal(meta.indexFile, undefined);
  });

  it('gives no tensors and no files for a folder without safetensors, and not-found for a missing folder', () => {
    const dir = tmp();
    const meta = readCheckpointMeta(dir);
    assert.deepEqual(meta.files, []);
    assert.equal(meta.tensors.size, 0);
    assert.equal(meta.bytesRead, 0);
    assert.equal(meta.config, undefined);
    throwsCheckpoint(() => readCheckpointMeta(path.join(dir, 'missing')), 'not-found', /no such directory/);
    fs.writeFileSync(path.join(dir, 'file'), '');
    throwsCheckpoint(() => readCheckpointMeta(path.join(dir, 'file')), 'not-found', /not a directory/);
  });

  it('passes on a bad safetensors file in a folder as bad-header naming that file', () => {
    const dir = tmp();
    writeSafetensors(path.join(dir, 'a.safetensors'), { x: { shape: [2] } });
    fs.writeFileSync(path.join(dir, 'b.safetensors'), Buffer.alloc(3));
    throwsCheckpoint(() => readCheckpointMeta(dir), 'bad-header', /fewer than the 8-byte/, 'b.safetensors');
  });

  function sharded(): string {
    const dir = tmp();
    writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), { 'model.embed_tokens.weight': { shape: [16, 8] }, 'model.layers.0.mlp.up_proj.weight': { dtype: 'BF16', shape: [32, 8] } });
    writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), { 'model.norm.weight': { shape: [8] }, 'lm_head.weight': { dtype: 'BF16', shape: [16, 8] } });
    const weight_map = {
      'model.embed_tokens.weight': 'model-00001-of-00002.safetensors',
      'model.layers.0.mlp.up_proj.weight': 'model-00001-of-00002.safetensors',
      'model.norm.weight': 'model-00002-of-00002.safetensors',
      'lm_head.weight': 'model-00002-of-00002.safetensors',
    };
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 1024 + 512 + 32 + 256 }, weight_map }));
    return dir;
  }

  it('follows model.safetensors.index.json over two shards', () => {
    const dir = sharded();
    // A stray file the index does not name is not read.
    writeSafetensors(path.join(dir, 'stray.safetensors'), { stray: { shape: [1] } });
    const meta = readCheckpointMeta(dir);
    assert.equal(meta.indexFile, path.join(dir, 'model.safetensors.index.json'));
    assert.deepEqual(meta.files, ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    assert.deepEqual(
      [...meta.tensors.values()].map((t) => [t.name, t.dtype, t.shape, t.file]),
      [
        ['model.embed_tokens.weight', 'F32', [16, 8], 'model-00001-of-00002.safetensors'],
        ['model.layers.0.mlp.up_proj.weight', 'BF16', [32, 8], 'model-00001-of-00002.safetensors'],
        ['model.norm.weight', 'F32', [8], 'model-00002-of-00002.safetensors'],
        ['lm_head.weight', 'BF16', [16, 8], 'model-00002-of-00002.safetensors'],
      ],
    );
    assert.ok(!meta.tensors.has('stray'));
    assert.equal(meta.bytesRead, meta.files.reduce((a, f) => a + 8 + headerLength(path.join(dir, f)), 0));
  });

  it('rejects a shard the index names that does not exist, naming the shard', () => {
    const dir = sharded();
    fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
    throwsCheckpoint(() => readCheckpointMeta(dir), 'shard-missing', /names this shard but it does not exist/, 'model-00002-of-00002.safetensors');
  });

  it('rejects an index entry whose shard header does not hold the tensor', () => {
    const dir = sharded();
    const indexFile = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(fs.readFileSync(indexFile, 'utf8')) as { weight_map: Record<string, string> };
    index.weight_map['model.norm.weight'] = 'model-00001-of-00002.safetensors';
    fs.writeFileSync(indexFile, JSON.stringify(index));
    throwsCheckpoint(() => readCheckpointMeta(dir), 'bad-header', /maps "model.norm.weight" to this shard, but its header does not hold it/, 'model-00001-of-00002.safetensors');
  });

  it('takes a tensor found in two shards from the shard the index names', () => {
    const dir = sharded();
    writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), {
      'model.norm.weight': { shape: [8] },
      'lm_head.weight': { dtype: 'BF16', shape: [16, 8] },
      'model.embed_tokens.weight': { dtype: 'F16', shape: [1, 1] }, // a leftover copy the index does not point to
    });
    const meta = readCheckpointMeta(dir);
    const { byteRange, ...info } = meta.tensors.get('model.embed_tokens.weight')!;
    assert.deepEqual(info, { name: 'model.embed_tokens.weight', dtype: 'F32', shape: [16, 8], file: 'model-00001-of-00002.safetensors' });
    assert.equal(byteRange![1] - byteRange![0], 16 * 8 * 4);
  });

  it('rejects an index that is not JSON, has no weight_map, or names a shard outside the folder', () => {
    const dir = tmp();
    const indexFile = path.join(dir, 'model.safetensors.index.json');
    fs.writeFileSync(indexFile, '{"weight_map": ');
    throwsCheckpoint(() => readCheckpointMeta(dir), 'bad-json', /JSON/, 'model.safetensors.index.json');
    fs.writeFileSync(indexFile, '{"metadata": {}}');
    throwsCheckpoint(() => readCheckpointMeta(dir), 'bad-json', /weight_map is missing/, 'model.safetensors.index.json');
    fs.writeFileSync(indexFile, JSON.stringify({ weight_map: { x: 3 } }));
    throwsCheckpoint(() => readCheckpointMeta(dir), 'bad-json', /maps "x" to 3, not a file name/, 'model.safetensors.index.json');
    fs.writeFileSync(indexFile, JSON.stringify({ weight_map: { x: '../elsewhere.safetensors' } }));
    throwsCheckpoint(() => readCheckpointMeta(dir), 'bad-json', /not a file name in the checkpoint folder/, 'model.safetensors.index.json');
  });

  it('reports config.json with bad JSON as bad-json', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'config.json'), '{"hidden_size": 4096,}');
    throwsCheckpoint(() => readCheckpointMeta(dir), 'bad-json', /JSON/, 'config.json');
    fs.writeFileSync(path.join(dir, 'config.json'), '[1, 2]');
    throwsCheckpoint(() => readCheckpointMeta(dir), 'bad-json', /not a JSON object/, 'config.json');
  });
});

describe('checkpoint-io: configLookup', () => {
  const config = {
    model_type: 'llava',
    hidden_size: 4096,
    vision_config: { hidden_size: 1024, image_size: 336, nested: { deeper: { x: null, flag: false } } },
    text_config: { num_hidden_layers: 32, rope_scaling: { factor: 2.0 } },
    image_grid_pinpoints: [[336, 672], [672, 336]],
  };

  it('follows dotted paths into nested objects and arrays', () => {
    assert.equal(configLookup(config, 'hidden_size'), 4096);
    assert.equal(configLookup(config, 'vision_config.hidden_size'), 1024);
    assert.equal(configLookup(config, 'text_config.rope_scaling.factor'), 2.0);
    assert.equal(configLookup(config, 'vision_config.nested.deeper.flag'), false);
    assert.equal(configLookup(config, 'vision_config.nested.deeper.x'), null);
    assert.deepEqual(configLookup(config, 'vision_config.nested'), { deeper: { x: null, flag: false } });
    assert.equal(configLookup(config, 'image_grid_pinpoints.1.0'), 672);
  });

  it('gives undefined for absent keys, paths through scalars, and inherited properties', () => {
    assert.equal(configLookup(config, 'vision_config.patch_size'), undefined);
    assert.equal(configLookup(config, 'nope.hidden_size'), undefined);
    assert.equal(configLookup(config, 'hidden_size.value'), undefined);
    assert.equal(configLookup(config, 'model_type.length'), undefined);
    assert.equal(configLookup(config, 'vision_config.nested.deeper.x.y'), undefined);
    assert.equal(configLookup(config, 'constructor'), undefined);
    assert.equal(configLookup(config, 'vision_config.toString'), undefined);
    assert.equal(configLookup(config, 'image_grid_pinpoints.length'), undefined);
    assert.equal(configLookup(config, 'image_grid_pinpoints.5'), undefined);
  });
});
