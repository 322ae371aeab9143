// Custom components: a `custom("Class", module: "./x.ts", trust: true, base: mixtral)` component runs
// the user's class. The compiler has already checked that the module stays in the program's folder and
// exports the class, and recorded its files' content hash; right before the import runtime/trust.ts
// decides again (same folder, same hash, trusted by the person running pipec), and the runtime imports
// exactly the text it hashed (TypeScript transpiled with the project's `typescript`, file by file into a
// cache laid out as the program's folder, so the module's own relative imports keep working).
//
// The component interface (docs/runtime.md):
//   export class MyModel {
//     constructor(config: Record<string, unknown>)        // the component's HF-style config.json
//     forward(ctx: ComponentContext, inputs: Tensor[]): Tensor
//   }
// ComponentContext gives `tf` (the runtime's TensorFlow.js), `param(name)` by HF name, `attrs`, `batch`,
// `auxLosses`, and `base(inputs)`: the base component's own forward (e.g. the Mixtral decoder), so a
// class can change one part and reuse the rest. Parameters are the base's tensors (same HF names).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type { ComponentDef, Graph, ModelDef } from '../compiler/ir/graph.js';
import { PACKAGE_ROOT } from '../compiler/service/service.js';
import { M, runtimeError } from './errors.js';
import { linearOfWeight } from './ops/lora.js';
import { OPS } from './ops/registry.js';
import type { OpContext, OpImpl } from './ops/types.js';
import { hfConfig } from './weights/hf-config.js';
import { shortHash } from '../compiler/check/code-files.js';
import { decideModule, type CodeToRun, type TrustOptions } from './trust.js';
import { decoder } from './ops/decoder.js';
import { loadBalancingLoss, moeBlock, topKIndices } from './ops/mixtral.js';
import { rmsNorm, silu } from './ops/nn.js';
import { linear } from './backend/kernels.js';

/**
 * Building blocks a class may reuse to change one part of its base: the Llama-family decoder stack with
 * its feed-forward part passed in, Mixtral's MoE block and load-balancing loss, and the kernels they use.
 */
export const BLOCKS = { decoder, moeBlock, loadBalancingLoss, topKIndices, rmsNorm, silu, linear };

export interface ComponentContext extends OpContext {
  tf: typeof tf;
  blocks: typeof BLOCKS;
  base(inputs: tf.Tensor[]): tf.Tensor;
}

export interface CustomComponent {
  forward(ctx: ComponentContext, inputs: tf.Tensor[]): tf.Tensor;
}

/**
 * Makes the module's files importable from the text that was hashed: TypeScript transpiled (file by file,
 * with the project's `typescript`), JavaScript copied, laid out as in the program's folder so relative
 * imports keep working, in a cache folder inside the package's node_modules (so the module's own package
 * imports resolve like ours). The files are written again on every load: what runs is what was decided on.
 */
async function materialise(code: CodeToRun): Promise<string> {
  let ts: typeof import('typescript') | undefined;
  if (code.files.some((f) => /\.m?ts$/.test(f.abs))) {
    try {
      ts = (await import('typescript')).default;
    } catch {
      throw new Error('TypeScript modules need the `typescript` package (npm install typescript), or write the module in JavaScript');
    }
  }
  const out = path.join(PACKAGE_ROOT, 'node_modules', '.cache', 'pipec-custom', shortHash(code.hash));
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'package.json'), '{"type":"module"}\n');
  let entry = '';
  for (const f of code.files) {
    const target = path.join(out, ...f.rel.split('/')).replace(/\.ts$/, '.js').replace(/\.mts$/, '.mjs');
    const text = ts && /\.m?ts$/.test(f.abs)
      ? ts.transpileModule(f.text, { fileName: f.abs, compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: false }, reportDiagnostics: false }).outputText
      : f.text;
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, text);
    if (f === code.entry) entry = target;
  }
  return entry;
}

/**
 * Loads every custom component of a model: component name -> op implementation. Each module is decided
 * on (runtime/trust.ts: inside the program's folder `baseDir`, unchanged since compile, trusted by the
 * user) right before it is imported; nothing of an untrusted module is imported.
 */
export async function loadCustomOps(model: ModelDef, baseDir: string, o: TrustOptions = {}): Promise<Map<string, OpImpl>> {
  const out = new Map<string, OpImpl>();
  for (const c of model.components) {
    if (!c.custom) continue;
    out.set(c.name, await customOp(c, baseDir, o));
  }
  return out;
}

/**
 * The same decision for every custom module of the graph, before a command starts (so an untrusted
 * module stops `pipec run` before it makes a run folder); the import decides again at its own moment.
 */
export function decideAllModules(graph: Graph, baseDir: string, o: TrustOptions = {}): void {
  for (const m of graph.models) for (const c of m.components) if (c.custom) decideModule(c, baseDir, o);
}

async function customOp(c: ComponentDef, baseDir: string, o: TrustOptions): Promise<OpImpl> {
  const spec = c.custom!;
  const code = decideModule(c, baseDir, o); // the last moment: nothing below runs for code that fails it
  const shown = code.module;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(await materialise(code)).href)) as Record<string, unknown>;
  } catch (e) {
    throw runtimeError(M.CustomLoadFailed, [shown, (e as Error).message.split('\n')[0]!], { file: shown });
  }
  const Ctor = mod[spec.class];
  if (typeof Ctor !== 'function') throw runtimeError(M.CustomLoadFailed, [shown, `it does not export a class \`${spec.class}\``], { file: shown });
  let instance: CustomComponent;
  try {
    instance = new (Ctor as new (config: Record<string, unknown>) => CustomComponent)(hfConfig(c));
  } catch (e) {
    throw runtimeError(M.CustomLoadFailed, [shown, `\`new ${spec.class}(config)\` threw: ${(e as Error).message}`], { file: shown });
  }
  if (typeof instance.forward !== 'function') throw runtimeError(M.CustomLoadFailed, [shown, `\`${spec.class}\` has no forward(ctx, inputs) method`], { file: shown });
  const base = OPS.get(spec.base);
  return (ctx, inputs) =>
    instance.forward({ ...ctx, tf, blocks: ctx.lora ? { ...BLOCKS, linear: (x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor) => linearOfWeight(ctx, x, w, b) } : BLOCKS, base: (xs) => {
      if (!base) throw new Error(`custom component \`${c.name}\` has no base op \`${spec.base}\``);
      return base(ctx, xs);
    } }, inputs);
}
