// The formatter: idempotent on every shipped file, keeps every token and comment, and `pipec fmt --check`.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { format } from '../compiler/format/format.js';
import { PipeLexer } from '../compiler/lexer/tokens.js';
import { repo } from './paths.js';

const shipped = ['pipelines', 'stdlib'].flatMap((d) => fs.readdirSync(repo(d)).filter((f) => f.endsWith('.pipe')).map((f) => repo(d, f)));
const goldens = fs.readdirSync(repo('test/golden/cases')).filter((f) => f.endsWith('.pipe')).map((f) => repo('test/golden/cases', f));
const images = (t: string) => {
  const l = PipeLexer.tokenize(t);
  return [...l.tokens, ...(l.groups.comments ?? [])].sort((a, b) => a.startOffset - b.startOffset).map((x) => x.image);
};

describe('formatter', () => {
  for (const f of [...shipped, ...goldens]) {
    it(`is idempotent and keeps every token: ${path.relative(repo(), f)}`, () => {
      const text = fs.readFileSync(f, 'utf8');
      const once = format(text);
      if ('error' in once) return; // golden cases with syntax errors do not format, by design
      const twice = format(once.text);
      assert.ok(!('error' in twice));
      assert.equal(twice.text, once.text);
      assert.equal(twice.changed, false);
      assert.deepEqual(images(once.text), images(text));
      if (shipped.includes(f)) assert.equal(once.changed, false, 'shipped files are formatted');
    });
  }

  it('normalises spacing and block indentation, keeps comments, CRLF becomes LF', () => {
    const r = format('stage s {\r\n      batch:8 ,  epochs:1   // why\r\n\r\n\r\n  optimizer: adamw( lr : 1e-3 )\r\n  devices: 2 x 8 x gpu(memory:80GB)\r\n  max_length: -1+2\r\n}\r\n');
    assert.ok(!('error' in r));
    assert.equal(r.text, 'stage s {\n  batch: 8, epochs: 1   // why\n\n  optimizer: adamw(lr: 1e-3)\n  devices: 2 x 8 x gpu(memory: 80GB)\n  max_length: -1 + 2\n}\n');
  });

  it('refuses text with syntax errors', () => {
    const r = format('stage s { batch: }');
    assert.ok('error' in r && /1:18/.test(r.error));
  });

  it('`pipec fmt --check` exits 1 on unformatted files and `pipec fmt` fixes them', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pipec-fmt-'));
    const f = path.join(dir, 'x.pipe');
    fs.writeFileSync(f, 'stage s {\n batch:8\n}\n');
    const run = (...args: string[]) => spawnSync(process.execPath, [repo('bin/pipec.js'), ...args], { encoding: 'utf8' });
    const check = run('fmt', '--check', f);
    assert.equal(check.status, 1);
    assert.equal(check.stdout.trim(), f);
    assert.equal(run('fmt', f).status, 0);
    assert.equal(fs.readFileSync(f, 'utf8'), 'stage s {\n  batch: 8\n}\n');
    assert.equal(run('fmt', '--check', f).status, 0);
    assert.equal(run('fmt', '--check', ...shipped).status, 0);
    assert.equal(run('fmt', path.join(dir, 'missing.pipe')).status, 2);
  });
});
