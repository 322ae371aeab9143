// Run configuration: YAML files (`--config run.yaml`) and `--set` options that override stage fields and
// the paths a program names. Both are validated against schema/run-config.schema.json (ajv) and flattened
// into one Override per leaf value, each located in its source so later phases can point at it.
// Nothing here throws: every problem, from a YAML syntax error to an alias bomb, becomes a Diagnostic.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { readFileSync, statSync } from 'node:fs';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { closest } from '../check/suggest.js';
import { M, type MessageDef } from '../diagnostics/catalogue.js';
import type { Diagnostic } from '../diagnostics/diagnostic.js';
import { SourceFile, type Position, type Range } from '../diagnostics/source.js';

/** The schema, at a stable path editors can use. Compiled JS lives in dist/compiler/config/. */
export const RUN_CONFIG_SCHEMA_URL = new URL('../../../schema/run-config.schema.json', import.meta.url);
/** The file name --set diagnostics and overrides point into; its text is the options joined by spaces. */
export const SET_FILE = '<--set>';
const MAX_BYTES = 1024 * 1024;
const MAX_ALIASES = 100;
const MAX_DIAGNOSTICS = 50;
/** Far deeper than any run config; deeper input would only exhaust the YAML parser's stack. */
const MAX_NESTING = 64;

export interface Override {
  stage?: string;
  section: 'stages' | 'paths' | 'run';
  path: string[];
  value: unknown;
  /** Location of the VALUE in the YAML file, or in the --set text. */
  range: Range;
  /** The YAML file's path, or '--set'. */
  source: string;
}

export interface RunConfig {
  overrides: Override[];
  runDir?: string;
  backend?: string;
  diagnostics: Diagnostic[];
}

// ---------------------------------------------------------------------------------------------------
// Helpers

function diag<A extends unknown[]>(m: MessageDef<A>, range: Range, ...args: A): Diagnostic {
  return { code: m.code, severity: m.severity, message: m.format(...args), range };
}

const START: Position = { line: 1, column: 1, offset: 0 };
function fileStart(file: string): Range {
  return { file, start: START, end: START };
}

function failed(...diagnostics: Diagnostic[]): RunConfig {
  return { overrides: [], diagnostics };
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Set an own property even when the key is `__proto__`. */
function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

function lowerFirst(s: string): string {
  return /^[A-Z][a-z]/.test(s) ? s[0].toLowerCase() + s.slice(1) : s;
}

// ---------------------------------------------------------------------------------------------------
// The schema validator, compiled once

let compiled: ValidateFunction | undefined;
function validator(): ValidateFunction {
  if (!compiled) {
    const schema = JSON.parse(readFileSync(RUN_CONFIG_SCHEMA_URL, 'utf8')) as object;
    compiled = new Ajv({ allErrors: true, verbose: true, strict: true, strictRequired: false, allowUnionTypes: true }).compile(schema);
  }
  return compiled;
}

/** Where things sit in a config's source: `value` for a value's text, `key` for the key naming it. */
interface Locator {
  value(path: string[]): Range;
  key(path: string[]): Range;
}

interface SchemaResult {
  diagnostics: Diagnostic[];
  /** JSON paths whose values were rejected: their leaves become no overrides. */
  bad: string[][];
}

const NAME_RULE = 'letters, digits and `_`, not starting with a digit';

function shown(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

const TYPE_WORDS: Record<string, string> = {
  integer: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'a mapping (key: value)',
  array: 'a list',
  null: 'nothing',
};

function typeWords(t: unknown): string {
  const types = (Array.isArray(t) ? t : [t]).map(String);
  if (types.length > 1 && types.every((x) => x in TYPE_WORDS)) {
    const bare = types.map((x) => TYPE_WORDS[x].replace(/^an? /, ''));
    return `a ${bare.slice(0, -1).join(', ')} or ${bare[bare.length - 1]}`;
  }
  return types.map((x) => TYPE_WORDS[x] ?? x).join(' or ');
}

function branchWords(branches: unknown): string {
  if (!Array.isArray(branches)) return 'something else';
  return branches.map((b: { description?: string; type?: unknown }) => b.description ?? typeWords(b.type)).join(', or ');
}

function decodePointer(p: string): string[] {
  return p === '' ? [] : p.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Validate `value`; ajv's errors become readable diagnostics at the offending key or value. */
function validate(value: unknown, loc: Locator, skip: string[][] = []): SchemaResult {
  const v = validator();
  if (v(value)) return { diagnostics: [], bad: [] };
  const errors = v.errors ?? [];
  // A failed oneOf/anyOf repeats the errors of each branch; report the union once instead.
  const unions = errors.filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf').map((e) => e.schemaPath + '/');
  const out: SchemaResult = { diagnostics: [], bad: [] };
  const seen = new Set<string>();
  let dropped = 0;
  for (const e of errors) {
    if (e.propertyName !== undefined) continue; // reported by its `propertyNames` error
    if (unions.some((u) => e.schemaPath.startsWith(u))) continue;
    const path = decodePointer(e.instancePath);
    if (skip.some((p) => startsWith(path, p))) continue; // already reported as an unsupported value
    const d = schemaError(e, path, loc, out.bad);
    const id = `${d.range.file}:${d.range.start.offset}:${d.message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    if (out.diagnostics.length >= MAX_DIAGNOSTICS) dropped++;
    else out.diagnostics.push(d);
  }
  if (dropped) {
    const last = out.diagnostics[out.diagnostics.length - 1];
    last.hint = `${last.hint ? `${last.hint}; ` : ''}${dropped} more problem${dropped === 1 ? '' : 's'} not shown`;
  }
  return out;
}

function schemaError(e: ErrorObject, path: string[], loc: Locator, bad: string[][]): Diagnostic {
  const where = path.length ? path.join('.') : 'top level';
  const params = e.params as Record<string, unknown>;
  const report = (range: Range, why: string, hint?: string): Diagnostic => {
    const d = diag(M.ConfigSchema, range, where, why);
    if (hint) d.hint = hint;
    return d;
  };
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      bad.push([...path, key]);
      const props = (e.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
      const allowed = Object.keys(props).filter((k) => k !== '$schema');
      const near = closest(key, allowed);
      const range = loc.key([...path, key]);
      if (!near) return report(range, `unknown key \`${key}\``, allowed.length ? `allowed keys: ${allowed.join(', ')}` : undefined);
      const d = report(range, `unknown key \`${key}\`; did you mean \`${near}\`?`);
      d.fixes = [{ title: `replace with \`${near}\``, range, newText: near }];
      return d;
    }
    case 'propertyNames': {
      const key = String(params.propertyName);
      bad.push([...path, key]);
      return report(loc.key([...path, key]), `\`${key}\` is not a valid name (${NAME_RULE})`);
    }
    case 'not': {
      const req = (e.schema as { required?: string[] } | undefined)?.required;
      const data = e.data as Record<string, unknown> | undefined;
      if (req && data) {
        for (const k of req) bad.push([...path, k]);
        // Point at whichever of the clashing keys comes last.
        const ranges = req.map((k) => loc.key([...path, k]));
        const last = ranges.reduce((a, b) => (b.start.offset > a.start.offset ? b : a));
        return report(last, `give either ${req.map((k) => `\`${k}\``).join(' or ')}, not ${req.length === 2 ? 'both' : 'several'}`, `remove one of ${req.map((k) => `\`${k}\``).join(', ')}`);
      }
      bad.push(path);
      return report(loc.value(path), 'is not allowed here');
    }
    case 'required':
      return report(loc.key(path), `missing \`${String(params.missingProperty)}\``);
    case 'type':
      bad.push(path);
      return report(loc.value(path), `expected ${typeWords(params.type)}, got ${shown(e.data)}`);
    case 'oneOf':
    case 'anyOf':
      bad.push(path);
      return report(loc.value(path), `expected ${branchWords(e.schema)}; got ${shown(e.data)}`);
    case 'enum': {
      bad.push(path);
      const allowed = (params.allowedValues as unknown[]).map(String);
      const near = typeof e.data === 'string' ? closest(e.data, allowed) : undefined;
      return report(loc.value(path), `must be one of ${allowed.join(', ')}, got ${shown(e.data)}${near ? `; did you mean \`${near}\`?` : ''}`);
    }
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      bad.push(path);
      return report(loc.value(path), `must be ${String(params.comparison)} ${String(params.limit)}, got ${shown(e.data)}`);
    case 'pattern':
      bad.push(path);
      if (e.parentSchema && (e.parentSchema as { description?: string }).description?.startsWith('A name')) return report(loc.value(path), `${shown(e.data)} is not a valid name (${NAME_RULE})`);
      return report(loc.value(path), `${shown(e.data)} does not match ${String(params.pattern)}`);
    case 'minLength':
      bad.push(path);
      return report(loc.value(path), 'must not be empty');
    case 'maxProperties':
      bad.push(path);
      return report(loc.value(path), `has more than ${String(params.limit)} entries`);
    default:
      bad.push(path);
      return report(loc.value(path), e.message ?? 'is invalid');
  }
}

/** Values YAML can produce that are not JSON (dates, sets, binary, under `%YAML 1.1`) are rejected. */
function unsupportedValues(value: unknown, loc: Locator): SchemaResult {
  const out: SchemaResult = { diagnostics: [], bad: [] };
  const seen = new Set<object>();
  const walk = (v: unknown, path: string[]): void => {
    if (v === null || typeof v !== 'object' || seen.has(v) || out.diagnostics.length >= MAX_DIAGNOSTICS) return;
    seen.add(v);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, String(i)]));
    else if (isPlainObject(v)) {
      for (const [k, x] of Object.entries(v)) if (!(path.length === 0 && k.startsWith('x-'))) walk(x, [...path, k]);
    } else {
      out.bad.push(path);
      const kind = v instanceof Date ? 'a date' : v instanceof Set ? 'a set' : v instanceof Map ? 'an ordered map' : v instanceof Uint8Array ? 'binary data' : 'an unsupported YAML value';
      out.diagnostics.push(diag(M.ConfigSchema, loc.value(path), path.join('.') || 'top level', `${kind} is not allowed here; write a plain number, string or boolean`));
    }
  };
  walk(value, []);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Flattening a validated config into overrides

function startsWith(path: string[], prefix: string[]): boolean {
  return prefix.length <= path.length && prefix.every((p, i) => path[i] === p);
}

function flatten(value: unknown, loc: Locator, source: string, bad: string[][]): RunConfig {
  const cfg: RunConfig = { overrides: [], diagnostics: [] };
  if (!isPlainObject(value)) return cfg;
  const isBad = (path: string[]) => bad.some((b) => startsWith(path, b));
  const leaves = (v: unknown, path: string[], emit: (path: string[], v: unknown) => void): void => {
    if (isBad(path)) return;
    if (isPlainObject(v)) for (const [k, x] of Object.entries(v)) leaves(x, [...path, k], emit);
    else emit(path, v);
  };
  if (isPlainObject(value.stages)) {
    for (const [stage, fields] of Object.entries(value.stages)) {
      if (!isPlainObject(fields)) continue;
      leaves(fields, ['stages', stage], (p, v) => cfg.overrides.push({ stage, section: 'stages', path: p.slice(2), value: v, range: loc.value(p), source }));
    }
  }
  if (isPlainObject(value.paths)) {
    leaves(value.paths, ['paths'], (p, v) => {
      if (p.length > 1) cfg.overrides.push({ section: 'paths', path: p.slice(1), value: v, range: loc.value(p), source });
    });
  }
  for (const k of ['run_dir', 'backend'] as const) {
    const v = value[k];
    if (typeof v !== 'string' || isBad([k])) continue;
    cfg.overrides.push({ section: 'run', path: [k], value: v, range: loc.value([k]), source });
    if (k === 'run_dir') cfg.runDir = v;
    else cfg.backend = v;
  }
  return cfg;
}

// ---------------------------------------------------------------------------------------------------
// Finding a JSON path in a YAML document (through aliases and `<<` merge keys)

type ToRange = (start: number, end: number) => Range;

function resolveNode(doc: Document, n: unknown): unknown {
  for (let i = 0; i < 64 && isAlias(n); i++) n = n.resolve(doc);
  return n;
}

function keyText(doc: Document, k: unknown): string | undefined {
  const r = resolveNode(doc, k);
  if (!isScalar(r) || typeof r.value === 'symbol') return undefined;
  return String(r.value);
}

function isMergeKey(k: unknown): boolean {
  return isScalar(k) && (k.value === '<<' || (typeof k.value === 'symbol' && k.value.description === '<<'));
}

/** The pair for `key` in a map: its own keys first, then the maps it merges with `<<`. */
function findPair(doc: Document, map: unknown, key: string, depth = 0): { key: unknown; value: unknown } | undefined {
  if (!isMap(map) || depth > 16) return undefined;
  for (const p of map.items) if (keyText(doc, p.key) === key) return p;
  for (const p of map.items) {
    if (!isMergeKey(p.key)) continue;
    const src = resolveNode(doc, p.value);
    const sources = isSeq(src) ? src.items.map((x) => resolveNode(doc, x)) : [src];
    for (const s of sources) {
      const hit = findPair(doc, s, key, depth + 1);
      if (hit) return hit;
    }
  }
  return undefined;
}

function nodeRange(n: unknown, toRange: ToRange): Range | undefined {
  const r = (n as Node | null | undefined)?.range;
  return r && r[1] > r[0] ? toRange(r[0], r[1]) : undefined;
}

/** Locate JSON paths in `doc`; `fallback` is used for the document itself and for paths not written there. */
function yamlLocator(doc: Document, toRange: ToRange, fallback: Range): Locator {
  const walk = (path: string[]) => {
    let node: unknown = doc.contents;
    let key: unknown;
    let found = 0;
    for (const seg of path) {
      const n = resolveNode(doc, node);
      if (isMap(n)) {
        const p = findPair(doc, n, seg);
        if (!p) break;
        key = p.key;
        node = p.value;
      } else if (isSeq(n) && /^\d+$/.test(seg) && Number(seg) < n.items.length) {
        key = undefined;
        node = n.items[Number(seg)];
      } else break;
      found++;
    }
    return { node, key, complete: found === path.length };
  };
  return {
    value(path) {
      const w = walk(path);
      if (!w.complete) return nodeRange(w.key, toRange) ?? nodeRange(w.node, toRange) ?? fallback;
      return nodeRange(w.node, toRange) ?? nodeRange(w.key, toRange) ?? fallback;
    },
    key(path) {
      const w = walk(path);
      return nodeRange(w.key, toRange) ?? nodeRange(w.node, toRange) ?? fallback;
    },
  };
}

function firstAliasRange(doc: Document, toRange: ToRange): Range | undefined {
  let range: Range | undefined;
  visit(doc, {
    Alias(_, node) {
      range = nodeRange(node, toRange);
      return visit.BREAK;
    },
  });
  return range;
}

/**
 * Where `text` nests deeper than MAX_NESTING (flow brackets, or block indicators such as `- - - x` on one
 * line), found by a cheap scan before parsing. Brackets inside strings and comments count too; no real
 * config comes near the limit.
 */
function tooDeep(text: string): number | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_NESTING) return i;
    } else if ((c === 0x5d || c === 0x7d) && depth > 0) depth--;
  }
  const m = new RegExp(`^[ \\t]*(?:[-?:][ \\t]+){${MAX_NESTING},}`, 'm').exec(text);
  return m ? m.index : undefined;
}

const YAML_OPTIONS = { prettyErrors: false, merge: true, uniqueKeys: true } as const;

type Converted = { ok: true; value: unknown } | { ok: false; diagnostics: Diagnostic[] };

/** YAML errors -> M.YamlSyntax; the document -> JS with aliases bounded (-> M.YamlAliasLimit). */
function toJS(doc: Document, toRange: ToRange, fallback: Range): Converted {
  if (doc.errors.length) {
    const diagnostics: Diagnostic[] = [];
    const seen = new Set<string>();
    for (const e of doc.errors) {
      const d = diag(M.YamlSyntax, toRange(e.pos[0], Math.max(e.pos[0], e.pos[1])), lowerFirst(e.message.split('\n')[0]));
      const id = `${d.range.start.offset}:${d.message}`;
      if (seen.has(id) || diagnostics.length >= MAX_DIAGNOSTICS) continue;
      seen.add(id);
      diagnostics.push(d);
    }
    return { ok: false, diagnostics };
  }
  try {
    return { ok: true, value: doc.toJS({ maxAliasCount: MAX_ALIASES }) };
  } catch (e) {
    const msg = errorMessage(e);
    if (/alias count|resource exhaustion/i.test(msg)) return { ok: false, diagnostics: [diag(M.YamlAliasLimit, firstAliasRange(doc, toRange) ?? fallback)] };
    return { ok: false, diagnostics: [diag(M.YamlSyntax, fallback, lowerFirst(msg.split('\n')[0]))] };
  }
}

// ---------------------------------------------------------------------------------------------------
// YAML files

/** Parse YAML text (file path used for ranges). Never throws. */
export function parseRunConfig(path: string, text: string): RunConfig {
  const fallback = fileStart(path);
  try {
    if (text.length > MAX_BYTES || Buffer.byteLength(text, 'utf8') > MAX_BYTES) {
      return failed(diag(M.YamlSyntax, fallback, `file too large (${Buffer.byteLength(text, 'utf8')} bytes; a run config may be at most 1 MiB)`));
    }
    const deep = tooDeep(text);
    if (deep !== undefined) {
      const at = new SourceFile(path, text).range(deep, deep + 1);
      return failed(diag(M.YamlSyntax, at, `nested more than ${MAX_NESTING} levels deep`));
    }
    const lineCounter = new LineCounter();
    const doc = parseDocument(text, { ...YAML_OPTIONS, lineCounter });
    const pos = (offset: number): Position => {
      const { line, col } = lineCounter.linePos(offset);
      return { line, column: col, offset };
    };
    const toRange: ToRange = (start, end) => ({ file: path, start: pos(start), end: pos(end) });
    const js = toJS(doc, toRange, fallback);
    if (!js.ok) return failed(...js.diagnostics);
    const value = js.value ?? {}; // an empty file overrides nothing
    const loc = yamlLocator(doc, toRange, fallback);
    const odd = unsupportedValues(value, loc);
    const checked = validate(value, loc, odd.bad);
    const cfg = flatten(value, loc, path, [...odd.bad, ...checked.bad]);
    cfg.diagnostics.push(...odd.diagnostics, ...checked.diagnostics);
    cfg.diagnostics.sort((a, b) => a.range.start.offset - b.range.start.offset);
    return cfg;
  } catch (e) {
    return failed(diag(M.YamlSyntax, fallback, `cannot read the run config: ${errorMessage(e)}`));
  }
}

/** Read a file (missing -> M.ConfigNotFound diagnostic with a range at 1:1 of that path). Never throws. */
export function loadRunConfig(path: string): RunConfig {
  const at = fileStart(path);
  try {
    let size: number;
    try {
      const st = statSync(path);
      if (st.isDirectory()) return failed(diag(M.YamlSyntax, at, 'this is a directory, not a YAML file'));
      size = st.size;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return failed(diag(M.ConfigNotFound, at, path));
      return failed(diag(M.YamlSyntax, at, `cannot read the file: ${errorMessage(e)}`));
    }
    if (size > MAX_BYTES) return failed(diag(M.YamlSyntax, at, `file too large (${size} bytes; a run config may be at most 1 MiB)`));
    return parseRunConfig(path, readFileSync(path, 'utf8'));
  } catch (e) {
    return failed(diag(M.YamlSyntax, at, `cannot read the file: ${errorMessage(e)}`));
  }
}

// ---------------------------------------------------------------------------------------------------
// --set options

/** A --set value: a YAML scalar (2e-4 -> number, true -> boolean, 80GB -> string), or a flow collection. */
function parseSetValue(raw: string, at: (start: number, end: number) => Range, whole: Range): { value: unknown; doc?: Document; diagnostics?: Diagnostic[] } {
  const t = raw.trim();
  const deep = tooDeep(raw);
  if (deep !== undefined) return { value: undefined, diagnostics: [diag(M.YamlSyntax, at(deep, deep + 1), `nested more than ${MAX_NESTING} levels deep`)] };
  if (t.startsWith('{') || t.startsWith('[')) {
    const doc = parseDocument(raw, YAML_OPTIONS);
    const js = toJS(doc, at, whole);
    return js.ok ? { value: js.value, doc } : { value: undefined, diagnostics: js.diagnostics };
  }
  try {
    const doc = parseDocument(raw, YAML_OPTIONS);
    if (doc.errors.length === 0 && (doc.contents === null || isScalar(doc.contents))) return { value: doc.toJS({ maxAliasCount: MAX_ALIASES }) as unknown };
  } catch {
    // not a plain scalar: keep the text
  }
  return { value: raw };
}

function parseOneSet(s: string, base: number, src: SourceFile): RunConfig {
  const whole = src.range(base, base + s.length);
  const bad = (): RunConfig => failed(diag(M.BadSetOption, whole, s));
  const eq = s.indexOf('=');
  if (eq <= 0) return bad();
  const segs: { text: string; range: Range }[] = [];
  let at = 0;
  for (const text of s.slice(0, eq).split('.')) {
    segs.push({ text, range: src.range(base + at, base + at + text.length) });
    at += text.length + 1;
  }
  if (segs.some((x) => x.text.trim() === '' || x.text !== x.text.trim())) return bad();
  const keys = segs.map((x) => x.text);
  if (keys[0] === 'stage') keys[0] = 'stages';
  if ((keys[0] === 'stages' && keys.length < 3) || (keys[0] === 'paths' && keys.length < 2)) return bad();

  const raw = s.slice(eq + 1);
  const valueStart = base + eq + 1;
  const valueRange = raw.length ? src.range(valueStart, base + s.length) : whole;
  const shifted: ToRange = (a, b) => src.range(valueStart + a, valueStart + b);
  const parsed = parseSetValue(raw, shifted, valueRange);
  if (parsed.diagnostics) return failed(...parsed.diagnostics);

  // The option as the object a YAML file would hold.
  const root: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  let obj = root;
  for (const k of keys.slice(0, -1)) {
    const next = Object.create(null) as Record<string, unknown>;
    setOwn(obj, k, next);
    obj = next;
  }
  setOwn(obj, keys[keys.length - 1], parsed.value);

  const inner = parsed.doc ? yamlLocator(parsed.doc, shifted, valueRange) : undefined;
  const n = keys.length;
  const loc: Locator = {
    value(path) {
      if (path.length === 0) return whole;
      if (path.length < n) return segs[path.length - 1].range;
      if (path.length === n) return valueRange;
      return inner ? inner.value(path.slice(n)) : valueRange;
    },
    key(path) {
      if (path.length === 0) return whole;
      if (path.length <= n) return segs[path.length - 1].range;
      return inner ? inner.key(path.slice(n)) : valueRange;
    },
  };
  const odd = unsupportedValues(root, loc);
  const checked = validate(root, loc, odd.bad);
  const cfg = flatten(root, loc, '--set', [...odd.bad, ...checked.bad]);
  cfg.diagnostics.push(...odd.diagnostics, ...checked.diagnostics);
  return cfg;
}

/**
 * `--set stage.align.optimizer.lr=2e-4`, `--set paths.weights.vision=/x`, `--set run_dir=runs/x` -> overrides.
 * Values are YAML scalars (or flow collections such as `{every: 500, keep: 3}`), validated against the same
 * schema as a file. Ranges point into the file '<--set>' whose text is the options joined by single spaces
 * (line 1; for a single option the column is the column within the option text). Later options win.
 */
export function parseSetOptions(sets: string[]): RunConfig {
  const text = sets.join(' ');
  const src = new SourceFile(SET_FILE, text);
  const configs: RunConfig[] = [];
  let base = 0;
  for (const s of sets) {
    try {
      configs.push(parseOneSet(s, base, src));
    } catch {
      configs.push(failed(diag(M.BadSetOption, src.range(base, base + s.length), s)));
    }
    base += s.length + 1;
  }
  return mergeRunConfigs(...configs);
}

// ---------------------------------------------------------------------------------------------------
// Merging

/** The slot an override fills: a stage's `epochs` and `steps` are one slot (a stage has one or the other). */
function slot(o: Override): string {
  const path = o.section === 'stages' && o.path.length === 1 && (o.path[0] === 'epochs' || o.path[0] === 'steps') ? ['epochs|steps'] : o.path;
  return JSON.stringify([o.section, o.stage ?? null, path]);
}

/**
 * Merge several RunConfigs; later ones win for the same stage+path (a later `epochs` also replaces an
 * earlier `steps` of the same stage, and the reverse). Diagnostics are kept from all of them.
 */
export function mergeRunConfigs(...configs: RunConfig[]): RunConfig {
  const all = configs.flatMap((c) => c.overrides);
  const last = new Map<string, number>();
  all.forEach((o, i) => last.set(slot(o), i));
  const out: RunConfig = { overrides: all.filter((o, i) => last.get(slot(o)) === i), diagnostics: configs.flatMap((c) => c.diagnostics) };
  for (const c of configs) {
    if (c.runDir !== undefined) out.runDir = c.runDir;
    if (c.backend !== undefined) out.backend = c.backend;
  }
  return out;
}
