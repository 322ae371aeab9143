// The pipec command as a user runs it: a child process, its exit code, what it prints.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { validateGraph } from '../compiler/ir/validate.js';
import { readMetrics } from '../runtime/train/metrics.js';
import { pipec as pipecProcess } from './helpers/cli.js';
import { tmpDir } from './helpers/tmp.js';
import { REPO_ROOT, repo } from './paths.js';

function pipec(args: string[], cwd = REPO_ROOT) {
  const r = pipecProcess(args, { cwd });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const noStackTrace = (s: string) => assert.doesNotMatch(s, /\n\s+at .+:\d+:\d+\)?\n/, `a stack trace was printed:\n${s}`);

describe('pipec CLI', function () {
  this.timeout(60_000);
  const pipelines = fs.readdirSync(repo('pipelines')).filter((f) => f.endsWith('.pipe')).map((f) => `pipelines/${f}`);

  it('checks every shipped pipeline clean: exit 0, nothing printed', () => {
    const r = pipec(['check', ...pipelines]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.err, '');
    assert.equal(r.out, '');
  });

  it('prints path:line:col - error CODE: message, the source line and an underline; exits 1', () => {
    const r = pipec(['check', 'test/golden/cases/hidden-mismatch.pipe']);
    assert.equal(r.code, 1);
    assert.match(r.err, /^test\/golden\/cases\/hidden-mismatch\.pipe:10:8 - error PIPE4002: `vision` produces \[729, 1152\] but `proj` expects \[n, 1024\]/);
    assert.match(r.err, /\n10 {3}flow vision -> proj -> lm at "<image>"\n {10}~{14}\n/);
    assert.match(r.err, /hint: `proj.in` is 1024; it must be 1152/);
    assert.match(r.err, /1 error\n$/);
  });

  it('prints diagnostics as JSON with ranges', () => {
    const r = pipec(['check', 'test/golden/cases/unknown-constructor.pipe', '--format', 'json']);
    assert.equal(r.code, 1);
    const j = JSON.parse(r.out) as { diagnostics: { code: string; range: { start: { line: number; column: number; offset: number } }; hint?: string; fixes?: unknown[] }[] };
    assert.equal(j.diagnostics[0].code, 'PIPE2005');
    assert.deepEqual(j.diagnostics[0].range.start, { line: 8, column: 20, offset: j.diagnostics[0].range.start.offset });
    assert.equal(j.diagnostics[0].hint, 'did you mean `mlp_gelu`?');
    assert.equal(j.diagnostics[0].fixes?.length, 1);
  });

  it('exits 2 on usage errors, with a message and no stack trace', () => {
    for (const args of [[], ['check'], ['check', 'no/such.pipe'], ['frobnicate'], ['check', '--bogus', 'x.pipe'], ['compile', 'pipelines/quickstart.pipe'], ['check', 'pipelines']]) {
      const r = pipec(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.ok(r.err.length > 0);
      noStackTrace(r.err);
      // one line saying what is wrong, then the help to see (`pipec` alone prints the command list)
      if (args.length) assert.match(r.err, /^pipec: [^\n]+\nsee `pipec (\w+ )?--help`\n$/, r.err);
    }
  });

  it('never prints a stack trace for hostile input', () => {
    const dir = tmpDir('hostile');
    const inputs = ['\u0000\u0001\u0002', '{'.repeat(5000), 'model m { encoder x = vit(image: 1e400) }', 'import "std/vision"\nimport "std/vision"\n'.repeat(50), '"'.repeat(3), '\uFEFFstage s {}'];
    inputs.forEach((text, i) => {
      const f = path.join(dir, `bad${i}.pipe`);
      fs.writeFileSync(f, text);
      const r = pipec(['check', f]);
      assert.ok(r.code === 0 || r.code === 1, `${JSON.stringify(text.slice(0, 20))}: exit ${r.code}\n${r.err}`);
      noStackTrace(r.err);
    });
  });

  it('compiles to a graph that validates against the shipped schema, byte-identical twice', () => {
    const dir = tmpDir('compile');
    const a = path.join(dir, 'a.json');
    const b = path.join(dir, 'b.json');
    assert.equal(pipec(['compile', 'pipelines/quickstart.pipe', '-o', a]).code, 0);
    assert.equal(pipec(['compile', 'pipelines/quickstart.pipe', '-o', b]).code, 0);
    assert.ok(fs.readFileSync(a).equals(fs.readFileSync(b)));
    assert.deepEqual(validateGraph(JSON.parse(fs.readFileSync(a, 'utf8'))), []);
  });

  it('shows shapes at every edge, and Graphviz with --dot', () => {
    const g = pipec(['graph', 'pipelines/tanuki-8x8b-vision.pipe']);
    assert.equal(g.code, 0, g.err);
    assert.match(g.out, /vision = siglip_vit\(pixel_values \[B, 3, 384, 384\]\) -> \[B, 729, 1152\]/);
    assert.match(g.out, /proj = mlp_gelu\(vision \[B, 729, 1152\]\) -> \[B, 729, 4096\]/);
    const l = pipec(['graph', 'pipelines/llava-1.5-7b.pipe']);
    assert.match(l.out, /vision = clip_vit\(pixel_values \[B, 3, 336, 336\]\) -> \[B, 576, 1024\]/);
    const d = pipec(['graph', 'pipelines/quickstart.pipe', '--dot']);
    assert.match(d.out, /^digraph pipec \{/);
    assert.match(d.out, /"quickstart\/vision" -> "quickstart\/proj" \[label="\[B, 17, 64\]"\]/);
  });

  it('applies --config and --set overrides, located in their own sources', () => {
    const r = pipec(['check', 'pipelines/quickstart.pipe', '--set', 'stage.pretrain.max_length=1000']);
    assert.equal(r.code, 1);
    assert.match(r.err, /<--set>:1:27 - error PIPE4006: max_length 1000 exceeds the context length 128 of `lm`/);
    const ok = pipec(['check', 'pipelines/quickstart.pipe', '--set', 'stage.pretrain.optimizer.lr=2e-4']);
    assert.equal(ok.code, 0, ok.err);
  });
});

describe('pipec run GRAPH.json', function () {
  this.timeout(300_000);

  it('trains from a compiled graph as from its program: the same losses, bit for bit', () => {
    const dir = tmpDir('run-graph');
    const graph = path.join(dir, 'tiny.graph.json');
    assert.equal(pipec(['compile', 'test/runtime/tiny.pipe', '-o', graph]).code, 0);
    const losses = (input: string, out: string) => {
      const r = pipec(['run', input, '--out', path.join(dir, out), '--backend', 'wasm', '--stop-after', '6']);
      assert.equal(r.code, 0, r.err);
      return readMetrics(path.join(dir, out)).map((m) => [m.stage, m.step, m.loss]);
    };
    const fromGraph = losses(graph, 'from-graph');
    assert.equal(fromGraph.length, 6);
    assert.deepEqual(fromGraph, losses('test/runtime/tiny.pipe', 'from-program'));
  });

  it('finds what the program names relative to its .pipe file (a custom module), not to the graph file', () => {
    const dir = tmpDir('run-graph-elsewhere');
    const trains = (graph: string, cwd: string, out: string) => {
      const r = pipec(['run', graph, '--out', path.join(dir, out), '--backend', 'wasm', '--stop-after', '2', '--trust'], cwd);
      assert.equal(r.code, 0, r.err);
      assert.equal(readMetrics(path.join(dir, out)).length, 2);
    };
    // compiled in the repository, the graph names test/runtime/custom.pipe; it lies in another folder
    const relative = path.join(dir, 'relative.graph.json');
    assert.equal(pipec(['compile', 'test/runtime/custom.pipe', '-o', relative]).code, 0);
    trains(relative, REPO_ROOT, 'from-repo');
    // compiled outside it, the graph names the program by its full path: it runs from any folder
    const absolute = path.join(dir, 'absolute.graph.json');
    assert.equal(pipec(['compile', repo('test/runtime/custom.pipe'), '-o', absolute], dir).code, 0);
    trains(absolute, dir, 'from-elsewhere');
  });

  it('a file that is not a pipec graph is PIPE9029 naming it (exit 1); a missing one exits 2', () => {
    const dir = tmpDir('run-graph-bad');
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, '{"format": "x"}');
    const r = pipec(['run', bad, '--out', path.join(dir, 'run')]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, new RegExp(`error PIPE9029: "${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" is not a valid pipec graph: .*required property 'models'`));
    noStackTrace(r.err);
    assert.equal(pipec(['run', path.join(dir, 'missing.json')]).code, 2);
  });
});
