// The one Diagnostic shape every phase reports: the CLI, JSON output and the language server all read it.
import type { Range } from './source.js';

export type Severity = 'error' | 'warning' | 'info';

export interface RelatedInfo {
  message: string;
  range: Range;
}

/** A machine-applicable edit, e.g. "did you mean `mlp_gelu`?" replacing a misspelt name. */
export interface Fix {
  title: string;
  range: Range;
  newText: string;
}

export interface Diagnostic {
  code: string; // "PIPE2001"
  severity: Severity;
  message: string;
  range: Range;
  hint?: string;
  related?: RelatedInfo[];
  fixes?: Fix[];
}

export function compareDiagnostics(a: Diagnostic, b: Diagnostic): number {
  if (a.range.file !== b.range.file) return a.range.file < b.range.file ? -1 : 1;
  return a.range.start.offset - b.range.start.offset || a.range.end.offset - b.range.end.offset || (a.code < b.code ? -1 : a.code > b.code ? 1 : 0) || (a.message < b.message ? -1 : a.message > b.message ? 1 : 0);
}

export function hasErrors(diags: readonly Diagnostic[]): boolean {
  return diags.some((d) => d.severity === 'error');
}
