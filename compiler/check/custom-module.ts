// The TypeScript / JavaScript half of a custom component, read as text: the module file and every file
// it imports relatively (`import ... from './x.js'`, `export * from`, `import('./x')`, `require('./x')`),
// transitively. These files are what pipec's runtime transpiles and imports, what the content hash
// covers, and what must stay inside the program's folder. Bare imports (`@tensorflow/tfjs-core`,
// `node:fs`) are packages, not the user's files, and are not followed.
import * as path from 'node:path';
import { confineResolved, maskSource, relTo, within, type CodeFile, type CodeFs } from './code-files.js';

const EXTENSIONS = ['', '.ts', '.mts', '.js', '.mjs', '.cjs', '/index.ts', '/index.js'];

/** The file a module path names: as written, with an extension, or a folder's index; a `.js` path may be a `.ts` source. */
export function resolveModule(base: string, fs: CodeFs): string | undefined {
  for (const ext of EXTENSIONS) {
    const p = base + ext;
    if (fs.exists(p) && !fs.isDirectory(p)) return p;
  }
  // TypeScript sources import their siblings as './x.js'.
  if (/\.m?js$/.test(base)) {
    const ts = base.replace(/\.(m?)js$/, '.$1ts');
    if (fs.exists(ts)) return ts;
  }
  return undefined;
}

/** A relative import that does not lead to a file of the module inside the program's folder. */
export interface ImportProblem {
  file: CodeFile;
  /** Offsets of the specifier (without quotes) in the file's text. */
  start: number;
  end: number;
  spec: string;
  kind: 'missing' | 'outside';
  why: string;
}

export interface ModuleClosure {
  files: CodeFile[];
  problems: ImportProblem[];
}

/** Specifiers of a TS/JS source, with their offsets: `from "x"`, `import "x"`, `import("x")`, `require("x")`. */
export function importSpecifiers(text: string): { spec: string; start: number; end: number }[] {
  const code = maskSource(text, 'ts');
  const out: { spec: string; start: number; end: number }[] = [];
  for (const m of code.matchAll(/(?<![.\w$])(?:from|import|require)\s*(\(\s*)?(["'`])/g)) {
    const q = m.index! + m[0].length - 1; // the opening quote
    const close = code.indexOf(m[2]!, q + 1);
    if (close < 0) continue;
    out.push({ spec: text.slice(q + 1, close), start: q + 1, end: close });
  }
  return out;
}

/** The module file and its relative imports, transitively, each checked to stay in `root`. */
export function tsModuleClosure(entry: string, root: string, fs: CodeFs): ModuleClosure {
  const files: CodeFile[] = [];
  const problems: ImportProblem[] = [];
  const seen = new Set<string>();
  const visit = (abs: string) => {
    if (seen.has(abs)) return;
    seen.add(abs);
    const text = fs.readFile(abs);
    if (text === undefined) return;
    const file: CodeFile = { abs, rel: relTo(root, abs), text };
    files.push(file);
    for (const s of importSpecifiers(text)) {
      if (!s.spec.startsWith('./') && !s.spec.startsWith('../') && s.spec !== '.' && s.spec !== '..') continue;
      const base = path.resolve(path.dirname(abs), s.spec);
      // judged on the text first: a path that climbs out is outside, whatever the disk holds there
      if (!within(root, base)) {
        problems.push({ file, ...s, kind: 'outside', why: 'climbs out of the program\'s folder with ".."' });
        continue;
      }
      const target = resolveModule(base, fs);
      if (!target) {
        problems.push({ file, ...s, kind: 'missing', why: 'does not exist (tried with .ts, .js, .mjs, /index.ts)' });
        continue;
      }
      const v = confineResolved(target, root, fs);
      if (v.kind === 'refused') {
        problems.push({ file, ...s, kind: 'outside', why: v.why });
        continue;
      }
      visit(target);
    }
  };
  visit(entry);
  return { files, problems };
}
