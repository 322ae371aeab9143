// The PyTorch half of a custom component, read as text and never run: the user's modeling_*.py /
// configuration_*.py package as published with Hugging Face remote code. The package is the folder of
// the file `python:` names. Just enough Python is parsed here for the checks and the export: logical
// lines and their blocks, top-level names (class, def, assignments, imports), class bodies' simple
// assignments (`config_class = X`, `model_type = "x"`), and relative imports (`from .x import y`,
// `from . import x`, `from ..x import y`), which must resolve to files inside the package. Relative
// imports are what broke in the seed story ("attempted relative import with no known parent package"):
// the export keeps them working by carrying the package whole (runtime/export/torch.ts).
import * as path from 'node:path';
import { confineResolved, maskSource, relTo, type CodeFile, type CodeFs } from './code-files.js';

/** One logical line: its first physical line's offset, indentation, and the code (masked, continuation lines joined). */
interface LogicalLine {
  start: number;
  end: number;
  indent: number;
  code: string;
  /** The same line as written (strings intact), continuation lines joined. */
  source: string;
  /** The block headers that enclose it, outermost first (e.g. `class X(Y):`, `try:`). */
  enclosing: string[];
}

export interface PyImport {
  /** Offsets of `from ...` in the file. */
  start: number;
  end: number;
  /** Leading dots: 1 for `.x`, 2 for `..x`. */
  level: number;
  /** The module after the dots (`configuration_tanuki`, `sub.mod`), '' for `from . import x`. */
  module: string;
  /** Imported names with their local names; `*` for a star import. */
  names: { name: string; as: string }[];
  /** Inside a `try:` / `except` block: an optional import (its failure is the module's own business). */
  optional: boolean;
}

export interface PyClass {
  name: string;
  bases: string[];
  start: number;
  /** Simple assignments in its body: `config_class = TanukiConfig`, `model_type = "tanuki"` (values as written). */
  attrs: Map<string, string>;
}

export interface PyModule {
  file: CodeFile;
  /** Names bound at the top level (not inside a def or class), with where. */
  names: Map<string, number>;
  classes: Map<string, PyClass>;
  imports: PyImport[];
  /** `self.<attr> = Class(...)` assignments anywhere: attribute -> class name. */
  selfModules: Map<string, string>;
}

function logicalLines(text: string): LogicalLine[] {
  const code = maskSource(text, 'py');
  const lines: LogicalLine[] = [];
  const stack: { indent: number; code: string }[] = [];
  let i = 0;
  while (i < code.length) {
    let j = i;
    let depth = 0;
    // one logical line: until a newline outside brackets and not after a backslash
    while (j < code.length) {
      const c = code[j]!;
      if (c === '(' || c === '[' || c === '{') depth++;
      else if (c === ')' || c === ']' || c === '}') depth = Math.max(0, depth - 1);
      else if (c === '\n') {
        if (depth === 0 && code[j - 1] !== '\\') break;
      }
      j++;
    }
    const raw = code.slice(i, j);
    const join = (x: string) => x.replace(/\\\n/g, ' ').replace(/\n/g, ' ').trim();
    const body = join(raw);
    const indent = /^[ \t]*/.exec(raw)![0].replace(/\t/g, '        ').length;
    const stmt = body.trim();
    if (stmt) {
      while (stack.length && stack[stack.length - 1]!.indent >= indent) stack.pop();
      const lead = raw.length - raw.trimStart().length;
      lines.push({ start: i + lead, end: j, indent, code: stmt, source: join(text.slice(i, j)), enclosing: stack.map((s) => s.code) });
      // a block header (one-line bodies such as `if x: y` are rare in modeling files and only read as headers)
      if (/:\s*$/.test(stmt) || /^(class|def|async\s+def|if|elif|else|try|except|finally|for|while|with)\b[^:]*:/.test(stmt)) stack.push({ indent, code: stmt });
    }
    i = j + 1;
  }
  return lines;
}

const IDENT = /^[A-Za-z_]\w*$/;

/** Parses the parts of a Python file the checks read. */
export function parsePython(file: CodeFile): PyModule {
  const mod: PyModule = { file, names: new Map(), classes: new Map(), imports: [], selfModules: new Map() };
  const bind = (name: string, at: number) => {
    if (IDENT.test(name) && !mod.names.has(name)) mod.names.set(name, at);
  };
  for (const line of logicalLines(file.text)) {
    const inDef = line.enclosing.some((h) => /^(class|def|async\s+def)\b/.test(h));
    const optional = line.enclosing.some((h) => /^(try|except)\b/.test(h));
    const s = line.code;
    for (const m of s.matchAll(/\bself\.(\w+)\s*=\s*([A-Za-z_][\w.]*)\s*\(/g)) if (!mod.selfModules.has(m[1]!)) mod.selfModules.set(m[1]!, m[2]!.split('.').pop()!);
    let m: RegExpExecArray | null;
    if ((m = /^from\s+(\.+)([\w.]*)\s+import\s+(.+)$/.exec(s))) {
      const names = m[3]!.replace(/[()]/g, ' ').split(',').map((x) => x.trim()).filter(Boolean).map((x) => {
        const [name, as] = x.split(/\s+as\s+/);
        return { name: name!.trim(), as: (as ?? name!).trim() };
      });
      mod.imports.push({ start: line.start, end: line.end, level: m[1]!.length, module: m[2]!, names, optional });
      if (!inDef) for (const n of names) if (n.name !== '*') bind(n.as, line.start);
      continue;
    }
    if (inDef) {
      // a class body: simple assignments directly inside the class, values as written
      const owner = line.enclosing[line.enclosing.length - 1];
      const cls = owner && line.enclosing.length === 1 ? /^class\s+(\w+)/.exec(owner)?.[1] : undefined;
      const a = cls ? /^(\w+)\s*(?::[^=]*)?=(?!=)\s*(.+)$/.exec(line.source) : null;
      const c = cls ? mod.classes.get(cls) : undefined;
      if (c && a && !c.attrs.has(a[1]!)) c.attrs.set(a[1]!, a[2]!.replace(/\s+#.*$/, '').trim());
      continue;
    }
    if ((m = /^class\s+(\w+)\s*(?:\(([^)]*)\))?\s*:/.exec(s))) {
      bind(m[1]!, line.start);
      mod.classes.set(m[1]!, { name: m[1]!, bases: (m[2] ?? '').split(',').map((b) => b.trim()).filter(Boolean), start: line.start, attrs: new Map() });
    } else if ((m = /^(?:async\s+)?def\s+(\w+)/.exec(s))) bind(m[1]!, line.start);
    else if ((m = /^import\s+(.+)$/.exec(s))) {
      for (const part of m[1]!.split(',')) {
        const [name, as] = part.trim().split(/\s+as\s+/);
        bind(as ? as.trim() : name!.trim().split('.')[0]!, line.start);
      }
    } else if ((m = /^([A-Za-z_][\w, \t]*?)\s*(?::[^=]*)?=(?!=)/.exec(s))) for (const n of m[1]!.split(',')) bind(n.trim(), line.start);
  }
  return mod;
}

/** A problem in the package, located in one of its files. */
export interface PyProblem {
  file: CodeFile;
  start: number;
  end: number;
  why: string;
}

export interface PythonPackage {
  /** The package folder (the folder of the file `python:` names). */
  root: string;
  /** The modeling file's module name in the package (`modeling_tanuki`, `sub.modeling`). */
  module: string;
  /** The files the modeling file imports, transitively, with the package's `__init__.py` files on the way. */
  files: CodeFile[];
  modules: Map<string, PyModule>;
  problems: PyProblem[];
}

/** `a/b/c.py` under `root` -> `a.b.c`; `a/__init__.py` -> `a`. */
function moduleName(root: string, abs: string): string {
  const parts = path.relative(root, abs).split(path.sep);
  const last = parts.pop()!.replace(/\.py$/, '');
  if (last !== '__init__') parts.push(last);
  return parts.join('.');
}

/**
 * Reads the package from its modeling file: every relative import, transitively, must name a module
 * of the package (a `.py` file or a folder with `__init__.py`) and the names it imports must be defined
 * there. `programRoot`: every file must also stay inside the program's folder (links followed).
 */
export function readPythonPackage(modeling: string, programRoot: string, fs: CodeFs): PythonPackage {
  const root = path.dirname(modeling);
  const pkg: PythonPackage = { root, module: moduleName(root, modeling), files: [], modules: new Map(), problems: [] };
  const load = (abs: string): PyModule | undefined => {
    const name = moduleName(root, abs);
    const have = pkg.modules.get(name);
    if (have) return have;
    const text = fs.readFile(abs);
    if (text === undefined) return undefined;
    const file: CodeFile = { abs, rel: relTo(programRoot, abs), text };
    const mod = parsePython(file);
    pkg.modules.set(name, mod);
    pkg.files.push(file);
    // Python runs the __init__.py of each package on the way to a module
    for (let dir = path.dirname(abs); ; dir = path.dirname(dir)) {
      const init = path.join(dir, '__init__.py');
      if (init !== abs && fs.exists(init)) load(init);
      if (dir === root || path.dirname(dir) === dir) break;
    }
    for (const imp of mod.imports) resolveImport(mod, imp);
    return mod;
  };
  /** The file of module `dotted` in the package, or why not. */
  const moduleFile = (dotted: string): string | undefined => {
    const base = path.join(root, ...dotted.split('.').filter(Boolean));
    if (fs.exists(`${base}.py`) && !fs.isDirectory(`${base}.py`)) return `${base}.py`;
    if (fs.exists(path.join(base, '__init__.py'))) return path.join(base, '__init__.py');
    if (fs.isDirectory(base)) return base; // a namespace package: a folder without __init__.py
    return undefined;
  };
  const problem = (mod: PyModule, imp: PyImport, why: string) => {
    if (!imp.optional) pkg.problems.push({ file: mod.file, start: imp.start, end: imp.end, why });
  };
  const resolveImport = (mod: PyModule, imp: PyImport) => {
    // the package a module's relative imports start from: its own folder (an __init__.py is its package)
    const here = moduleName(root, mod.file.abs).split('.').filter(Boolean);
    const isInit = mod.file.abs.endsWith(`${path.sep}__init__.py`);
    const pkgParts = isInit ? here : here.slice(0, -1);
    const up = imp.level - 1;
    const written = `from ${'.'.repeat(imp.level)}${imp.module} import ${imp.names.map((n) => n.name).join(', ')}`;
    if (up > pkgParts.length) {
      problem(mod, imp, `\`${written}\` climbs above the package (the folder of the modeling file): a relative import must stay in it`);
      return;
    }
    const base = [...pkgParts.slice(0, pkgParts.length - up), ...imp.module.split('.').filter(Boolean)].join('.');
    const target = moduleFile(base);
    const shown = base ? `${base.replace(/\./g, '/')}.py` : '__init__.py';
    if (!target) {
      problem(mod, imp, `\`${written}\`: the package has no module ${shown}`);
      return;
    }
    const v = confineResolved(target, programRoot, fs);
    if (v.kind === 'refused') {
      problem(mod, imp, `\`${written}\`: ${shown} ${v.why}`);
      return;
    }
    const targetMod = fs.isDirectory(target) ? undefined : load(target);
    for (const n of imp.names) {
      if (n.name === '*') continue;
      // `from . import x` / `from .pkg import x`: x may be a submodule
      const sub = moduleFile(base ? `${base}.${n.name}` : n.name);
      if (sub) {
        if (!fs.isDirectory(sub) && confineResolved(sub, programRoot, fs).kind === 'inside') load(sub);
        continue;
      }
      if (!targetMod || !definesName(targetMod, n.name, new Set())) problem(mod, imp, `\`${written}\`: ${shown} does not define \`${n.name}\``);
    }
  };
  const definesName = (mod: PyModule, name: string, seen: Set<PyModule>): boolean => {
    if (mod.names.has(name)) return true;
    if (seen.has(mod)) return false;
    seen.add(mod);
    // a star import passes the names of its module on
    return mod.imports.some((imp) => imp.names.some((n) => n.name === '*') && [...pkg.modules.values()].some((m) => m !== mod && starTarget(mod, imp) === m.file.abs && definesName(m, name, seen)));
  };
  const starTarget = (mod: PyModule, imp: PyImport): string | undefined => {
    const here = moduleName(root, mod.file.abs).split('.').filter(Boolean);
    const pkgParts = mod.file.abs.endsWith(`${path.sep}__init__.py`) ? here : here.slice(0, -1);
    const up = imp.level - 1;
    if (up > pkgParts.length) return undefined;
    return moduleFile([...pkgParts.slice(0, pkgParts.length - up), ...imp.module.split('.').filter(Boolean)].join('.'));
  };
  load(modeling);
  return pkg;
}

/** Where a name of a module comes from: the module that defines it and its name there, following relative imports (aliases included). */
export function definingModule(pkg: PythonPackage, module: string, name: string, seen = new Set<string>()): { module: string; name: string } | undefined {
  const mod = pkg.modules.get(module);
  if (!mod || seen.has(`${module}:${name}`)) return undefined;
  seen.add(`${module}:${name}`);
  if (mod.classes.has(name)) return { module, name };
  for (const imp of mod.imports) {
    const n = imp.names.find((x) => x.as === name && x.name !== '*');
    if (!n) continue;
    const here = module.split('.').filter(Boolean);
    const pkgParts = mod.file.abs.endsWith(`${path.sep}__init__.py`) ? here : here.slice(0, -1);
    const base = [...pkgParts.slice(0, pkgParts.length - (imp.level - 1)), ...imp.module.split('.').filter(Boolean)].join('.');
    return definingModule(pkg, base, n.name, seen) ?? (pkg.modules.has(base) ? { module: base, name: n.name } : undefined);
  }
  return mod.names.has(name) ? { module, name } : undefined;
}

/** What the export needs to know of the class: where its config class lives, the model_type, its MoE block class. */
export interface PythonClassInfo {
  /** The module (in the package) that defines the class. */
  module: string;
  configClass?: { module: string; name: string };
  modelType?: string;
  /** The class of `self.block_sparse_moe = ...` (the MoE block a ZeRO-3 trainer keeps whole). */
  moeBlock?: string;
}

/** Follows the class and its bases (in the package) for `config_class`, then the config class for `model_type`. */
export function pythonClassInfo(pkg: PythonPackage, className: string): PythonClassInfo | undefined {
  const where = definingModule(pkg, pkg.module, className);
  if (!where) return undefined;
  const info: PythonClassInfo = { module: where.module };
  const attrOf = (mod: string, cls: string, key: string, seen = new Set<string>()): { value: string; module: string } | undefined => {
    const c = pkg.modules.get(mod)?.classes.get(cls);
    if (!c || seen.has(`${mod}.${cls}`)) return undefined;
    seen.add(`${mod}.${cls}`);
    const v = c.attrs.get(key);
    if (v !== undefined) return { value: v, module: mod };
    for (const b of c.bases) {
      const base = definingModule(pkg, mod, b);
      const hit = base ? attrOf(base.module, base.name, key, seen) : undefined;
      if (hit) return hit;
    }
    return undefined;
  };
  const cc = attrOf(where.module, where.name, 'config_class');
  if (cc && IDENT.test(cc.value)) {
    const cfg = definingModule(pkg, cc.module, cc.value);
    if (cfg) {
      info.configClass = cfg;
      const mt = attrOf(cfg.module, cfg.name, 'model_type');
      const literal = mt && /^(["'])([^"'\\]*)\1$/.exec(mt.value);
      if (literal) info.modelType = literal[2];
    }
  }
  for (const m of pkg.modules.values()) {
    const moe = m.selfModules.get('block_sparse_moe');
    if (moe) {
      info.moeBlock = moe;
      break;
    }
  }
  return info;
}
