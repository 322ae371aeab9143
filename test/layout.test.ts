// The layout's dependency direction, read from the import statements of the sources: cli/ (the pipec
// command) sits above compiler/ and runtime/; the compiler imports nothing from runtime/ or cli/ (so
// `pipec/compiler`, `pipec check` and the language server never load the runtime or TensorFlow.js); the
// runtime imports nothing from cli/.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repo } from './paths.js';

/** Every .ts file under `dir` (repository-relative paths, `/`-separated). */
function sources(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(repo(rel), { withFileTypes: true })) {
      const child = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(child);
      else if (e.name.endsWith('.ts')) out.push(child);
    }
  };
  walk(dir);
  return out.sort();
}

// `import ... from 'x'`, `export ... from 'x'`, `import 'x'` and `import('x')` (with a literal). Comments and
// strings that merely mention a path are not imports: the specifier must follow `from`, `import` or `import(`.
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])([^'"]+)\1/gm;

interface Import {
  file: string;
  line: number;
  /** the specifier as written */
  spec: string;
  /** the repository-relative file it names (relative specifiers only), e.g. runtime/errors.js */
  target?: string;
}

function importsOf(file: string): Import[] {
  const text = fs.readFileSync(repo(file), 'utf8');
  const found: Import[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[2]!;
    const line = text.slice(0, m.index).split('\n').length;
    const target = spec.startsWith('.') ? path.posix.normalize(path.posix.join(path.posix.dirname(file), spec)) : undefined;
    found.push({ file, line, spec, ...(target !== undefined ? { target } : {}) });
  }
  return found;
}

const topFolder = (target: string) => target.split('/')[0]!;
const shown = (i: Import) => `${i.file}:${i.line} imports ${i.spec}`;

describe('layout: dependency direction', () => {
  it('the scanner sees static and dynamic imports (cli/main.ts reaches compiler/ and runtime/)', () => {
    // Without this, a scanner that found nothing would pass the checks below.
    const main = importsOf('cli/main.ts');
    assert.ok(main.some((i) => i.target === 'compiler/service/service.js'), 'static import of the compiler service');
    assert.ok(main.some((i) => i.target === 'runtime/export/commands.js'), 'dynamic import of the export commands');
    assert.ok(main.some((i) => i.spec === 'node:fs'), 'a package specifier');
    assert.ok(sources('compiler').length > 20 && sources('runtime').length > 20);
  });

  it('compiler/ imports nothing from runtime/ or cli/, and no TensorFlow.js', () => {
    const bad = sources('compiler')
      .flatMap(importsOf)
      .filter((i) => (i.target !== undefined ? topFolder(i.target) !== 'compiler' : i.spec.startsWith('@tensorflow/')));
    assert.deepEqual(bad.map(shown), []);
  });

  it('runtime/ imports nothing from cli/', () => {
    const bad = sources('runtime')
      .flatMap(importsOf)
      .filter((i) => i.target !== undefined && topFolder(i.target) === 'cli');
    assert.deepEqual(bad.map(shown), []);
  });

  it('the language server stays on the compiler service (compiler/lsp imports only compiler/)', () => {
    const lsp = sources('compiler/lsp').flatMap(importsOf);
    assert.ok(lsp.some((i) => i.target?.startsWith('compiler/service/')), 'the server uses the compiler service');
    assert.deepEqual(lsp.filter((i) => i.target !== undefined && topFolder(i.target) !== 'compiler').map(shown), []);
  });
});
