// Pass 5: custom components. The module must exist, be trusted, and export the named class. Exports are
// found by reading the source text (comments and strings stripped), never by running it; `export * from`
// and `export { X } from` are followed through relative imports, so a module split over files works.
import * as path from 'node:path';
import { M } from '../diagnostics/catalogue.js';
import type { Host, Program, Reporter } from './program.js';
import { closest } from './suggest.js';

const EXTENSIONS = ['', '.ts', '.mts', '.js', '.mjs', '/index.ts', '/index.js'];

export function checkCustomComponents(program: Program, host: Host, reporter: Reporter): void {
  for (const model of program.models.values()) {
    for (const c of model.components.values()) {
      const custom = c.custom;
      if (!custom) continue;
      const modArg = c.decl.init.kind === 'Call' ? c.decl.init.args.find((a) => a.name?.name === 'module') : undefined;
      const range = modArg?.value.range ?? c.decl.init.range;
      const file = resolveModule(custom.modulePath, host);
      if (!file) {
        const d = reporter.report(M.CustomModuleNotFound, range, custom.module);
        d.hint = `looked for ${host.display(custom.modulePath)} (with .ts, .js, .mjs)`;
        c.ok = false;
        continue;
      }
      custom.modulePath = file;
      const exports = collectExports(file, host, new Set());
      if (!exports.has(custom.className)) {
        const d = reporter.report(M.CustomClassNotExported, range, custom.className, custom.module);
        const near = closest(custom.className, exports);
        d.hint = near ? `did you mean \`${near}\`?` : exports.size ? `it exports ${[...exports].sort().join(', ')}` : 'it exports nothing; add `export class ' + custom.className + ' { ... }`';
        c.ok = false;
      }
    }
  }
}

export function resolveModule(base: string, host: Host): string | undefined {
  for (const ext of EXTENSIONS) {
    const p = base + ext;
    if (host.exists(p) && !host.isDirectory(p)) return p;
  }
  // TypeScript sources import their siblings as './x.js'.
  if (/\.m?js$/.test(base)) {
    const ts = base.replace(/\.(m?)js$/, '.$1ts');
    if (host.exists(ts)) return ts;
  }
  return undefined;
}

/** Strip comments, string and template contents, keeping offsets roughly aligned. */
function stripNoise(src: string): { code: string; strings: string[] } {
  const strings: string[] = [];
  const code = src.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*|(["'`])((?:\\.|(?!\1)[^\\])*)\1/g, (_m, q: string | undefined, body: string | undefined) => {
    if (q) {
      strings.push(body ?? '');
      return `${q}__S${strings.length - 1}__${q}`;
    }
    return ' ';
  });
  return { code, strings };
}

export function collectExports(file: string, host: Host, seen: Set<string>): Set<string> {
  const out = new Set<string>();
  if (seen.has(file)) return out;
  seen.add(file);
  const text = host.readFile(file);
  if (text === undefined) return out;
  const { code, strings } = stripNoise(text);
  const str = (token: string) => strings[Number(/__S(\d+)__/.exec(token)?.[1] ?? -1)] ?? '';
  for (const m of code.matchAll(/\bexport\s+(?:default\s+)?(?:declare\s+)?(?:abstract\s+)?(?:class|function\*?|const|let|var|interface|type|enum)\s+([A-Za-z_$][\w$]*)/g)) out.add(m[1]);
  for (const m of code.matchAll(/\bexport\s+(type\s+)?\{([^}]*)\}\s*(?:from\s*(["']__S\d+__["']))?/g)) {
    for (const part of m[2].split(',')) {
      const names = part.trim().split(/\s+as\s+/);
      const exported = (names[1] ?? names[0]).replace(/^type\s+/, '').trim();
      if (exported) out.add(exported);
    }
  }
  for (const m of code.matchAll(/\bexport\s+\*\s+from\s*(["']__S\d+__["'])/g)) {
    const spec = str(m[1]);
    if (!spec.startsWith('.')) continue;
    const target = resolveModule(path.resolve(path.dirname(file), spec), host);
    if (target) for (const n of collectExports(target, host, seen)) out.add(n);
  }
  // CommonJS: module.exports = { X } / exports.X = ...
  for (const m of code.matchAll(/\bexports\.([A-Za-z_$][\w$]*)\s*=/g)) out.add(m[1]);
  for (const m of code.matchAll(/\bmodule\.exports\s*=\s*\{([^}]*)\}/g)) for (const part of m[1].split(',')) out.add(part.split(':')[0].trim());
  out.delete('');
  return out;
}
