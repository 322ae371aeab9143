import { strict as assert } from 'node:assert';
import { M } from '../compiler/diagnostics/catalogue.js';

describe('diagnostics catalogue', () => {
  it('has unique codes in the documented bands', () => {
    const codes = Object.values(M).map((m) => m.code);
    assert.equal(new Set(codes).size, codes.length, 'a code is used twice');
    for (const c of codes) assert.match(c, /^PIPE[1-9]\d{3}$/);
  });
});

describe('docs/diagnostics.md', () => {
  it('lists every code of the catalogue', async () => {
    const fs = await import('node:fs');
    const { repo } = await import('./paths.js');
    const doc = fs.readFileSync(repo('docs/diagnostics.md'), 'utf8');
    for (const m of Object.values(M)) assert.ok(doc.includes(`| ${m.code} |`), `${m.code} is missing from docs/diagnostics.md`);
  });
});
