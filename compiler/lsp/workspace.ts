// The language server's view of the world: open documents (their text overrides the disk), and the last
// compile of each, made by the same compiler service as the CLI.
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Diagnostic as LspDiagnostic, Range as LspRange } from 'vscode-languageserver';
import type { CheckResult } from '../check/passes.js';
import type { Host } from '../check/program.js';
import type { Diagnostic } from '../diagnostics/diagnostic.js';
import type { Range } from '../diagnostics/source.js';
import { compile, nodeHost, type CompileResult } from '../service/service.js';

export const uriToPath = (uri: string): string => (uri.startsWith('file:') ? fileURLToPath(uri) : uri);
export const pathToUri = (p: string): string => pathToFileURL(p).href;

export function toLspRange(r: Range): LspRange {
  return { start: { line: r.start.line - 1, character: r.start.column - 1 }, end: { line: r.end.line - 1, character: r.end.column - 1 } };
}

export function toLspDiagnostic(d: Diagnostic): LspDiagnostic {
  return {
    range: toLspRange(d.range),
    severity: d.severity === 'error' ? 1 : d.severity === 'warning' ? 2 : 3,
    code: d.code,
    source: 'pipec',
    message: d.hint ? `${d.message}\nhint: ${d.hint}` : d.message,
    relatedInformation: d.related?.map((r) => ({ message: r.message, location: { uri: pathToUri(r.range.file), range: toLspRange(r.range) } })),
    data: d.fixes?.length ? { fixes: d.fixes } : undefined,
  };
}

export class Workspace {
  private readonly texts = new Map<string, string>(); // absolute path -> text of open documents
  private readonly results = new Map<string, CompileResult>();
  readonly host: Host;

  constructor() {
    const base = nodeHost('/', this.texts);
    // Diagnostics name files by absolute path here, so they map straight back to URIs.
    this.host = { ...base, display: (p) => p };
  }

  open(uri: string, text: string): void {
    this.texts.set(uriToPath(uri), text);
    this.results.delete(uriToPath(uri));
  }

  close(uri: string): void {
    this.texts.delete(uriToPath(uri));
    this.results.delete(uriToPath(uri));
  }

  text(uri: string): string | undefined {
    return this.texts.get(uriToPath(uri));
  }

  openPaths(): string[] {
    return [...this.texts.keys()];
  }

  /** Compile an open document as an entry file (cached until it or any open document changes). */
  compile(uri: string): CompileResult | undefined {
    const file = uriToPath(uri);
    const text = this.texts.get(file);
    if (text === undefined) return undefined;
    let r = this.results.get(file);
    if (!r) {
      try {
        r = compile({ file, text, host: this.host, cwd: path.dirname(file), lower: false });
      } catch {
        return undefined;
      }
      this.results.set(file, r);
    }
    return r;
  }

  /** Any edit can change what other open files see through imports. */
  invalidateAll(): void {
    this.results.clear();
  }

  check(uri: string): CheckResult | undefined {
    return this.compile(uri)?.check;
  }
}
