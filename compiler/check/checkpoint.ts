// Pass 6: checkpoint cross-checks without loading tensors. For a component with `weights "DIR"` (a
// folder, or one .safetensors file; `#ROOT` picks a part of it), the declared parameters are compared
// with config.json -- the component's section of it (hf-config-section.ts), and a LLaVA config's
// model-wide fields (checkpoint-llava.ts) -- and the declared tensors with the safetensors headers,
// under the names of the layout the checkpoint is detected to be in (hf-layout.ts).
import * as path from 'node:path';
import { M } from '../diagnostics/catalogue.js';
import type { Range } from '../diagnostics/source.js';
import { CheckpointError, readCheckpointMeta, type CheckpointMeta } from './checkpoint-io.js';
import { checkLlavaConfig } from './checkpoint-llava.js';
import { hfConfigKeys, jsonToValue } from './components.js';
import { configSection, sectionValue } from './hf-config-section.js';
import { checkUnsupportedConfig } from './hf-unsupported.js';
import { describeLayout, detectLayout, elsewhere, familyOf, identityLayout, slicedShape, sourceOf, type Family } from './hf-layout.js';
import type { ComponentInfo, Host, Program, Reporter } from './program.js';
import { show, showDims } from './values.js';

/** At most this many missing or mismatched tensors are reported per component; the rest are counted. */
const MAX_TENSOR_REPORTS = 3;

export function checkCheckpoints(program: Program, host: Host, reporter: Reporter): void {
  for (const model of program.models.values()) {
    const llavaChecked = new Set<string>();
    for (const c of model.components.values()) {
      if (!c.weights || !c.ok) continue;
      const meta = readMeta(c, host, reporter);
      if (!meta) continue;
      const family = familyOf(c.custom ? c.custom.base : c.op);
      if (meta.config && family) {
        checkConfig(c, meta.config, family, reporter);
        checkUnsupportedConfig(c, meta.config, family, reporter);
        const folder = meta.configFile ?? meta.dir;
        if (!llavaChecked.has(folder)) {
          llavaChecked.add(folder);
          checkLlavaConfig(model, c, meta.config, reporter);
        }
      }
      if (meta.files.length === 0) {
        reporter.report(M.NoTensorsInWeights, c.weights.range, c.weights.dir);
        continue;
      }
      if (family) checkTensors(c, meta, family, reporter);
    }
  }
}

function readMeta(c: ComponentInfo, host: Host, reporter: Reporter): CheckpointMeta | undefined {
  const w = c.weights!;
  if (!host.exists(w.abs)) {
    reporter.report(M.WeightsNotFound, w.range, w.dir).hint = 'the runtime will need it; `--config` can point `paths.weights.' + c.name + '` elsewhere';
    return undefined;
  }
  if (!host.isDirectory(w.abs) && !w.abs.endsWith('.safetensors')) {
    reporter.report(M.WeightsNotACheckpoint, w.range, w.dir).hint = 'point `weights` at a Hugging Face checkpoint folder (config.json + *.safetensors) or at one .safetensors file';
    return undefined;
  }
  const folder = host.isDirectory(w.abs) ? w.abs : path.dirname(w.abs);
  try {
    return readCheckpointMeta(w.abs);
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    const file = host.display(path.join(folder, e.file));
    if (e.kind === 'bad-json') reporter.report(M.BadConfigJson, w.range, file, e.why);
    else if (e.kind === 'shard-missing') reporter.report(M.ShardMissing, w.range, e.file, host.display(path.join(folder, 'model.safetensors.index.json')));
    else if (e.kind === 'not-found') reporter.report(M.WeightsNotFound, w.range, w.dir);
    else reporter.report(M.BadSafetensors, w.range, file, e.why);
    return undefined;
  }
}

/** The range to blame for a parameter: the argument in the user's file, else the constructor call. */
export function declaredAt(c: ComponentInfo, param: string): Range {
  const r = c.paramRanges.get(param);
  // A value from a preset, a default or config.json lives elsewhere; point at the user's call instead.
  return r && r.file === c.decl.range.file && r !== c.weights?.range ? r : c.decl.init.range;
}

/** One config value against a declared parameter: PIPE6006 at the argument when they differ. */
export function compareConfig(c: ComponentInfo, param: string, key: string, raw: unknown, reporter: Reporter, checkpoint: Range = c.weights!.range): void {
  const declared = c.params.get(param);
  const actual = jsonToValue(raw);
  if (!declared || !actual) return;
  if (show(actual) === show(declared) || (actual.t === 'num' && declared.t === 'num' && actual.v === declared.v)) return;
  const d = reporter.report(M.ConfigMismatch, declaredAt(c, param), `\`${c.name}.${param}\``, show(declared), key, show(actual));
  d.related = [{ message: 'checkpoint declared here', range: checkpoint }];
  d.hint = `set \`${param}: ${show(actual)}\` or point \`weights\` at a matching checkpoint`;
}

function checkConfig(c: ComponentInfo, config: Record<string, unknown>, family: Family, reporter: Reporter): void {
  if (!c.sig) return;
  const section = configSection(config, family);
  for (const [param, keys] of hfConfigKeys(c.sig, reporter)) {
    const found = sectionValue(config, section, keys);
    if (found) compareConfig(c, param, found.absent ? `${found.key} (not written: ${found.absent}'s default)` : found.key, found.value, reporter);
  }
}

export function* expandTensorName(name: string, loops: { var: string; count: number }[], i = 0): Generator<string> {
  if (i === loops.length) {
    yield name;
    return;
  }
  const { var: v, count } = loops[i];
  // `{k}` is the loop index; `{k+2}` an offset one (transformers numbers some modules from 1 or 2).
  const pattern = new RegExp(`\\{${v}(?:\\+(\\d+))?\\}`, 'g');
  for (let k = 0; k < count; k++) yield* expandTensorName(name.replace(pattern, (_, off: string | undefined) => String(k + Number(off ?? 0))), loops, i + 1);
}

/** `#ROOT` as the user writes it after the folder (`#` alone for the top level). */
const rootRef = (dir: string, root: string) => `"${dir.replace(/#.*$/, '')}#${root}"`;

function checkTensors(c: ComponentInfo, meta: CheckpointMeta, family: Family, reporter: Reporter): void {
  const weights = c.weights!;
  const wanted: { name: string; shape: number[] }[] = [];
  for (const spec of c.tensors) for (const name of expandTensorName(spec.name, spec.loops)) wanted.push({ name, shape: spec.shape });
  const has = (n: string) => meta.tensors.has(n);
  const det = detectLayout(family, wanted.map((w) => w.name), has, weights.part);
  if (det.alsoComplete.length) {
    const choices = [det.layout, ...det.alsoComplete];
    const d = reporter.report(M.AmbiguousLayout, weights.range, c.name, weights.dir, choices.map((l) => describeLayout(l, meta.config)).join('; or '));
    d.hint = `pick the part with ${choices.map((l) => `\`weights ${rootRef(weights.dir, l.root)}\``).join(' or ')}`;
    return;
  }
  if (det.found > 0) {
    c.layout = describeLayout(det.layout, meta.config);
    reporter.report(M.LayoutDetected, weights.range, c.name, weights.dir, c.layout);
  }
  let missing = 0;
  let mismatched = 0;
  let moved: ReturnType<typeof elsewhere>;
  for (const w of wanted) {
    const src = sourceOf(det.layout, w.name, has)!;
    const t = src && meta.tensors.get(src.name);
    if (!t) {
      if (missing++ < MAX_TENSOR_REPORTS) {
        moved = elsewhere(family, w.name, meta.tensors.keys()) ?? moved;
        const d = reporter.report(M.TensorMissing, weights.range, src?.name ?? w.name, weights.dir);
        if (moved) d.hint = `the checkpoint has "${moved.found}": its tensors are under \`${moved.root}.\`; write \`weights ${rootRef(weights.dir, moved.root)}\``;
        else if (det.found > 0) {
          if (det.layout.root || det.layout.form !== identityLayout(family).form) d.hint = `read as ${c.layout}`;
        } else d.hint = `no tensor of \`${c.name}\` was found in any layout pipec knows; the checkpoint's names begin with ${topPrefixes(meta.tensors.keys())}`;
      }
      continue;
    }
    const got = slicedShape(t.shape, src);
    if (!got || got.join('x') !== w.shape.join('x')) {
      if (mismatched++ < MAX_TENSOR_REPORTS) {
        const part = src.expert === undefined ? '' : ` (expert ${src.expert}${src.half === undefined ? '' : src.half ? ', up half' : ', gate half'})`;
        const d = reporter.report(M.TensorShapeMismatch, weights.range, src.name + part, showDims(w.shape), showDims(got ?? t.shape), t.file);
        d.related = [{ message: `\`${c.name}\` is declared here`, range: c.decl.init.range }];
      }
    }
  }
  if (missing > MAX_TENSOR_REPORTS) reporter.report(M.TensorMissing, weights.range, `... and ${missing - MAX_TENSOR_REPORTS} more`, weights.dir);
  if (mismatched > MAX_TENSOR_REPORTS) reporter.report(M.TensorShapeMismatch, weights.range, `... and ${mismatched - MAX_TENSOR_REPORTS} more`, 'as declared', 'other shapes', 'the checkpoint');
}

/** The first name segments of a checkpoint's tensors, most common first: `text_model. (36), logit_scale (1)`. */
function topPrefixes(names: Iterable<string>): string {
  const counts = new Map<string, number>();
  for (const n of names) {
    const head = n.includes('.') ? `${n.slice(0, n.indexOf('.'))}.` : n;
    counts.set(head, (counts.get(head) ?? 0) + 1);
  }
  const top = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, 4);
  return top.map(([p, n]) => `\`${p}\` (${n})`).join(', ') || 'nothing (no tensors)';
}

