// `pipec export RUN --target hf`: runs trained by pipec, written as transformers LLaVA folders.
// Without Python: the folder's layout (shards and index, tensors equal to the checkpoint's under LLaVA's
// names, tokenizer and processor files), the chat template rendered as pipec lays conversations out,
// and the located refusals. With a Python that has torch, transformers and Pillow (.venv-torch, or
// PIPEC_TORCH2_PYTHON; otherwise these skip and say why): transformers loads the folder with
// LlavaForConditionalGeneration / AutoModelForImageTextToText / AutoProcessor with no missing or
// unexpected keys, its loss and logits on pipec's batch equal pipec's, its processor makes pipec's ids
// and pixels from the records, every per-component folder loads on its own (test/export-hf/*.py), and
// greedy generation on a tiny-llava run gives `pipec generate`'s tokens.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph } from '../../compiler/ir/graph.js';
import { initBackend } from '../../runtime/backend/backends.js';
import { collate } from '../../runtime/data/batch.js';
import { imageShapeOf, preprocessFor } from '../../runtime/data/datasets.js';
import { buildPrompt, layout, PLAIN, type TemplateSpec, type Turn } from '../../runtime/data/examples.js';
import { preprocessImage } from '../../runtime/data/images.js';
import { renderChatTemplate } from '../../runtime/data/chat-template.js';
import { drawShape } from '../../runtime/data/synthetic-shapes.js';
import { PipeRuntimeError } from '../../runtime/errors.js';
import { chatTemplateJinja } from '../../runtime/export/hf-chat-template.js';
import { planLlava } from '../../runtime/export/hf-llava.js';
import { exportTokenizer } from '../../runtime/export/hf-tokenizer.js';
import { generate } from '../../runtime/generate.js';
import { Rng } from '../../runtime/random.js';
import { evaluateBatch, loadRunModel, openRun, runSamples, type OpenedRun } from '../../runtime/train/open-run.js';
import { readWeights } from '../../runtime/weights/safetensors.js';
import { pipec } from '../helpers/cli.js';
import { writePng } from '../helpers/png.js';
import { runPython, transformersPython } from '../helpers/python.js';
import { PYTHON_ENV } from '../helpers/reference.js';
import { unavailable } from '../helpers/required.js';
import { tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

const TOLERANCE = 1e-4;
let PY = '';

/** The Python with torch, transformers and Pillow (helpers/python.ts); skips locally, fails in CI without it. */
function needPython(ctx: Mocha.Context): void {
  const found = transformersPython();
  if ('why' in found) unavailable(ctx, 'a Python with transformers to load the export', found.why);
  PY = found.python;
}

function python(script: string, args: string[]): Record<string, unknown> {
  const out = runPython(PY, [repo('test/export-hf', script), ...args], { env: PYTHON_ENV });
  return JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
}

function train(program: string, runDir: string, sets: string[] = []): void {
  const r = pipec(['run', program, '--out', runDir, '--backend', 'wasm', ...sets.flatMap((s) => ['--set', s])]);
  assert.equal(r.status, 0, r.stderr.slice(-3000));
}

/** pipec's side of the comparison, as check_llava.py reads it: a collated batch and its loss/logits, and records with pipec's ids and pixels. */
async function pipecReference(run: OpenedRun, file: string, extra: Record<string, unknown> = {}): Promise<{ loss: number; lmLoss: number; auxLoss: number }> {
  const data = runSamples(run);
  const loaded = await loadRunModel(run);
  try {
    const batch = collate(data.train.slice(0, 4), run.tokenizer.padId ?? 0, imageShapeOf(run.model));
    const ev = evaluateBatch(loaded.runner, batch);
    const enc = run.model.components.find((c) => c.role === 'encoder')!;
    const imageTokens = run.model.image_tokens ?? 0;
    const eos = run.tokenizer.idToToken(run.tokenizer.eosId!)!;
    const text = (segs: ReturnType<typeof layout>) => segs.map((s) => (s.text === '\u0000stop' ? (run.template.stop ?? eos) : s.text)).join('');
    const records = (data.heldoutRecords ?? []).slice(0, 3).flatMap((rec, i) => {
      const full = { rgb: [...rec.rgb], width: rec.size, height: rec.size, turns: rec.turns, ids: data.heldout[i]!.ids, pixels: [...data.heldout[i]!.pixels!], text: text(layout(rec.turns, run.template, run.marker)) };
      const user = rec.turns.slice(0, 1);
      const prompt = buildPrompt(user, run.template, run.tokenizer, run.marker, imageTokens);
      return [full, { ...full, turns: user, ids: prompt.ids, text: text(layout(user, run.template, run.marker, true)), generation: true }];
    });
    // an image that is not square and not the encoder's size: the processor resizes and (CLIP) crops it as pipec does
    const w = 45, h = 37, rng = new Rng(11);
    const rgb = Uint8Array.from({ length: w * h * 3 }, () => Math.floor(rng.next() * 256));
    const odd = data.heldoutRecords![0]!;
    const oddPrompt = buildPrompt(odd.turns.slice(0, 1), run.template, run.tokenizer, run.marker, imageTokens);
    records.push({ rgb: [...rgb], width: w, height: h, turns: odd.turns.slice(0, 1), ids: oddPrompt.ids, pixels: [...preprocessImage({ width: w, height: h, data: rgb }, preprocessFor(enc))], text: text(layout(odd.turns.slice(0, 1), run.template, run.marker, true)), generation: true });
    fs.writeFileSync(file, JSON.stringify({
      batch: { shape: [batch.info.batch, batch.info.length], input_ids: [...batch.inputIds], labels: [...batch.labels], attention_mask: [...batch.info.attentionMask], pixels: [...batch.pixels!.data], pixel_shape: batch.pixels!.shape },
      pipec: { loss: ev.loss, lm_loss: ev.lmLoss, aux_loss: ev.auxLoss, logits: [...ev.logits], logits_shape: ev.shape },
      records,
      ...extra,
    }));
    return ev;
  } finally {
    loaded.dispose();
  }
}

interface LlavaCheck {
  loading: Record<string, string[]>;
  auto_class: string;
  auto_loading: Record<string, string[]>;
  processor_class: string;
  image_processor_class: string;
  processor_image_token_id: number;
  config_image_token_index: number;
  image_positions: number;
  loss: number;
  pipec_lm_loss: number;
  loss_diff: number;
  max_logit_diff: number;
  max_abs_logit: number;
  records: { text: string; ids_equal: boolean; ids: number[]; pipec_ids: number[]; parts_text_equal: boolean; pipec_text_equal: boolean; max_pixel_diff: number }[];
  generate?: { tokens: number[]; text: string; prompt_ids: number[] }[];
}

function assertLlava(c: LlavaCheck, imageProcessor: string, label: string): void {
  assert.deepEqual(c.loading, {}, 'LlavaForConditionalGeneration: missing, unexpected or mismatched keys');
  assert.equal(c.auto_class, 'LlavaForConditionalGeneration');
  assert.deepEqual(c.auto_loading, {}, 'AutoModelForImageTextToText: missing, unexpected or mismatched keys');
  assert.equal(c.processor_class, 'LlavaProcessor');
  assert.match(c.image_processor_class, new RegExp(`^${imageProcessor}`));
  assert.equal(c.processor_image_token_id, c.config_image_token_index);
  assert.ok(c.image_positions > 0, 'the batch has image positions with image_token_index');
  assert.ok(c.loss_diff <= TOLERANCE, `${label}: loss ${c.loss} vs pipec ${c.pipec_lm_loss}`);
  assert.ok(c.max_logit_diff <= TOLERANCE, `${label}: logits differ by ${c.max_logit_diff} (largest ${c.max_abs_logit})`);
  assert.ok(c.records.length >= 3);
  for (const r of c.records) {
    assert.ok(r.pipec_text_equal, `apply_chat_template gives ${JSON.stringify(r.text)}, not pipec's layout`);
    assert.ok(r.parts_text_equal, 'image/text parts render as the marker in the text does');
    assert.deepEqual(r.ids, r.pipec_ids, `processor ids for ${JSON.stringify(r.text)}`);
  }
  // the square records are the encoder's size: no resampling, pixels equal up to float rounding;
  // the 45x37 one is resized (PIL's fixed-point bicubic vs pipec's doubles): one 8-bit level at most
  for (const r of c.records.slice(0, -1)) assert.ok(r.max_pixel_diff < 1e-5, `pixels differ by ${r.max_pixel_diff}`);
  assert.ok(c.records.at(-1)!.max_pixel_diff <= 1.01 * (2 / 255), `resized pixels differ by ${c.records.at(-1)!.max_pixel_diff}`);
  console.log(`      ${label}: loss ${c.loss.toFixed(6)} (pipec ${c.pipec_lm_loss.toFixed(6)}, diff ${c.loss_diff.toExponential(1)}), max logit diff ${c.max_logit_diff.toExponential(1)} of ${c.max_abs_logit.toFixed(2)}, resized pixels ${c.records.at(-1)!.max_pixel_diff.toExponential(1)}`);
}

function assertComponents(c: Record<string, unknown>, vision: string, llm: string): void {
  assert.equal(c.vision_class, vision);
  assert.deepEqual(c.vision_loading, {}, `${vision} from the component folder`);
  assert.equal(c.llm_class, llm);
  assert.deepEqual(c.llm_loading, {}, `${llm} from the component folder`);
  // the projector: no class of its own, so AutoConfig refuses its folder; it loads into LlavaMultiModalProjector
  assert.equal(c.projector_has_from_pretrained, false);
  assert.match(String(c.projector_autoconfig), /pipec_projector/);
  assert.ok((c.image_features_diff as number) <= TOLERANCE * Math.max(1, c.image_features_scale as number), `image features differ by ${c.image_features_diff}`);
  assert.ok((c.llm_logits_diff as number) <= TOLERANCE * Math.max(1, c.llm_logits_scale as number), `llm logits differ by ${c.llm_logits_diff}`);
}

describe('export --target hf: chat templates', () => {
  it('every kind of pipec template becomes a Jinja template that renders pipec\'s layout (plain, chat with system and stop, a user\'s own)', () => {
    const templates: TemplateSpec[] = [
      PLAIN,
      { name: 'chat', system: 'A chat between a user and an assistant.', user: 'USER: ', assistant: 'ASSISTANT: ', separator: ' ', stop: '</s>' },
      { name: 'mine', system: '', user: '### 指示:\n', assistant: '### 応答:\n', separator: '\n\n' },
    ];
    const conversations: Turn[][] = [
      [{ role: 'user', text: '<image>\nwhat is it?' }, { role: 'assistant', text: 'a red "circle"' }],
      [{ role: 'system', text: 'Be brief.' }, { role: 'user', text: 'first <image> then' }, { role: 'assistant', text: 'one' }, { role: 'user', text: 'and?' }, { role: 'assistant', text: 'two' }],
      [{ role: 'user', text: 'no image here' }, { role: 'assistant', text: '\\ back\\slash' }],
    ];
    for (const t of templates) {
      const jinja = chatTemplateJinja(t, '<image>');
      for (const turns of conversations) {
        const msgs = turns.map((x) => ({ role: x.role, content: x.text }));
        const text = (segs: ReturnType<typeof layout>) => segs.map((x) => (x.text === '\u0000stop' ? (t.stop ?? '</s>') : x.text)).join('');
        assert.equal(renderChatTemplate(jinja, msgs, { eosToken: '</s>' }), text(layout(turns, t, '<image>')), `${t.name}: ${JSON.stringify(turns)}`);
        const firstUser = turns.filter((x) => x.role !== 'assistant').slice(0, turns[0]!.role === 'system' ? 2 : 1);
        assert.equal(renderChatTemplate(jinja, firstUser.map((x) => ({ role: x.role, content: x.text })), { eosToken: '</s>', addGenerationPrompt: true }), text(layout(firstUser, t, '<image>', true)));
      }
      // the processor's form: an image part is the marker and a newline
      const parts = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'what is it?' }] }] as unknown as { role: 'user'; content: string }[];
      assert.equal(renderChatTemplate(jinja, parts, { addGenerationPrompt: true }), text2(layout([{ role: 'user', text: '<image>\nwhat is it?' }], t, '<image>', true)));
    }
    function text2(segs: ReturnType<typeof layout>) {
      return segs.map((x) => x.text).join('');
    }
  });
});

describe('export --target hf (tiny: CLIP-style vit, mlp2x_gelu, Llama)', function () {
  this.timeout(10 * 60_000);
  let work: string, runDir: string, out: string, run: OpenedRun, exportRun: ReturnType<typeof pipec>;

  before(async () => {
    work = tmpDir('export-hf');
    runDir = path.join(work, 'run');
    out = path.join(work, 'hf');
    train(repo('test/runtime/tiny.pipe'), runDir);
    // the folder every test here reads: sharded small so that the index is exercised too
    exportRun = pipec(['export', runDir, '--target', 'hf', '-o', out, '--max-shard-size', '40KB']);
    await initBackend('cpu');
    run = openRun(runDir);
  });

  it('writes the folder: config, shards with an index, tokenizer and processor files (CLI)', () => {
    assert.equal(exportRun.status, 0, exportRun.stderr);
    const files = fs.readdirSync(out).sort();
    for (const f of ['config.json', 'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja',
      'preprocessor_config.json', 'processor_config.json', 'generation_config.json', 'pipec_export.json']) assert.ok(files.includes(f), `${f} in ${files.join(', ')}`);
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    assert.ok(shards.length >= 2, `sharded at 40KB: ${shards.join(', ')}`);
    const index = JSON.parse(fs.readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8'));
    assert.deepEqual([...new Set(Object.values(index.weight_map))].sort(), shards);
    for (const s of shards) assert.ok(fs.statSync(path.join(out, s)).size <= 40_000 + 4096, `${s} is over the limit`);

    // every tensor of the final checkpoint, under LLaVA's hub names, with the same values
    const exported = readWeights(out);
    assert.equal(index.metadata.total_size, [...exported.values()].reduce((a, t) => a + t.data.length * 4, 0));
    const rename = (component: string, n: string) => (component === 'vision' ? `vision_tower.${n}` : component === 'lm' ? `language_model.${n}` : n);
    let count = 0;
    for (const component of ['vision', 'proj', 'lm'])
      for (const [name, t] of readWeights(path.join(run.checkpoint, component))) {
        const e = exported.get(rename(component, name));
        assert.ok(e, `${rename(component, name)} is exported`);
        assert.deepEqual(e.data, t.data);
        count++;
      }
    assert.equal(exported.size, count, 'no other tensors');
    assert.ok(exported.has('vision_tower.vision_model.embeddings.class_embedding') && exported.has('language_model.lm_head.weight') && exported.has('multi_modal_projector.linear_2.weight'));

    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.equal(cfg.model_type, 'llava');
    assert.equal(cfg.vision_config.model_type, 'clip_vision_model');
    assert.equal(cfg.text_config.model_type, 'llama');
    assert.equal(cfg.image_token_index, run.tokenizer.tokenToId('<image>'));
    assert.equal(cfg.image_seq_length, 4);
    assert.equal(cfg.vision_feature_layer, -1);
    assert.equal(cfg.vision_feature_select_strategy, 'default');
    assert.equal(cfg.projector_hidden_act, 'gelu');
    const pre = JSON.parse(fs.readFileSync(path.join(out, 'preprocessor_config.json'), 'utf8'));
    assert.equal(pre.image_processor_type, 'CLIPImageProcessor');
    assert.deepEqual(pre.crop_size, { height: 16, width: 16 });
    assert.deepEqual(pre.image_mean, [0.5, 0.5, 0.5]);
    const proc = JSON.parse(fs.readFileSync(path.join(out, 'processor_config.json'), 'utf8'));
    assert.deepEqual([proc.patch_size, proc.num_additional_image_tokens, proc.vision_feature_select_strategy, proc.image_token], [8, 1, 'default', '<image>']);
    const gen = JSON.parse(fs.readFileSync(path.join(out, 'generation_config.json'), 'utf8'));
    assert.deepEqual(gen, { bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 });

    // exporting again over an earlier export replaces it; a folder that is not one is refused (PIPE9084)
    const again = path.join(work, 'again');
    fs.cpSync(out, again, { recursive: true });
    assert.equal(pipec(['export', runDir, '--target', 'hf', '-o', again]).status, 0);
    assert.deepEqual(fs.readdirSync(again).filter((f) => f.includes('safetensors')), ['model.safetensors'], 'one file at the default 5GB, no shard left over');
    const other = path.join(work, 'other');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'notes.txt'), 'mine');
    const refused = pipec(['export', runDir, '--target', 'hf', '-o', other]);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /error PIPE9084: ".*other" exists and is not a folder that `pipec export --target hf` wrote/);
    assert.deepEqual(fs.readdirSync(other), ['notes.txt']);
    const bad = pipec(['export', runDir, '--target', 'hf', '-o', other, '--max-shard-size', 'lots']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--max-shard-size needs a size/);
  });

  it('takes a finished run: a program is a usage error (exit 2), a folder that is not a run PIPE9028 (exit 1)', () => {
    const file = pipec(['export', repo('test/runtime/tiny.pipe'), '--target', 'hf', '-o', path.join(work, 'x')]);
    assert.equal(file.status, 2);
    assert.match(file.stderr, /--target hf takes a run directory/);
    const notRun = pipec(['export', work, '--target', 'hf', '-o', path.join(work, 'x')]);
    assert.equal(notRun.status, 1);
    assert.match(notRun.stderr, /error PIPE9028: .* it has no graph\.json/);
    assert.ok(!fs.existsSync(path.join(work, 'x')));
  });

  it('the chat template renders conversations as pipec lays them out (pipec\'s own Jinja renderer)', () => {
    const template = fs.readFileSync(path.join(out, 'chat_template.jinja'), 'utf8');
    const data = runSamples(run);
    for (const rec of data.heldoutRecords!.slice(0, 4)) {
      const segs = layout(rec.turns, run.template, run.marker);
      const want = segs.map((s) => (s.text === '\u0000stop' ? '</s>' : s.text)).join('');
      const msgs = rec.turns.map((t) => ({ role: t.role, content: t.text }));
      assert.equal(renderChatTemplate(template, msgs, { eosToken: '</s>' }), want);
      const gen = layout(rec.turns.slice(0, 1), run.template, run.marker, true).map((s) => s.text).join('');
      assert.equal(renderChatTemplate(template, msgs.slice(0, 1), { eosToken: '</s>', addGenerationPrompt: true }), gen);
    }
    const tj = JSON.parse(fs.readFileSync(path.join(out, 'tokenizer.json'), 'utf8'));
    assert.ok(tj.added_tokens.some((t: { id: number; content: string; special: boolean }) => t.id === 4 && t.content === '<image>' && t.special));
    assert.equal(tj.post_processor.type, 'TemplateProcessing', 'BOS in front, as pipec puts it');
  });

  it('refuses what transformers\' LLaVA cannot compute, located in the program (PIPE9080-9083)', () => {
    const variant = (edit: (g: Graph) => void): OpenedRun => {
      const graph = structuredClone(run.graph);
      edit(graph);
      return { ...run, graph, model: graph.models[0]! };
    };
    const plan = (r: OpenedRun) => planLlava(r.graph, r.model, { imageTokenId: 4, tokenIds: {}, graphFile: path.join(runDir, 'graph.json') });
    const refuse = (r: OpenedRun, code: string, message: RegExp, at: RegExp) => {
      assert.throws(() => plan(r), (e: unknown) => {
        assert.ok(e instanceof PipeRuntimeError);
        assert.equal(e.code, code);
        assert.match(e.message, message);
        assert.match(e.render(), at);
        assert.ok(e.hint || code === 'PIPE9083', 'says what to do');
        return true;
      });
    };
    const comp = (g: Graph, name: string) => g.models[0]!.components.find((c) => c.name === name)!;
    // tiny.pipe line 9: `encoder vision = vit(...)`, line 10: `projector proj = mlp_gelu(depth: 2, ...)`
    refuse(variant((g) => (comp(g, 'vision').attrs['cls'] = false)), 'PIPE9081', /component `vision` .* a vit without a class token/, /^test\/runtime\/tiny\.pipe:9:\d+ - error PIPE9081/);
    // the quickstart's encoder: pipec's own CNN, for which the hint names the torch export
    refuse(variant((g) => ((comp(g, 'vision').op = 'cnn'), (comp(g, 'vision').constructor = 'cnn'))), 'PIPE9081', /component `vision` .* op cnn is not a CLIP or SigLIP vision tower/, /hint: `pipec export RUN --target torch`.*tiny-llava/);
    refuse(variant((g) => (comp(g, 'proj').attrs['depth'] = 3)), 'PIPE9081', /mlp_gelu of depth 3/, /^test\/runtime\/tiny\.pipe:10:29 - error PIPE9081/);
    refuse(variant((g) => (comp(g, 'lm').custom = { class: 'MyLlama', module: './my.ts', base: 'llama' })), 'PIPE9081', /custom class MyLlama/, /tiny\.pipe:11:\d+/);
    // a PyTorch half does not help: LLaVA builds its language model from a registered model type
    const python = { file: 'my/modeling_my.py', package: 'my', module: 'modeling_my', files: ['my/modeling_my.py'], hash: 'sha256:0' };
    refuse(variant((g) => (comp(g, 'lm').custom = { class: 'MyLlama', base: 'llama', python })), 'PIPE9081', /custom class MyLlama \(my\/modeling_my\.py\); transformers' LLaVA .* would not run the class's remote code/, /hint: .*trust_remote_code=True.*pipec export --target torch/);
    refuse(variant((g) => (g.models[0]!.components = g.models[0]!.components.filter((c) => c.role !== 'encoder'))), 'PIPE9080', /has no vision encoder/, /PIPE9080/);
    refuse(variant((g) => g.models[0]!.nodes.find((n) => n.op === 'llava_splice')!.attrs['image_tokens'] = 5), 'PIPE9083', /into 4 tokens, but the model takes 5/, /tiny\.pipe:9/);
    // a custom component is written as its base when asked
    const custom = variant((g) => (comp(g, 'lm').custom = { class: 'MyLlama', module: './my.ts', base: 'llama' }));
    assert.match(planLlava(custom.graph, custom.model, { imageTokenId: 4, tokenIds: {}, customAsBase: true, graphFile: '' }).notes.join('\n'), /MyLlama.*written as its base, llama/);
    // the source gone: errors point at the run's graph.json
    refuse(variant((g) => ((g.source = 'gone/tiny.pipe'), (comp(g, 'proj').attrs['depth'] = 4))), 'PIPE9081', /depth 4/, /graph\.json - error PIPE9081/);
  });

  it('a tokenizer without the image token gets one at a free embedding row, or a located refusal (PIPE9082)', () => {
    const json = structuredClone(run.tokenizerJson) as { model: { vocab: Record<string, number> }; added_tokens: { content: string }[] };
    const tokenizer = { ...run.tokenizer, tokenToId: (t: string) => (t === '<image>' ? undefined : run.tokenizer.tokenToId(t)), vocabSize: run.tokenizer.vocabSize, encode: run.tokenizer.encode.bind(run.tokenizer), idToToken: run.tokenizer.idToToken.bind(run.tokenizer) };
    const noMarker: OpenedRun = { ...run, tokenizer, tokenizerJson: json as unknown as Record<string, unknown> };
    const t = exportTokenizer(noMarker, 128, 64);
    assert.equal(t.imageTokenId, run.tokenizer.vocabSize);
    assert.match(t.notes.join('\n'), /added with id/);
    assert.throws(() => exportTokenizer(noMarker, run.tokenizer.vocabSize, 64), (e: unknown) => e instanceof PipeRuntimeError && e.code === 'PIPE9082' && /raise the llm's vocab/.test(e.hint ?? ''));
  });

  it('transformers loads it and computes pipec\'s loss and logits; its processor makes pipec\'s ids and pixels; each component folder loads on its own', async function () {
    needPython(this);
    const ref = path.join(work, 'ref.json');
    await pipecReference(run, ref);
    const c = python('check_llava.py', [out, ref, '--components', run.checkpoint, 'vision', 'lm', 'proj']);
    assertLlava(c as unknown as LlavaCheck, 'CLIPImageProcessor', 'tiny');
    // the run's own folders: CLIPVisionModel, LlamaForCausalLM; the projector into LlavaMultiModalProjector
    assertComponents(c.components as Record<string, unknown>, 'CLIPVisionModel', 'LlamaForCausalLM');
  });
});

describe('export --target hf (tiny-moe: SigLIP, linear projector, Mixtral with tied embeddings)', function () {
  this.timeout(10 * 60_000);
  let work: string, runDir: string, out: string;

  before(async function () {
    needPython(this);
    work = tmpDir('export-hf-moe');
    runDir = path.join(work, 'run');
    out = path.join(work, 'hf');
    train(repo('test/export/tiny-moe.pipe'), runDir, ['stage.joint.steps=6', 'stage.tune.steps=2']);
    const r = pipec(['export', runDir, '--target', 'hf', '-o', out]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /note: projector `proj` \(linear\) is written as LLaVA's two-layer projector with an identity second layer/);
    await initBackend('cpu');
  });

  it('loads as a LLaVA with a SigLIP tower and a Mixtral, with pipec\'s LM loss and logits', async () => {
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.deepEqual([cfg.vision_config.model_type, cfg.text_config.model_type, cfg.vision_feature_select_strategy, cfg.projector_hidden_act, cfg.tie_word_embeddings], ['siglip_vision_model', 'mixtral', 'full', 'linear', true]);
    const run = openRun(runDir);
    const ref = path.join(work, 'ref.json');
    const ev = await pipecReference(run, ref);
    assert.ok(ev.auxLoss > 0, 'pipec adds the router loss to the training loss; LLaVA\'s loss is the LM loss alone');
    const c = python('check_llava.py', [out, ref, '--components', run.checkpoint, 'vision', 'lm', 'proj']);
    assertLlava(c as unknown as LlavaCheck, 'SiglipImageProcessor', 'tiny-moe');
    assertComponents(c.components as Record<string, unknown>, 'SiglipVisionModel', 'MixtralForCausalLM');
  });
});

describe('export --target hf (tiny-llava: the quickstart scale with a ViT): greedy generation in transformers equals pipec generate', function () {
  this.timeout(15 * 60_000);
  let work: string;

  before(function () {
    needPython(this);
    work = tmpDir('export-hf-qs');
  });

  it('same tokens and text for image questions in English and Japanese, trained for a few steps', async () => {
    const runDir = path.join(work, 'run');
    train(repo('pipelines/tiny-llava.pipe'), runDir, ['stage.pretrain.steps=40', 'stage.instruct.steps=40']);
    const out = path.join(work, 'hf');
    assert.equal(pipec(['export', runDir, '--target', 'hf', '-o', out]).status, 0);
    const maxNew = 12;
    const cases = [
      { prompt: 'what colour is the shape ?', colour: 2, shape: 1, seed: 4242 },
      { prompt: 'この図形は何色ですか？', colour: 0, shape: 3, seed: 4343 },
    ].map((c) => {
      const image = path.join(work, `shape-${c.seed}.png`);
      writePng(image, { width: 32, height: 32, rgb: drawShape(new Rng(c.seed), 32, c.colour, c.shape) });
      const cli = pipec(['generate', runDir, '--image', image, '--prompt', c.prompt, '--max-tokens', String(maxNew), '--backend', 'cpu']);
      assert.equal(cli.status, 0, cli.stderr);
      return { ...c, image, answer: cli.stdout.trim() };
    });

    // pipec's tokens through the library, as generateFromRun computes them
    await initBackend('cpu');
    const run = openRun(runDir);
    const loaded = await loadRunModel(run);
    const enc = run.model.components.find((c) => c.role === 'encoder')!;
    const { loadImageFile } = await import('../../runtime/data/images.js');
    const ours = cases.map((c) => {
      const pixels = preprocessImage(loadImageFile(c.image), preprocessFor(enc));
      const p = buildPrompt([{ role: 'user', text: `<image>\n${c.prompt}` }], run.template, run.tokenizer, '<image>', run.model.image_tokens ?? 0);
      const [ids] = generate(loaded.runner, [{ ids: p.ids, imageStart: p.imageStart, pixels }], { maxNewTokens: maxNew, eosId: run.tokenizer.eosId, imageShape: imageShapeOf(run.model) });
      assert.equal(run.tokenizer.decode(ids!, { skipSpecialTokens: true }), c.answer, 'the library gives the CLI\'s answer');
      assert.ok(ids!.length > 0, 'pipec generated something before EOS');
      return { prompt: p.ids, ids: ids! };
    });
    loaded.dispose();

    const ref = path.join(work, 'ref.json');
    await pipecReference(run, ref, { generate: cases.map((c) => ({ image: c.image, prompt: c.prompt, max_new_tokens: maxNew })) });
    const c = python('check_llava.py', [out, ref]) as unknown as LlavaCheck;
    assertLlava(c, 'CLIPImageProcessor', 'tiny-llava');
    cases.forEach((k, i) => {
      const g = c.generate![i]!;
      assert.deepEqual(g.prompt_ids, ours[i]!.prompt, 'the processor\'s prompt is pipec\'s');
      assert.deepEqual(g.tokens, ours[i]!.ids, `greedy tokens for ${k.prompt}`);
      // transformers joins word-level tokens with spaces; pipec joins Japanese ones without
      if (!/[\u3000-\u9fff]/.test(k.answer)) assert.equal(g.text, k.answer, 'decoded text');
      console.log(`      tiny-llava: pipec generate "${k.answer}" = transformers ${JSON.stringify(g.tokens)} "${g.text}"`);
    });
  });
});
