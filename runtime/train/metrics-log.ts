// What `pipec run` records per step and per evaluation, and where (run.ts calls only this):
//   metrics.jsonl / eval.jsonl (metrics.ts) first -- the source of truth -- then the TensorBoard event
//   file (tensorboard.ts), then now and then the dashboard page (dashboard.ts).
// The page is rewritten atomically at most every PAGE_EVERY_S seconds, and less often when writing it
// costs more than 2% of that time (a 100,000-step page is ~15 MB), so it stays cheap next to training;
// also at each stage's end and at the end of the run.
import type { Graph } from '../../compiler/ir/graph.js';
import { dashboardStages, dashboardTitle, emptyColumns, pushMetrics, writeDashboard, type DashboardData, type RunStatus } from './dashboard.js';
import type { EvalResult } from './evaluate.js';
import { appendEval, appendMetrics, readEval, readMetrics, truncateMetrics, type EvalPoint, type ResumeAt, type StepMetrics } from './metrics.js';
import { TensorBoardWriter, truncateTensorBoard } from './tensorboard.js';

export const PAGE_EVERY_S = 15;

export class MetricsLog {
  private readonly data: DashboardData;
  private readonly tb: TensorBoardWriter;
  private globalStep: number;
  private last: StepMetrics | undefined;
  private pageDueAt = 0;

  /**
   * Opens the run's logs. On resume (`resumeAt`), first drops what the resumed run redoes from
   * metrics.jsonl, eval.jsonl and the earlier event files, then starts a new event file.
   */
  constructor(private readonly runDir: string, graph: Graph, resumeAt?: ResumeAt) {
    if (resumeAt) {
      // the last stage's final checkpoint: only the final evaluation is left to do, and it is redone
      const redoesEvaluation = !!resumeAt.final && resumeAt.stage_index === graph.stages.length - 1;
      this.globalStep = truncateMetrics(runDir, resumeAt, redoesEvaluation);
      truncateTensorBoard(runDir, this.globalStep, redoesEvaluation);
    } else this.globalStep = 0;
    const metrics = resumeAt ? readMetrics(runDir) : [];
    const columns = emptyColumns();
    for (const m of metrics) pushMetrics(columns, m);
    this.last = metrics.at(-1);
    this.tb = TensorBoardWriter.create(runDir, resumeAt ? this.globalStep : undefined);
    this.data = {
      format: 'pipec.dashboard', version: 1, title: dashboardTitle(graph, runDir), run_dir: runDir, status: 'running', generated: '',
      refresh_s: PAGE_EVERY_S, stages: dashboardStages(graph, metrics), metrics: columns, eval: resumeAt ? readEval(runDir) : [],
    };
    this.writePage('running');
  }

  step(m: StepMetrics): void {
    appendMetrics(this.runDir, m);
    this.globalStep++;
    this.last = m;
    this.tb.step(this.globalStep, m);
    pushMetrics(this.data.metrics, m);
    if (performance.now() >= this.pageDueAt) this.writePage('running');
  }

  /** Evaluation figures measured now (after the latest step): eval.jsonl, TensorBoard's eval/ tags, the page. */
  evaluation(points: readonly Omit<EvalPoint, 'stage' | 'stage_index' | 'step'>[]): void {
    if (!this.last || !points.length) return;
    const at = { stage: this.last.stage, stage_index: this.last.stage_index, step: this.last.step };
    const full = points.map((p) => ({ ...at, ...p }));
    appendEval(this.runDir, full);
    this.tb.evaluation(this.globalStep, full);
    this.data.eval.push(...full);
  }

  stageDone(): void {
    this.writePage('running');
  }

  finish(status: Exclude<RunStatus, 'running'>): void {
    this.writePage(status);
  }

  private writePage(status: RunStatus): void {
    const t0 = performance.now();
    this.data.status = status;
    this.data.generated = new Date().toISOString();
    writeDashboard(this.runDir, this.data);
    const cost = performance.now() - t0;
    this.pageDueAt = performance.now() + Math.max(PAGE_EVERY_S * 1000, 50 * cost);
    this.data.refresh_s = Math.ceil(Math.max(PAGE_EVERY_S * 1000, 50 * cost) / 1000);
  }
}

/** The held-out accuracy of evaluate.ts as evaluation figures: accuracy/<question>_<language>, e.g. accuracy/shape_ja. */
export function accuracyPoints(results: readonly EvalResult[]): Omit<EvalPoint, 'stage' | 'stage_index' | 'step'>[] {
  return results.map((r) => ({ name: `accuracy/${r.question}_${r.language}`, value: r.accuracy, correct: r.correct, total: r.total }));
}
