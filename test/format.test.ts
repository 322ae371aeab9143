// The formatter: idempotent on every program we have, keeps every token and comment, leaves the shipped
// files as they are, and `pipec fmt` / `pipec fmt --check` as a user runs them.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { format } from '../compiler/format/format.js';
import { PipeLexer } from '../compiler/lexer/tokens.js';
import { pipec } from './helpers/cli.js';
import { tmpDir } from './helpers/tmp.js';
import { REPO_ROOT, repo } from './paths.js';

function pipeFilesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return pipeFilesUnder(p);
    return e.name.endsWith('.pipe') ? [p] : [];
  });
}

const shipped = ['pipelines', 'stdlib'].flatMap((d) => fs.readdirSync(repo(d)).filter((f) => f.endsWith('.pipe')).sort().map((f) => repo(d, f)));
const goldens = pipeFilesUnder(repo('test/golden/cases')).sort();

/** Every token's image, comments included, in order. Whitespace at the end of a comment's lines may go. */
function images(text: string): string[] {
  const l = PipeLexer.tokenize(text.replace(/\r\n/g, '\n'));
  return [...l.tokens, ...(l.groups.comments ?? [])]
    .sort((a, b) => a.startOffset - b.startOffset)
    .map((t) => (t.tokenType.name.endsWith('Comment') ? t.image.replace(/[ \t\r]+(?=\n|$)/g, '') : t.image));
}

function fmt(text: string): string {
  const r = format(text);
  assert.ok(!('error' in r), 'error' in r ? r.error : '');
  return r.text;
}

/** format() succeeds, keeps the tokens, and a second run changes nothing. Returns the first run's text. */
function checkStable(text: string): string | undefined {
  const once = format(text);
  if ('error' in once) return undefined;
  const twice = format(once.text);
  assert.ok(!('error' in twice), 'error' in twice ? twice.error : '');
  assert.equal(twice.text, once.text, 'format(format(x)) == format(x)');
  assert.equal(twice.changed, false);
  assert.deepEqual(images(once.text), images(text), 'the tokens are the same');
  assert.ok(once.text.endsWith('\n') && !once.text.endsWith('\n\n'), 'ends with one newline');
  assert.doesNotMatch(once.text, /[ \t]$|\r|\n\n\n/m);
  return once.text;
}

describe('formatter', function () {
  this.timeout(60_000);
  describe('on every program in the repository', () => {
    for (const f of [...shipped, ...goldens]) {
      it(`is idempotent and keeps every token: ${path.relative(REPO_ROOT, f)}`, () => {
        const text = fs.readFileSync(f, 'utf8');
        const once = checkStable(text);
        if (shipped.includes(f)) {
          assert.ok(once !== undefined, 'a shipped file parses');
          assert.equal((format(text) as { changed: boolean }).changed, false, 'shipped files are formatted');
        }
      });
    }

    it('formats all but the golden cases that are syntax errors', () => {
      const failing = goldens.filter((f) => 'error' in format(fs.readFileSync(f, 'utf8'))).map((f) => path.basename(f));
      assert.deepEqual(failing.sort(), ['bad-escape.pipe', 'nesting-too-deep.pipe', 'syntax-recovery.pipe', 'too-many-diagnostics.pipe', 'unterminated-comment.pipe', 'unterminated-string.pipe']);
    });
  });

  it('normalises spacing and block indentation', () => {
    const r = fmt('stage s{\n      batch:8 ,  epochs:1\n  optimizer: adamw( lr : 1e-3 )\n        devices: 2 x 8 x gpu(memory:80GB),sharding:zero3\n  max_length: -1+2*-y\n freeze:[ a , b ]\n checkpoint:{every:1,keep:2}\n}\n');
    assert.equal(
      r,
      'stage s {\n  batch: 8, epochs: 1\n  optimizer: adamw(lr: 1e-3)\n  devices: 2 x 8 x gpu(memory: 80GB), sharding: zero3\n  max_length: -1 + 2 * -y\n  freeze: [a, b]\n  checkpoint: { every: 1, keep: 2 }\n}\n',
    );
  });

  it('spaces expressions, signatures and declarations the house way', () => {
    const src = [
      'import   "std/vision"',
      'model m{',
      '    encoder v=vit (image:32)',
      '  flow v->p ->lm at"<image>"',
      '}',
      'projector p(in:int,out:int,bias:bool=true):Tensor[n,in]->Tensor[ n , out ]',
      '  where in>=1 and not(out<1) , in%2==0 or in**2!=out',
      '{',
      '  tensor"w"[out,in]for k<depth-1 if bias',
      '  preset"x"(in:1)',
      '  activations: tokens*(in+out)/ 2',
      '  o: if a.data then{} else {a:-1}',
      '}',
      '',
    ].join('\n');
    assert.equal(
      fmt(src),
      [
        'import "std/vision"',
        'model m {',
        '  encoder v = vit(image: 32)',
        '  flow v -> p -> lm at "<image>"',
        '}',
        'projector p(in: int, out: int, bias: bool = true) : Tensor[n, in] -> Tensor[n, out]',
        '  where in >= 1 and not (out < 1), in % 2 == 0 or in ** 2 != out',
        '{',
        '  tensor "w" [out, in] for k < depth - 1 if bias',
        '  preset "x" (in: 1)',
        '  activations: tokens * (in + out) / 2',
        '  o: if a.data then {} else { a: -1 }',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('keeps continuation lines aligned with the tokens they were aligned with', () => {
    const src = [
      'encoder  e(image: int = 224,  patch: int,',
      '           heads: int)',
      '      : Image[3, image, image] -> Tensor[n, hidden]',
      '      where image % patch == 0,',
      '            heads >= 1',
      '{',
      '    hf_config: { image: "image_size",',
      '                 patch: "patch_size" }',
      '}',
      'model m {',
      '      encoder vision = siglip_vit(preset: "x")',
      '                       weights "ckpt/x"',
      '}',
      '',
    ].join('\n');
    assert.equal(
      fmt(src),
      [
        'encoder e(image: int = 224, patch: int,',
        '          heads: int)',
        '  : Image[3, image, image] -> Tensor[n, hidden]',
        '  where image % patch == 0,',
        '        heads >= 1',
        '{',
        '  hf_config: { image: "image_size",',
        '               patch: "patch_size" }',
        '}',
        'model m {',
        '  encoder vision = siglip_vit(preset: "x")',
        '                   weights "ckpt/x"',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('indents brackets left open at the end of a line by two spaces per level', () => {
    const src = ['dataset d = llava_json(', '"a.json",', '        images: "img",', '    template: t(1,', '                2),', '      )', 'stage s {', 'freeze: [', 'vision,', '   ]', '  checkpoint: {', '      every: 1', '}', '}', ''].join('\n');
    assert.equal(
      fmt(src),
      ['dataset d = llava_json(', '  "a.json",', '  images: "img",', '  template: t(1,', '              2),', ')', 'stage s {', '  freeze: [', '    vision,', '  ]', '  checkpoint: {', '    every: 1', '  }', '}', ''].join('\n'),
    );
  });

  it('keeps every comment, where it was, and collapses runs of blank lines', () => {
    const src = [
      '',
      '// file comment   ',
      '',
      '',
      '',
      '/* a block',
      '     comment */',
      'stage s {   // after the brace',
      '      // before a field',
      '  batch: 8      // aligned',
      '  epochs:   1   // aligned',
      '  steps: 3 // not aligned',
      '  lr: /* inline */ 1',
      '',
      '',
      '      // before the closer',
      '}',
      '// at the end',
      '',
      '',
    ].join('\n');
    const out = fmt(src);
    assert.equal(
      out,
      [
        '// file comment',
        '',
        '/* a block',
        '     comment */',
        'stage s {   // after the brace',
        '  // before a field',
        '  batch: 8      // aligned',
        '  epochs: 1     // aligned',
        '  steps: 3 // not aligned',
        '  lr: /* inline */ 1',
        '',
        '  // before the closer',
        '}',
        '// at the end',
        '',
      ].join('\n'),
    );
    assert.deepEqual(images(out), images(src));
  });

  it('turns CRLF into LF, drops trailing whitespace and ends with exactly one newline', () => {
    const r = format('stage s {\r\n  batch: 8   \r\n\r\n\r\n  epochs: 1\t\r\n}');
    assert.deepEqual(r, { text: 'stage s {\n  batch: 8\n\n  epochs: 1\n}\n', changed: true });
    assert.deepEqual(format('stage s {\n  batch: 8\n}\n'), { text: 'stage s {\n  batch: 8\n}\n', changed: false });
    assert.deepEqual(format('stage s {}\n\n\n'), { text: 'stage s {}\n', changed: true });
    assert.deepEqual(format(''), { text: '', changed: false });
  });

  it('refuses text with syntax or lexing errors, naming line:col of the first', () => {
    const r = format('stage s { batch: }');
    assert.ok('error' in r && r.error.startsWith('1:18: '), JSON.stringify(r));
    const lex = format('stage s {\n  batch: 8 $ 2\n}\n');
    assert.ok('error' in lex && lex.error.startsWith('2:12: '), JSON.stringify(lex));
    const unterminated = format('stage s {\n  batch: 8\n}\n/* never closed\n');
    assert.ok('error' in unterminated && unterminated.error.startsWith('4:1: '), JSON.stringify(unterminated));
    const str = format('stage s { a: "abc\n}\n');
    assert.ok('error' in str && /^1:\d+: /.test(str.error), JSON.stringify(str));
  });

  it('is idempotent and keeps the tokens when whitespace and comments are shuffled', () => {
    const corpus = [...shipped, ...goldens].map((f) => fs.readFileSync(f, 'utf8')).filter((t) => !('error' in format(t)));
    const spaces = fc.constantFrom('', ' ', '  ', '   ', '\t', ' \t ', ' /* c */ ', ' // c\n', '\n', '\n\n\n', '\n      ', '\n\t', ' /* two\n  lines */ ');
    const arb = fc.record({ file: fc.nat(corpus.length - 1), picks: fc.array(spaces, { minLength: 1, maxLength: 60 }), crlf: fc.boolean() });
    fc.assert(
      fc.property(arb, ({ file, picks, crlf }) => {
        // Replace the whitespace between tokens (cyclically through `picks`), never gluing two word-like tokens.
        const text = corpus[file];
        const l = PipeLexer.tokenize(text);
        const toks = [...l.tokens, ...(l.groups.comments ?? [])].sort((a, b) => a.startOffset - b.startOffset);
        let out = '';
        toks.forEach((t, i) => {
          const prev = toks[i - 1];
          let ws: string = i === 0 ? '' : picks[i % picks.length];
          if (prev?.tokenType.name === 'LineComment') ws = `\n${ws}`; // what follows a line comment starts a line
          if (ws === '' && prev && /[\w."]$/.test(prev.image) && /^[\w."]/.test(t.image)) ws = ' ';
          out += ws + t.image;
        });
        if (crlf) out = out.replace(/\n/g, '\r\n');
        assert.notEqual(checkStable(out), undefined, `does not format:\n${out}`);
      }),
      { numRuns: 300, seed: 20240601 },
    );
  });

  describe('pipec fmt', function () {
    this.timeout(60_000);
    const run = (...args: string[]) => pipec(args);
    let dir: string;
    beforeEach(() => {
      dir = tmpDir('fmt');
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('--check exits 1 naming unformatted files and writes nothing; fmt rewrites them; then --check exits 0', () => {
      const bad = path.join(dir, 'x.pipe');
      const good = path.join(dir, 'y.pipe');
      fs.writeFileSync(bad, 'stage s {\r\n batch:8\r\n}\r\n');
      fs.writeFileSync(good, 'stage s {\n  batch: 8\n}\n');
      const check = run('fmt', '--check', bad, good);
      assert.equal(check.status, 1, check.stderr);
      assert.equal(check.stdout, `${bad}\n`);
      assert.equal(fs.readFileSync(bad, 'utf8'), 'stage s {\r\n batch:8\r\n}\r\n');

      const write = run('fmt', bad, good);
      assert.equal(write.status, 0, write.stderr);
      assert.equal(write.stdout, `${bad}\n`, 'names the file it rewrote, nothing for the formatted one');
      assert.equal(fs.readFileSync(bad, 'utf8'), 'stage s {\n  batch: 8\n}\n');
      assert.deepEqual(fs.readdirSync(dir).sort(), ['x.pipe', 'y.pipe'], 'no temporary file is left behind');

      const again = run('fmt', '--check', bad, good);
      assert.equal(again.status, 0, again.stdout + again.stderr);
      assert.equal(again.stdout, '');
      const quiet = run('fmt', bad);
      assert.equal(quiet.status, 0);
      assert.equal(quiet.stdout + quiet.stderr, '');
    });

    it('--check passes on every shipped file', () => {
      const r = run('fmt', '--check', ...shipped);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.equal(r.stdout + r.stderr, '');
    });

    it('exits 1 with the diagnostic for a file that does not parse, and leaves it alone', () => {
      const f = path.join(dir, 'broken.pipe');
      fs.writeFileSync(f, 'stage s { batch: }\n');
      for (const args of [['fmt', f], ['fmt', '--check', f]]) {
        const r = run(...args);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /broken\.pipe:1:18: /);
        assert.equal(fs.readFileSync(f, 'utf8'), 'stage s { batch: }\n');
      }
    });

    it('exits 2 for a missing file or none, before rewriting anything', () => {
      const f = path.join(dir, 'x.pipe');
      fs.writeFileSync(f, 'stage s {\n batch:8\n}\n');
      const r = run('fmt', f, path.join(dir, 'missing.pipe'));
      assert.equal(r.status, 2);
      assert.match(r.stderr, /missing\.pipe/);
      assert.equal(fs.readFileSync(f, 'utf8'), 'stage s {\n batch:8\n}\n');
      assert.equal(run('fmt', '--check', path.join(dir, 'missing.pipe')).status, 2);
      assert.equal(run('fmt').status, 2);
      assert.equal(run('fmt', dir).status, 2);
    });
  });
});
