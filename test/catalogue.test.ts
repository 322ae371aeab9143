import { strict as assert } from 'node:assert';
import { M } from '../compiler/diagnostics/catalogue.js';

describe('diagnostics catalogue', () => {
  it('has unique codes in the documented bands', () => {
    const codes = Object.values(M).map((m) => m.code);
    assert.equal(new Set(codes).size, codes.length, 'a code is used twice');
    for (const c of codes) assert.match(c, /^PIPE[1-8]\d{3}$/);
  });
});
