// Pass 1-2: load the entry file and its imports (std/... from the standard library, relative paths from
// disk), build each file's scope, and report duplicates and imports that do not resolve.
import * as path from 'node:path';
import type * as A from '../ast/nodes.js';
import { M } from '../diagnostics/catalogue.js';
import type { Diagnostic } from '../diagnostics/diagnostic.js';
import { parse, type ParseResult } from '../parser/parse.js';
import type { Host, LoadedFile, ParamType, Reporter, SigInfo } from './program.js';
import { didYouMean } from './suggest.js';

/** Parsed standard-library files, keyed by path and text: they are read by every check. */
const parseCache = new Map<string, { text: string; result: ParseResult }>();

function parseCached(display: string, text: string, cache: boolean): ParseResult {
  if (!cache) return parse(display, text);
  const hit = parseCache.get(display);
  if (hit && hit.text === text) return hit.result;
  const result = parse(display, text);
  parseCache.set(display, { text, result });
  return result;
}

export function resolveImportPath(spec: string, fromFile: string, host: Host): string {
  if (spec.startsWith('std/')) return path.join(host.stdlibDir, `${spec.slice(4)}.pipe`);
  const p = path.resolve(path.dirname(fromFile), spec);
  return p.endsWith('.pipe') ? p : `${p}.pipe`;
}

export function declName(d: A.Decl): A.Ident {
  return d.name;
}

export function declKindWord(d: A.Decl): string {
  switch (d.kind) {
    case 'Model':
      return 'a model';
    case 'Dataset':
      return 'a dataset';
    case 'Stage':
      return 'a stage';
    case 'Template':
      return 'a template';
    case 'Signature':
      return `${d.sigKind === 'encoder' || d.sigKind === 'llm' ? 'an' : 'a'} ${d.sigKind} constructor`;
  }
}

export function loadProgram(entryPath: string, entryText: string, host: Host, reporter: Reporter): { entry: LoadedFile; files: LoadedFile[] } {
  const files: LoadedFile[] = [];
  const byPath = new Map<string, LoadedFile>();
  const stdPrefix = host.stdlibDir.endsWith(path.sep) ? host.stdlibDir : host.stdlibDir + path.sep;

  const load = (abs: string, text: string): LoadedFile => {
    const isStdlib = abs.startsWith(stdPrefix);
    const result = parseCached(host.display(abs), text, isStdlib);
    const file: LoadedFile = { path: abs, source: result.source, ast: result.ast, imports: [], scope: new Map(), isStdlib };
    byPath.set(abs, file);
    files.push(file);
    reporter.diagnostics.push(...result.diagnostics.map((d): Diagnostic => ({ ...d })));
    for (const imp of result.ast.imports) {
      if (!imp.path.value) continue;
      const target = resolveImportPath(imp.path.value, abs, host);
      const known = byPath.get(target);
      if (known) {
        if (!file.imports.includes(known)) file.imports.push(known);
        continue;
      }
      const t = host.readFile(target);
      if (t === undefined) {
        const d = reporter.report(M.ImportNotFound, imp.path.range, imp.path.value);
        if (imp.path.value.startsWith('std/')) {
          const stdNames = ['std/vision', 'std/projectors', 'std/llm', 'std/data', 'std/train'];
          d.hint = didYouMean(imp.path.value, stdNames, (s) => `"${s}"`) ?? `the standard library has ${stdNames.map((s) => `"${s}"`).join(', ')}`;
        } else d.hint = `looked for ${host.display(target)}`;
        continue;
      }
      file.imports.push(load(target, t));
    }
    return file;
  };

  const entry = load(entryPath, entryText);
  for (const f of files) buildScope(f, reporter);
  return { entry, files };
}

function buildScope(file: LoadedFile, reporter: Reporter): void {
  const local = new Map<string, A.Decl>();
  for (const d of file.ast.decls) {
    const n = declName(d).name;
    if (!n) continue;
    const prev = local.get(n);
    if (prev) {
      const diag = reporter.report(M.DuplicateDeclaration, d.name.range, declKindWord(d).replace(/^an? /, ''), n);
      diag.related = [{ message: `\`${n}\` is first declared here`, range: prev.name.range }];
      continue;
    }
    local.set(n, d);
  }
  // Imported names are visible unless a local declaration shadows them; when two imports declare the
  // same name, the first import wins.
  const scope = new Map<string, A.Decl>();
  for (const imp of file.imports) {
    for (const d of imp.ast.decls) {
      const n = d.name.name;
      if (!n || local.has(n)) continue;
      const prev = scope.get(n);
      if (prev && prev !== d) continue;
      scope.set(n, d);
    }
  }
  for (const [n, d] of local) scope.set(n, d);
  file.scope = scope;
}

const SIMPLE_TYPES = new Set(['int', 'float', 'string', 'bool', 'path', 'size', 'Template', 'Roles', 'Mixture']);

export function buildSig(decl: A.SignatureDecl, file: LoadedFile, reporter: Reporter): SigInfo {
  const params = new Map<string, { decl: A.ParamDecl; type: ParamType }>();
  const order: string[] = [];
  for (const p of decl.params) {
    if (params.has(p.name.name)) {
      reporter.report(M.DuplicateDeclaration, p.name.range, 'parameter', p.name.name);
      continue;
    }
    const type = paramType(p.type, reporter);
    if (!type) continue;
    params.set(p.name.name, { decl: p, type });
    order.push(p.name.name);
  }
  const presets = new Map<string, A.PresetDecl>();
  const fields = new Map<string, A.Field>();
  for (const it of decl.items) {
    if (it.kind === 'Preset') presets.set(it.name.value, it);
    else if (it.kind === 'Field') fields.set(it.name.name, it);
  }
  return { decl, file, name: decl.name.name, kind: decl.sigKind, params, order, presets, fields };
}

function paramType(e: A.Expr, reporter: Reporter): ParamType | undefined {
  if (e.kind === 'Ref') {
    if (SIMPLE_TYPES.has(e.name)) return { k: e.name as 'int' };
    const d = reporter.report(M.UnknownType, e.range, e.name);
    d.hint = didYouMean(e.name, SIMPLE_TYPES) ?? `use one of ${[...SIMPLE_TYPES].join(', ')}, or an enum such as "a" | "b"`;
    return undefined;
  }
  const values: string[] = [];
  const collect = (x: A.Expr): boolean => {
    if (x.kind === 'String') {
      values.push(x.value);
      return true;
    }
    if (x.kind === 'Binary' && x.op === '|') return collect(x.left) && collect(x.right);
    return false;
  };
  if (e.kind !== 'Missing' && collect(e)) return { k: 'enum', values };
  if (e.kind !== 'Missing') reporter.report(M.UnknownType, e.range, 'expression');
  return undefined;
}
