// Pass 1-2: load the entry file and its imports (std/... from the standard library, relative paths from
// disk), build each file's scope, and report duplicates and imports that do not resolve.
import * as path from 'node:path';
import type * as A from '../ast/nodes.js';
import { M } from '../diagnostics/catalogue.js';
import { parse, type ParseResult } from '../parser/parse.js';
import type { Host, LoadedFile, ParamType, Reporter, SigInfo } from './program.js';
import { closest, didYouMean } from './suggest.js';

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

  /** The files being loaded, each importing the next: an import of one of them closes a cycle. */
  const loading: LoadedFile[] = [];

  const load = (abs: string, text: string): LoadedFile => {
    const isStdlib = abs.startsWith(stdPrefix);
    const result = parseCached(host.display(abs), text, isStdlib);
    const file: LoadedFile = { path: abs, source: result.source, ast: result.ast, imports: [], scope: new Map(), isStdlib };
    byPath.set(abs, file);
    files.push(file);
    for (const d of result.diagnostics) reporter.diagnostics.push({ ...d }); // not push(...): there may be very many
    loading.push(file);
    for (const imp of result.ast.imports) {
      if (!imp.path.value) continue;
      const target = resolveImportPath(imp.path.value, abs, host);
      const known = byPath.get(target);
      if (known) {
        const from = loading.indexOf(known);
        if (from >= 0) {
          // Still loading, so it imports this file, directly or not. Its names stay visible here (fewer
          // follow-on errors), but a cycle is an error: neither file can be read first.
          const cycle = [...loading.slice(from), known].map((f) => host.display(f.path)).join(' -> ');
          const d = reporter.report(M.ImportCycle, imp.range, cycle);
          d.hint = 'move what both files need into a third file that both import';
        }
        if (!file.imports.includes(known)) file.imports.push(known);
        continue;
      }
      const t = host.readFile(target);
      if (t === undefined) {
        const d = reporter.report(M.ImportNotFound, imp.path.range, imp.path.value);
        if (imp.path.value.startsWith('std/')) {
          const stdNames = ['std/vision', 'std/projectors', 'std/llm', 'std/data', 'std/train'];
          const near = closest(imp.path.value, stdNames);
          d.hint = near ? `did you mean "${near}"?` : `the standard library has ${stdNames.map((s) => `"${s}"`).join(', ')}`;
          if (near) {
            d.fixes = [{ title: `Use "${near}"`, range: imp.path.range, newText: JSON.stringify(near) }];
            // Read the module the misspelling most likely meant, so that the names it declares are not
            // reported unknown as well: one mistake, one diagnostic.
            const meant = resolveImportPath(near, abs, host);
            const known = byPath.get(meant);
            const text = known ? undefined : host.readFile(meant);
            const f = known ?? (text === undefined ? undefined : load(meant, text));
            if (f && !file.imports.includes(f)) file.imports.push(f);
          }
        } else d.hint = `looked for ${host.display(target)}`;
        continue;
      }
      file.imports.push(load(target, t));
    }
    loading.pop();
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

const SIMPLE_TYPES = new Set(['int', 'float', 'string', 'strings', 'bool', 'path', 'size', 'Template', 'Roles', 'Mixture']);

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
  // `"a" | "b" | "c"`: a chain whose left operands are `|` again, walked in a loop (it may be long).
  const collect = (top: A.Expr): boolean => {
    const rights: A.Expr[] = [];
    let x = top;
    for (; x.kind === 'Binary' && x.op === '|'; x = x.left) rights.push(x.right);
    if (x.kind !== 'String') return false;
    values.push(x.value);
    for (let i = rights.length - 1; i >= 0; i--) if (!collect(rights[i])) return false;
    return true;
  };
  if (e.kind !== 'Missing' && collect(e)) return { k: 'enum', values };
  if (e.kind !== 'Missing') reporter.report(M.UnknownType, e.range, 'expression');
  return undefined;
}
