// `pipec merge RUN [--checkpoint NAME] --out DIR`: folds a run's LoRA adapters into the base weights,
// W + (alpha / r) B A (adapters.ts's foldAdapter, float64 then rounded once), and writes every component
// of the checkpoint's model to DIR/<component>/ in its Hugging Face layout, as a checkpoint holds it
// (model.safetensors, config.json, a custom class's package): DIR/lm loads with LlamaForCausalLM and
// computes what base + adapter computed. Built in a temporary folder beside DIR and renamed into place.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph } from '../../compiler/ir/graph.js';
import { M, runtimeError } from '../errors.js';
import { expandTensorNames } from '../params.js';
import { encodeSafetensors, readWeights } from '../weights/safetensors.js';
import { ADAPTER_WEIGHTS, foldAdapter, PEFT_PREFIX } from './adapters.js';
import { CHECKPOINT_NAME, latestCheckpoint, readTrainerState } from './checkpoint.js';
import { verifyManifest } from './manifest.js';

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export interface MergeOptions {
  checkpoint?: string;
  out: string;
}

export function mergeCommand(runDir: string, o: MergeOptions, io: Io): number {
  const bad = (why: string, hint?: string) => runtimeError(M.MergeBadArgument, [why], { file: runDir }, hint);
  const graphFile = path.join(runDir, 'graph.json');
  if (!fs.existsSync(graphFile)) throw runtimeError(M.RunDirInvalid, [runDir, 'it has no graph.json (was it written by `pipec run`?)'], { file: runDir });
  const graph = JSON.parse(fs.readFileSync(graphFile, 'utf8')) as Graph;
  const root = path.join(runDir, 'checkpoints');
  let ckpt: string | null;
  if (o.checkpoint !== undefined) {
    const names = fs.existsSync(root) ? fs.readdirSync(root).filter((n) => CHECKPOINT_NAME.test(n)).sort() : [];
    if (!CHECKPOINT_NAME.test(o.checkpoint) || !names.includes(o.checkpoint)) throw bad(`the run has no checkpoint "${o.checkpoint}"`, names.length ? `its checkpoints: ${names.join(', ')}` : 'the run has no checkpoint yet');
    ckpt = path.join(root, o.checkpoint);
  } else {
    ckpt = latestCheckpoint(runDir);
    if (!ckpt) throw bad('the run has no checkpoint yet', 'merge a run after `pipec run` wrote a checkpoint');
  }
  const damaged = verifyManifest(ckpt);
  if (damaged) throw bad(`checkpoint ${path.basename(ckpt)} is damaged: ${damaged}`, 'name an intact one with --checkpoint');
  const state = readTrainerState(ckpt);
  const stage = graph.stages[state.stage_index]!;
  const model = graph.models.find((m) => m.name === stage.model)!;
  const adapters = model.adapters ?? [];
  if (!adapters.length) throw bad(`model \`${model.name}\` has no adapter to fold in`, 'merge applies to programs with `adapter C.lora = lora(...)`');

  const out = path.resolve(o.out);
  const st = fs.lstatSync(out, { throwIfNoEntry: false });
  if (st && !(st.isDirectory() && fs.readdirSync(out).length === 0)) throw bad(`"${o.out}" exists and is not an empty folder; nothing was written`, 'choose a new --out folder');
  if (!fs.existsSync(path.dirname(out))) throw bad(`the folder of "${o.out}" does not exist`);
  const tmp = `${out}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  try {
    for (const c of model.components) {
      const src = path.join(ckpt, c.name), dst = path.join(tmp, c.name);
      fs.cpSync(src, dst, { recursive: true });
      const mine = adapters.filter((a) => a.component === c.name);
      if (!mine.length) continue;
      const weights = new Map([...readWeights(src)].map(([n, t]) => [n, { shape: t.info.shape, data: t.data }]));
      for (const a of mine) {
        const names = a.tensors.flatMap((t) => expandTensorNames(t));
        const got = readWeights(path.join(ckpt, a.name), names.map((n) => PEFT_PREFIX + n));
        const lora = new Map<string, Float32Array>();
        for (const n of names) {
          const t = got.get(PEFT_PREFIX + n);
          if (!t) throw runtimeError(M.TensorMissing, [PEFT_PREFIX + n, path.join(ckpt, a.name, ADAPTER_WEIGHTS)], { file: path.join(ckpt, a.name) });
          lora.set(n, t.data);
        }
        const folded = foldAdapter(a, weights, lora);
        io.err(`${a.name}: folded into ${folded.length} weight${folded.length === 1 ? '' : 's'} of \`${c.name}\` (scale alpha/r = ${a.alpha}/${a.rank})\n`);
      }
      fs.writeFileSync(path.join(dst, 'model.safetensors'), encodeSafetensors(weights, { pipec_component: c.name, pipec_merged: mine.map((a) => a.name).join(',') }));
    }
    if (st) fs.rmdirSync(out);
    fs.renameSync(tmp, out);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  io.out(`wrote ${o.out}: ${model.components.map((c) => `${c.name}/`).join(', ')} from checkpoint ${path.basename(ckpt)} with ${adapters.map((a) => a.name).join(', ')} folded in\n`);
  return 0;
}
