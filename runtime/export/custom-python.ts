// The PyTorch half of a custom component in an export: the user's package (the modeling file and what it
// imports relatively, as the checker found them: graph `custom.python.files`) is read from the program's
// folder, checked against the content hash the graph recorded, and carried beside model.py as a package
// of its own, `custom_<component>/`. model.py imports it as `custom_lm.modeling_tanuki`, so the user's
// `from .configuration_tanuki import TanukiConfig` resolves inside that package: the relative imports
// that broke in the seed story ("attempted relative import with no known parent package") work as they
// do under transformers' remote code.
import * as path from 'node:path';
import { confineResolved, contentHash, shortHash, type CodeFile } from '../../compiler/check/code-files.js';
import type { ComponentDef, Graph } from '../../compiler/ir/graph.js';
import { M, runtimeError } from '../errors.js';
import { diskFs } from '../trust.js';
import { ExportError } from './export-error.js';

/** Whether the export carries the component's own PyTorch class (it has one, and --custom-as-base was not asked for). */
export function exportsPython(c: ComponentDef, o: { customAsBase?: boolean }): boolean {
  return !!c.custom?.python && !o.customAsBase;
}

/** The package the component's class is carried in: `custom_<component>` (component names are identifiers). */
export function pythonPackageName(c: ComponentDef): string {
  return `custom_${c.name}`;
}

/** Path of a package file relative to its package folder (`modeling_tanuki.py`, `sub/x.py`). */
export function inPackage(c: ComponentDef, rel: string): string {
  const pkg = c.custom!.python!.package;
  return pkg === '.' ? rel : path.posix.relative(pkg, rel);
}

/**
 * One component's package files as they are now, read from the program's folder `root`: each file inside
 * the folder (links followed; PIPE9101 otherwise), with the hash they have now (the caller compares it
 * with the graph's `python.hash`). `unreadable` names the first file that cannot be read.
 */
export function readPythonPackage(c: ComponentDef, root: string): { files: CodeFile[]; hash: string; unreadable?: string } {
  const files: CodeFile[] = [];
  for (const rel of c.custom!.python!.files) {
    const abs = path.resolve(root, rel);
    const v = confineResolved(abs, root, diskFs);
    if (v.kind === 'refused') throw runtimeError(M.CustomPathOutsideAtRun, [rel, v.why]);
    const text = diskFs.readFile(abs);
    if (text === undefined) return { files, hash: '', unreadable: rel };
    files.push({ abs, rel, text });
  }
  return { files, hash: contentHash(files) };
}

/**
 * Every carried component's package files, read from the program's folder `o.baseDir` and checked: each
 * file inside the folder (links followed) and the whole package hashing as the graph recorded
 * (PIPE9105 otherwise). Keyed by component name.
 */
export function readPythonHalves(g: Graph, o: { customAsBase?: boolean; baseDir?: string }): Map<string, CodeFile[]> {
  const out = new Map<string, CodeFile[]>();
  for (const m of g.models)
    for (const c of m.components) {
      if (!exportsPython(c, o) || out.has(c.name)) continue;
      const py = c.custom!.python!;
      if (!o.baseDir) throw new ExportError(`component "${c.name}" carries its PyTorch class (${py.file}); the export needs the program's folder to read it (baseDir)`);
      const { files, hash, unreadable } = readPythonPackage(c, path.resolve(o.baseDir));
      if (unreadable) throw new ExportError(`python half of "${c.name}": ${unreadable} cannot be read`);
      if (hash !== py.hash) throw runtimeError(M.PythonCodeChanged, [py.file, shortHash(py.hash), shortHash(hash)], { file: py.file }, 'export from the .pipe program again: it is checked and read in one go');
      out.set(c.name, files);
    }
  return out;
}

/** The carried packages as export files: `custom_<component>/<file>`, with an `__init__.py` when the user's package has none. */
export function customPackageFiles(g: Graph, o: { customAsBase?: boolean }, halves: Map<string, CodeFile[]>): [string, string][] {
  const out: [string, string][] = [];
  const done = new Set<string>();
  for (const m of g.models)
    for (const c of m.components) {
      const files = halves.get(c.name);
      if (!files || !exportsPython(c, o) || done.has(c.name)) continue;
      done.add(c.name);
      const pkg = pythonPackageName(c);
      const names = files.map((f) => inPackage(c, f.rel));
      for (let i = 0; i < files.length; i++) out.push([`${pkg}/${names[i]}`, files[i]!.text]);
      if (!names.includes('__init__.py'))
        out.push([`${pkg}/__init__.py`, `# The package of ${c.custom!.class} (component ${c.name}), carried by \`pipec export\` from ${c.custom!.python!.package}/ so that its relative imports work.\n`]);
    }
  return out.sort((a, b) => (a[0] < b[0] ? -1 : 1));
}
