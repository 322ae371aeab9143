// Generators of .pipe texts for the property test (test/fuzz.test.ts) and `npm run fuzz` (run.ts):
//   (a) token soups and lines of real programs in random order;
//   (b) real programs with character, line and token edits, or renamed names and changed values;
//   (c) deep nesting: brackets, prefix operators, `if`, `**` and suffixes around an atom, around and
//       past the nesting limit, closed, unclosed or mismatched, inside a real program;
//   (d) long lines: flat chains of thousands of terms, long names, strings and comments, with or without
//       a stray character;
//   (e) random bytes: read as UTF-8 or Latin-1, any UTF-16 code units, bracket-heavy noise, and bytes
//       spliced into real programs.
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { MAX_NESTING } from '../../compiler/parser/grammar.js';
import { repo } from '../paths.js';

function pipeFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.pipe'))
    .sort()
    .map((f) => fs.readFileSync(path.join(dir, f), 'utf8'));
}

/** The seeds for mutation: every shipped pipeline and golden case, and the standard library (signatures). */
export const CORPUS = [...pipeFiles(repo('pipelines')), ...pipeFiles(repo('test/golden/cases')), ...pipeFiles(repo('stdlib'))];
const CORPUS_LINES = CORPUS.flatMap((t) => t.split('\n'));

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
export const HEADER = 'import "std/vision"\nimport "std/projectors"\nimport "std/llm"\nimport "std/data"\nimport "std/train"\n';
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
export function tokenize(text: string): Tok[] {
  const out: Tok[] = [];
  for (const m of text.matchAll(TOKEN_RE)) {
    const k = m.slice(1).findIndex((g) => g !== undefined);
    out.push({ kind: KINDS[k], text: m[0] });
  }
  return out;
}
export const untokenize = (ts: Tok[]) => ts.map((t) => t.text).join('');

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
// Hosts: real programs with a hole where an expression goes, so a generated expression is checked in
// context (a dataset argument, a component parameter, a stage field, a `where` clause, a bare dataset).

const MINIMAL = fs.readFileSync(repo('test/golden/cases/ok-minimal.pipe'), 'utf8');
const hole = (before: string) => (x: string) => MINIMAL.replace(before, `${before.slice(0, before.indexOf(':') + 2)}${x}`);
export const HOSTS: Array<(x: string) => string> = [
  hole('count: 100'),
  hole('mlp: 256'),
  hole('batch: 4'),
  hole('lr: 1e-3'),
  (x) => `${HEADER}dataset d = ${x}\n`,
  (x) => `${HEADER}projector p(in: int, out: int) : Tensor[n, in] -> Tensor[n, out] where ${x} { op: "linear" }\n`,
  (x) => x,
];
const host = fc.nat({ max: HOSTS.length - 1 });

// ---------------------------------------------------------------------------------------------------
// (c) Deep nesting

/** Things that open a level, and what closes them (nothing for prefix operators). */
const OPENERS: Array<[string, string]> = [
  ['(', ')'], ['[', ']'], ['{a: ', '}'], ['f(', ')'], ['g(k: ', ')'], ['[1, ', ']'], ['(1) + (', ')'],
  ['- ', ''], ['not ', ''], ['2 ** ', ''], ['if true then 1 else ', ''], ['if ', ' then 1 else 2'], ['if c then ', ' else 3'],
];
const SUFFIXES = ['.a', '(1)', '[2]', '(k: 1)', '.hidden'];
const ATOMS = ['1', 'y', '"s"', 'true', 'vision.hidden', '80GB', ''];
/** How the closers are written: all of them, none, half, one too many, or the wrong kind. */
const CLOSING = ['all', 'all', 'none', 'half', 'extra', 'wrong'] as const;

const depth = fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: MAX_NESTING - 3, max: MAX_NESTING + 3 }), fc.integer({ min: 0, max: 2 * MAX_NESTING }));
/** An array of exactly `n` (fast-check's default size would keep most arrays short). */
const exactly = <T>(n: fc.Arbitrary<number>, item: fc.Arbitrary<T>) => n.chain((k) => fc.array(item, { minLength: k, maxLength: k }));

export const deepNesting = fc
  .record({
    levels: exactly(depth, fc.nat({ max: OPENERS.length - 1 })),
    suffixes: exactly(fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 2 * MAX_NESTING })), fc.nat({ max: SUFFIXES.length - 1 })),
    atom: fc.constantFrom(...ATOMS),
    closing: fc.constantFrom(...CLOSING),
    host,
  })
  .map(({ levels, suffixes, atom, closing, host: h }) => {
    const open = levels.map((i) => OPENERS[i][0]).join('');
    let close = levels
      .map((i) => OPENERS[i][1])
      .reverse()
      .join('');
    if (closing === 'none') close = '';
    else if (closing === 'half') close = close.slice(0, close.length >> 1);
    else if (closing === 'extra') close += ')]}';
    else if (closing === 'wrong') close = close.replace(/[)\]}]/g, (c) => ({ ')': ']', ']': '}', '}': ')' })[c]!);
    return HOSTS[h](`${open}${atom}${suffixes.map((i) => SUFFIXES[i]).join('')}${close}`);
  });

/** `count: ((...(100)...))` in a clean program: fine up to the limit, one PIPE1014 past it. */
export const nestedParentheses = fc
  .oneof(fc.integer({ min: MAX_NESTING - 5, max: MAX_NESTING + 5 }), fc.integer({ min: 0, max: 3 * MAX_NESTING }))
  .map((k) => ({ k, text: hole('count: 100')(`${'('.repeat(k)}100${')'.repeat(k)}`) }));

// ---------------------------------------------------------------------------------------------------
// (d) Long lines

const CHAIN_OPS = [' + ', ' - ', ' * ', ' / ', ' % ', ' | ', ' and ', ' or ', ' == ', ' < ', ' x ', ' ** ', '.a'];
const CHAIN_ATOMS = ['1', '2.5', 'y', '"s"', 'true', '80GB', 'vision.hidden', 'f(1)', '(1 + 2)', '-1', 'not true'];
const STRAYS = ['@', '#', '"', ';', '\u0000', '\ud800', '😀', '/*', '}', '(', 'model'];

export const longLine = fc
  .record({
    terms: fc.integer({ min: 50, max: 1200 }),
    op: fc.constantFrom(...CHAIN_OPS),
    atom: fc.constantFrom(...CHAIN_ATOMS),
    stray: fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.constantFrom(...STRAYS)) }),
    host,
  })
  .map(({ terms, op, atom, stray, host: h }) => {
    let line = Array(terms).fill(atom).join(op);
    if (stray) {
      const at = stray[0] % (line.length + 1);
      line = line.slice(0, at) + stray[1] + line.slice(at);
    }
    return HOSTS[h](line);
  });

/** One huge token or comment on a line: a name, a number, a string, a line comment. */
export const longToken = fc
  .record({ n: fc.integer({ min: 200, max: 20_000 }), kind: fc.constantFrom('name', 'number', 'string', 'unterminated', 'comment', 'block'), host })
  .map(({ n, kind, host: h }) => {
    const body = kind === 'number' ? '9'.repeat(n) : 'a'.repeat(n);
    const x = { name: body, number: body, string: `"${body}"`, unterminated: `"${body}`, comment: `1 // ${body}\n`, block: `/* ${body} */ 1` }[kind];
    return HOSTS[h](x);
  });

// ---------------------------------------------------------------------------------------------------
// (e) Random bytes

const NOISY = '(){}[]<>-+*/%"\\:,.=!|&@#$;\n\t \r"\'0123456789eExabnot';
const byteCount = (max: number) => fc.integer({ min: 0, max });
const bytes = (max: number) => byteCount(max).chain((n) => fc.uint8Array({ minLength: n, maxLength: n }));
export const randomBytes = fc.oneof(
  // A file of random bytes, as `pipec check` reads it (UTF-8, bad sequences replaced), or as Latin-1.
  bytes(3000).map((b) => Buffer.from(b).toString('utf8')),
  bytes(2048).map((b) => Buffer.from(b).toString('latin1')),
  // Any UTF-16 code units, lone surrogates included (an editor buffer).
  byteCount(2048).chain((n) => fc.string({ unit: 'binary', minLength: n, maxLength: n })),
  // Noise made of the characters that matter to the lexer and parser: deep and unbalanced brackets.
  exactly(byteCount(3000), fc.constantFrom(...NOISY)).map((cs) => cs.join('')),
  // Random bytes spliced into a real program.
  fc.tuple(fc.nat({ max: CORPUS.length - 1 }), fc.nat(), bytes(512)).map(([i, at, b]) => {
    const t = CORPUS[i];
    const p = at % (t.length + 1);
    return t.slice(0, p) + Buffer.from(b).toString('utf8') + t.slice(p);
  }),
);
