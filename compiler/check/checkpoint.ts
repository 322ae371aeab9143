// Pass 6: checkpoint cross-checks without loading tensors. For a component with `weights "dir"`, the
// declared parameters are compared with dir/config.json (through the signature's `hf_config` map) and the
// declared tensors with the safetensors headers (single file or sharded with an index).
import * as path from 'node:path';
import { M } from '../diagnostics/catalogue.js';
import type { Range } from '../diagnostics/source.js';
import { CheckpointError, configLookup, readCheckpointMeta, type CheckpointMeta } from './checkpoint-io.js';
import { hfConfigKeys, jsonToValue } from './components.js';
import type { ComponentInfo, Host, Program, Reporter } from './program.js';
import { show, showDims } from './values.js';

/** At most this many missing or mismatched tensors are reported per component; the rest are counted. */
const MAX_TENSOR_REPORTS = 3;

export function checkCheckpoints(program: Program, host: Host, reporter: Reporter): void {
  for (const model of program.models.values()) {
    for (const c of model.components.values()) {
      if (!c.weights || !c.ok) continue;
      if (!host.exists(c.weights.abs) || !host.isDirectory(c.weights.abs)) {
        reporter.report(M.WeightsNotFound, c.weights.range, c.weights.dir).hint = 'the runtime will need it; `--config` can point `paths.weights.' + c.name + '` elsewhere';
        continue;
      }
      let meta: CheckpointMeta;
      try {
        meta = readCheckpointMeta(c.weights.abs);
      } catch (e) {
        if (!(e instanceof CheckpointError)) throw e;
        const file = host.display(path.join(c.weights.abs, e.file));
        if (e.kind === 'bad-json') reporter.report(M.BadConfigJson, c.weights.range, file, e.why);
        else if (e.kind === 'shard-missing') reporter.report(M.ShardMissing, c.weights.range, e.file, host.display(path.join(c.weights.abs, 'model.safetensors.index.json')));
        else if (e.kind === 'not-found') reporter.report(M.WeightsNotFound, c.weights.range, c.weights.dir);
        else reporter.report(M.BadSafetensors, c.weights.range, file, e.why);
        continue;
      }
      if (meta.config && !c.custom) checkConfig(c, meta.config, reporter);
      if (meta.files.length === 0) {
        reporter.report(M.NoTensorsInWeights, c.weights.range, c.weights.dir);
        continue;
      }
      checkTensors(c, meta, reporter);
    }
  }
}

function declaredAt(c: ComponentInfo, param: string): Range {
  const r = c.paramRanges.get(param);
  // A value from a preset or a default lives in the standard library; point at the user's call instead.
  return r && r.file === c.decl.range.file ? r : c.decl.init.range;
}

function checkConfig(c: ComponentInfo, config: Record<string, unknown>, reporter: Reporter): void {
  if (!c.sig) return;
  for (const [param, keys] of hfConfigKeys(c.sig, reporter)) {
    const declared = c.params.get(param);
    if (!declared) continue;
    for (const key of keys) {
      const raw = configLookup(config, key);
      if (raw === undefined || raw === null) continue;
      const actual = jsonToValue(raw);
      if (actual && show(actual) !== show(declared) && !(actual.t === 'num' && declared.t === 'num' && actual.v === declared.v)) {
        const d = reporter.report(M.ConfigMismatch, declaredAt(c, param), `\`${c.name}.${param}\``, show(declared), key, show(actual));
        d.related = [{ message: 'checkpoint declared here', range: c.weights!.range }];
        d.hint = `set \`${param}: ${show(actual)}\` or point \`weights\` at a matching checkpoint`;
      }
      break;
    }
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

function checkTensors(c: ComponentInfo, meta: CheckpointMeta, reporter: Reporter): void {
  const weights = c.weights!;
  let missing = 0;
  let mismatched = 0;
  for (const spec of c.tensors) {
    for (const name of expandTensorName(spec.name, spec.loops)) {
      const t = meta.tensors.get(name);
      if (!t) {
        // A custom class may name its tensors its own way; only the ones it shares are compared.
        if (c.custom) continue;
        if (missing++ < MAX_TENSOR_REPORTS) reporter.report(M.TensorMissing, weights.range, name, weights.dir);
        continue;
      }
      if (t.shape.join('x') !== spec.shape.join('x')) {
        if (mismatched++ < MAX_TENSOR_REPORTS) {
          const d = reporter.report(M.TensorShapeMismatch, weights.range, name, showDims(spec.shape), showDims(t.shape), t.file);
          d.related = [{ message: `\`${c.name}\` is declared here`, range: c.decl.init.range }];
        }
      }
    }
  }
  if (missing > MAX_TENSOR_REPORTS) reporter.report(M.TensorMissing, weights.range, `... and ${missing - MAX_TENSOR_REPORTS} more`, weights.dir);
  if (mismatched > MAX_TENSOR_REPORTS) reporter.report(M.TensorShapeMismatch, weights.range, `... and ${mismatched - MAX_TENSOR_REPORTS} more`, 'as declared', 'other shapes', 'the checkpoint');
}
