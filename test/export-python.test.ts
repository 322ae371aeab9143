// The fixed Python of the exported PyTorch program, as the files it is kept in (runtime/export/python/,
// read by runtime/export/torch-lib.ts): they compile on their own (warnings as errors), pyflakes finds
// nothing but the imports marked `# noqa`, and model_lib.py's own safetensors writer and reader (the ones that run
// without the safetensors package) agree byte for byte with pipec's (runtime/weights/safetensors.ts).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PYTHON_DIR } from '../runtime/export/torch-lib.js';
import { encodeSafetensors } from '../runtime/weights/safetensors.js';
import { childEnv } from './helpers/tmp.js';
import { runPython, torch1Python, torch2Python, TORCH1_PYTHON } from './helpers/python.js';
import { unavailable } from './helpers/required.js';
import { tmpDir } from './helpers/tmp.js';
import { repo } from './paths.js';

const SOURCES = ['model_lib.py', 'train_lib.py'].map((f) => path.join(fileURLToPath(PYTHON_DIR), f));

describe('export: the Python sources (runtime/export/python)', function () {
  this.timeout(120_000);

  it('are the files torch-lib.ts reads, in the package folder', () => {
    assert.equal(path.dirname(SOURCES[0]!), repo('runtime/export/python'));
    const listed = fs.readdirSync(repo('runtime/export/python')).filter((f) => f.endsWith('.py')).sort();
    assert.deepEqual(listed, ['model_lib.py', 'train_lib.py'], 'a new .py file here is compiled and linted below: add it to SOURCES');
  });

  it('compile, warnings as errors (py_compile)', function () {
    const python = fs.existsSync(TORCH1_PYTHON) ? TORCH1_PYTHON : torch2Python()?.python; // no torch needed
    if (!python) unavailable(this, `no Python 3 (${TORCH1_PYTHON})`, 'install python3');
    const cache = tmpDir('py-cache'); // not runtime/export/python/__pycache__ (the package ships that folder)
    runPython(python, ['-W', 'error', '-m', 'py_compile', ...SOURCES], { env: { PYTHONPYCACHEPREFIX: cache } });
  });

  it('pyflakes finds nothing but the imports marked `# noqa` (DeepSpeed and numpy probed on purpose)', function () {
    const flakes = [TORCH1_PYTHON, torch2Python()?.python].find((p) => p && fs.existsSync(p) && spawnSync(p, ['-m', 'pyflakes', '--version'], { env: childEnv() }).status === 0);
    if (!flakes) unavailable(this, 'pyflakes in a Python here', 'npm run setup:torch installs it into .venv-torch');
    const r = spawnSync(flakes, ['-m', 'pyflakes', ...SOURCES], { encoding: 'utf8', env: childEnv() });
    // pyflakes has no noqa of its own: a report on a line that says `# noqa` is one the source already answers
    const lines = new Map(SOURCES.map((f) => [f, fs.readFileSync(f, 'utf8').split('\n')]));
    const reports = `${r.stdout}${r.stderr}`.split('\n').filter(Boolean);
    const left = reports.filter((l) => {
      const m = /^(.+?):(\d+):\d+:? /.exec(l);
      return !m || !lines.get(m[1]!)?.[Number(m[2]) - 1]?.includes('# noqa');
    });
    assert.deepEqual(left, [], 'pyflakes');
    assert.ok(reports.length > 0 && r.status === 1, 'the noqa imports are reported (pyflakes really ran on the sources)');
  });

  it("model_lib.py's own safetensors writer gives pipec's bytes, and its reader reads pipec's file (torch without safetensors)", function () {
    // Debian's torch 1.13 has no safetensors package, so model_lib.py's own reader and writer run.
    const py = torch1Python();
    if (!py) unavailable(this, `torch 1.x in ${TORCH1_PYTHON}`, 'apt-get install python3-torch');
    const dir = tmpDir('py-safetensors');
    const tensors = new Map([
      ['b.weight', { shape: [2, 3], data: Float32Array.from([1, -2.5, 3, 0.125, -0, 1e-7]) }],
      ['a.bias', { shape: [3], data: Float32Array.from([Math.PI, -1, 65504]) }],
    ]);
    fs.writeFileSync(path.join(dir, 'pipec.safetensors'), encodeSafetensors(tensors));
    const script = [
      'import sys, torch',
      `sys.path.insert(0, ${JSON.stringify(path.dirname(SOURCES[0]!))})`,
      'import model_lib as m',
      'assert m._st_save is None and m._st_load is None, "safetensors is installed here: the own writer would not run"',
      `d = ${JSON.stringify(dir)}`,
      'got = m.read_safetensors(d + "/pipec.safetensors")',
      'print(sorted(got), [list(got[k].shape) for k in sorted(got)], [round(float(x), 9) for k in sorted(got) for x in got[k].reshape(-1)])',
      'm.write_safetensors(d + "/python.safetensors", {"b.weight": got["b.weight"], "a.bias": got["a.bias"]})',
    ].join('\n');
    const out = runPython(py!.python, ['-c', script], { env: { PYTHONDONTWRITEBYTECODE: '1' } });
    assert.equal(out.trim(), "['a.bias', 'b.weight'] [[3], [2, 3]] [3.141592741, -1.0, 65504.0, 1.0, -2.5, 3.0, 0.125, -0.0, 1e-07]");
    assert.ok(fs.readFileSync(path.join(dir, 'python.safetensors')).equals(fs.readFileSync(path.join(dir, 'pipec.safetensors'))), 'the same bytes as pipec writes');
  });
});
