// The static parts of the exported PyTorch program (`pipec export --target torch`): the component
// implementations, the safetensors reader/writer and the trainer's machinery, as real Python files in
// runtime/export/python/ (so Python tools compile and lint them: test/export-python.test.ts). They
// mirror runtime/ops/*.ts, runtime/train/*.ts line for line; torch.ts adds what the graph decides (the
// model classes, the parameter lists, the stages). The generated files are plain, readable Python that
// needs only torch (and uses the `safetensors` package when present).
import * as fs from 'node:fs';

/** The folder of the Python sources, from dist/runtime/export/ (the package ships runtime/export/python). */
export const PYTHON_DIR = new URL('../../../runtime/export/python/', import.meta.url);

const cache = new Map<string, string>();
function read(file: string): string {
  let text = cache.get(file);
  if (text === undefined) {
    text = fs.readFileSync(new URL(file, PYTHON_DIR), 'utf8');
    cache.set(file, text);
  }
  return text;
}

/** model.py's fixed part: the components and the weight files' reader and writer. */
export const modelLib = (): string => read('model_lib.py');

// The one place train.py differs by program: this line of train_lib.py (a valid, empty STAGES, so the
// file compiles and lints on its own) is replaced by the program's stage table.
const STAGES_LINE = /^STAGES = \[\] {2}# @STAGES@ .*\n/m;

/** train.py's fixed part with `stageBlock` (the program's STAGES, ending in a newline) in place of the marker line. */
export function trainLib(stageBlock: string): string {
  const text = read('train_lib.py');
  const at = text.match(new RegExp(STAGES_LINE.source, 'gm'));
  if (at?.length !== 1) throw new Error(`runtime/export/python/train_lib.py must have exactly one "STAGES = []  # @STAGES@" line, found ${at?.length ?? 0}`);
  return text.replace(STAGES_LINE, () => stageBlock);
}
