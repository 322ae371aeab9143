// The PyTorch half of a custom class in pipec's own run checkpoints. A class with a Python half gets a
// config.json whose `auto_map` names its modeling/configuration files (weights/hf-config.ts); the files
// themselves are copied beside it, so `AutoModelForCausalLM.from_pretrained(RUN/checkpoints/NAME/lm,
// trust_remote_code=True)` loads the trained class. They are exactly the files the graph records
// (`custom.python.files`), read once before the run writes anything and checked against the graph's hash:
// every checkpoint of the run carries the same bytes, whatever happens to the program's folder meanwhile.
import * as path from 'node:path';
import { shortHash } from '../../compiler/check/code-files.js';
import type { Graph } from '../../compiler/ir/graph.js';
import { M, runtimeError } from '../errors.js';
import { inPackage, readPythonPackage } from '../export/custom-python.js';

/** A file to write beside a component's weights: its path inside the component folder, '/'-separated. */
export interface PackageFile {
  name: string;
  text: string;
}

/** Each component's Python package files, by component name; PIPE9106 when they are not what the graph recorded. */
export function runPythonPackages(g: Graph, baseDir: string): Map<string, PackageFile[]> {
  const out = new Map<string, PackageFile[]>();
  for (const m of g.models)
    for (const c of m.components) {
      const py = c.custom?.python;
      if (!py || out.has(c.name)) continue;
      const { files, hash, unreadable } = readPythonPackage(c, path.resolve(baseDir));
      const why = unreadable ? `cannot be read (${unreadable})` : hash !== py.hash ? `changed since the graph was compiled (graph ${shortHash(py.hash)}, files now ${shortHash(hash)})` : undefined;
      if (why) throw runtimeError(M.PythonCodeChangedAtRun, [py.file, why], { file: path.resolve(baseDir, py.file) }, 'run the .pipe program again (it is checked and read in one go), or restore the files the graph was compiled from');
      out.set(c.name, files.map((f) => ({ name: inPackage(c, f.rel), text: f.text })));
    }
  return out;
}
