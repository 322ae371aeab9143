// RUN/dashboard.html: the run's charts in one self-contained file (no network, no server): loss raw and
// smoothed (log scale on request), learning rate, gradient norm, tokens/s, evaluation figures, stage
// boundaries, on the run's global step axis. The page is runtime/train/dashboard/page.{html,css,js}
// with uPlot (node_modules/uplot: a small, maintained chart library, MIT) and the run's data inlined:
// metrics.jsonl as columns (every value as logged: the page decimates for drawing, never the data)
// and eval.jsonl's points.
// A browser opening the file from disk cannot re-read metrics.jsonl (file:// fetches are refused), so
// while the run goes on pipec rewrites the page (atomically, every refresh_s seconds: metrics-log.ts)
// and the page reloads itself at that pace, keeping its view in the URL's #hash.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import type { Graph } from '../../compiler/ir/graph.js';
import { writeFileAtomic } from '../weights/atomic.js';
import { readEval, readMetrics, type EvalPoint, type StepMetrics } from './metrics.js';
import { readJsonFile } from './run-dir.js';

export const DASHBOARD_FILE = 'dashboard.html';

export type RunStatus = 'running' | 'finished' | 'stopped';

/** metrics.jsonl as columns, one entry per line (aux_loss, data_wait_s: null where a line has none). */
export interface MetricsColumns {
  stage_index: number[];
  step: number[];
  loss: number[];
  lm_loss: number[];
  aux_loss: (number | null)[];
  lr: number[];
  grad_norm: number[];
  tokens: number[];
  tokens_per_s: number[];
  elapsed_s: number[];
  /** seconds the step waited for its batch (the image workers falling behind) */
  data_wait_s: (number | null)[];
}

export interface DashboardData {
  format: 'pipec.dashboard';
  version: 1;
  title: string;
  run_dir: string;
  status: RunStatus;
  /** When the page was written (ISO 8601), and how often it is rewritten while the run goes on. */
  generated: string;
  refresh_s: number;
  /** Every stage of the program, by stage_index; planned_steps when the program fixes them. */
  stages: { name: string; planned_steps: number | null }[];
  metrics: MetricsColumns;
  eval: EvalPoint[];
}

const NUMERIC = ['stage_index', 'step', 'loss', 'lm_loss', 'lr', 'grad_norm', 'tokens', 'tokens_per_s', 'elapsed_s'] as const;

export function emptyColumns(): MetricsColumns {
  return { stage_index: [], step: [], loss: [], lm_loss: [], aux_loss: [], lr: [], grad_norm: [], tokens: [], tokens_per_s: [], elapsed_s: [], data_wait_s: [] };
}

export function pushMetrics(c: MetricsColumns, m: StepMetrics): void {
  for (const k of NUMERIC) c[k].push(m[k]);
  c.aux_loss.push(m.aux_loss ?? null);
  c.data_wait_s.push(m.data_wait_s ?? null);
}

/** The metrics.jsonl lines a page's columns hold (the inverse of pushMetrics: the tests' check). */
export function metricsOf(d: Pick<DashboardData, 'stages' | 'metrics'>): StepMetrics[] {
  const c = d.metrics;
  return c.step.map((_, i) => {
    const si = c.stage_index[i]!;
    const aux = c.aux_loss[i];
    const wait = c.data_wait_s[i];
    return {
      stage: d.stages[si]!.name, stage_index: si, step: c.step[i]!, loss: c.loss[i]!, lm_loss: c.lm_loss[i]!, ...(aux !== null && aux !== undefined ? { aux_loss: aux } : {}),
      lr: c.lr[i]!, grad_norm: c.grad_norm[i]!, tokens: c.tokens[i]!, tokens_per_s: c.tokens_per_s[i]!, elapsed_s: c.elapsed_s[i]!,
      ...(wait !== null && wait !== undefined ? { data_wait_s: wait } : {}),
    };
  });
}

/** The program's stages; a stage in the metrics that the graph lacks (an older graph.json) keeps its logged name. */
export function dashboardStages(graph: Pick<Graph, 'stages'> | undefined, metrics: readonly StepMetrics[] = []): DashboardData['stages'] {
  const stages: DashboardData['stages'] = (graph?.stages ?? []).map((s) => ({ name: s.name, planned_steps: s.steps ?? null }));
  for (const m of metrics) stages[m.stage_index] ??= { name: m.stage, planned_steps: null };
  for (let i = 0; i < stages.length; i++) stages[i] ??= { name: `stage ${i}`, planned_steps: null };
  return stages;
}

export function dashboardTitle(graph: Pick<Graph, 'source'> | undefined, runDir: string): string {
  return graph?.source ? path.basename(graph.source) : path.basename(runDir);
}

interface PageAssets {
  html: string;
  css: string;
  js: string;
  uplotJs: string;
  uplotCss: string;
}
let assets: PageAssets | undefined;

function pageAssets(): PageAssets {
  if (!assets) {
    const own = (f: string) => fs.readFileSync(new URL(`../../../runtime/train/dashboard/${f}`, import.meta.url), 'utf8'); // from dist/runtime/train/
    const uplot = (f: string) => fs.readFileSync(createRequire(import.meta.url).resolve(`uplot/dist/${f}`), 'utf8');
    assets = { html: own('page.html'), css: own('page.css'), js: own('page.js'), uplotJs: uplot('uPlot.iife.min.js'), uplotCss: uplot('uPlot.min.css') };
    for (const [name, text] of Object.entries(assets)) if (/<\/(script|style)/i.test(name === 'html' ? '' : text)) throw new Error(`dashboard asset ${name} would close its <script>/<style> early`);
  }
  return assets;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

/** JSON inside <script type="application/json">: no `<`, so no `</script>` or `<!--` can end it early. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

export function dashboardHtml(d: DashboardData): string {
  const a = pageAssets();
  const fill: Record<string, string> = { TITLE: `${escapeHtml(d.title)} — pipec dashboard`, UPLOT_CSS: a.uplotCss, PAGE_CSS: a.css, DATA: jsonForScript(d), UPLOT_JS: a.uplotJs, PAGE_JS: a.js };
  return a.html.replace(/\{\{([A-Z_]+)\}\}/g, (_, k: string) => fill[k]!); // a function: `$` in the scripts stays literal
}

export function writeDashboard(runDir: string, d: DashboardData): void {
  writeFileAtomic(path.join(runDir, DASHBOARD_FILE), dashboardHtml(d));
}

/** A run folder's dashboard data from its files: metrics.jsonl, eval.jsonl, graph.json, summary.json. */
export function dashboardFromRun(runDir: string, status?: RunStatus): DashboardData {
  const graph = readJsonFile(path.join(runDir, 'graph.json'), 64 << 20) as Graph | undefined;
  const metrics = readMetrics(runDir), columns = emptyColumns();
  for (const m of metrics) pushMetrics(columns, m);
  const summary = readJsonFile(path.join(runDir, 'summary.json')) as { stopped_early?: boolean } | undefined;
  return {
    format: 'pipec.dashboard', version: 1, title: dashboardTitle(graph, runDir), run_dir: runDir,
    status: status ?? (summary ? (summary.stopped_early ? 'stopped' : 'finished') : 'running'),
    generated: new Date().toISOString(), refresh_s: 15, stages: dashboardStages(graph, metrics), metrics: columns, eval: readEval(runDir),
  };
}
