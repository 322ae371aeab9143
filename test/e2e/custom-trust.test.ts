// Trust in custom code belongs to the person running pipec (runtime/trust.ts). The module here is
// test/runtime/custom.pipe's class with a top-level statement in the file it imports that writes a marker
// file: the marker exists exactly when pipec ran the module's code.
//  - check, compile, graph, estimate, fmt, export, prepare and the language server never run it; run,
//    eval and generate run it only when the user trusted those exact files (`pipec trust`, `--trust`);
//  - a trust recorded for one content hash is refused once a file changes;
//  - module paths that leave the program's folder (`..`, absolute, a link out) are located errors;
//  - a graph.json whose module does not hash as it recorded is refused, and so is one edited to name a
//    path outside, or one without a hash.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { isTrusted, trustDir } from '../../runtime/trust.js';
import { pipec } from '../helpers/cli.js';
import { LspClient } from '../helpers/lsp-client.js';
import { solid, writePng } from '../helpers/png.js';
import { tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Program {
  dir: string;
  pipe: string;
  marker: string;
  /** The imported file of the module (the one with the marker statement). */
  helper: string;
}

/** test/runtime/custom.pipe and its two-file module in a folder of their own, the marker in the imported file. */
function program(name: string, edit: (text: string) => string = (t) => t): Program {
  const dir = tmpDir(name);
  fs.cpSync(repo('test/runtime/custom-llm'), path.join(dir, 'custom-llm'), { recursive: true });
  const marker = path.join(dir, 'RAN');
  const helper = path.join(dir, 'custom-llm', 'scaling.ts');
  fs.appendFileSync(helper, `\nimport * as markerFs from 'node:fs';\nmarkerFs.writeFileSync(${JSON.stringify(marker)}, 'ran');\n`);
  const pipe = path.join(dir, 'custom.pipe');
  fs.writeFileSync(pipe, edit(fs.readFileSync(repo('test/runtime/custom.pipe'), 'utf8').replace('steps: 12', 'steps: 2')));
  return { dir, pipe, marker, helper };
}

const ran = (p: Program) => fs.existsSync(p.marker);

describe('custom code runs only when the person running pipec trusts it', function () {
  this.timeout(300_000);

  it('the tests keep their trust records in a folder of their own', () => {
    assert.equal(trustDir(), path.resolve(process.env.PIPEC_TRUST_DIR!));
    assert.ok(!trustDir().startsWith(path.join(process.env.HOME ?? '/nonexistent', '.config')));
    // without the variable: $XDG_CONFIG_HOME/pipec/trust, else ~/.config/pipec/trust
    assert.equal(trustDir({ XDG_CONFIG_HOME: '/cfg' }), '/cfg/pipec/trust');
    assert.match(trustDir({}), /\.config\/pipec\/trust$/);
  });

  it('check, compile, graph, estimate, fmt, export, prepare and eval of an untrusted program never run the module; run and eval refuse it, naming files, hash and commands', () => {
    const p = program('never-runs');
    const graph = path.join(p.dir, 'g.json');
    const commands: [string[], number][] = [
      [['check', p.pipe], 0], [['check', '-v', '--format', 'json', p.pipe], 0], [['compile', p.pipe, '-o', graph], 0], [['graph', p.pipe], 0],
      [['estimate', p.pipe], 0], [['fmt', '--check', p.pipe], 0], [['export', p.pipe, '--target', 'torch', '--custom-as-base', '-o', path.join(p.dir, 'torch')], 0],
      [['prepare', p.pipe, '--init', '-o', path.join(p.dir, 'data')], 0],
    ];
    for (const [args, code] of commands) {
      const r = pipec(args);
      assert.equal(r.status, code, `pipec ${args.join(' ')}: ${r.stderr}`);
      assert.ok(!ran(p), `pipec ${args[0]} ran the module`);
    }
    for (const args of [['run', p.pipe, '--out', path.join(p.dir, 'run'), '--backend', 'wasm'], ['eval', p.pipe, '--backend', 'wasm'], ['run', graph, '--out', path.join(p.dir, 'run2'), '--backend', 'wasm']]) {
      const r = pipec(args);
      assert.equal(r.status, 1, `pipec ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /error PIPE9027: custom module "\.\/custom-llm\/modeling_scaled\.ts" \(ScaledLlamaForCausalLM\) is not trusted by you; pipec will not run it/);
      assert.match(r.stderr, /it would run custom-llm\/modeling_scaled\.ts \(sha256 [0-9a-f]{16}\), custom-llm\/scaling\.ts \(sha256 [0-9a-f]{16}\); content hash sha256:[0-9a-f]{64}/);
      assert.match(r.stderr, args[1]!.endsWith('.pipe') ? new RegExp(`\`pipec trust ${esc(p.pipe)}\``) : /`pipec trust PROGRAM\.pipe/);
      assert.match(r.stderr, /or add --trust to trust them for this run only/);
      assert.ok(!ran(p), `pipec ${args[0]} ran the untrusted module`);
    }
    assert.ok(!fs.existsSync(path.join(p.dir, 'run')), 'an untrusted run stops before it makes its run folder');
  });

  it('the language server (diagnostics, hover, completion) never runs the module', async () => {
    const p = program('lsp-never-runs');
    const text = fs.readFileSync(p.pipe, 'utf8');
    const uri = pathToFileURL(p.pipe).href;
    const client = new LspClient();
    await client.initialize(pathToFileURL(p.dir).href);
    const diags = client.nextDiagnostics(uri);
    client.notify('textDocument/didOpen', { textDocument: { uri, languageId: 'pipe', version: 1, text } });
    assert.deepEqual((await diags).filter((d) => d['severity'] === 1), []);
    const line = text.split('\n').findIndex((l) => l.includes('custom('));
    await client.request('textDocument/hover', { textDocument: { uri }, position: { line, character: text.split('\n')[line]!.indexOf('custom(') + 2 } });
    await client.request('textDocument/completion', { textDocument: { uri }, position: { line, character: 2 } });
    assert.equal(await client.shutdown(), 0, client.stderr);
    assert.ok(!ran(p), 'the language server ran the module');
  });

  it('pipec trust records the exact files: the run goes ahead; an edit to any file revokes it until trusted again; --revoke removes it', () => {
    const p = program('trust-hash');
    const run = (out: string) => pipec(['run', p.pipe, '--out', path.join(p.dir, out), '--backend', 'wasm']);
    const t = pipec(['trust', p.pipe]);
    assert.equal(t.status, 0, t.stderr);
    const hash = /content (sha256:[0-9a-f]{64})/.exec(t.stdout)?.[1];
    assert.ok(hash && isTrusted(hash), t.stdout);
    assert.match(t.stdout, /trusted: ScaledLlamaForCausalLM \(\.\/custom-llm\/modeling_scaled\.ts\)[^]*custom-llm\/modeling_scaled\.ts\n\s+custom-llm\/scaling\.ts\n\s+recorded in /);
    assert.ok(!ran(p), 'pipec trust ran the module');
    let r = run('a');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(ran(p), 'the trusted module ran');
    fs.rmSync(p.marker);
    // a change in the imported file, not the one `module:` names
    fs.appendFileSync(p.helper, '\n// edited\n');
    r = run('b');
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /PIPE9027/);
    const now = /content hash (sha256:[0-9a-f]{64})/.exec(r.stderr)?.[1];
    assert.ok(now && now !== hash, r.stderr);
    assert.ok(!ran(p), 'the changed module ran on the old trust');
    assert.equal(pipec(['trust', p.pipe]).status, 0);
    r = run('c');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(ran(p));
    fs.rmSync(p.marker);
    const v = pipec(['trust', '--revoke', p.pipe]);
    assert.match(v.stdout, /revoked: ScaledLlamaForCausalLM/);
    assert.equal(run('d').status, 1);
    assert.ok(!ran(p));
  });

  it('--trust runs the module for this run only and records nothing', () => {
    const p = program('trust-once');
    const before = fs.existsSync(trustDir()) ? fs.readdirSync(trustDir()).length : 0;
    const r = pipec(['run', p.pipe, '--out', path.join(p.dir, 'run'), '--backend', 'wasm', '--trust']);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(ran(p));
    assert.equal(fs.existsSync(trustDir()) ? fs.readdirSync(trustDir()).length : 0, before);
    fs.rmSync(p.marker);
    // the finished run's generate and eval need trust again (generate asked about an image: the model
    // trained on images only, so a prompt without one is a usage error before trust is asked)
    const image = path.join(p.dir, 'red.png');
    writePng(image, solid(32, 32, [220, 30, 30]));
    for (const args of [['generate', path.join(p.dir, 'run'), '--prompt', 'what colour is the shape ?', '--image', image], ['eval', path.join(p.dir, 'run'), '--backend', 'wasm']]) {
      const g = pipec(args);
      assert.equal(g.status, 1, `${args[0]}: ${g.stderr}`);
      assert.match(g.stderr, /PIPE9027/);
      assert.ok(!ran(p), `${args[0]} ran the module`);
      assert.equal(pipec([...args, '--trust']).status, 0, `${args[0]} --trust`);
      assert.ok(ran(p));
      fs.rmSync(p.marker);
    }
  });

  it('a module path that leaves the program\'s folder is a located error (.., absolute, a link out, an import out); nothing runs', () => {
    const outside = tmpDir('outside');
    fs.cpSync(repo('test/runtime/custom-llm'), path.join(outside, 'custom-llm'), { recursive: true });
    const cases: [string, (p: Program) => string, RegExp][] = [
      ['dotdot', (p) => path.relative(p.dir, path.join(outside, 'custom-llm', 'modeling_scaled.ts')), /PIPE6033: custom module "[^"]+" climbs out of the program's folder with "\.\."/],
      ['absolute', () => path.join(outside, 'custom-llm', 'modeling_scaled.ts'), /PIPE6033: custom module "[^"]+" is an absolute path; custom code must live in the program's folder/],
      ['link', (p) => {
        fs.symlinkSync(path.join(outside, 'custom-llm', 'modeling_scaled.ts'), path.join(p.dir, 'linked.mjs'));
        return './linked.mjs';
      }, /PIPE6033: custom module "\.\/linked\.mjs" leads outside the program's folder through a symbolic link/],
      ['import-out', (p) => {
        fs.writeFileSync(path.join(p.dir, 'custom-llm', 'scaling.ts'), `export * from '${path.relative(path.join(p.dir, 'custom-llm'), path.join(outside, 'custom-llm', 'scaling.js'))}';\n`);
        return './custom-llm/modeling_scaled.ts';
      }, /PIPE6034: custom module "\.\/custom-llm\/modeling_scaled\.ts": custom-llm\/scaling\.ts imports "[^"]+", which climbs|PIPE6034: custom module "\.\/custom-llm\/modeling_scaled\.ts": custom-llm\/scaling\.ts imports "[^"]+", which is outside the program's folder/],
    ];
    for (const [name, modulePath, message] of cases) {
      const p = program(`escape-${name}`);
      const written = modulePath(p);
      fs.writeFileSync(p.pipe, fs.readFileSync(p.pipe, 'utf8').replace('"./custom-llm/modeling_scaled.ts"', JSON.stringify(written)));
      const line = fs.readFileSync(p.pipe, 'utf8').split('\n').findIndex((l) => l.includes('custom(')) + 1;
      for (const args of [['check', p.pipe], ['run', p.pipe, '--out', path.join(p.dir, 'run'), '--backend', 'wasm', '--trust']]) {
        const r = pipec(args);
        assert.equal(r.status, 1, `${name} ${args[0]}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`custom\\.pipe:${line}:\\d+ - error (${message.source})`), `${name} ${args[0]}: ${r.stderr}`);
      }
      assert.ok(!ran(p), `${name}: the module ran`);
    }
  });

  it('run GRAPH.json refuses a module whose files changed since compiling, a path edited to lead out, a graph without hash; a file swapped for a link out is caught before import', () => {
    const p = program('graph-hash');
    const graph = path.join(p.dir, 'g.json');
    assert.equal(pipec(['compile', p.pipe, '-o', graph]).status, 0);
    const runGraph = (file: string) => pipec(['run', file, '--out', path.join(p.dir, `run-${path.basename(file)}`), '--backend', 'wasm', '--trust']);
    const edited = (name: string, edit: (custom: Record<string, unknown>) => void) => {
      const g = JSON.parse(fs.readFileSync(graph, 'utf8')) as { models: { components: { custom?: Record<string, unknown> }[] }[] };
      edit(g.models[0]!.components.find((c) => c.custom)!.custom!);
      const file = path.join(p.dir, name);
      fs.writeFileSync(file, JSON.stringify(g));
      return file;
    };
    // a recorded hash that is not the files' (as if the graph came with other code)
    let r = runGraph(edited('other-hash.json', (c) => (c['hash'] = `sha256:${'0'.repeat(64)}`)));
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /error PIPE9100: custom module "\.\/custom-llm\/modeling_scaled\.ts" changed since the graph was compiled \(graph 0000000000000000, files now [0-9a-f]{16}\)/);
    r = runGraph(edited('no-hash.json', (c) => delete c['hash']));
    assert.match(r.stderr, /error PIPE9102: the graph records no content hash for custom module/);
    r = runGraph(edited('outside.json', (c) => (c['module'] = '../elsewhere/modeling_scaled.ts')));
    assert.match(r.stderr, /error PIPE9101: custom module "\.\.\/elsewhere\/modeling_scaled\.ts" climbs out of the program's folder/);
    assert.ok(!ran(p), 'a refused graph ran the module');
    // the files change after compiling: even with --trust, the graph's code is not what is there now
    const original = fs.readFileSync(p.helper, 'utf8');
    fs.appendFileSync(p.helper, '\n// changed after compile\n');
    r = runGraph(graph);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /error PIPE9100: .* changed since the graph was compiled/);
    assert.ok(!ran(p));
    // the same text, but the file is now a link to a copy outside the folder: the hash matches, the path does not
    const away = path.join(tmpDir('away'), 'scaling.ts');
    fs.writeFileSync(away, original);
    fs.rmSync(p.helper);
    fs.symlinkSync(away, p.helper);
    r = runGraph(graph);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /error PIPE9101: custom module "\.\/custom-llm\/modeling_scaled\.ts" imports "\.\/scaling\.js" \(in custom-llm\/modeling_scaled\.ts\), which leads outside the program's folder through a symbolic link/);
    assert.ok(!ran(p), 'the module was imported through a link out');
    // put back, the graph runs
    fs.rmSync(p.helper);
    fs.writeFileSync(p.helper, original);
    r = runGraph(graph);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(ran(p));
  });
});
