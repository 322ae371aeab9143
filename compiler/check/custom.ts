// Pass 5: custom components. A custom component has two halves, either of which may be absent:
//   module:  the TypeScript/JavaScript class pipec's runtime runs (runtime/custom.ts), and
//   python:  the PyTorch class the export carries (the user's modeling_*.py package; runtime/export/torch.ts).
// Both are read as text, never run: each path must stay inside the program's folder (no `..`, absolute
// paths or links out; code-files.ts), the module must export the class and its relative imports must
// resolve inside the folder (custom-module.ts), the Python file must define the class and its relative
// imports must resolve inside its package (custom-python.ts). The pass records the files and their
// content hash, which graph.json carries and trust is keyed by (runtime/trust.ts).
import * as path from 'node:path';
import { M } from '../diagnostics/catalogue.js';
import type { RelatedInfo } from '../diagnostics/diagnostic.js';
import { SourceFile, type Range } from '../diagnostics/source.js';
import { confineResolved, confineWritten, contentHash, relTo, type CodeFile } from './code-files.js';
import { weightsConfigFile } from './components.js';
import { resolveModule, tsModuleClosure } from './custom-module.js';
import { pythonClassInfo, readPythonPackage } from './custom-python.js';
import { configSection } from './hf-config-section.js';
import type { ComponentInfo, CustomInfo, Host, Program, Reporter } from './program.js';
import { closest } from './suggest.js';

export { resolveModule };

/** What the command that compiles needs of custom components: `run` their TypeScript half, `export` their PyTorch half. */
export type CustomNeeds = 'run' | 'export';

export function checkCustomComponents(program: Program, host: Host, reporter: Reporter, needs?: CustomNeeds): void {
  const root = path.dirname(program.entry.path); // the program's folder: custom code lives in it
  for (const model of program.models.values()) {
    for (const c of model.components.values()) {
      const custom = c.custom;
      if (!custom) continue;
      const argRange = (name: string) => (c.decl.init.kind === 'Call' ? c.decl.init.args.find((a) => a.name?.name === name)?.value.range : undefined) ?? c.decl.init.range;
      const classRange = (c.decl.init.kind === 'Call' ? c.decl.init.args[0]?.value.range : undefined) ?? c.decl.init.range;
      if (custom.modulePath && !checkModuleHalf(c, custom, root, host, reporter, argRange('module'))) c.ok = false;
      if (custom.pythonPath && !checkPythonHalf(c, custom, root, host, reporter, argRange('python'))) c.ok = false;
      // what the command needs of a missing half, said where the component is
      if (!custom.module) {
        if (needs === 'run') reporter.report(M.CustomNeedsModule, classRange, custom.className, '`pipec run` (and eval, generate)').hint = 'add `module: "./….ts"` with the class for pipec\'s runtime, or export the program (`pipec export --target torch`) to train it in PyTorch';
        else if (!needs && c.ok) reporter.report(M.CustomHalfMissing, classRange, custom.className, 'TypeScript', '`pipec run` cannot run it; `pipec export` can');
      }
      if (!custom.python) {
        if (needs === 'export') reporter.report(M.CustomNeedsPython, classRange, custom.className).hint = `add \`python: "./…/modeling_….py"\` naming the file that defines \`${custom.className}\`, or export with --custom-as-base (its base, ${custom.base || 'the base op'}, without the class's own code)`;
        else if (!needs && c.ok) reporter.report(M.CustomHalfMissing, classRange, custom.className, 'PyTorch', '`pipec export` can write it only as its base (--custom-as-base)');
      }
      if (c.weights) custom.config = classConfig(c, host);
    }
  }
}

/** A note pointing into a code file (the import that fails). */
function at(file: CodeFile, start: number, end: number, host: Host, message: string): RelatedInfo {
  const src = new SourceFile(host.display(file.abs), file.text);
  return { message, range: src.range(start, end) };
}

function checkModuleHalf(c: ComponentInfo, custom: CustomInfo, root: string, host: Host, reporter: Reporter, range: Range): boolean {
  const written = custom.module!;
  const from = path.dirname(c.model.file.path);
  const where = confineWritten(written, from, root, host);
  if (where.kind === 'refused') {
    reporter.report(M.CustomPathOutside, range, 'custom module', written, where.why).hint = `move the module into ${host.display(root) || '.'} (the program's folder) and name it relative to the .pipe file`;
    return false;
  }
  const file = resolveModule(custom.modulePath!, host);
  if (!file) {
    reporter.report(M.CustomModuleNotFound, range, written).hint = `looked for ${host.display(custom.modulePath!)} (with .ts, .js, .mjs)`;
    return false;
  }
  // the file found (an added extension, a link) must lead inside too
  const real = confineResolved(file, root, host);
  if (real.kind === 'refused') {
    reporter.report(M.CustomPathOutside, range, 'custom module', written, real.why).hint = 'a link may point anywhere: put the module itself in the program\'s folder';
    return false;
  }
  custom.modulePath = file;
  const closure = tsModuleClosure(file, root, host);
  let ok = true;
  for (const p of closure.problems) {
    const d = p.kind === 'outside'
      ? reporter.report(M.CustomImportOutside, range, written, relTo(root, p.file.abs), p.spec, p.why)
      : reporter.report(M.CustomImportMissing, range, written, relTo(root, p.file.abs), p.spec);
    d.related = [at(p.file, p.start, p.end, host, 'imported here')];
    if (p.kind === 'outside') d.hint = 'the files a custom module imports are part of the code you trust: keep them in the program\'s folder';
    ok = false;
  }
  const exports = collectExports(file, host, new Set());
  if (!exports.has(custom.className)) {
    const d = reporter.report(M.CustomClassNotExported, range, custom.className, written);
    const near = closest(custom.className, exports);
    d.hint = near ? `did you mean \`${near}\`?` : exports.size ? `it exports ${[...exports].sort().join(', ')}` : 'it exports nothing; add `export class ' + custom.className + ' { ... }`';
    ok = false;
  }
  if (ok) custom.code = { module: relTo(root, file), files: closure.files.map((f) => f.rel).sort(), hash: contentHash(closure.files) };
  return ok;
}

function checkPythonHalf(c: ComponentInfo, custom: CustomInfo, root: string, host: Host, reporter: Reporter, range: Range): boolean {
  const written = custom.python!;
  const from = path.dirname(c.model.file.path);
  const where = confineWritten(written, from, root, host);
  if (where.kind === 'refused') {
    reporter.report(M.CustomPathOutside, range, 'python half', written, where.why).hint = `move the package into ${host.display(root) || '.'} (the program's folder) and name its modeling file relative to the .pipe file`;
    return false;
  }
  let file = custom.pythonPath!;
  if (!host.exists(file) && host.exists(`${file}.py`)) file = `${file}.py`;
  if (!host.exists(file) || host.isDirectory(file) || !file.endsWith('.py')) {
    const d = reporter.report(M.CustomPythonNotFound, range, written);
    d.hint = host.isDirectory(file) ? `name the file that defines \`${custom.className}\` in that folder, e.g. "${written.replace(/\/$/, '')}/modeling_….py"` : `looked for ${host.display(file)}; name the modeling_*.py file that defines \`${custom.className}\``;
    return false;
  }
  const real = confineResolved(file, root, host);
  if (real.kind === 'refused') {
    reporter.report(M.CustomPathOutside, range, 'python half', written, real.why).hint = 'a link may point anywhere: put the package itself in the program\'s folder';
    return false;
  }
  custom.pythonPath = file;
  const pkg = readPythonPackage(file, root, host);
  let ok = true;
  for (const p of pkg.problems) {
    const d = reporter.report(M.CustomPythonBadImport, range, written, p.why);
    d.related = [at(p.file, p.start, p.end, host, 'imported here')];
    d.hint = `the export carries the package (the folder of ${path.basename(file)}) whole, so relative imports work; each must name a module of that folder`;
    ok = false;
  }
  const info = pythonClassInfo(pkg, custom.className);
  if (!info) {
    const mine = pkg.modules.get(pkg.module);
    const classes = [...(mine?.classes.keys() ?? [])];
    const d = reporter.report(M.CustomPythonNoClass, range, custom.className, written);
    const near = closest(custom.className, classes);
    d.hint = near ? `did you mean \`${near}\`?` : classes.length ? `it defines ${classes.sort().join(', ')}` : `it defines no class; the file must define (or import) \`class ${custom.className}\``;
    return false;
  }
  if (ok)
    custom.py = {
      file: relTo(root, file), package: relTo(root, pkg.root) || '.', module: pkg.module, files: pkg.files.map((f) => f.rel).sort(), hash: contentHash(pkg.files),
      ...(info.configClass ? { configClass: info.configClass } : {}), ...(info.modelType ? { modelType: info.modelType } : {}), ...(info.moeBlock ? { moeBlock: info.moeBlock } : {}),
    };
  return ok;
}

/** Keys every config.json has that are not the class's own settings. */
const GENERIC_KEYS = new Set(['architectures', 'model_type', 'auto_map', 'transformers_version', 'torch_dtype', 'dtype']);

/**
 * The class's own settings from its checkpoint's config.json (its section of it): every key but the generic
 * ones, comments (`_…`) and nulls. The runtime and the export give them to the class with pipec's computed
 * fields on top, so the class sees what transformers would load.
 */
function classConfig(c: ComponentInfo, host: Host): Record<string, unknown> | undefined {
  const file = weightsConfigFile(c.weights!, host);
  const text = file ? host.readFile(file) : undefined;
  if (text === undefined) return undefined;
  let cfg: unknown;
  try {
    cfg = JSON.parse(text);
  } catch {
    return undefined; // the weights pass reports it
  }
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) return undefined;
  const section = configSection(cfg as Record<string, unknown>, c.role === 'llm' ? 'llm' : c.role === 'encoder' ? 'vision' : 'projector');
  if (section.path === null) return undefined;
  const own = (section.path ? (cfg as Record<string, unknown>)[section.path] : cfg) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  const noNulls = (v: unknown): unknown =>
    Array.isArray(v) ? v.filter((x) => x !== null).map(noNulls)
    : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null).map(([k, x]) => [k, noNulls(x)]))
    : v;
  for (const [k, v] of Object.entries(own)) if (!GENERIC_KEYS.has(k) && !k.startsWith('_') && v !== null) out[k] = noNulls(v);
  return Object.keys(out).length ? out : undefined;
}

/** Strip comments, string and template contents, keeping offsets roughly aligned. */
function stripNoise(src: string): { code: string; strings: string[] } {
  const strings: string[] = [];
  const code = src.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*|(["'`])((?:\\.|(?!\1)[^\\])*)\1/g, (_m, q: string | undefined, body: string | undefined) => {
    if (q) {
      strings.push(body ?? '');
      return `${q}__S${strings.length - 1}__${q}`;
    }
    return ' ';
  });
  return { code, strings };
}

export function collectExports(file: string, host: Host, seen: Set<string>): Set<string> {
  const out = new Set<string>();
  if (seen.has(file)) return out;
  seen.add(file);
  const text = host.readFile(file);
  if (text === undefined) return out;
  const { code, strings } = stripNoise(text);
  const str = (token: string) => strings[Number(/__S(\d+)__/.exec(token)?.[1] ?? -1)] ?? '';
  for (const m of code.matchAll(/\bexport\s+(?:default\s+)?(?:declare\s+)?(?:abstract\s+)?(?:class|function\*?|const|let|var|interface|type|enum)\s+([A-Za-z_$][\w$]*)/g)) out.add(m[1]);
  for (const m of code.matchAll(/\bexport\s+(type\s+)?\{([^}]*)\}\s*(?:from\s*(["']__S\d+__["']))?/g)) {
    for (const part of m[2].split(',')) {
      const names = part.trim().split(/\s+as\s+/);
      const exported = (names[1] ?? names[0]).replace(/^type\s+/, '').trim();
      if (exported) out.add(exported);
    }
  }
  for (const m of code.matchAll(/\bexport\s+\*\s+from\s*(["']__S\d+__["'])/g)) {
    const spec = str(m[1]);
    if (!spec.startsWith('.')) continue;
    const target = resolveModule(path.resolve(path.dirname(file), spec), host);
    if (target) for (const n of collectExports(target, host, seen)) out.add(n);
  }
  // CommonJS: module.exports = { X } / exports.X = ...
  for (const m of code.matchAll(/\bexports\.([A-Za-z_$][\w$]*)\s*=/g)) out.add(m[1]);
  for (const m of code.matchAll(/\bmodule\.exports\s*=\s*\{([^}]*)\}/g)) for (const part of m[1].split(',')) out.add(part.split(':')[0].trim());
  out.delete('');
  return out;
}
