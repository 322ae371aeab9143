// The one compiler service: the CLI and the language server both call it, so they report the same
// diagnostics with the same codes and ranges.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { diskFs } from '../check/code-files.js';
import { checkProgram, type CheckOptions, type CheckResult } from '../check/passes.js';
import type { Host } from '../check/program.js';
import type { StageOverride } from '../check/stages.js';
import { parseSize, type Value } from '../check/values.js';
import { loadRunConfig, mergeRunConfigs, parseRunConfig, parseSetOptions, SET_FILE, type RunConfig } from '../config/run-config.js';
import { M } from '../diagnostics/catalogue.js';
import { compareDiagnostics, hasErrors, type Diagnostic } from '../diagnostics/diagnostic.js';
import { SourceFile, type Range } from '../diagnostics/source.js';
import type { Graph } from '../ir/graph.js';
import { validateGraph } from '../ir/validate.js';
import { lower } from '../lower/lower.js';

/** The package root: stdlib/ and schema/ live there (compiled code runs from dist/compiler/service). */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const STDLIB_DIR = path.join(PACKAGE_ROOT, 'stdlib');

export function nodeHost(cwd: string = process.cwd(), overlay: ReadonlyMap<string, string> = new Map()): Host {
  return {
    stdlibDir: STDLIB_DIR,
    readFile: (p) => overlay.get(p) ?? diskFs.readFile(p),
    exists: (p) => overlay.has(p) || diskFs.exists(p),
    isDirectory: diskFs.isDirectory,
    realPath: (p) => (overlay.has(p) ? p : diskFs.realPath(p)),
    display: (p) => {
      const rel = path.relative(cwd, p);
      return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel.split(path.sep).join('/') : p;
    },
  };
}

export interface CompileRequest {
  file: string;
  /** Text of the file when it is not (or not yet) on disk, e.g. an editor buffer. */
  text?: string;
  configFiles?: string[];
  sets?: string[];
  skipWeights?: boolean;
  lower?: boolean;
  /** What the command needs of custom components (checker option `customNeeds`). */
  customNeeds?: CheckOptions['customNeeds'];
  cwd?: string;
  host?: Host;
}

export interface CompileResult {
  diagnostics: Diagnostic[];
  /** Every source a diagnostic may point into, by its displayed path. */
  sources: Map<string, SourceFile>;
  check?: CheckResult;
  graph?: Graph;
  runConfig?: RunConfig;
}


/** A value from YAML / --set as a compile-time value: "80GB" is a size, other strings stay strings. */
export function overrideValue(raw: unknown): Value | undefined {
  if (typeof raw === 'number') return { t: 'num', v: raw };
  if (typeof raw === 'boolean') return { t: 'bool', v: raw };
  if (typeof raw === 'string') {
    const bytes = parseSize(raw);
    return bytes === undefined ? { t: 'str', v: raw } : { t: 'size', bytes };
  }
  return undefined;
}

function checkOptionsFrom(cfg: RunConfig, cwd: string): CheckOptions {
  const stageOverrides: StageOverride[] = [];
  const weightOverrides = new Map<string, { dir: string; range: Range }>();
  const dataOverrides = new Map<string, Map<string, { value: Value; range: Range }>>();
  for (const o of cfg.overrides) {
    const value = overrideValue(o.value);
    if (!value) continue;
    if (o.section === 'stages' && o.stage) stageOverrides.push({ stage: o.stage, path: o.path, value, range: o.range });
    else if (o.section === 'paths' && o.path[0] === 'weights' && o.path.length === 2 && typeof o.value === 'string') weightOverrides.set(o.path[1], { dir: path.resolve(cwd, o.value), range: o.range });
    else if (o.section === 'paths' && o.path[0] === 'data' && o.path.length === 3) {
      const m = dataOverrides.get(o.path[1]) ?? new Map();
      m.set(o.path[2], { value: typeof o.value === 'string' ? { t: 'str', v: path.resolve(cwd, o.value) } : value, range: o.range });
      dataOverrides.set(o.path[1], m);
    }
  }
  return { stageOverrides, weightOverrides, dataOverrides };
}

export function compile(req: CompileRequest): CompileResult {
  const cwd = req.cwd ?? process.cwd();
  const host = req.host ?? nodeHost(cwd);
  const abs = path.resolve(cwd, req.file);
  const sources = new Map<string, SourceFile>();
  const diagnostics: Diagnostic[] = [];

  const configs: RunConfig[] = [];
  for (const f of req.configFiles ?? []) {
    const cfgAbs = path.resolve(cwd, f);
    const shown = host.display(cfgAbs);
    const cfgText = host.readFile(cfgAbs);
    if (cfgText === undefined) {
      configs.push(loadRunConfig(cfgAbs));
      continue;
    }
    configs.push(parseRunConfig(shown, cfgText));
    sources.set(shown, new SourceFile(shown, cfgText));
  }
  if (req.sets?.length) {
    configs.push(parseSetOptions(req.sets));
    sources.set(SET_FILE, new SourceFile(SET_FILE, req.sets.join(' ')));
  }
  const runConfig = configs.length ? mergeRunConfigs(...configs) : undefined;
  if (runConfig) for (const d of runConfig.diagnostics) diagnostics.push(d);

  const text = req.text ?? host.readFile(abs);
  if (text === undefined) throw new UsageError(`cannot read ${req.file}: no such file`);
  const check = checkProgram(abs, text, host, { ...(runConfig ? checkOptionsFrom(runConfig, cwd) : {}), skipWeights: req.skipWeights, customNeeds: req.customNeeds });
  for (const f of check.program.files) sources.set(f.source.path, f.source);
  for (const d of check.reporter.diagnostics) diagnostics.push(d); // a loop: push(...) of very many overflows the stack
  diagnostics.sort(compareDiagnostics);

  const result: CompileResult = { diagnostics: capPerFile(dedupe(diagnostics)), sources, check, runConfig };
  if (req.lower !== false && !hasErrors(diagnostics)) {
    const graph = lower(check.program, check.estimates, host.display(abs));
    const problems = validateGraph(graph);
    if (problems.length) throw new Error(`internal error: the lowered graph does not validate:\n${problems.join('\n')}`);
    result.graph = graph;
  }
  return result;
}

/** A file reports at most this many diagnostics; one more (PIPE1015) stands for the rest. Random bytes
 * give one per few characters, and nobody reads the ten-thousandth. */
export const MAX_DIAGNOSTICS_PER_FILE = 100;

const SEVERITY_RANK = { info: 0, warning: 1, error: 2 } as const;

/** Keep each file's first MAX_DIAGNOSTICS_PER_FILE diagnostics (they are sorted by position) and put one
 * PIPE1015 where the rest begin; it is as severe as the worst of them, so the exit code does not change. */
function capPerFile(diags: Diagnostic[]): Diagnostic[] {
  const kept: Diagnostic[] = [];
  const perFile = new Map<string, { count: number; summary?: Diagnostic }>();
  for (const d of diags) {
    const f = perFile.get(d.range.file) ?? { count: 0 };
    perFile.set(d.range.file, f);
    f.count++;
    if (f.count <= MAX_DIAGNOSTICS_PER_FILE) {
      kept.push(shorten(d));
      continue;
    }
    if (!f.summary) {
      const at = { file: d.range.file, start: d.range.start, end: d.range.start };
      f.summary = { code: M.TooManyDiagnostics.code, severity: d.severity, message: '', range: at };
      kept.push(f.summary);
    }
    if (SEVERITY_RANK[d.severity] > SEVERITY_RANK[f.summary.severity]) f.summary.severity = d.severity;
  }
  for (const f of perFile.values()) if (f.summary) f.summary.message = M.TooManyDiagnostics.format(f.count - MAX_DIAGNOSTICS_PER_FILE, MAX_DIAGNOSTICS_PER_FILE);
  return kept;
}

/** A message or hint quotes the program (a value, a cycle, an expression), which may be megabytes long. */
const MAX_MESSAGE = 500;

function shorten(d: Diagnostic): Diagnostic {
  const cut = (s: string) => {
    let end = MAX_MESSAGE - 3;
    if ((s.charCodeAt(end - 1) & 0xfc00) === 0xd800) end--; // not inside a surrogate pair
    return `${s.slice(0, end)}...`;
  };
  if (d.message.length > MAX_MESSAGE) d.message = cut(d.message);
  if (d.hint && d.hint.length > MAX_MESSAGE) d.hint = cut(d.hint);
  return d;
}

function dedupe(diags: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return diags.filter((d) => {
    const key = `${d.range.file}:${d.range.start.offset}:${d.range.end.offset}:${d.code}:${d.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** A mistake in how pipec was invoked (exit code 2), as opposed to a problem in the program (exit 1). */
export class UsageError extends Error {}

/** Deterministic JSON for graphs: two-space indent, trailing newline. */
export function graphJson(g: Graph): string {
  return `${JSON.stringify(g, null, 2)}\n`;
}
