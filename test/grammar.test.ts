// The VS Code extension's TextMate grammar (editors/vscode): the fixtures in test/grammar/*.test.pipe run
// through vscode-tmgrammar-test (the vscode-textmate engine VS Code uses), every regular expression of the
// grammar compiles with Oniguruma, and the extension manifest points at the grammar. All offline: the
// Oniguruma wasm ships inside the vscode-oniguruma package.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { tmpDir } from './helpers/tmp.js';
import { REPO_ROOT, repo } from './paths.js';

const GRAMMAR = 'editors/vscode/syntaxes/pipe.tmLanguage.json';
const FIXTURES = 'test/grammar/*.test.pipe';

const req = createRequire(import.meta.url);
const runnerPackage = req.resolve('vscode-tmgrammar-test/package.json', { paths: [REPO_ROOT] });
const runnerBin = (() => {
  const bin = (JSON.parse(fs.readFileSync(runnerPackage, 'utf8')) as { bin: Record<string, string> }).bin;
  return path.join(path.dirname(runnerPackage), bin['vscode-tmgrammar-test']);
})();

/** Runs the fixture runner from the repository root; its exit code and everything it printed. */
function runFixtures(...patterns: string[]) {
  const r = spawnSync(process.execPath, [runnerBin, '--grammar', GRAMMAR, ...patterns], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
    timeout: 50_000,
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}`, error: r.error };
}

interface Rule {
  name?: string;
  include?: string;
  match?: string;
  begin?: string;
  end?: string;
  while?: string;
  patterns?: Rule[];
  captures?: Record<string, Rule>;
  beginCaptures?: Record<string, Rule>;
  endCaptures?: Record<string, Rule>;
  repository?: Record<string, Rule>;
}
interface Grammar extends Rule {
  scopeName: string;
  fileTypes?: string[];
}

const grammar = (): Grammar => JSON.parse(fs.readFileSync(repo(GRAMMAR), 'utf8')) as Grammar;

/** Every rule of the grammar, with where it sits (for messages). */
function* rules(rule: Rule, at: string): Generator<[Rule, string]> {
  yield [rule, at];
  for (const [i, r] of (rule.patterns ?? []).entries()) yield* rules(r, `${at}.patterns[${i}]`);
  for (const key of ['captures', 'beginCaptures', 'endCaptures', 'repository'] as const) {
    for (const [k, r] of Object.entries(rule[key] ?? {})) yield* rules(r, `${at}.${key}.${k}`);
  }
}

/** The minimal vscode-oniguruma API used here (the copy the fixture runner itself loads). */
interface Onig {
  loadWASM(data: ArrayBuffer): Promise<void>;
  OnigScanner: new (patterns: string[]) => { findNextMatchSync(s: string, start: number): unknown; dispose(): void };
}

describe('TextMate grammar (editors/vscode)', function () {
  this.timeout(60_000);

  it('is JSON with scopeName source.pipe, fileTypes [pipe] and resolvable includes', () => {
    const g = grammar();
    assert.equal(g.scopeName, 'source.pipe');
    assert.deepEqual(g.fileTypes, ['pipe']);
    assert.ok(g.patterns && g.patterns.length > 0, 'no top-level patterns');
    const repository = g.repository ?? {};
    for (const [r, at] of rules(g, '$')) {
      if (r.include === undefined) continue;
      if (r.include === '$self' || r.include === '$base') continue;
      assert.ok(r.include.startsWith('#'), `${at}: include ${r.include} is not a repository reference`);
      assert.ok(r.include.slice(1) in repository, `${at}: include ${r.include} names no repository entry`);
      if (r.begin !== undefined) assert.ok(r.end !== undefined || r.while !== undefined, `${at}: begin without end`);
    }
  });

  it('compiles every regular expression with Oniguruma', async () => {
    const onig = req(req.resolve('vscode-oniguruma', { paths: [path.dirname(runnerPackage)] })) as Onig;
    const wasm = fs.readFileSync(path.join(path.dirname(req.resolve('vscode-oniguruma', { paths: [path.dirname(runnerPackage)] })), 'onig.wasm'));
    await onig.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength) as ArrayBuffer);
    // Some vscode-oniguruma versions do not throw on a bad pattern but leave a scanner that never matches:
    // pairing each pattern with a probe that always matches catches both behaviours.
    const probe = '\u0001pipe-grammar-probe\u0001';
    const compiles = (pattern: string): boolean => {
      try {
        const scanner = new onig.OnigScanner([pattern, probe]);
        const m = scanner.findNextMatchSync(probe, 0);
        scanner.dispose();
        return m !== null;
      } catch {
        return false;
      }
    };
    assert.equal(compiles('a(b'), false, 'the check accepts an invalid pattern: it would prove nothing');
    assert.equal(compiles('(?<![A-Za-z0-9_])\\d+'), true);
    let count = 0;
    for (const [r, at] of rules(grammar(), '$')) {
      for (const key of ['match', 'begin', 'end', 'while'] as const) {
        const pattern = r[key];
        if (pattern === undefined) continue;
        count++;
        assert.ok(compiles(pattern), `${at}.${key} does not compile: ${pattern}`);
      }
    }
    assert.ok(count > 30, `only ${count} patterns found`);
  });

  it('passes the fixtures in test/grammar/*.test.pipe (vscode-tmgrammar-test)', () => {
    const fixtures = fs.readdirSync(repo('test/grammar')).filter((f) => f.endsWith('.test.pipe'));
    assert.ok(fixtures.length >= 3, `fixtures: ${fixtures.join(', ')}`);
    const r = runFixtures(FIXTURES);
    assert.equal(r.error, undefined, String(r.error));
    assert.equal(r.code, 0, r.out);
    for (const f of fixtures) assert.match(r.out, new RegExp(`${f.replace(/\./g, '\\.')} run successful`), r.out);
  });

  it('the fixture runner fails on a wrong scope (the fixtures are not vacuous)', () => {
    const dir = tmpDir('grammar');
    try {
      const file = path.join(dir, 'wrong.test.pipe');
      fs.writeFileSync(
        file,
        [
          '// SYNTAX TEST "source.pipe" "a deliberately wrong assertion"',
          '  devices: 8 x gpu(memory: 80GB)',
          '//                           ^^ constant.numeric.integer.pipe',
          '',
        ].join('\n'),
      );
      const r = runFixtures(file);
      assert.notEqual(r.code, 0, r.out);
      assert.match(r.out, /missing required scopes: constant\.numeric\.integer\.pipe/, r.out);
      assert.match(r.out, /keyword\.other\.unit\.pipe/, r.out);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('has fixture assertions for every token class', () => {
    const asserted = new Set<string>();
    for (const f of fs.readdirSync(repo('test/grammar')).filter((f) => f.endsWith('.test.pipe'))) {
      for (const line of fs.readFileSync(repo('test/grammar', f), 'utf8').split('\n')) {
        const m = /^\/\/\s*(?:\^+|<~*-+)\s+(.*)$/.exec(line);
        if (m) for (const scope of m[1].split(' - ')[0].split(/\s+/)) asserted.add(scope);
      }
    }
    const classes = [
      'comment.line.double-slash.pipe',
      'comment.block.pipe',
      'string.quoted.double.pipe',
      'constant.character.escape.pipe',
      'constant.other.placeholder.image.pipe',
      'constant.numeric.integer.pipe',
      'constant.numeric.float.pipe',
      'constant.numeric.quantity.pipe',
      'keyword.other.unit.pipe',
      'constant.language.boolean.true.pipe',
      'constant.language.boolean.false.pipe',
      'keyword.control.import.pipe',
      ...['model', 'dataset', 'stage', 'template', 'encoder', 'projector', 'llm', 'data', 'optimizer', 'schedule', 'device'].map((k) => `storage.type.${k}.pipe`),
      ...['flow', 'at', 'weights', 'where', 'preset', 'tensor'].map((k) => `keyword.other.${k}.pipe`),
      'keyword.control.conditional.pipe',
      'keyword.control.loop.pipe',
      'keyword.operator.logical.pipe',
      'keyword.operator.replication.pipe',
      'keyword.operator.arrow.pipe',
      'keyword.operator.arithmetic.power.pipe',
      'keyword.operator.comparison.pipe',
      'keyword.operator.assignment.pipe',
      'keyword.operator.arithmetic.pipe',
      'keyword.operator.union.pipe',
      'punctuation.separator.comma.pipe',
      'punctuation.separator.colon.pipe',
      'punctuation.separator.key-value.pipe',
      'punctuation.accessor.pipe',
      'punctuation.section.parens.begin.pipe',
      'punctuation.section.brackets.begin.pipe',
      'punctuation.section.braces.begin.pipe',
      'entity.name.type.model.pipe',
      'entity.name.type.stage.pipe',
      'entity.name.type.dataset.pipe',
      'entity.name.type.template.pipe',
      'entity.name.function.pipe',
      'variable.other.component.pipe',
      'entity.name.function.call.pipe',
      'support.function.stdlib.pipe',
      'support.function.builtin.pipe',
      'variable.parameter.pipe',
      'entity.other.attribute-name.pipe',
      'support.type.pipe',
      'support.type.primitive.pipe',
    ];
    const missing = classes.filter((c) => !asserted.has(c));
    assert.deepEqual(missing, [], `no fixture asserts ${missing.join(', ')}`);
    // Each of these operators is asserted on its own text somewhere.
    const text = fs.readdirSync(repo('test/grammar')).map((f) => fs.readFileSync(repo('test/grammar', f), 'utf8')).join('\n');
    for (const op of ['->', '**', '==', '!=', '<=', '>=', ' < ', ' > ', ' = ', ' + ', ' - ', ' * ', ' / ', ' % ', ' | ']) assert.ok(text.includes(op), `no fixture line uses ${op.trim()}`);
  });

  it('is what the extension manifest contributes for the pipe language', () => {
    const manifest = JSON.parse(fs.readFileSync(repo('editors/vscode/package.json'), 'utf8'));
    assert.equal(manifest.name, 'pipec-vscode');
    assert.equal(manifest.main, './extension.js');
    assert.ok(fs.existsSync(repo('editors/vscode', manifest.main)));
    const lang = manifest.contributes.languages.find((l: { id: string }) => l.id === 'pipe');
    assert.deepEqual(lang.extensions, ['.pipe']);
    const g = manifest.contributes.grammars.find((x: { language: string }) => x.language === 'pipe');
    assert.equal(g.scopeName, 'source.pipe');
    assert.equal(path.resolve(repo('editors/vscode'), g.path), repo(GRAMMAR));
    const config = JSON.parse(fs.readFileSync(path.resolve(repo('editors/vscode'), lang.configuration), 'utf8'));
    assert.equal(config.comments.lineComment, '//');
    assert.deepEqual(config.comments.blockComment, ['/*', '*/']);
    assert.doesNotThrow(() => new RegExp(config.wordPattern));
    assert.ok('pipec.serverPath' in manifest.contributes.configuration.properties);
  });
});
