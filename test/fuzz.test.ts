// Property-based: random token soups and mutations of real programs go through parse + check + lower.
// Nothing may throw, and every diagnostic must sit inside the document it names, at a position that
// agrees with its offset.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import type { Diagnostic } from '../compiler/diagnostics/diagnostic.js';
import { compile } from '../compiler/service/service.js';
import { REPO_ROOT, repo } from './paths.js';

const FILE = repo('pipelines/__fuzz__.pipe');

function corpus(): string[] {
  const out: string[] = [];
  for (const f of fs.readdirSync(repo('pipelines'))) if (f.endsWith('.pipe')) out.push(fs.readFileSync(repo('pipelines', f), 'utf8'));
  for (const f of fs.readdirSync(repo('test/golden/cases'))) if (f.endsWith('.pipe')) out.push(fs.readFileSync(repo('test/golden/cases', f), 'utf8'));
  return out;
}

function lineCol(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

let runs = 0;
function checkText(text: string): void {
  runs++;
  const r = compile({ file: FILE, text, cwd: REPO_ROOT });
  const shown = path.relative(REPO_ROOT, FILE);
  for (const d of r.diagnostics as Diagnostic[]) {
    assert.match(d.code, /^PIPE\d{4}$/);
    assert.ok(d.message.length > 0);
    if (d.range.file !== shown) continue; // the standard library, clean by its own tests
    const { start, end } = d.range;
    assert.ok(0 <= start.offset && start.offset <= end.offset && end.offset <= text.length, `${d.code} range ${start.offset}..${end.offset} outside 0..${text.length}`);
    assert.deepEqual(lineCol(text, start.offset), { line: start.line, column: start.column }, `${d.code} start position disagrees with its offset`);
    assert.deepEqual(lineCol(text, end.offset), { line: end.line, column: end.column }, `${d.code} end position disagrees with its offset`);
  }
  if (!r.diagnostics.some((d) => d.severity === 'error')) assert.ok(r.graph, 'a program without errors lowers to a graph');
}

const WORDS = ['import', 'model', 'encoder', 'projector', 'llm', 'flow', 'at', 'dataset', 'stage', 'weights', 'where', 'preset', 'tensor', 'template', 'data', 'optimizer', 'schedule', 'device', 'if', 'then', 'else', 'true', 'false', 'and', 'or', 'not', 'for', 'x',
  'vit', 'siglip_vit', 'clip_vit', 'mlp_gelu', 'linear', 'identity', 'llama', 'mixtral', 'mistral', 'llava_json', 'synthetic_shapes', 'adamw', 'cosine', 'gpu', 'cpu', 'custom',
  'm', 'vision', 'proj', 'lm', 'train', 'freeze', 'batch', 'epochs', 'steps', 'max_length', 'after', 'hidden', 'in', 'out', 'image', 'patch',
  '0', '1', '-1', '2', '32', '1e-3', '1e308', '3.5', '80GB', '7B', '"std/vision"', '"std/llm"', '"<image>"', '"x"', '"\\n"', '"unterminated',
  '{', '}', '(', ')', '[', ']', ',', ':', '.', '=', '->', '+', '-', '*', '/', '%', '**', '==', '!=', '<', '<=', '>', '>=', '|', '//c\n', '/*c*/', '\n', ' ', '@', '\u0000', '\r\n', 'é', '𝔁'];

describe('property: parse + check + lower never throw and keep ranges inside the document', function () {
  this.timeout(300_000);
  const texts = corpus();

  it('token soups (4,000 runs)', () => {
    fc.assert(fc.property(fc.array(fc.constantFrom(...WORDS), { maxLength: 60 }), (ws) => checkText(ws.join(' '))), { numRuns: 4000, seed: 2026 });
  });

  it('mutations of real programs (6,000 runs)', () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), word: fc.constantFrom(...WORDS) }),
      fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 80 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('number' as const), at: fc.nat(), word: fc.constantFrom('0', '-1', '1e308', '3.5', '65537', '2147483648') }),
    );
    fc.assert(
      fc.property(fc.nat({ max: texts.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), (i, muts) => {
        let t = texts[i];
        for (const m of muts) {
          const at = t.length ? m.at % t.length : 0;
          if (m.kind === 'delete') t = t.slice(0, at) + t.slice(at + m.len);
          else if (m.kind === 'insert') t = `${t.slice(0, at)} ${m.word} ${t.slice(at)}`;
          else if (m.kind === 'duplicate') t = t.slice(0, at + m.len) + t.slice(at, at + m.len) + t.slice(at + m.len);
          else if (m.kind === 'truncate') t = t.slice(0, at);
          else {
            const num = /\d+(\.\d+)?/g;
            const hits = [...t.matchAll(num)];
            if (hits.length) {
              const h = hits[at % hits.length];
              t = t.slice(0, h.index) + m.word + t.slice((h.index ?? 0) + h[0].length);
            }
          }
        }
        checkText(t);
      }),
      { numRuns: 6000, seed: 2027 },
    );
  });

  it('ran at least 10,000 programs', () => {
    assert.ok(runs >= 10_000, `${runs} runs`);
  });
});
