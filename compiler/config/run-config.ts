// Run configuration: YAML files (`--config run.yaml`) and `--set` options that override stage fields and
// paths. Validated against schema/run-config.schema.json (ajv); every problem is a diagnostic located in
// the YAML (or in the --set text). Never throws.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { readFileSync } from 'node:fs';
import { isMap, isPair, isScalar, parseDocument, type Document, type Node } from 'yaml';
import { M, type MessageDef } from '../diagnostics/catalogue.js';
import type { Diagnostic } from '../diagnostics/diagnostic.js';
import { SourceFile, type Range } from '../diagnostics/source.js';
import { closest } from '../check/suggest.js';

export const RUN_CONFIG_SCHEMA_URL = new URL('../../../schema/run-config.schema.json', import.meta.url);
const MAX_BYTES = 1024 * 1024;
const MAX_ALIASES = 100;
export const SET_FILE = '<--set>';

export interface Override {
  stage?: string;
  section: 'stages' | 'paths' | 'run';
  path: string[];
  value: unknown;
  /** Where the value is written: in the YAML file, or in the --set text. */
  range: Range;
  source: string;
}

export interface RunConfig {
  overrides: Override[];
  runDir?: string;
  backend?: string;
  diagnostics: Diagnostic[];
}

let compiled: ValidateFunction | undefined;
function validator(): ValidateFunction {
  compiled ??= new Ajv({ allErrors: true, verbose: true, strict: true, strictRequired: false }).compile(JSON.parse(readFileSync(RUN_CONFIG_SCHEMA_URL, 'utf8')) as object);
  return compiled;
}

function diag<A extends unknown[]>(m: MessageDef<A>, range: Range, ...args: A): Diagnostic {
  return { code: m.code, severity: m.severity, message: m.format(...args), range };
}

/** Where each JSON path of the config sits in its source; `key` asks for the key, not the value. */
type Locate = (path: string[], key?: boolean) => Range;

function schemaDiagnostics(value: unknown, locate: Locate): Diagnostic[] {
  const v = validator();
  if (v(value)) return [];
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  for (const e of v.errors ?? []) {
    // `oneOf` / `not` failures repeat their branches' errors; keep the most specific ones.
    if (e.keyword === 'oneOf' || e.keyword === 'if') continue;
    const path = e.instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const d = schemaError(e, path, locate);
    const key = `${d.range.start.offset}:${d.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(d);
    }
  }
  return out;
}

function schemaError(e: ErrorObject, path: string[], locate: Locate): Diagnostic {
  const where = path.join('.') || 'the top level';
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      const allowed = Object.keys(((e.parentSchema as { properties?: object }).properties ?? {}) as object);
      const near = closest(key, allowed);
      const d = diag(M.ConfigSchema, locate([...path, key], true), where, `unknown key \`${key}\`${near ? `; did you mean \`${near}\`?` : allowed.length ? `; allowed: ${allowed.join(', ')}` : ''}`);
      if (near) d.hint = `did you mean \`${near}\`?`;
      return d;
    }
    case 'enum':
      return diag(M.ConfigSchema, locate(path), where, `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((x) => JSON.stringify(x)).join(', ')}`);
    case 'not':
      return diag(M.ConfigSchema, locate([...path, 'steps'], true), where, 'give either `epochs` or `steps`, not both');
    default:
      return diag(M.ConfigSchema, locate(path), where, e.message ?? 'is invalid');
  }
}

function flatten(value: unknown, locate: Locate, source: string): RunConfig {
  const cfg: RunConfig = { overrides: [], diagnostics: [] };
  if (!value || typeof value !== 'object') return cfg;
  const root = value as Record<string, unknown>;
  const leaves = (obj: unknown, path: string[], emit: (path: string[], v: unknown) => void) => {
    if (obj && typeof obj === 'object' && !Array.isArray(obj)) for (const [k, v] of Object.entries(obj)) leaves(v, [...path, k], emit);
    else emit(path, obj);
  };
  for (const [stage, fields] of Object.entries((root.stages ?? {}) as Record<string, unknown>)) {
    leaves(fields, [], (path, v) => cfg.overrides.push({ section: 'stages', stage, path, value: v, range: locate(['stages', stage, ...path]), source }));
  }
  leaves(root.paths ?? {}, [], (path, v) => {
    if (path.length) cfg.overrides.push({ section: 'paths', path, value: v, range: locate(['paths', ...path]), source });
  });
  for (const k of ['run_dir', 'backend'] as const) {
    if (root[k] === undefined) continue;
    cfg.overrides.push({ section: 'run', path: [k], value: root[k], range: locate([k]), source });
    if (k === 'run_dir') cfg.runDir = String(root[k]);
    else cfg.backend = String(root[k]);
  }
  return cfg;
}

function yamlLocator(doc: Document, src: SourceFile): Locate {
  return (path, key) => {
    let node: unknown = doc.contents;
    let keyNode: unknown;
    for (const part of path) {
      if (!isMap(node)) break;
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === part);
      if (!pair) break;
      keyNode = pair.key;
      node = pair.value;
    }
    const target = (key ? keyNode : node ?? keyNode) as Node | undefined;
    const r = target?.range;
    return r ? src.range(r[0], r[1]) : src.range(0, 0);
  };
}

export function parseRunConfig(path: string, text: string): RunConfig {
  const src = new SourceFile(path, text);
  if (text.length > MAX_BYTES) return { overrides: [], diagnostics: [diag(M.YamlSyntax, src.range(0, 0), `file too large (${text.length} bytes; the limit is ${MAX_BYTES})`)] };
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    return { overrides: [], diagnostics: doc.errors.map((e) => diag(M.YamlSyntax, src.range(e.pos[0], Math.max(e.pos[0], e.pos[1])), e.message.split('\n')[0])) };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (e) {
    const msg = (e as Error).message;
    if (/alias/i.test(msg)) return { overrides: [], diagnostics: [diag(M.YamlAliasLimit, src.range(0, 0))] };
    return { overrides: [], diagnostics: [diag(M.YamlSyntax, src.range(0, 0), msg)] };
  }
  if (value === null || value === undefined) value = {};
  const locate = yamlLocator(doc, src);
  const diagnostics = schemaDiagnostics(value, locate);
  if (diagnostics.length) return { overrides: [], diagnostics };
  return flatten(value, locate, path);
}

export function loadRunConfig(path: string): RunConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    const src = new SourceFile(path, '');
    return { overrides: [], diagnostics: [diag(M.ConfigNotFound, src.range(0, 0), path)] };
  }
  return parseRunConfig(path, text);
}

/** `--set stage.align.optimizer.lr=2e-4`, `--set paths.weights.vision=/ckpt`, `--set run_dir=runs/x`. */
export function parseSetOptions(sets: string[]): RunConfig {
  const text = sets.join(' ');
  const src = new SourceFile(SET_FILE, text);
  const diagnostics: Diagnostic[] = [];
  const root: Record<string, unknown> = {};
  const where = new Map<string, Range>();
  let offset = 0;
  for (const s of sets) {
    const eq = s.indexOf('=');
    const keyText = eq > 0 ? s.slice(0, eq) : '';
    const parts = keyText.split('.');
    if (eq <= 0 || parts.some((p) => !/^[A-Za-z_][\w-]*$/.test(p))) {
      diagnostics.push(diag(M.BadSetOption, src.range(offset, offset + s.length), s));
      offset += s.length + 1;
      continue;
    }
    if (parts[0] === 'stage') parts[0] = 'stages';
    const raw = s.slice(eq + 1);
    let value: unknown = raw;
    try {
      const doc = parseDocument(raw);
      const js: unknown = doc.errors.length ? raw : doc.toJS();
      if (js === null || typeof js !== 'object') value = js ?? raw;
    } catch {
      value = raw;
    }
    let obj = root;
    for (const p of parts.slice(0, -1)) obj = (obj[p] = obj[p] && typeof obj[p] === 'object' ? obj[p] : {}) as Record<string, unknown>;
    obj[parts[parts.length - 1]] = value;
    where.set(parts.join('.'), src.range(offset + eq + 1, offset + s.length));
    for (let i = 1; i < parts.length; i++) if (!where.has(parts.slice(0, i).join('.'))) where.set(parts.slice(0, i).join('.'), src.range(offset, offset + eq));
    offset += s.length + 1;
  }
  const locate: Locate = (path) => {
    for (let n = path.length; n > 0; n--) {
      const r = where.get(path.slice(0, n).join('.'));
      if (r) return r;
    }
    return src.range(0, 0);
  };
  diagnostics.push(...schemaDiagnostics(root, locate));
  if (diagnostics.length) return { overrides: [], diagnostics };
  return flatten(root, locate, '--set');
}

/** Later configs win for the same stage and path. */
export function mergeRunConfigs(...configs: RunConfig[]): RunConfig {
  const byKey = new Map<string, Override>();
  const out: RunConfig = { overrides: [], diagnostics: [] };
  for (const c of configs) {
    out.diagnostics.push(...c.diagnostics);
    for (const o of c.overrides) byKey.set(`${o.section}:${o.stage ?? ''}:${o.path.join('.')}`, o);
    out.runDir = c.runDir ?? out.runDir;
    out.backend = c.backend ?? out.backend;
  }
  out.overrides = [...byKey.values()];
  return out;
}
