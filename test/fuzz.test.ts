// Property-based: random token soups and mutations of real programs go through parse + check + lower
// (compile() with `lower: true`). For any text:
//   - compile() returns; nothing throws (UsageError is only for a file that cannot be read, and here the
//     text is always given);
//   - every diagnostic has a PIPEnnnn code, a known severity and a non-empty message;
//   - every range (the diagnostic's, its related locations', its fixes') lies inside the document it names,
//     and in the fuzzed file its line:column agrees with its offset, recomputed from the text;
//   - a program without errors lowers to a graph.
// Fixed seeds, so a failure reproduces; fast-check shrinks it to a small counterexample first. The
// generators and checkText are exported for ad-hoc exploration with other seeds (fc.sample / fc.check).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import type { Diagnostic } from '../compiler/diagnostics/diagnostic.js';
import type { Range } from '../compiler/diagnostics/source.js';
import { compile } from '../compiler/service/service.js';
import { REPO_ROOT, repo } from './paths.js';

/** A file that does not exist: compile() gets its text, and relative paths resolve next to the shipped pipelines. */
const FILE = repo('pipelines/__fuzz__.pipe');
const SHOWN = path.relative(REPO_ROOT, FILE).split(path.sep).join('/');

function pipeFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.pipe'))
    .sort()
    .map((f) => fs.readFileSync(path.join(dir, f), 'utf8'));
}

/** The seeds for mutation: every shipped pipeline and golden case, and the standard library (signatures). */
const CORPUS = [...pipeFiles(repo('pipelines')), ...pipeFiles(repo('test/golden/cases')), ...pipeFiles(repo('stdlib'))];
const CORPUS_LINES = CORPUS.flatMap((t) => t.split('\n'));

// ---------------------------------------------------------------------------------------------------
// The property

/** Line and column (1-based, UTF-16 units) of an offset, computed the slow, obvious way. */
function lineCol(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

const SEVERITIES = new Set(['error', 'warning', 'info']);
let programs = 0;

function checkRange(what: string, r: Range, sources: ReadonlyMap<string, { text: string }>, fuzzed: string): void {
  const text = r.file === SHOWN ? fuzzed : sources.get(r.file)?.text;
  assert.ok(text !== undefined, `${what} names ${JSON.stringify(r.file)}, which is not among the result's sources`);
  const { start, end } = r;
  assert.ok(Number.isInteger(start.offset) && Number.isInteger(end.offset), `${what}: offsets ${start.offset}..${end.offset} are not integers`);
  assert.ok(0 <= start.offset && start.offset <= end.offset && end.offset <= text.length, `${what}: range ${start.offset}..${end.offset} is outside 0..${text.length} of ${r.file}`);
  assert.deepEqual({ line: start.line, column: start.column }, lineCol(text, start.offset), `${what}: start ${start.line}:${start.column} disagrees with offset ${start.offset}`);
  assert.deepEqual({ line: end.line, column: end.column }, lineCol(text, end.offset), `${what}: end ${end.line}:${end.column} disagrees with offset ${end.offset}`);
}

export function checkText(text: string): void {
  programs++;
  // Anything compile() throws fails the property; fast-check reports it with the shrunk input.
  const r = compile({ file: FILE, text, lower: true, cwd: REPO_ROOT });
  for (const d of r.diagnostics as Diagnostic[]) {
    const what = `${d.code} "${d.message}"`;
    assert.match(d.code, /^PIPE\d{4}$/, `bad code in ${what}`);
    assert.ok(typeof d.message === 'string' && d.message.trim().length > 0, `empty message for ${d.code}`);
    assert.ok(SEVERITIES.has(d.severity), `${what}: unknown severity ${d.severity}`);
    checkRange(what, d.range, r.sources, text);
    for (const rel of d.related ?? []) checkRange(`${what}, related "${rel.message}"`, rel.range, r.sources, text);
    for (const fix of d.fixes ?? []) checkRange(`${what}, fix "${fix.title}"`, fix.range, r.sources, text);
  }
  if (!r.diagnostics.some((d) => d.severity === 'error')) assert.ok(r.graph, 'a program without errors lowers to a graph');
}

// ---------------------------------------------------------------------------------------------------
// (a) Token soups

const KEYWORDS = ['import', 'model', 'encoder', 'projector', 'llm', 'flow', 'at', 'dataset', 'stage', 'weights', 'where', 'preset', 'tensor', 'template', 'data', 'optimizer', 'schedule', 'device', 'if', 'then', 'else', 'true', 'false', 'and', 'or', 'not', 'for', 'x'];
const NAMES = ['vit', 'siglip_vit', 'clip_vit', 'mlp_gelu', 'linear', 'identity', 'llama', 'mixtral', 'custom', 'llava_json', 'synthetic_shapes', 'adamw', 'sgd', 'cosine', 'constant', 'gpu', 'cpu', 'plain', 'chat',
  'm', 'vision', 'proj', 'lm', 'train', 'freeze', 'batch', 'accumulate', 'epochs', 'steps', 'max_length', 'after', 'precision', 'bf16', 'fp32', 'devices', 'sharding', 'zero2', 'zero3', 'checkpoint', 'every', 'keep',
  'hidden', 'in', 'out', 'image', 'patch', 'layers', 'heads', 'kv_heads', 'mlp', 'vocab', 'context', 'experts', 'top_k', 'lr', 'count', 'seed', 'task', 'select', 'select_layer', 'preset', 'tokens', 'n', 'int', 'float', 'bool', 'size', 'path', 'string', 'Tensor', 'Image', 'Template', 'states', 'activations', 'hf_config'];
const PUNCT = ['{', '}', '(', ')', '[', ']', ',', ':', '.', '=', '->', '+', '-', '*', '/', '%', '**', '==', '!=', '<', '<=', '>', '>=', '|', '!', '&', '#', '$', '@', '\\', '`', "'", '?', ';', '~', '^'];
const TRIVIA = [' ', '\n', '\r\n', '\t', '// comment\n', '/* block */', '/* unterminated', '\u0000', '\uFEFF', '\u2028', '\u00a0', 'é', 'ユーザー', '\ud835\udcc1', '\ud800', '😀'];
const LITERALS = ['0', '1', '-1', '2', '32', '0.0', '3.5', '1e-3', '1e308', '1e-400', '.5', '5.', '1e', '80GB', '1.5TiB', '7B', '0x10', '"std/vision"', '"std/llm"', '"std/nope"', '"./models/tanuki/modeling_tanuki.ts"', '"<image>"', '"patch"', '"cls_patch"', '""', '"\\n"', '"\\q"', '"\\', '"unterminated', '"multi\nline"'];

const identifier = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,10}$/);
const number = fc.oneof(
  fc.nat({ max: 100_000 }).map(String),
  fc.integer({ min: -1000, max: 1000 }).map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => String(Math.abs(d))),
  fc.tuple(fc.nat({ max: 4096 }), fc.constantFrom('B', 'KB', 'MB', 'GB', 'TB', 'KiB', 'MiB', 'GiB', 'TiB', 'M', 'x', 'e', 'E5')).map(([n, u]) => `${n}${u}`),
);
const stringLit = fc.oneof(
  fc.string({ maxLength: 12 }).map((s) => JSON.stringify(s)),
  fc.string({ maxLength: 12, unit: 'binary' }).map((s) => `"${s}"`),
);
const token = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...KEYWORDS) },
  { weight: 4, arbitrary: fc.constantFrom(...NAMES) },
  { weight: 2, arbitrary: identifier },
  { weight: 2, arbitrary: number },
  { weight: 2, arbitrary: fc.constantFrom(...LITERALS) },
  { weight: 1, arbitrary: stringLit },
  { weight: 5, arbitrary: fc.constantFrom(...PUNCT) },
  { weight: 1, arbitrary: fc.constantFrom(...TRIVIA) },
);
const HEADER = 'import "std/vision"\nimport "std/projectors"\nimport "std/llm"\nimport "std/data"\nimport "std/train"\n';
const separator = fc.constantFrom(' ', ' ', ' ', '\n', '', '\t', '\r\n');
export const tokenSoup = fc
  .tuple(fc.boolean(), fc.array(fc.tuple(token, separator), { maxLength: 80 }))
  .map(([header, ts]) => (header ? HEADER : '') + ts.map(([t, s]) => t + s).join(''));
/** Whole lines of real programs in random order: deeper into the grammar than single tokens get. */
export const lineSalad = fc
  .tuple(fc.boolean(), fc.array(fc.nat({ max: CORPUS_LINES.length - 1 }), { minLength: 1, maxLength: 40 }))
  .map(([header, ls]) => (header ? HEADER : '') + ls.map((i) => CORPUS_LINES[i]).join('\n'));

// ---------------------------------------------------------------------------------------------------
// (b) Mutations of real programs

interface Tok {
  kind: 'ws' | 'comment' | 'string' | 'number' | 'ident' | 'punct';
  text: string;
}
const TOKEN_RE = /(\s+)|(\/\/[^\n]*|\/\*[\s\S]*?(?:\*\/|$))|("(?:[^"\\\n]|\\.)*"?)|((?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[A-Za-z]*)|([A-Za-z_][A-Za-z0-9_]*)|(->|\*\*|==|!=|<=|>=|[\s\S])/g;
const KINDS = ['ws', 'comment', 'string', 'number', 'ident', 'punct'] as const;

/** A lexer for mutation only (not the compiler's): the pieces join back to exactly the input. */
function tokenize(text: string): Tok[] {
  const out: Tok[] = [];
  for (const m of text.matchAll(TOKEN_RE)) {
    const k = m.slice(1).findIndex((g) => g !== undefined);
    out.push({ kind: KINDS[k], text: m[0] });
  }
  return out;
}
const untokenize = (ts: Tok[]) => ts.map((t) => t.text).join('');

/** The index of the n-th (mod count) token satisfying p, or -1. */
function nth(ts: Tok[], n: number, p: (t: Tok) => boolean): number {
  const hits: number[] = [];
  ts.forEach((t, i) => p(t) && hits.push(i));
  return hits.length ? hits[n % hits.length] : -1;
}

const SPECIAL = fc.constantFrom('\u0000', '\r\n', '\r', '\n\n', '\uFEFF', '\u2028', '\u00e9', 'ユーザー', '\ud835\udcc1', '\ud800', '\udfff', '😀', '\t', '\\', '"', '/*', '*/', '//');
const NUMBERS = fc.constantFrom('0', '-1', '1e308', '3.5', '-0', '0.0', '1e-400', '65537', '2147483648', '9007199254740993', '1e999', '.5', '-3.5', '1e-3', '80GB', '0GB', '1B', '10x');
const STRINGS = fc.oneof(
  fc.constantFrom('""', '"<image>"', '"patch"', '"cls_patch"', '"caption"', '"qa"', '"plain"', '"chat"', '"nope"', '"std/vision"', '"std/nope"', '"./models/tanuki/modeling_tanuki.ts"', '"../../../../etc/passwd"', '"checkpoints/nope"', '"\\u0000"', '"\\n"', '"\\"'),
  stringLit,
);

/** Edits that keep the syntax (mostly) intact, so the text gets past the parser into the checker's passes. */
const valueEdit = fc.oneof(
  fc.record({ kind: fc.constant('swapIdents' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ kind: fc.constant('renameIdent' as const), n: fc.nat(), to: fc.oneof(fc.constantFrom(...KEYWORDS, ...NAMES), identifier) }),
  fc.record({ kind: fc.constant('number' as const), n: fc.nat(), to: NUMBERS }),
  fc.record({ kind: fc.constant('string' as const), n: fc.nat(), to: STRINGS }),
);

const mutation = fc.oneof(
  // character level
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: fc.oneof(token, SPECIAL, fc.string({ maxLength: 6, unit: 'binary' })) }),
  fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 80 }) }),
  fc.record({ kind: fc.constant('swap' as const), a: fc.nat(), b: fc.nat(), len: fc.integer({ min: 1, max: 30 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('special' as const), at: fc.nat(), text: SPECIAL }),
  fc.record({ kind: fc.constant('crlf' as const) }),
  // line level
  fc.record({ kind: fc.constant('dropLine' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('dupLine' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('swapLines' as const), a: fc.nat(), b: fc.nat() }),
  // token level
  fc.record({ kind: fc.constant('dropBracket' as const), which: fc.constantFrom('}', ')', ']', '{', '(', '[', ',', ':', '=', '->'), n: fc.nat() }),
  fc.record({ kind: fc.constant('dropToken' as const), n: fc.nat() }),
  fc.record({ kind: fc.constant('dupToken' as const), n: fc.nat() }),
  { weight: 4, arbitrary: valueEdit },
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(text: string, m: Mutation): string {
  const t = text;
  const pos = (n: number) => (t.length ? n % (t.length + 1) : 0);
  switch (m.kind) {
    case 'delete': {
      const at = pos(m.at);
      return t.slice(0, at) + t.slice(at + m.len);
    }
    case 'insert':
    case 'special': {
      const at = pos(m.at);
      return t.slice(0, at) + m.text + t.slice(at);
    }
    case 'duplicate': {
      const at = pos(m.at);
      return t.slice(0, at + m.len) + t.slice(at, at + m.len) + t.slice(at + m.len);
    }
    case 'swap': {
      let [a, b] = [pos(m.a), pos(m.b)].sort((x, y) => x - y);
      const len = Math.min(m.len, b - a);
      if (len <= 0) return t;
      b = Math.min(b, t.length - len);
      if (b < a + len) return t;
      return t.slice(0, a) + t.slice(b, b + len) + t.slice(a + len, b) + t.slice(a, a + len) + t.slice(b + len);
    }
    case 'truncate':
      return t.slice(0, pos(m.at));
    case 'crlf':
      return t.replace(/\r?\n/g, '\r\n');
    case 'dropLine':
    case 'dupLine':
    case 'swapLines': {
      const ls = t.split('\n');
      if (m.kind === 'dropLine') ls.splice(m.at % ls.length, 1);
      else if (m.kind === 'dupLine') ls.splice(m.at % ls.length, 0, ls[m.at % ls.length]);
      else {
        const [a, b] = [m.a % ls.length, m.b % ls.length];
        [ls[a], ls[b]] = [ls[b], ls[a]];
      }
      return ls.join('\n');
    }
  }
  const ts = tokenize(t);
  switch (m.kind) {
    case 'dropBracket': {
      const i = nth(ts, m.n, (x) => x.kind === 'punct' && x.text === m.which);
      if (i >= 0) ts.splice(i, 1);
      break;
    }
    case 'swapIdents': {
      const i = nth(ts, m.a, (x) => x.kind === 'ident');
      const j = nth(ts, m.b, (x) => x.kind === 'ident');
      if (i >= 0 && j >= 0) [ts[i], ts[j]] = [ts[j], ts[i]];
      break;
    }
    case 'renameIdent': {
      const i = nth(ts, m.n, (x) => x.kind === 'ident');
      if (i >= 0) ts[i] = { kind: 'ident', text: m.to };
      break;
    }
    case 'number': {
      const i = nth(ts, m.n, (x) => x.kind === 'number');
      if (i >= 0) ts[i] = { kind: 'number', text: m.to };
      break;
    }
    case 'string': {
      const i = nth(ts, m.n, (x) => x.kind === 'string');
      if (i >= 0) ts[i] = { kind: 'string', text: m.to };
      break;
    }
    case 'dropToken':
    case 'dupToken': {
      const i = nth(ts, m.n, (x) => x.kind !== 'ws');
      if (i >= 0) ts.splice(i, m.kind === 'dropToken' ? 1 : 0, ...(m.kind === 'dupToken' ? [ts[i], { kind: 'ws' as const, text: ' ' }] : []));
      break;
    }
  }
  return untokenize(ts);
}

export const mutated = (maxEdits: number, edit: fc.Arbitrary<Mutation> = mutation) =>
  fc.tuple(fc.nat({ max: CORPUS.length - 1 }), fc.array(edit, { minLength: 1, maxLength: maxEdits })).map(([i, ms]) => ms.reduce(mutate, CORPUS[i]));
export const valueMutated = mutated(4, valueEdit);

// ---------------------------------------------------------------------------------------------------

const RUNS = { soup: 3000, salad: 1500, few: 3500, many: 2000, values: 2500 };

/** Minimal inputs that once broke a property: checked first, whatever the seeds find. */
const REGRESSIONS: Array<{ name: string; text: string }> = [
  {
    // compile() threw "internal error: the lowered graph does not validate: model m: node id
    // lm.splice_vision is defined twice": the same flow edge twice gave two splice nodes (fixed in 8249a73).
    name: 'the same flow written twice',
    text: [
      'import "std/vision"',
      'import "std/llm"',
      'model m {',
      '  encoder vision = vit(image: 32, patch: 8, hidden: 64, layers: 2, heads: 4, mlp: 128)',
      '  llm lm = llama(vocab: 512, hidden: 64, layers: 2, heads: 4, mlp: 256, context: 128)',
      '  flow vision -> lm at "<image>"',
      '  flow vision -> lm at "<image>"',
      '}',
      '',
    ].join('\n'),
  },
];

describe('property: parse + check + lower never throw and keep diagnostics inside their documents', function () {
  this.timeout(300_000);
  let failed = false;
  const property = (name: string, arb: fc.Arbitrary<string>, numRuns: number, seed: number) =>
    it(`${name} (${numRuns} runs, seed ${seed})`, () => {
      try {
        fc.assert(fc.property(arb, checkText), { numRuns, seed });
      } catch (e) {
        failed = true;
        throw e;
      }
    });

  it('the mutation lexer joins back to its input, and lineCol agrees with SourceFile on a known case', () => {
    for (const t of CORPUS) assert.equal(untokenize(tokenize(t)), t);
    assert.deepEqual(lineCol('a\r\nb\n\ncd', 7), { line: 4, column: 2 });
    assert.ok(CORPUS.length >= 10, `${CORPUS.length} seed programs`);
  });

  for (const r of REGRESSIONS) it(`regression: ${r.name}`, () => checkText(r.text));

  property('token soups', tokenSoup, RUNS.soup, 2026);
  property('lines of real programs in random order', lineSalad, RUNS.salad, 2028);
  property('real programs with 1-3 edits', mutated(3), RUNS.few, 2027);
  property('real programs with up to 12 edits', mutated(12), RUNS.many, 2029);
  property('real programs with 1-4 renamed names, changed numbers and strings', valueMutated, RUNS.values, 2030);

  it('ran at least 10,000 programs', function () {
    assert.ok(Object.values(RUNS).reduce((a, b) => a + b) >= 10_000);
    if (failed) this.skip(); // a failed property stops early; its own failure is the report
    assert.ok(programs >= 10_000, `${programs} programs`);
  });
});
