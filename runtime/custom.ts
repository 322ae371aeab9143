// Custom components: a `custom("Class", module: "./x.ts", trust: true, base: mixtral)` component runs
// the user's class. The compiler has already checked that the module exists, is trusted and exports the
// class; the runtime imports it (TypeScript is transpiled first with the project's `typescript`,
// file by file into a cache, so the module's own relative imports keep working) and calls it.
//
// The component interface (docs/runtime.md):
//   export class MyModel {
//     constructor(config: Record<string, unknown>)        // the component's HF-style config.json
//     forward(ctx: ComponentContext, inputs: Tensor[]): Tensor
//   }
// ComponentContext gives `tf` (the runtime's TensorFlow.js), `param(name)` by HF name, `attrs`, `batch`,
// `auxLosses`, and `base(inputs)`: the base component's own forward (e.g. the Mixtral decoder), so a
// class can change one part and reuse the rest. Parameters are the base's tensors (same HF names).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type { ComponentDef, ModelDef } from '../compiler/ir/graph.js';
import { PACKAGE_ROOT } from '../compiler/service/service.js';
import { M, runtimeError } from './errors.js';
import { OPS } from './ops/registry.js';
import type { OpContext, OpImpl } from './ops/types.js';
import { hfConfig } from './weights/hf-config.js';

export interface ComponentContext extends OpContext {
  tf: typeof tf;
  base(inputs: tf.Tensor[]): tf.Tensor;
}

export interface CustomComponent {
  forward(ctx: ComponentContext, inputs: tf.Tensor[]): tf.Tensor;
}

/** Transpiles every .ts file of the module's folder (and below) to ES modules in a cache folder. */
async function transpileFolder(dir: string): Promise<string> {
  let ts: typeof import('typescript');
  try {
    ts = (await import('typescript')).default;
  } catch {
    throw new Error('TypeScript modules need the `typescript` package (npm install typescript), or write the module in JavaScript');
  }
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory() && e.name !== 'node_modules' && !e.name.startsWith('.')) walk(path.join(d, e.name));
      else if (e.isFile() && /\.(ts|mts)$/.test(e.name) && !e.name.endsWith('.d.ts')) files.push(path.join(d, e.name));
    }
  };
  walk(dir);
  const hash = createHash('sha256');
  for (const f of files.sort()) hash.update(f).update(fs.readFileSync(f));
  // inside the package's node_modules, so the module's own package imports resolve like ours
  const out = path.join(PACKAGE_ROOT, 'node_modules', '.cache', 'pipec-custom', hash.digest('hex').slice(0, 16));
  if (!fs.existsSync(path.join(out, '.done'))) {
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, 'package.json'), '{"type":"module"}\n');
    for (const f of files) {
      const js = ts.transpileModule(fs.readFileSync(f, 'utf8'), {
        fileName: f,
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: false },
        reportDiagnostics: false,
      }).outputText;
      const target = path.join(out, path.relative(dir, f)).replace(/\.m?ts$/, '.js');
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, js);
    }
    fs.writeFileSync(path.join(out, '.done'), '');
  }
  return out;
}

async function importModule(file: string): Promise<Record<string, unknown>> {
  if (/\.m?ts$/.test(file)) {
    const dir = path.dirname(file);
    const out = await transpileFolder(dir);
    return import(pathToFileURL(path.join(out, path.basename(file).replace(/\.m?ts$/, '.js'))).href) as Promise<Record<string, unknown>>;
  }
  return import(pathToFileURL(file).href) as Promise<Record<string, unknown>>;
}

/** Loads every custom component of a model: component name -> op implementation. */
export async function loadCustomOps(model: ModelDef, baseDir: string): Promise<Map<string, OpImpl>> {
  const out = new Map<string, OpImpl>();
  for (const c of model.components) {
    if (!c.custom) continue;
    out.set(c.name, await customOp(c, baseDir));
  }
  return out;
}

async function customOp(c: ComponentDef, baseDir: string): Promise<OpImpl> {
  const spec = c.custom!;
  const file = path.resolve(baseDir, spec.module);
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(file);
  } catch (e) {
    throw runtimeError(M.CustomLoadFailed, [spec.module, (e as Error).message.split('\n')[0]!], { file: spec.module });
  }
  const Ctor = mod[spec.class];
  if (typeof Ctor !== 'function') throw runtimeError(M.CustomLoadFailed, [spec.module, `it does not export a class \`${spec.class}\``], { file: spec.module });
  let instance: CustomComponent;
  try {
    instance = new (Ctor as new (config: Record<string, unknown>) => CustomComponent)(hfConfig(c));
  } catch (e) {
    throw runtimeError(M.CustomLoadFailed, [spec.module, `\`new ${spec.class}(config)\` threw: ${(e as Error).message}`], { file: spec.module });
  }
  if (typeof instance.forward !== 'function') throw runtimeError(M.CustomLoadFailed, [spec.module, `\`${spec.class}\` has no forward(ctx, inputs) method`], { file: spec.module });
  const base = OPS.get(spec.base);
  return (ctx, inputs) =>
    instance.forward({ ...ctx, tf, base: (xs) => {
      if (!base) throw new Error(`custom component \`${c.name}\` has no base op \`${spec.base}\``);
      return base(ctx, xs);
    } }, inputs);
}
