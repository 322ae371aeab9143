// The hand-written lexer (compiler/lexer/fast-lex.ts) against PipeLexer: the same tokens wherever it lexes,
// and it gives way only where PipeLexer has something to report.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import type { IToken } from 'chevrotain';
import { fastLex } from '../compiler/lexer/fast-lex.js';
import * as T from '../compiler/lexer/tokens.js';
import { REPO_ROOT } from './paths.js';

const plain = (ts: IToken[]) => ts.map((t) => ({ image: t.image, startOffset: t.startOffset, endOffset: t.endOffset, tokenTypeIdx: t.tokenTypeIdx, type: t.tokenType.name }));

function agree(text: string): void {
  const slow = T.PipeLexer.tokenize(text);
  const fast = fastLex(text);
  const reportable = slow.errors.length > 0 || slow.tokens.some((t) => t.tokenType === T.UnterminatedString || t.tokenType === T.UnterminatedComment);
  if (fast === undefined) {
    assert.ok(reportable, `fastLex gave way on text PipeLexer lexes cleanly: ${JSON.stringify(text.slice(0, 200))}`);
    return;
  }
  assert.ok(!reportable, `fastLex lexed text PipeLexer reports: ${JSON.stringify(text.slice(0, 200))}`);
  assert.deepEqual(plain(fast), plain(slow.tokens), JSON.stringify(text.slice(0, 200)));
  // The same object shape as PipeLexer's tokens (tokens.ts), keys in the same order.
  if (fast.length) assert.deepEqual(Object.keys(fast[0]), Object.keys(slow.tokens[0]));
}

function pipeFiles(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) pipeFiles(p, out);
    else if (e.name.endsWith('.pipe')) out.push(p);
  }
  return out;
}

describe('fast lexer', () => {
  it('makes the tokens PipeLexer makes for every .pipe file in the repository', () => {
    const files = pipeFiles(REPO_ROOT);
    assert.ok(files.length > 20);
    for (const f of files) agree(fs.readFileSync(f, 'utf8'));
  });

  it('agrees on numbers, quantities, keywords, operators, comments and strings', () => {
    for (const text of [
      '', ' ', '\uFEFFmodel m {}', 'a', '_a1', 'import', 'imports', 'model_x', 'x', 'xx', 'x2', 'if then else', 'not', 'and or',
      '1', '1.', '.5', '1.5', '1e3', '1e-3', '1E+3', '1e', '1ex', '1e5x', '2.x', '80GB', '1.5TiB', '7B', '1.e5', '1..2', '1.5.3', 'a.5', 'a.b',
      '->', '-', '--', '-1', '**', '*', '***', '==', '=', '===', '!=', '!', '<=', '<', '>=', '>', '=>', '|', '%', '/', '//x', '/**/', '/*/', '/* a\n b */x',
      '"a"', '"a\\"b"', '"a\\n"', '"\\q"', '"a', '"a\\', '"a\nb"', '"a\\\nb"', '"\u2028"', '"\\\u2028"', '"é"', 'é', '#', '@', '$', '`', "'", '\\', '~', '^', '&', ';', '?',
      'a\r\nb', 'a\tb', 'a\u00a0b', '// only a comment', 'x // c\ny', '/* unterminated', 'f(a: 1 b: 2)', '[a b]', 'a.b.c(1)[2] ** -3',
      '16 x gpu(memory: 80GB)', 'tensor "w" [out * width, in] if bias', 'stage s { batch: 8, accumulate: 2 }',
    ])
      agree(text);
  });

  it('agrees on random text made of the language and around it', () => {
    const pieces = ['a', 'x', 'if', 'model', '_', '0', '1', '9', '.', 'e', 'E', '+', '-', '>', '<', '=', '!', '*', '/', '"', '\\', '\n', ' ', '\t', '\r', 'GB', '{', '}', '(', ')', '[', ']', ':', ',', '|', '%', '#', 'é', '\uFEFF', '\u2028'];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 40 }), (ps) => agree(ps.join(''))),
      { numRuns: 3000, seed: 15 },
    );
  });
});
