// A LLaVA config (LlavaForConditionalGeneration's, or the LLaVA repos' flat one) describes the whole
// model, so whichever component points at it, the model's encoder, projector and image token are checked
// against it: `vision_feature_layer` / `mm_vision_select_layer` against the encoder's `select_layer`,
// `vision_feature_select_strategy` / `mm_vision_select_feature` against its `select`, the projector's
// kind, and (after the data pass has read the datasets) `image_token_index` against the run's tokenizer.
import * as path from 'node:path';
import { M } from '../diagnostics/catalogue.js';
import { compareConfig, declaredAt } from './checkpoint.js';
import { weightsConfigFile } from './components.js';
import { isLlavaConfig } from './hf-config-section.js';
import { llavaImageToken, llavaProjector, llavaVisionFields, strategyFor } from './hf-llava.js';
import type { ComponentInfo, Host, ModelInfo, Program, Reporter } from './program.js';
import { readTokenizerSummary } from './tokenizer-json.js';
import { show } from './values.js';

const opOf = (c: ComponentInfo) => (c.custom ? c.custom.base : c.op);

export function checkLlavaConfig(model: ModelInfo, from: ComponentInfo, config: Record<string, unknown>, reporter: Reporter): void {
  if (!isLlavaConfig(config)) return;
  const where = from.weights!;
  const related = [{ message: `config.json of the checkpoint \`${from.name}\` reads`, range: where.range }];
  for (const enc of model.components.values()) {
    if (enc.role !== 'encoder' || !enc.ok) continue;
    const cls = enc.params.get('cls');
    const f = llavaVisionFields(config, opOf(enc), cls?.t === 'bool' ? cls.v : undefined);
    if (f.select_layer) {
      if (typeof f.select_layer.value === 'number') compareConfig(enc, 'select_layer', f.select_layer.key, f.select_layer.value, reporter, where.range);
      else {
        const d = reporter.report(M.UnsupportedConfig, where.range, f.select_layer.key, JSON.stringify(f.select_layer.value), `\`${enc.name}\` gives the features of one layer (\`select_layer\`)`);
        d.hint = 'pipec does not concatenate the features of several layers';
      }
    }
    if (f.select) {
      const declared = enc.params.get('select');
      if (!f.select.value) {
        const d = reporter.report(M.UnsupportedConfig, declaredAt(enc, 'select'), f.select.key, JSON.stringify(f.select.raw), `\`${enc.name}\` (${opOf(enc)}) needs ${strategyFor(opOf(enc), declared?.t === 'str' ? declared.v : 'patch', cls?.t === 'bool' ? cls.v : undefined)} for \`select: ${declared ? show(declared) : '"patch"'}\``);
        d.related = related;
        d.hint = opOf(enc) === 'siglip_vit' ? 'SigLIP has no class token: "default" would drop its first patch, which pipec never does; use "full"' : 'use "default" (patch tokens) or "full" (class token and patches)';
      } else compareConfig(enc, 'select', f.select.key, f.select.value, reporter, where.range);
    }
  }
  const want = llavaProjector(config);
  if (!want) return;
  for (const proj of model.components.values()) {
    if (proj.role !== 'projector' || !proj.ok) continue;
    if (!want.op) {
      reporter.report(M.UnsupportedConfig, where.range, want.key, JSON.stringify(want.raw), `\`${proj.name}\` is ${opOf(proj)}`).hint = 'pipec\'s LLaVA projectors are `linear` and `mlp_gelu` (GELU between the layers)';
    } else if (opOf(proj) !== want.op) {
      const d = reporter.report(M.ConfigMismatch, proj.decl.init.range, `\`${proj.name}\``, opOf(proj), want.key, JSON.stringify(want.raw));
      d.related = related;
      d.hint = `declare \`${proj.name} = ${want.op}(${want.depth && want.depth !== 2 ? `depth: ${want.depth}, ` : ''}...)\``;
    } else if (want.depth !== undefined && want.op === 'mlp_gelu') compareConfig(proj, 'depth', want.key, want.depth, reporter, where.range);
  }
}

/**
 * After the data pass: a LLaVA config's image token id against the run's tokenizer (the first dataset
 * naming a tokenizer.json) and its image marker. pipec splices by position, so a difference does not
 * change pipec's numbers, but transformers puts the image features where that id is: a warning.
 */
export function checkLlavaImageTokens(program: Program, host: Host, reporter: Reporter): void {
  const d = [...program.datasets.values()].find((x) => x.ok && x.params.get('tokenizer')?.t === 'str' && (x.params.get('tokenizer') as { v: string }).v !== '');
  if (!d) return;
  const tokFile = path.resolve(path.dirname(program.entry.path), (d.params.get('tokenizer') as { v: string }).v);
  const markerValue = d.params.get('image_marker');
  const marker = markerValue?.t === 'str' ? markerValue.v : '<image>';
  let markerId: number | undefined;
  try {
    markerId = readTokenizerSummary(tokFile).idOf(marker);
  } catch {
    return; // the data pass reports an unreadable tokenizer
  }
  for (const model of program.models.values()) {
    if (model.imageTokens === undefined) continue;
    const seen = new Set<string>();
    for (const c of model.components.values()) {
      if (!c.weights) continue;
      const file = weightsConfigFile(c.weights, host);
      if (!file || seen.has(file)) continue;
      seen.add(file);
      let config: unknown;
      try {
        config = JSON.parse(host.readFile(file) ?? 'null');
      } catch {
        continue; // reported by the weights pass
      }
      if (!config || typeof config !== 'object' || Array.isArray(config) || !isLlavaConfig(config as Record<string, unknown>)) continue;
      const token = llavaImageToken(config as Record<string, unknown>);
      if (!token || token.value === markerId) continue;
      const diag = reporter.report(M.ImageTokenMismatch, c.weights.range, token.key, token.value, marker, markerId === undefined ? 'no id' : `id ${markerId}`, (d.params.get('tokenizer') as { v: string }).v);
      diag.hint = markerId === undefined ? `add "${marker}" to the tokenizer as token ${token.value}, or set the dataset's \`image_marker\` to the checkpoint's image token` : `use the tokenizer the checkpoint was trained with, or set \`image_marker\` to the token with id ${token.value}`;
    }
  }
}
