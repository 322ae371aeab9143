// Run configs: YAML files and --set options, validated against schema/run-config.schema.json and
// flattened into located overrides.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { loadRunConfig, mergeRunConfigs, parseRunConfig, parseSetOptions, type Override, type RunConfig } from '../compiler/config/run-config.js';
import type { Range } from '../compiler/diagnostics/source.js';
import { compile } from '../compiler/service/service.js';
import { tmpDir } from './helpers/tmp.js';
import { repo } from './paths.js';

const at = (r: Range) => `${r.start.line}:${r.start.column}-${r.end.line}:${r.end.column}`;
const find = (cfg: RunConfig, dotted: string, stage?: string): Override | undefined => cfg.overrides.find((o) => o.path.join('.') === dotted && o.stage === stage);
const codes = (cfg: RunConfig) => cfg.diagnostics.map((d) => d.code);

const GOOD = `# yaml-language-server: $schema=../schema/run-config.schema.json
stages:
  align:
    optimizer: { lr: 2.0e-4, weight_decay: 0.0 }
    schedule: { name: cosine, warmup_ratio: 0.03 }
    batch: 16
    accumulate: 4
    epochs: 1
    max_length: 2048
    precision: bf16
    devices: { count: 16, nodes: 2, kind: gpu, memory: 80GB }
    sharding: zero3
    gradient_checkpointing: true
    clip_grad: 1.0
    seed: 0
    checkpoint:
      every: 500
      keep: 3
    data: pretrain_ja
  finetune:
    steps: 1000
paths:
  weights:  { vision: /data/ckpt/siglip }
  data:     { pretrain_ja: { file: /data/x.json, images: /data/images } }
run_dir: runs/x
backend: auto
`;

describe('run config: YAML files', () => {
  it('flattens a good file into one override per leaf, located at each value', () => {
    const cfg = parseRunConfig('run.yaml', GOOD);
    assert.deepEqual(cfg.diagnostics, []);
    const lr = find(cfg, 'optimizer.lr', 'align')!;
    assert.deepEqual({ section: lr.section, stage: lr.stage, path: lr.path, value: lr.value, source: lr.source }, { section: 'stages', stage: 'align', path: ['optimizer', 'lr'], value: 0.0002, source: 'run.yaml' });
    assert.equal(lr.range.file, 'run.yaml');
    assert.equal(at(lr.range), '4:22-4:28');
    assert.equal(lr.range.start.offset, GOOD.indexOf('2.0e-4'));
    assert.equal(at(find(cfg, 'batch', 'align')!.range), '6:12-6:14');
    assert.equal(find(cfg, 'batch', 'align')!.value, 16);
    assert.equal(find(cfg, 'precision', 'align')!.value, 'bf16');
    assert.equal(find(cfg, 'gradient_checkpointing', 'align')!.value, true);
    assert.equal(find(cfg, 'steps', 'finetune')!.value, 1000);
    // whole objects become leaves too
    assert.deepEqual(
      cfg.overrides.filter((o) => o.path[0] === 'devices').map((o) => [o.path[1], o.value]),
      [['count', 16], ['nodes', 2], ['kind', 'gpu'], ['memory', '80GB']],
    );
    assert.equal(at(find(cfg, 'devices.memory', 'align')!.range), '11:56-11:60');
    assert.equal(find(cfg, 'schedule.name', 'align')!.value, 'cosine');
    assert.equal(at(find(cfg, 'checkpoint.every', 'align')!.range), '17:14-17:17');
    assert.equal(find(cfg, 'checkpoint.keep', 'align')!.value, 3);
    // paths
    const vision = find(cfg, 'weights.vision')!;
    assert.equal(vision.section, 'paths');
    assert.equal(vision.stage, undefined);
    assert.equal(vision.value, '/data/ckpt/siglip');
    assert.equal(at(vision.range), '23:23-23:40');
    assert.equal(find(cfg, 'data.pretrain_ja.images')!.value, '/data/images');
    // run section
    assert.equal(cfg.runDir, 'runs/x');
    assert.equal(cfg.backend, 'auto');
    const rd = find(cfg, 'run_dir')!;
    assert.equal(rd.section, 'run');
    assert.equal(at(rd.range), '25:10-25:16');
    assert.equal(cfg.overrides.length, 26);
  });

  it('names an unknown key at the key, with the closest allowed key', () => {
    const text = 'stages:\n  align:\n    optimiser: { lr: 1.0e-3 }\n    batch: 8\n';
    const cfg = parseRunConfig('run.yaml', text);
    assert.deepEqual(codes(cfg), ['PIPE8002']);
    const d = cfg.diagnostics[0];
    assert.equal(d.message, 'run config stages.align: unknown key `optimiser`; did you mean `optimizer`?');
    assert.equal(at(d.range), '3:5-3:14');
    assert.equal(d.fixes?.[0].newText, 'optimizer');
    // the rest of the file still applies; the misspelt key does not
    assert.deepEqual(cfg.overrides.map((o) => o.path.join('.')), ['batch']);
  });

  it('lists the allowed keys when nothing is close', () => {
    const cfg = parseRunConfig('run.yaml', 'stages: {}\nzzz: 1\n');
    assert.match(cfg.diagnostics[0].message, /unknown key `zzz`$/);
    assert.match(cfg.diagnostics[0].hint ?? '', /stages, paths, run_dir, backend/);
    assert.equal(at(cfg.diagnostics[0].range), '2:1-2:4');
  });

  it('reports a wrong type at the value', () => {
    const cfg = parseRunConfig('run.yaml', 'stages:\n  align:\n    batch: "x"\n');
    assert.deepEqual(codes(cfg), ['PIPE8002']);
    assert.equal(cfg.diagnostics[0].message, 'run config stages.align.batch: expected an integer, got "x"');
    assert.equal(at(cfg.diagnostics[0].range), '3:12-3:15');
    assert.deepEqual(cfg.overrides, []);
  });

  it('reports minimums, enums and sizes readably', () => {
    const cfg = parseRunConfig('run.yaml', 'stages:\n  a:\n    batch: 0\n    optimizer: {lr: 0}\n    precision: bf17\n    devices: {memory: 80 gigs}\n    data: my-data\n');
    const msgs = cfg.diagnostics.map((d) => d.message);
    assert.deepEqual(codes(cfg), ['PIPE8002', 'PIPE8002', 'PIPE8002', 'PIPE8002', 'PIPE8002']);
    assert.equal(msgs[0], 'run config stages.a.batch: must be >= 1, got 0');
    assert.equal(msgs[1], 'run config stages.a.optimizer.lr: must be > 0, got 0');
    assert.match(msgs[2], /must be one of bf16, fp16, fp32, got "bf17"; did you mean `bf16`\?/);
    assert.match(msgs[3], /stages\.a\.devices\.memory: expected a size such as "80GB".*or a number of bytes; got "80 gigs"/);
    assert.match(msgs[4], /"my-data" is not a valid name/);
    assert.equal(at(cfg.diagnostics[3].range), '6:23-6:30');
  });

  it('rejects epochs and steps together', () => {
    const cfg = parseRunConfig('run.yaml', 'stages:\n  align:\n    epochs: 1\n    steps: 100\n');
    assert.deepEqual(codes(cfg), ['PIPE8002']);
    assert.match(cfg.diagnostics[0].message, /stages\.align: give either `epochs` or `steps`, not both/);
    assert.equal(at(cfg.diagnostics[0].range), '4:5-4:10');
    assert.deepEqual(cfg.overrides, []);
  });

  it('points a YAML syntax error at its line and column', () => {
    const cfg = parseRunConfig('bad.yaml', 'stages:\n  align:\n    batch: 8\n   epochs: 1\n');
    assert.ok(cfg.diagnostics.length >= 1);
    assert.ok(cfg.diagnostics.every((d) => d.code === 'PIPE8001'));
    assert.match(cfg.diagnostics[0].message, /^invalid YAML: /);
    assert.equal(cfg.diagnostics[0].range.file, 'bad.yaml');
    assert.match(cfg.diagnostics[0].message, /same column/);
    assert.equal(at(cfg.diagnostics[0].range), '4:1-4:2');
    assert.deepEqual(cfg.overrides, []);

    const unclosed = parseRunConfig('bad.yaml', 'stages:\n  a: { batch: 8\n');
    assert.equal(unclosed.diagnostics[0].code, 'PIPE8001');
    assert.equal(unclosed.diagnostics[0].range.start.line, 3);
  });

  it('reports duplicate keys as YAML errors', () => {
    const cfg = parseRunConfig('dup.yaml', 'run_dir: a\nrun_dir: b\n');
    assert.deepEqual(codes(cfg), ['PIPE8001']);
    assert.equal(at(cfg.diagnostics[0].range).split('-')[0], '2:1');
  });

  it('rejects a billion-laughs alias bomb quickly', () => {
    const lines = ['lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'];
    for (let i = 1; i <= 8; i++) lines.push(`lol${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]`);
    lines.push(`stages: { a: { data: *a8 } }`);
    const t0 = performance.now();
    const cfg = parseRunConfig('bomb.yaml', lines.join('\n'));
    assert.ok(performance.now() - t0 < 1000, 'took too long');
    assert.deepEqual(codes(cfg), ['PIPE8005']);
    assert.equal(cfg.diagnostics[0].range.start.line, 2);
    assert.deepEqual(cfg.overrides, []);
  });

  it('allows a few aliases and << merges, e.g. shared stage defaults under x-', () => {
    const text = 'x-defaults: &d { batch: 4, precision: bf16 }\nstages:\n  a: { <<: *d, batch: 8 }\n  b: *d\n';
    const cfg = parseRunConfig('run.yaml', text);
    assert.deepEqual(cfg.diagnostics, []);
    assert.equal(find(cfg, 'batch', 'a')!.value, 8);
    assert.equal(at(find(cfg, 'batch', 'a')!.range), '3:23-3:24');
    assert.equal(find(cfg, 'precision', 'a')!.value, 'bf16');
    assert.equal(at(find(cfg, 'precision', 'a')!.range), '1:39-1:43');
    assert.equal(find(cfg, 'batch', 'b')!.value, 4);
  });

  it('rejects files over 1 MiB and absurd nesting', () => {
    const big = parseRunConfig('big.yaml', `# ${'x'.repeat(1024 * 1024)}\n`);
    assert.deepEqual(codes(big), ['PIPE8001']);
    assert.match(big.diagnostics[0].message, /too large/);
    assert.equal(at(big.diagnostics[0].range), '1:1-1:1');
    const t0 = performance.now();
    const deep = parseRunConfig('deep.yaml', `stages: ${'['.repeat(100_000)}`);
    assert.deepEqual(codes(deep), ['PIPE8001']);
    assert.match(deep.diagnostics[0].message, /nested/);
    assert.deepEqual(codes(parseRunConfig('deep.yaml', `${'- '.repeat(100_000)}x`)), ['PIPE8001']);
    assert.ok(performance.now() - t0 < 1000, 'took too long');
  });

  it('treats an empty file as no overrides and a non-mapping as a schema error', () => {
    assert.deepEqual(parseRunConfig('e.yaml', ''), { overrides: [], diagnostics: [] });
    assert.deepEqual(parseRunConfig('e.yaml', '# nothing\n'), { overrides: [], diagnostics: [] });
    assert.deepEqual(codes(parseRunConfig('e.yaml', '42\n')), ['PIPE8002']);
    assert.deepEqual(codes(parseRunConfig('e.yaml', 'stages: [a, b]\n')), ['PIPE8002']);
  });

  it('rejects non-JSON YAML values (YAML 1.1 timestamps) once', () => {
    const cfg = parseRunConfig('d.yaml', '%YAML 1.1\n---\nstages: { a: { seed: !!timestamp 2001-12-14 } }\n');
    assert.deepEqual(codes(cfg), ['PIPE8002']);
    assert.match(cfg.diagnostics[0].message, /a date is not allowed here/);
  });

  it('loads files, and reports a missing one at 1:1 of its path', () => {
    const dir = tmpDir('run-config');
    try {
      const file = path.join(dir, 'run.yaml');
      fs.writeFileSync(file, GOOD);
      const cfg = loadRunConfig(file);
      assert.deepEqual(cfg.diagnostics, []);
      assert.equal(find(cfg, 'optimizer.lr', 'align')!.range.file, file);
      assert.equal(find(cfg, 'optimizer.lr', 'align')!.source, file);

      const missing = loadRunConfig(path.join(dir, 'nope.yaml'));
      assert.deepEqual(codes(missing), ['PIPE8006']);
      assert.equal(missing.diagnostics[0].range.file, path.join(dir, 'nope.yaml'));
      assert.equal(at(missing.diagnostics[0].range), '1:1-1:1');
      assert.deepEqual(codes(loadRunConfig(dir)), ['PIPE8001']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the schema is a draft-07 schema with an $id, and the file it names exists', () => {
    const schema = JSON.parse(fs.readFileSync(repo('schema/run-config.schema.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
    assert.match(String(schema.$id), /run-config\.schema\.json$/);
    assert.ok(schema.title && schema.description);
  });

  it('never throws on arbitrary text', () => {
    const pieces = ['stages:', '  a:', 'batch: ', '&x ', '*x', '<<: ', '{', '}', '[', ']', '- ', ': ', '"', "'", '\n', '  ', '#', '!!', 'paths:', 'weights:', '1e3', '~', '%YAML 1.1\n---\n', '?', '|', '>', '\t', '\r\n', '__proto__: ', 'x'];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 40 }), fc.string(), (parts, s) => {
        for (const text of [parts.join(''), s, parts.join('') + s]) {
          const cfg = parseRunConfig('f.yaml', text);
          assert.ok(Array.isArray(cfg.overrides) && Array.isArray(cfg.diagnostics));
          const sets = parseSetOptions([text, `stage.a.batch=${text}`, `paths.weights.v=${s}`]);
          assert.ok(Array.isArray(sets.diagnostics));
        }
      }),
      { numRuns: 300, seed: 42 },
    );
  });
});

describe('run config: --set', () => {
  it('parses values as YAML scalars', () => {
    const cfg = parseSetOptions(['stage.align.optimizer.lr=2e-4']);
    assert.deepEqual(cfg.diagnostics, []);
    assert.equal(cfg.overrides.length, 1);
    const o = cfg.overrides[0];
    assert.deepEqual({ section: o.section, stage: o.stage, path: o.path, value: o.value, source: o.source }, { section: 'stages', stage: 'align', path: ['optimizer', 'lr'], value: 0.0002, source: '--set' });
    assert.equal(o.range.file, '<--set>');
    assert.equal(at(o.range), '1:26-1:30');

    const v = (s: string) => parseSetOptions([s]).overrides[0]?.value;
    assert.equal(v('stage.a.gradient_checkpointing=true'), true);
    assert.equal(v('stage.a.batch=16'), 16);
    assert.equal(v('stage.a.devices.memory=80GB'), '80GB');
    assert.equal(v('stage.a.devices.memory=85899345920'), 85899345920);
    assert.equal(v('stage.a.optimizer.name="sgd"'), 'sgd');
    assert.equal(v('stages.a.data=pretrain_ja'), 'pretrain_ja');
    assert.equal(v('paths.weights.vision=/data/x: y'), '/data/x: y');
  });

  it('reads paths, run_dir and backend', () => {
    const cfg = parseSetOptions(['paths.weights.vision=/x', 'paths.data.ja.file=/d/ja.json', 'run_dir=runs/y', 'backend=cpu']);
    assert.deepEqual(cfg.diagnostics, []);
    assert.deepEqual(cfg.overrides.map((o) => [o.section, o.path.join('.'), o.value]), [
      ['paths', 'weights.vision', '/x'],
      ['paths', 'data.ja.file', '/d/ja.json'],
      ['run', 'run_dir', 'runs/y'],
      ['run', 'backend', 'cpu'],
    ]);
    assert.equal(cfg.runDir, 'runs/y');
    assert.equal(cfg.backend, 'cpu');
    // ranges point into the options joined by spaces
    assert.equal(at(cfg.overrides[1].range), `1:${'paths.weights.vision=/x '.length + 'paths.data.ja.file='.length + 1}-1:${'paths.weights.vision=/x paths.data.ja.file=/d/ja.json'.length + 1}`);
  });

  it('flattens a flow mapping value', () => {
    const cfg = parseSetOptions(['stage.a.checkpoint={every: 500, keep: 3}']);
    assert.deepEqual(cfg.diagnostics, []);
    assert.deepEqual(cfg.overrides.map((o) => [o.path.join('.'), o.value]), [['checkpoint.every', 500], ['checkpoint.keep', 3]]);
    assert.equal(at(cfg.overrides[1].range), '1:39-1:40');
  });

  it('reports a malformed option', () => {
    for (const s of ['foo', '=3', 'stage.align=3', 'stage..lr=1', 'stage.align.batch']) {
      const cfg = parseSetOptions([s]);
      assert.deepEqual(codes(cfg), ['PIPE8003'], s);
      assert.equal(cfg.diagnostics[0].message, `cannot read --set "${s}"; write --set stage.NAME.FIELD=VALUE`);
      assert.equal(at(cfg.diagnostics[0].range), `1:1-1:${s.length + 1}`);
    }
  });

  it('validates against the schema, at the value or the key', () => {
    const bad = parseSetOptions(['stage.align.batch=zero']);
    assert.deepEqual(codes(bad), ['PIPE8002']);
    assert.equal(bad.diagnostics[0].message, 'run config stages.align.batch: expected an integer, got "zero"');
    assert.equal(at(bad.diagnostics[0].range), '1:19-1:23');
    assert.deepEqual(bad.overrides, []);

    const typo = parseSetOptions(['stage.align.optimiser.lr=1']);
    assert.match(typo.diagnostics[0].message, /unknown key `optimiser`; did you mean `optimizer`\?/);
    assert.equal(at(typo.diagnostics[0].range), '1:13-1:22');

    const top = parseSetOptions(['run_dri=x']);
    assert.match(top.diagnostics[0].message, /did you mean `run_dir`\?/);

    const syntax = parseSetOptions(['stage.a.checkpoint={every: 5']);
    assert.deepEqual(codes(syntax), ['PIPE8001']);
  });

  it('keeps good options next to bad ones, and later options win', () => {
    const cfg = parseSetOptions(['foo', 'stage.a.batch=2', 'stage.a.batch=4']);
    assert.deepEqual(codes(cfg), ['PIPE8003']);
    assert.deepEqual(cfg.overrides.map((o) => o.value), [4]);
    assert.equal(cfg.overrides[0].range.start.column, 'foo stage.a.batch=2 stage.a.batch='.length + 1);
  });
});

describe('run config: merging', () => {
  it('later configs win for the same stage and path', () => {
    const file = parseRunConfig('run.yaml', 'stages:\n  a: { batch: 2, seed: 3, epochs: 1 }\n  b: { batch: 5 }\nrun_dir: r1\nbackend: cpu\n');
    const sets = parseSetOptions(['stage.a.batch=8', 'run_dir=r2']);
    const merged = mergeRunConfigs(file, sets);
    assert.deepEqual(merged.diagnostics, []);
    assert.equal(find(merged, 'batch', 'a')!.value, 8);
    assert.equal(find(merged, 'batch', 'a')!.source, '--set');
    assert.equal(find(merged, 'batch', 'b')!.value, 5);
    assert.equal(find(merged, 'seed', 'a')!.value, 3);
    assert.equal(merged.overrides.filter((o) => o.stage === 'a' && o.path[0] === 'batch').length, 1);
    assert.equal(merged.runDir, 'r2');
    assert.equal(merged.backend, 'cpu');
    assert.deepEqual(merged.overrides.filter((o) => o.section === 'run').map((o) => o.value), ['cpu', 'r2']);
    // the reverse order: the file wins
    assert.equal(find(mergeRunConfigs(sets, file), 'batch', 'a')!.value, 2);
  });

  it('a later `steps` replaces an earlier `epochs` of the same stage', () => {
    const merged = mergeRunConfigs(parseRunConfig('run.yaml', 'stages: { a: { epochs: 1 }, b: { epochs: 2 } }\n'), parseSetOptions(['stage.a.steps=10']));
    assert.equal(find(merged, 'epochs', 'a'), undefined);
    assert.equal(find(merged, 'steps', 'a')!.value, 10);
    assert.equal(find(merged, 'epochs', 'b')!.value, 2);
  });

  it('keeps every diagnostic', () => {
    const merged = mergeRunConfigs(parseSetOptions(['foo']), parseRunConfig('x.yaml', 'stages: { a: { batch: x } }\n'), { overrides: [], diagnostics: [] });
    assert.deepEqual(codes(merged), ['PIPE8003', 'PIPE8002']);
    assert.deepEqual(mergeRunConfigs(), { overrides: [], diagnostics: [] });
  });
});

describe('run config: applied to a program', () => {
  const stageOf = (file: string, sets: string[], stage: string) => {
    const r = compile({ file: repo(file), configFiles: [], sets, lower: true });
    assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error').map((d) => d.code), []);
    return r.graph!.stages.find((s) => s.name === stage)!;
  };

  it('`steps` replaces a stage\'s own `epochs`, and `epochs` its own `steps` (no PIPE5006)', () => {
    assert.equal(stageOf('pipelines/quickstart.pipe', [], 'pretrain').epochs, 3);
    const bySteps = stageOf('pipelines/quickstart.pipe', ['stage.pretrain.steps=7'], 'pretrain');
    assert.equal(bySteps.steps, 7);
    assert.equal(bySteps.epochs, undefined);
    const byEpochs = stageOf('test/runtime/tiny.pipe', ['stage.align.epochs=3'], 'align');
    assert.equal(byEpochs.epochs, 3);
    assert.equal(byEpochs.steps, undefined);
  });

  it('a program that gives both is still PIPE5006, with or without a config', () => {
    const dir = tmpDir('length');
    const src = fs.readFileSync(repo('test/runtime/tiny.pipe'), 'utf8').replace('  steps: 24', '  steps: 24\n  epochs: 1');
    fs.writeFileSync(path.join(dir, 'both.pipe'), src);
    for (const sets of [[], ['stage.align.steps=3'], ['stage.align.epochs=3']]) {
      const r = compile({ file: path.join(dir, 'both.pipe'), configFiles: [], sets, lower: false });
      assert.ok(r.diagnostics.some((d) => d.code === 'PIPE5006'), JSON.stringify(sets));
    }
  });
});
