// The language server as an editor sees it: a separate process speaking JSON-RPC over stdio.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { STAGE_FIELDS } from '../compiler/check/stages.js';
import { compile } from '../compiler/service/service.js';
import { LspClient } from './helpers/lsp-client.js';
import { tmpDir } from './helpers/tmp.js';
import { REPO_ROOT, repo } from './paths.js';
import { makeGoldenFixtures } from './golden/fixtures.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const PROGRAM = `import "std/vision"
import "std/projectors"
import "std/llm"
import "std/data"
import "std/train"

model vlm {
  encoder vision = siglip_vit(preset: "siglip-so400m-patch14-384", select_layer: -2)
  projector proj = mlp_gelu(depth: 2, in: vision.hidden, out: lm.hidden)
  llm lm = llama(preset: "tanuki-8b")
  flow vision -> proj -> lm at "<image>"
}

dataset pretrain = llava_json("x.json", template: "plain")

stage align {
  model: vlm
  train: [proj]
  freeze: [vision, lm]
  data: pretrain
  optimizer: adamw(lr: 1e-3)
  batch: 8
  epochs: 1
  max_length: 2048
  precision: bf16
  gradient_checkpointing: true
  devices: 8 x gpu(memory: 80GB), sharding: zero2
}

stage finetune {
  after: align
  train: [proj, lm]
  freeze: [vision]
}
`;

const pos = (text: string, needle: string, delta = 0) => {
  const at = text.indexOf(needle) + delta;
  const before = text.slice(0, at).split('\n');
  return { line: before.length - 1, character: before[before.length - 1].length };
};

describe('language server', function () {
  this.timeout(120_000);
  let client: LspClient;
  let dir: string;
  let uri: string;

  before(async () => {
    dir = tmpDir('lsp');
    fs.writeFileSync(path.join(dir, 'main.pipe'), PROGRAM);
    fs.writeFileSync(path.join(dir, 'x.json'), '[]'); // the dataset's file: a missing one is PIPE2013
    uri = pathToFileURL(path.join(dir, 'main.pipe')).href;
    client = new LspClient();
    const init = await client.initialize(pathToFileURL(dir).href);
    assert.ok((init.capabilities as Json).hoverProvider);
    const diags = client.nextDiagnostics(uri);
    client.notify('textDocument/didOpen', { textDocument: { uri, languageId: 'pipe', version: 1, text: PROGRAM } });
    assert.deepEqual(await diags, []);
  });

  after(async () => {
    assert.equal(await client.shutdown(), 0, client.stderr);
  });

  it('publishes diagnostics on change, and recovers after a syntax error to report later errors', async () => {
    const broken = PROGRAM.replace('mlp_gelu(depth: 2,', 'mlp_gleu(depth: 2,').replace('batch: 8', 'batch: (8');
    const next = client.nextDiagnostics(uri);
    client.notify('textDocument/didChange', { textDocument: { uri, version: 2 }, contentChanges: [{ text: broken }] });
    const diags = await next;
    assert.ok(diags.some((d) => d.code === 'PIPE1010'), JSON.stringify(diags));
    const fixed = PROGRAM.replace('mlp_gelu(depth: 2,', 'mlp_gleu(depth: 2,');
    const again = client.nextDiagnostics(uri);
    client.notify('textDocument/didChange', { textDocument: { uri, version: 3 }, contentChanges: [{ text: fixed }] });
    const d2 = await again;
    assert.equal(d2.length, 1);
    assert.equal(d2[0].code, 'PIPE2005');
    assert.deepEqual(d2[0].range.start, pos(fixed, 'mlp_gleu'));
    const actions = await client.request<Json[]>('textDocument/codeAction', { textDocument: { uri }, range: d2[0].range, context: { diagnostics: d2 } });
    assert.equal(actions[0].title, 'Use `mlp_gelu`');
    assert.equal(Object.values(actions[0].edit.changes as Json)[0][0].newText, 'mlp_gelu');
    const back = client.nextDiagnostics(uri);
    client.notify('textDocument/didChange', { textDocument: { uri, version: 4 }, contentChanges: [{ text: PROGRAM }] });
    assert.deepEqual(await back, []);
  });

  it('completes constructors, parameters, stage fields, names in scope, components and presets', async () => {
    const at = async (text: string, needle: string, delta: number) => {
      client.notify('textDocument/didChange', { textDocument: { uri, version: 10 }, contentChanges: [{ text }] });
      const items = await client.request<Json[]>('textDocument/completion', { textDocument: { uri }, position: pos(text, needle, delta) });
      return items.map((i) => i.label as string);
    };
    assert.ok((await at(PROGRAM.replace('= siglip_vit(', '= siglip_vit(').replace('encoder vision = siglip_vit', 'encoder vision = sig'), 'vision = sig', 12)).includes('siglip_vit'));
    const params = await at(PROGRAM, 'mlp_gelu(depth: 2,', 'mlp_gelu(depth: 2,'.length);
    assert.deepEqual(params.sort(), ['in', 'init_std', 'out']);
    const fields = await at(PROGRAM.replace('  freeze: [vision]\n}', '  freeze: [vision]\n  \n}'), '  freeze: [vision]\n  \n', '  freeze: [vision]\n  '.length);
    assert.ok(fields.includes('optimizer') && fields.includes('max_length') && !fields.includes('train'));
    assert.deepEqual(await at(PROGRAM.replace('model: vlm', 'model: '), 'model: ', 7), ['vlm']);
    assert.deepEqual(await at(PROGRAM.replace('train: [proj, lm]', 'train: [proj, ]'), 'train: [proj, ', 14), ['vision', 'lm']);
    const presets = await at(PROGRAM, 'preset: "siglip', 9);
    assert.ok(presets.includes('siglip-so400m-patch14-384') && presets.includes('siglip-base-patch16-256'));
    client.notify('textDocument/didChange', { textDocument: { uri, version: 11 }, contentChanges: [{ text: PROGRAM }] });
  });

  it('hovers with signatures, shapes, parameter counts and stage memory', async () => {
    const hover = async (needle: string, delta = 1) => ((await client.request<Json>('textDocument/hover', { textDocument: { uri }, position: pos(PROGRAM, needle, delta) })).contents as Json).value as string;
    assert.match(await hover('projector proj', 11), /shape: \[n, 1152\] -> \[729, 4096\][\s\S]*parameters: 21\.50M/);
    assert.match(await hover('mlp_gelu'), /projector mlp_gelu\(depth: int = 2, in: int, out: int, init_std: float = 0.02\)/);
    assert.match(await hover('stage align', 7), /trainable: 21\.50M of [\d.]+B parameters[\s\S]*per device \(8 x gpu, bf16, zero2\)/);
  });

  it('hovers and goes to the definition of every kind of constructor, its parameters and presets, and stage fields', async () => {
    // `linear` is a projector and a schedule: the stage field picks the schedule (as the checker does).
    const text = PROGRAM.replace('  batch: 8\n', '  schedule: linear(warmup_ratio: 0.03)\n  batch: 8\n');
    client.notify('textDocument/didChange', { textDocument: { uri, version: 30 }, contentChanges: [{ text }] });
    const at = (needle: string, delta = 1) => ({ textDocument: { uri }, position: pos(text, needle, delta) });
    const hover = async (needle: string, delta = 1) => ((await client.request<Json | null>('textDocument/hover', at(needle, delta)))?.contents as Json | undefined)?.value as string | undefined;
    const train = repo('stdlib/train.pipe');
    const trainText = fs.readFileSync(train, 'utf8');
    const definition = async (needle: string, delta = 1) => {
      const d = await client.request<Json | null>('textDocument/definition', at(needle, delta));
      assert.ok(d, `no definition at ${needle}`);
      return { file: new URL(d.uri as string).pathname, start: d.range.start as Json };
    };
    const inTrain = (needle: string, delta = 0) => ({ file: train, start: pos(trainText, needle, delta) });

    // optimizer, schedule, device and data constructors: signature and the standard library's comment
    assert.match((await hover('adamw'))!, /optimizer adamw\(lr: float[\s\S]*AdamW with decoupled weight decay/);
    assert.match((await hover('linear('))!, /schedule linear\(warmup_ratio[\s\S]*Linear warmup, then linear decay/);
    assert.match((await hover('gpu('))!, /device gpu\(memory: size = 80GB\)[\s\S]*A GPU with `memory`/);
    assert.match((await hover('llava_json'))!, /data llava_json\(file: path/);
    assert.deepEqual(await definition('adamw'), inTrain('adamw('));
    assert.deepEqual(await definition('linear('), inTrain('linear(warmup_ratio'));
    assert.deepEqual(await definition('gpu('), inTrain('gpu(memory'));
    assert.equal((await definition('llava_json')).file, repo('stdlib/data.pipe'));

    // a parameter named in a call: type, default, constraints; its definition is in the signature
    assert.match((await hover('lr: 1e-3'))!, /lr: float[\s\S]*parameter of optimizer `adamw` \(required\)/);
    assert.match((await hover('warmup_ratio: 0.03'))!, /warmup_ratio: float = 0\.0[\s\S]*schedule `linear`[\s\S]*where `warmup_ratio >= 0\.0`/);
    assert.deepEqual(await definition('warmup_ratio: 0.03'), inTrain('linear(warmup_ratio', 'linear('.length));
    assert.deepEqual(await definition('memory: 80GB'), inTrain('gpu(memory', 'gpu('.length));
    // a preset: its values; its definition is the preset line
    assert.match((await hover('"siglip-so400m'))!, /preset "siglip-so400m-patch14-384" \(image: 384, patch: 14/);
    const preset = await definition('"siglip-so400m');
    assert.equal(preset.file, repo('stdlib/vision.pipe'));
    assert.equal(preset.start.line, pos(fs.readFileSync(repo('stdlib/vision.pipe'), 'utf8'), 'preset "siglip-so400m-patch14-384"').line);

    // every stage field: meaning, type, default, inheritance
    for (const field of ['model', 'train', 'freeze', 'data', 'optimizer', 'schedule', 'batch', 'epochs', 'max_length', 'precision', 'gradient_checkpointing', 'devices', 'sharding', 'after']) {
      const h = await hover(`${field}:`, 0);
      assert.match(h ?? '', new RegExp(`stage field \`${field}\`[\\s\\S]*type: [\\s\\S]*default: [\\s\\S]*inherited from \`after\``), field);
    }
    assert.match((await hover('epochs:', 0))!, /passes over the data/);
    const restored = client.nextDiagnostics(uri); // awaited, so that the next test's diagnostics are its own
    client.notify('textDocument/didChange', { textDocument: { uri, version: 31 }, contentChanges: [{ text: PROGRAM }] });
    assert.deepEqual(await restored, []);
  });

  it('gives one diagnostic for one misspelled stage field, not also "missing"', async () => {
    const text = PROGRAM.replace('  epochs: 1\n', '  epoch: 1\n');
    const next = client.nextDiagnostics(uri);
    client.notify('textDocument/didChange', { textDocument: { uri, version: 40 }, contentChanges: [{ text }] });
    const d = await next;
    assert.deepEqual(d.map((x) => x.code), ['PIPE2009'], JSON.stringify(d));
    assert.match(d[0].message + JSON.stringify(d[0]), /epoch/);
    const back = client.nextDiagnostics(uri);
    client.notify('textDocument/didChange', { textDocument: { uri, version: 41 }, contentChanges: [{ text: PROGRAM }] });
    assert.deepEqual(await back, []);
  });

  it('goes to definitions across files, finds references and renames', async () => {
    const def = await client.request<Json>('textDocument/definition', { textDocument: { uri }, position: pos(PROGRAM, 'lm.hidden') });
    assert.equal(def.uri, uri);
    assert.deepEqual(def.range.start, pos(PROGRAM, 'lm = llama'));
    const lib = await client.request<Json>('textDocument/definition', { textDocument: { uri }, position: pos(PROGRAM, 'mlp_gelu') });
    assert.equal(lib.uri, pathToFileURL(repo('stdlib/projectors.pipe')).href);
    const refs = await client.request<Json[]>('textDocument/references', { textDocument: { uri }, position: pos(PROGRAM, 'proj ->'), context: { includeDeclaration: true } });
    assert.equal(refs.length, 4); // declaration, flow, align.train, finetune.train
    const edit = await client.request<Json>('textDocument/rename', { textDocument: { uri }, position: pos(PROGRAM, 'proj ->'), newName: 'adapter' });
    assert.equal((edit.changes[uri] as Json[]).length, 4);
    assert.ok((edit.changes[uri] as Json[]).every((e) => e.newText === 'adapter'));
    const refused = await client.request('textDocument/prepareRename', { textDocument: { uri }, position: pos(PROGRAM, 'mlp_gelu') });
    assert.equal(refused, null);
  });

  it('gives the outline, folding, semantic tokens and inlay hints with shapes at flow edges', async () => {
    const symbols = await client.request<Json[]>('textDocument/documentSymbol', { textDocument: { uri } });
    assert.deepEqual(symbols.map((s) => s.name), ['vlm', 'pretrain', 'align', 'finetune']);
    assert.deepEqual((symbols[0].children as Json[]).map((c) => c.name), ['vision', 'proj', 'lm', 'vision -> proj -> lm']);
    const folds = await client.request<Json[]>('textDocument/foldingRange', { textDocument: { uri } });
    assert.ok(folds.some((f) => f.startLine === pos(PROGRAM, 'model vlm').line));
    const tokens = await client.request<Json>('textDocument/semanticTokens/full', { textDocument: { uri } });
    assert.ok((tokens.data as number[]).length > 50 && (tokens.data as number[]).length % 5 === 0);
    const hints = await client.request<Json[]>('textDocument/inlayHint', { textDocument: { uri }, range: { start: { line: 0, character: 0 }, end: { line: 40, character: 0 } } });
    assert.deepEqual(hints.map((h) => h.label), [': [729, 1152]', ': [729, 4096]']);
  });

  it('formats the document, and formatting is idempotent', async () => {
    const messy = PROGRAM.replace('batch: 8', 'batch:8').replace('  epochs: 1', '      epochs:   1');
    client.notify('textDocument/didChange', { textDocument: { uri, version: 20 }, contentChanges: [{ text: messy }] });
    const edits = await client.request<Json[]>('textDocument/formatting', { textDocument: { uri }, options: { tabSize: 2, insertSpaces: true } });
    assert.equal(edits.length, 1);
    assert.equal(edits[0].newText, PROGRAM);
    client.notify('textDocument/didChange', { textDocument: { uri, version: 21 }, contentChanges: [{ text: PROGRAM }] });
    assert.deepEqual(await client.request('textDocument/formatting', { textDocument: { uri }, options: { tabSize: 2, insertSpaces: true } }), []);
  });

  it('publishes diagnostics for an imported file with errors', async () => {
    fs.writeFileSync(path.join(dir, 'lib.pipe'), 'import "std/data"\ndataset broken = llava_json(fille: "x.json")\n');
    const main2 = pathToFileURL(path.join(dir, 'uses-lib.pipe')).href;
    const libUri = pathToFileURL(path.join(dir, 'lib.pipe')).href;
    const libDiags = client.nextDiagnostics(libUri);
    client.notify('textDocument/didOpen', { textDocument: { uri: main2, languageId: 'pipe', version: 1, text: 'import "./lib.pipe"\n' } });
    const d = await libDiags;
    // `fille` is unknown (did you mean `file`?); `file` is not also reported missing: one mistake, one diagnostic.
    assert.deepEqual(d.map((x) => x.code), ['PIPE3001']);
    client.notify('textDocument/didClose', { textDocument: { uri: main2 } });
  });

  it('reports the same codes and ranges as `pipec check` for every golden case', async () => {
    makeGoldenFixtures();
    const cases = fs.readdirSync(repo('test/golden/cases')).flatMap((c) => {
      const full = repo('test/golden/cases', c);
      if (!fs.statSync(full).isDirectory()) return c.endsWith('.pipe') ? [full] : [];
      // Cases driven by run.yaml / --set test the CLI's options, which an editor does not pass.
      return fs.existsSync(path.join(full, 'run.yaml')) || fs.existsSync(path.join(full, 'set.txt')) ? [] : [path.join(full, 'main.pipe')];
    });
    assert.ok(cases.length >= 40);
    for (const file of cases) {
      const text = fs.readFileSync(file, 'utf8');
      const caseUri = pathToFileURL(file).href;
      const next = client.nextDiagnostics(caseUri);
      client.notify('textDocument/didOpen', { textDocument: { uri: caseUri, languageId: 'pipe', version: 1, text } });
      const got = (await next).map((d) => `${d.code}@${d.range.start.line + 1}:${d.range.start.character + 1}-${d.range.end.line + 1}:${d.range.end.character + 1}`);
      const cli = compile({ file, cwd: REPO_ROOT, lower: false }).diagnostics.filter((d) => path.resolve(REPO_ROOT, d.range.file) === file);
      const want = cli.map((d) => `${d.code}@${d.range.start.line}:${d.range.start.column}-${d.range.end.line}:${d.range.end.column}`);
      assert.deepEqual(got, want, path.relative(REPO_ROOT, file));
      client.notify('textDocument/didClose', { textDocument: { uri: caseUri } });
    }
  });
});

describe('stage field documentation', () => {
  it("hover's table (STAGE_FIELDS) is docs/language.md §9's table, row for row", () => {
    const doc = fs.readFileSync(repo('docs/language.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## 9. Stages'), doc.indexOf('## 10.'));
    const rows = section
      .split('\n')
      .filter((l) => /^\| `\w+` \|/.test(l))
      .map((l) => l.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, '|')));
    const expected = Object.entries(STAGE_FIELDS).map(([k, f]) => [`\`${k}\``, f.meaning, f.type, f.default, f.inherited]);
    assert.deepEqual(rows, expected);
  });
});
