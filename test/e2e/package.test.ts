// The package as a library, as another project gets it: `npm pack`, install the tarball in a fresh
// folder, then `import('pipec')` there compiles a program, trains it briefly, opens the run and computes
// the loss of a batch (the same number this process computes from the same run folder), `pipec/compiler`
// resolves, and a TypeScript consumer type-checks against the shipped declarations (docs/api.md).
// The install is `npm install --prefer-offline` (dependencies from npm's cache, else the npm registry);
// where neither has them it says so and, outside CI, installs the tarball's files with the dependencies
// linked from this repository's node_modules (what a file: dependency amounts to); in CI that fails.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../../runtime/backend/backends.js';
import { collate } from '../../runtime/data/batch.js';
import { imageShapeOf } from '../../runtime/data/datasets.js';
import { evaluateBatch, loadRunModel, openRun, runSamples } from '../../runtime/train/open-run.js';
import { REQUIRE_ALL } from '../helpers/required.js';
import { tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

function run(cmd: string, args: string[], cwd: string, timeout = 300_000) {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, NO_COLOR: '1', npm_config_update_notifier: 'false' } });
}

/** The consumer's script: what docs/api.md shows, end to end. */
const CONSUMER = `
const m = await import('pipec');
const c = await import('pipec/compiler');
const r = m.compile({ file: 'tiny.pipe', sets: ['stage.align.steps=2', 'stage.finetune.steps=1'] });
if (m.hasErrors(r.diagnostics)) throw new Error(m.renderAll(r.diagnostics, r.sources));
await m.initBackend('cpu');
const summary = await m.runProgram({ graph: r.graph, baseDir: '.', runDir: 'run', backend: 'cpu', evaluate: false, out: new m.Progress({ write: () => true }) });
const opened = m.openRun('run');
const model = await m.loadRunModel(opened);
const data = m.runSamples(opened);
const batch = m.collate(data.train.slice(0, 4), opened.tokenizer.padId ?? 0, m.imageShapeOf(opened.model));
const ev = m.evaluateBatch(model.runner, batch);
model.dispose();
const torch = m.exportTorch(r.graph);
console.log(JSON.stringify({ sameCompile: m.compile === c.compile, steps: summary.stages.map((s) => s.steps), loss: ev.loss, lmLoss: ev.lmLoss, shape: ev.shape, exports: Object.keys(m).length, modelPy: torch.get('model.py'), trainPy: torch.get('train.py') }));
`;

const TYPED = `
import { compile, evaluateBatch, hasErrors, openRun, type BatchEvaluation, type CompileResult, type OpenedRun } from 'pipec';
import { compile as compileOnly, type Graph } from 'pipec/compiler';
const r: CompileResult = compile({ file: 'tiny.pipe' });
const g: Graph | undefined = compileOnly({ file: 'tiny.pipe' }).graph;
const run: OpenedRun = openRun('run');
const f: (typeof evaluateBatch) extends (...a: never[]) => BatchEvaluation ? true : false = true;
console.log(hasErrors(r.diagnostics), g?.models.length, run.model.name, f);
`;

describe('the package as a library (npm pack, install, import)', function () {
  this.timeout(10 * 60_000);
  let work: string, consumer: string;

  before(() => {
    work = tmpDir('package');
    consumer = path.join(work, 'consumer');
    fs.mkdirSync(consumer);
  });

  it('npm pack ships the entry points and their declarations, not the tests', () => {
    // --ignore-scripts: dist/ is already built by the test run (prepare would rebuild it)
    const r = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work, repo()], work);
    assert.equal(r.status, 0, r.stderr);
    const [info] = JSON.parse(r.stdout) as { filename: string; files: { path: string }[] }[];
    const files = new Set(info!.files.map((f) => f.path));
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/compiler/index.js', 'dist/compiler/index.d.ts', 'bin/pipec.js', 'stdlib/vision.pipe', 'schema/graph.schema.json', 'docs/api.md', 'runtime/train/dashboard/page.js', 'runtime/export/python/model_lib.py', 'runtime/export/python/train_lib.py'])
      assert.ok(files.has(f), `${f} is in the package`);
    assert.ok(![...files].some((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/')), 'no tests or benchmarks');
    const pkg = JSON.parse(fs.readFileSync(repo('package.json'), 'utf8')) as { exports: Record<string, string | Record<string, string>> };
    for (const target of Object.values(pkg.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t))))
      assert.ok(files.has(target.replace(/^\.\//, '')), `exports target ${target} is in the package`);
    fs.renameSync(path.join(work, info!.filename), path.join(work, 'pipec.tgz'));
  });

  it('installs in another folder; import(\'pipec\') compiles, trains, opens the run and evaluates a batch', async () => {
    fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    fs.copyFileSync(repo('test/runtime/tiny.pipe'), path.join(consumer, 'tiny.pipe'));
    const tgz = path.join(work, 'pipec.tgz');
    const npm = run('npm', ['install', '--prefer-offline', '--ignore-scripts', '--omit=optional', '--no-audit', '--no-fund', tgz], consumer, 300_000);
    if (npm.status !== 0) {
      const why = /ENOTCACHED[^\n]*|request to \S+ failed/.exec(npm.stderr)?.[0] ?? npm.stderr.trim().split('\n')[0];
      // CI reaches the npm registry: there a failed install is the package's fault, not the machine's
      if (REQUIRE_ALL) assert.fail(`npm install of the packed tarball failed: ${why}`);
      console.log(`      npm install could not install the dependencies here (${why}); installing the tarball with its dependencies linked from this repository`);
      const dir = path.join(consumer, 'node_modules', 'pipec');
      fs.mkdirSync(dir, { recursive: true });
      const tar = run('tar', ['xzf', tgz, '-C', dir, '--strip-components=1'], consumer);
      assert.equal(tar.status, 0, tar.stderr);
      const deps = Object.keys((JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies);
      for (const d of deps) {
        fs.mkdirSync(path.dirname(path.join(consumer, 'node_modules', d)), { recursive: true });
        fs.symlinkSync(fs.realpathSync(repo('node_modules', d)), path.join(consumer, 'node_modules', d), 'dir');
      }
    } else console.log('      installed with npm install (the npm cache first, then the registry)');
    assert.ok(!fs.lstatSync(path.join(consumer, 'node_modules', 'pipec')).isSymbolicLink(), 'the package is a copy of the tarball, not a link to the repository');

    const r = run(process.execPath, ['--input-type=module', '-e', CONSUMER], consumer);
    assert.equal(r.status, 0, r.stderr.slice(-3000));
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as { sameCompile: boolean; steps: number[]; loss: number; lmLoss: number; shape: number[]; exports: number; modelPy: string; trainPy: string };
    assert.equal(got.sameCompile, true, 'pipec and pipec/compiler export the same compile');
    // the exported PyTorch program, its fixed part read from the package's runtime/export/python
    assert.match(got.modelPy, /^def write_safetensors\(path, tensors, metadata=None\):$/m);
    assert.match(got.trainPy, /^STAGES = \[\n {4}\{\n {8}"name": "align",$/m);
    assert.doesNotMatch(got.trainPy, /@STAGES@/);
    assert.deepEqual(got.steps, [2, 1]);
    assert.ok(Number.isFinite(got.loss) && got.loss > 0);
    // the run's dashboard, made from the package's own page files and its uplot dependency
    assert.match(fs.readFileSync(path.join(consumer, 'run', 'dashboard.html'), 'utf8'), /var uPlot\s*=[\s\S]*PipecDashboard/);

    // the same run folder, evaluated here through the repository's own build: the same loss
    await initBackend('cpu');
    const opened = openRun(path.join(consumer, 'run'));
    const model = await loadRunModel(opened);
    const data = runSamples(opened);
    const ev = evaluateBatch(model.runner, collate(data.train.slice(0, 4), opened.tokenizer.padId ?? 0, imageShapeOf(opened.model)));
    model.dispose();
    assert.equal(got.loss, ev.loss);
    assert.deepEqual(got.shape, ev.shape);

    // the plain form the issue names works from that folder too
    const plain = run(process.execPath, ['-e', "import('pipec').then((m) => console.log(typeof m.compile, typeof m.exportHf))"], consumer);
    assert.equal(plain.stdout.trim(), 'function function', plain.stderr);
  });

  it('a TypeScript consumer type-checks against the shipped declarations', () => {
    fs.writeFileSync(path.join(consumer, 'typed.ts'), TYPED);
    const tsc = repo('node_modules', 'typescript', 'bin', 'tsc');
    const r = run(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--skipLibCheck',
      '--types', 'node', '--typeRoots', repo('node_modules', '@types'), 'typed.ts'], consumer);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});
