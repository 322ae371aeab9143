// Diagnostics as text: the CLI's `path:line:col - error PIPE2001: message` and the golden baselines'
// `path(line,col): error PIPE2001: message`, each followed by the source line, an underline and the hint.
import type { Diagnostic } from './diagnostic.js';
import type { SourceFile } from './source.js';

export type RenderStyle = 'cli' | 'baseline';

export interface RenderOptions {
  style?: RenderStyle;
  color?: boolean;
}

const C = { red: '\x1b[31m', yellow: '\x1b[33m', cyan: '\x1b[36m', dim: '\x1b[2m', bold: '\x1b[1m', reset: '\x1b[0m' };

/** A source line longer than LINE_MAX is shown as WINDOW characters around the column (WINDOW_BEFORE of
 * them before it), with `...` where it was cut: a 5 MB line is not printed for each diagnostic on it. */
const LINE_MAX = 160;
const WINDOW = 120;
const WINDOW_BEFORE = 40;

const isLowSurrogate = (text: string, i: number) => (text.charCodeAt(i) & 0xfc00) === 0xdc00;

/** The part of `text` to show, and the 1-based columns [column, endCol) of the underline in it. */
export function lineWindow(text: string, column: number, endCol: number): { text: string; column: number; endCol: number } {
  if (text.length <= LINE_MAX) return { text, column, endCol };
  let from = Math.max(0, Math.min(column - 1, text.length) - WINDOW_BEFORE);
  let to = Math.min(text.length, from + WINDOW);
  // Cut between characters, not inside a surrogate pair.
  if (from > 0 && isLowSurrogate(text, from)) from--;
  if (to < text.length && isLowSurrogate(text, to)) to++;
  const head = from > 0 ? '...' : '';
  const tail = to < text.length ? '...' : '';
  const shift = head.length - from;
  return { text: `${head}${text.slice(from, to)}${tail}`, column: column + shift, endCol: Math.min(endCol, to + 1) + shift };
}

export function renderDiagnostic(d: Diagnostic, sources: ReadonlyMap<string, SourceFile>, opts: RenderOptions = {}): string {
  const style = opts.style ?? 'cli';
  const paint = (code: string, s: string) => (opts.color ? `${code}${s}${C.reset}` : s);
  const { line, column } = d.range.start;
  const where = style === 'cli' ? `${d.range.file}:${line}:${column}` : `${d.range.file}(${line},${column})`;
  const sev = d.severity === 'error' ? paint(C.red, 'error') : d.severity === 'warning' ? paint(C.yellow, 'warning') : paint(C.cyan, 'info');
  const head = style === 'cli' ? `${paint(C.cyan, where)} - ${sev} ${paint(C.dim, d.code)}: ${d.message}` : `${where}: ${d.severity} ${d.code}: ${d.message}`;
  const lines = [head];
  const src = sources.get(d.range.file);
  if (src) {
    const full = src.lineText(line);
    const shown = lineWindow(full, column, d.range.end.line === line ? d.range.end.column : full.length + 1);
    const text = shown.text;
    const gutter = String(line);
    lines.push('');
    lines.push(`${paint(C.dim, gutter)} ${text}`);
    const width = Math.max(1, shown.endCol - shown.column);
    const pad = text.slice(0, shown.column - 1).replace(/[^\t]/g, ' ');
    lines.push(`${' '.repeat(gutter.length)} ${pad}${paint(d.severity === 'error' ? C.red : C.yellow, (width === 1 ? '^' : '~'.repeat(width)))}`);
  }
  if (d.hint) lines.push(`${' '.repeat(String(line).length)} ${paint(C.bold, 'hint')}: ${d.hint}`);
  for (const r of d.related ?? []) lines.push(`${' '.repeat(String(line).length)} ${paint(C.dim, 'note')}: ${r.message} (${style === 'cli' ? `${r.range.file}:${r.range.start.line}:${r.range.start.column}` : `${r.range.file}(${r.range.start.line},${r.range.start.column})`})`);
  return lines.join('\n');
}

export function renderAll(diags: readonly Diagnostic[], sources: ReadonlyMap<string, SourceFile>, opts: RenderOptions = {}): string {
  return diags.map((d) => renderDiagnostic(d, sources, opts)).join('\n\n');
}

export function summary(diags: readonly Diagnostic[]): string {
  const errors = diags.filter((d) => d.severity === 'error').length;
  const warnings = diags.filter((d) => d.severity === 'warning').length;
  const parts = [];
  if (errors) parts.push(`${errors} error${errors === 1 ? '' : 's'}`);
  if (warnings) parts.push(`${warnings} warning${warnings === 1 ? '' : 's'}`);
  return parts.join(', ');
}
